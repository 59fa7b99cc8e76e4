/*
 * wire.h: the servers' JSON on the wire, in the engine's terms: a JSON input object (the ensemble
 * fixture README's {"text"|"code"|"image"|"audio", "role", "instruction", "language"}) to a
 * struct cge_input, and a struct cge_result to the JSON object `cge embed --output` prints.
 *
 * Design: the HTTP routes and the MCP tools share these, so one input is read one way and one
 * result is written one way, whatever the surface. Media arrive as data: URLs (decoded here into
 * the input's image_data/audio_data bytes); a file path is accepted only inside the folder the
 * server was given (--allow-files), after realpath(), so a request never reads outside it.
 * Everything here is reentrant (no shared state).
 */
#ifndef CGE_SERVER_WIRE_H
#define CGE_SERVER_WIRE_H

#include "cge.h"
#include "core/core.h"

#include <cjson/cJSON.h>
#include <stddef.h>

/* Where inputs may come from. */
struct cge__wire_policy {
    const char *allow_files; /* realpath of the folder paths must resolve inside; NULL: refused */
    size_t max_media_bytes;  /* decoded size limit of one data: URL (0: no limit) */
};

/* One parsed input: the engine's input plus what it points into that is not the JSON document. */
struct cge__wire_input {
    struct cge_input in;
    unsigned char *media; /* decoded data: URL bytes (owned) */
    char *path;           /* resolved file path (owned) */
};

/* Parses one input: a JSON string (a text) or an input object. `field` names it in messages
 * ("inputs[2]"). The input points into `j`'s strings, so j must outlive it. On failure returns
 * CGE_ERR_INVALID_VALUE (bad field, broken data: URL) or CGE_ERR_IO (path refused or missing)
 * with a message naming the field in err; *out is then deinitialized. */
enum cge_status cge__wire_input_parse(const cJSON *j, const char *field,
                                      const struct cge__wire_policy *pol,
                                      struct cge__wire_input *out, char *err, size_t errlen);
void cge__wire_input_deinit(struct cge__wire_input *w);

/* What a result object holds: the fused vector with the gate, the slot vectors, or both. */
enum cge__wire_output {
    CGE__OUT_FUSED = 1, /* "embedding", "expert_weights", "selected" */
    CGE__OUT_SLOTS = 2, /* "slots": {"E1": [...] | null, ...} */
    CGE__OUT_BOTH = 3,  /* all of them, and "slot_errors": {"Ek": message} where a slot failed */
};
/* "fused" | "slots" | "both" -> the enum; 0 for anything else. */
int cge__wire_output_parse(const char *s);

/* Appends the JSON object of one successful result. */
enum cge_status cge__wire_result_json(struct cge_buf *b, const struct cge_result *r,
                                      unsigned output);
/* Writes f as "%.9g" does (nine significant digits: every float32 round-trips; the last digit
 * may differ from glibc's in about one float in 10^8, past float precision) into out (at least
 * 32 bytes), NUL-terminated; returns the length. */
size_t cge__wire_float9(char *out, float f);
/* Appends [v0,v1,...] with float32 round-trip precision (cge__wire_float9). */
enum cge_status cge__wire_floats(struct cge_buf *b, const float *v, int64_t n);
/* Appends s as a JSON string literal (quoted, escaped). */
enum cge_status cge__wire_string(struct cge_buf *b, const char *s);

/* The HTTP status for an engine status (400 bad input, 404 no such model, 422 too long, 429
 * queue full, 503 not ready, 504 deadline, 500 otherwise), and for a failed result, looking at
 * its slots (a result that failed because every slot timed out is a 504). */
int cge__wire_http_status(enum cge_status st);
int cge__wire_result_http_status(const struct cge_result *r);

/* Standard base64 (RFC 4648, with padding). encode writes 4*ceil(n/3) chars and a NUL into dst
 * and returns the length; decode accepts padded or unpadded input and returns CGE_ERR_INVALID_VALUE
 * for any other character; *out is owned by the caller (cge__free). */
size_t cge__base64_encode(const void *src, size_t n, char *dst);
enum cge_status cge__base64_decode(const char *src, size_t n, unsigned char **out,
                                   size_t *out_len);

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int cge__utf8_valid(const char *s, size_t n);

/* "E1".."E12" -> 0..11; -1 otherwise. */
int cge__wire_slot_index(const char *name);

#endif /* CGE_SERVER_WIRE_H */
