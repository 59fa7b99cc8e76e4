/*
 * redis_jobs.h: the job protocol `cge submit` and `cge worker` share over Redis Streams.
 *
 * A job is one input line, one stream entry (XADD <stream> * ...) with these fields, all
 * required unless marked:
 *   v       "1"                        protocol version
 *   reply   "cge:reply:<submission>"   the list the result goes to
 *   idx     "<n>"                      the line's index in its submission (decimal, 0-based)
 *   output  "fused" | "slots" | "both" as `cge embed --output`
 *   line    the input line, exactly as `cge embed` reads it
 *   media   (optional) the bytes of the image or audio file the line names: workers never read
 *           the submitter's paths when the bytes came along
 * A worker stores the result with RPUSH <reply> "<idx> <result line>" (the line `cge embed`
 * would print for that input), then XACKs and XDELs the entry. A job the worker cannot read
 * (missing or unknown fields, wrong types) or one delivered more than --max-retries + 1 times
 * goes to the dead-letter stream <stream>:dead with its reason, and, when its reply and idx are
 * readable, an {"error": ...} result is stored so the submitter still gets one line for it.
 *
 * Delivery is at least once (a worker may die after storing, before acking): the submitter
 * keeps the first result per idx and drops the others, so each line is printed exactly once.
 */
#ifndef CGE_REDIS_JOBS_H
#define CGE_REDIS_JOBS_H

#define JOBS_STREAM       "cge:jobs"
#define JOBS_GROUP        "cge-workers"
#define JOBS_DEAD_SUFFIX  ":dead"
#define JOBS_REPLY_PREFIX "cge:reply:"
#define JOBS_REPLY_TTL_S  "86400" /* a reply list nobody collects goes away after a day */

struct cge_engine;
/* One JSON line on f with the engine's counters (cge worker/submit/embed --stats). */
#include <stdio.h>
void tool_print_engine_stats(FILE *f, struct cge_engine *e, const char *extra_json);

#endif
