/*
 * commands.h: the subcommands of the cge tool. Each lives in tools/cmd_<name>.c and is listed
 * in the table in tools/cge.c. A command returns the process exit status (0 = success) and
 * prints errors as one line on stderr: "cge <cmd>: <what failed>".
 */
#ifndef CGE_COMMANDS_H
#define CGE_COMMANDS_H

#include <stddef.h>
#include <stdint.h>

int cmd_models(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_embed_engine(int argc, char **argv); /* cmd_embed without --model */
int cmd_fusion(int argc, char **argv);
int cmd_worker(int argc, char **argv); /* cmd_worker.c: Redis Streams worker */
int cmd_submit(int argc, char **argv); /* cmd_submit.c: jobs to the workers */
int cmd_pull(int argc, char **argv);
int cmd_ensemble(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_mcp(int argc, char **argv);
int cmd_convert(int argc, char **argv); /* cmd_convert.c: converted-weights files */
int cmd_info(int argc, char **argv); /* cmd_info.c: version, backends, devices */
/* cmd_info.c: library warnings (a backend's CPU fallback) as "CMD: warning: ..." on stderr. */
void tool_log_warnings(const char *cmd);
/* cmd_fusion_corpus.c: corpus → slot-vector lines in a temporary file (*data); the ensemble's
 * fusion folder in *fusion_dir. 0 on success (errors printed). */
int fusion_corpus_to_data(const char *ensemble, const char *corpus, char *data, size_t data_cap,
                          char *fusion_dir, size_t fusion_cap);

/* One JSON input line of `cge embed` (and of a training corpus): a JSON string, or
 * {"text"|"code"|"image"|"audio", "role", "instruction", "language"} (+ "pair" when allowed:
 * an integer or a string naming items that belong together). On failure err is set. */
#include "cge.h"
struct cJSON;
struct tool_line {
    struct cJSON *doc;    /* owns the strings the input points into */
    struct cge_input in;
    int64_t pair;         /* -1: none */
    char err[300];        /* parse error, "" if none */
};
void tool_parse_input(const char *s, size_t n, struct tool_line *l, int allow_pair);
void tool_line_free(struct tool_line *l);

/* stdin_lines.c: reads stdin as JSON lines in batches. line(s, n, used) gets each non-blank line
 * (s NULL: a line over 64 MiB, skipped), flush() ends a batch (at `batch` lines or when stdin has
 * nothing more ready), consumed(used) (may be NULL) counts blank lines' bytes for progress.
 * Returns 0, or 1 when out of memory. */
struct tool_lines_ops {
    void (*line)(void *user, const char *s, size_t n, size_t used);
    void (*flush)(void *user);
    void (*consumed)(void *user, size_t used);
};
int tool_read_lines(const char *cmd, int batch, const struct tool_lines_ops *ops, void *user);

#endif
