/*
 * mcp.h: the Model Context Protocol server core: JSON-RPC 2.0 messages in, replies out, with the
 * engine's embeddings offered as MCP tools (embed, embed_batch, similarity, models, health).
 *
 * Key design decision: the core knows no transport. A transport hands it one message at a time
 * (a line of `cge mcp`'s stdin, the body of a POST to /mcp) and writes back what it returns, so
 * stdio and streamable HTTP share every rule of the protocol. One struct cge__mcp is one MCP
 * session (it remembers the negotiated protocol version); an HTTP server keeps one per
 * Mcp-Session-Id, all over the same engine.
 *
 * Thread safety: cge__mcp_handle may be called from any number of threads at once on one
 * session (tool calls run concurrently on the engine); cge__mcp_free must be the last call.
 */
#ifndef CGE_SERVER_MCP_H
#define CGE_SERVER_MCP_H

#include "cge.h"

#include <stddef.h>

/* The largest message the core accepts; transports should refuse larger ones before buffering
 * them (a stdio line past it is skipped and answered with an error). */
#define CGE__MCP_MAX_MESSAGE ((size_t)64 << 20)

/* The protocol versions spoken, newest first. */
#define CGE__MCP_VERSION_LATEST "2025-06-18"

struct cge__mcp;

/* A session over engine `e` (not owned; it must outlive the session). allow_files: a folder
 * inside which the image_path/audio_path arguments may name files (relative paths are taken
 * relative to it); NULL refuses every path (media then come as base64). On failure *out is NULL
 * and cge_errmsg() says why (CGE_ERR_IO: allow_files does not exist). */
enum cge_status cge__mcp_new(struct cge_engine *e, const char *allow_files, struct cge__mcp **out);
/* NULL is a no-op. */
void cge__mcp_free(struct cge__mcp *m);

/* One incoming message (request, notification, response, or a JSON array batch), len bytes (need
 * not be NUL-terminated). Returns the reply JSON, one line with no newline in it (cge__free it),
 * or NULL when nothing is to be answered (notifications and responses only, or a request that
 * was cancelled while it ran). *status (may be NULL) gets 200, or 202 when NULL is returned, or
 * 400 for a parse error or a message over CGE__MCP_MAX_MESSAGE (a JSON-RPC error is returned
 * then). Returns NULL with *status 500 only when memory ran out. Thread-safe. */
char *cge__mcp_handle(struct cge__mcp *m, const char *msg, size_t len, int *status);

#endif /* CGE_SERVER_MCP_H */
