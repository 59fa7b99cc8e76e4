/*
 * mcp_http.h: the MCP streamable HTTP transport's sessions (the /mcp endpoint of `cge serve
 * --mcp`), on the transport-independent core of mcp.h.
 *
 * Key design decision: this file knows MCP's HTTP rules (which message opens a session, which
 * header a later one must carry, what 202, 400 and 404 mean) but no HTTP library: the server's
 * route hands it the method's inputs (the Mcp-Session-Id and MCP-Protocol-Version headers, the
 * body) and sends back what it answers. One session is one struct cge__mcp (its negotiated
 * version), kept in a bounded table: the least recently used idle session makes room.
 *
 * Thread safety: every function may be called from any number of threads at once;
 * cge__mcp_sessions_free must be the last call.
 */
#ifndef CGE_SERVER_MCP_HTTP_H
#define CGE_SERVER_MCP_HTTP_H

#include "cge.h"

#include <stddef.h>

#define CGE__MCP_SESSION_ID_LEN 32 /* hex characters */

struct cge__mcp_sessions;

/* Sessions over engine e (not owned). allow_files as in cge__mcp_new. max_sessions: how many are
 * kept at once (0: 256). On failure *out is NULL and cge_errmsg() says why. */
enum cge_status cge__mcp_sessions_new(struct cge_engine *e, const char *allow_files,
                                      int max_sessions, struct cge__mcp_sessions **out);
/* NULL is a no-op. */
void cge__mcp_sessions_free(struct cge__mcp_sessions *s);

struct cge__mcp_http_answer {
    int status; /* 200 (JSON body), 202 (no body), 400, 404, 503 */
    char *body; /* JSON (cge__free it), or NULL */
    char session_id[CGE__MCP_SESSION_ID_LEN + 1]; /* set when a session was opened: send it in
                                                     the Mcp-Session-Id header */
};

/* POST /mcp: one JSON-RPC message (or batch). session_id: the Mcp-Session-Id header (NULL when
 * absent); version: the MCP-Protocol-Version header (NULL when absent). An initialize request
 * without a session opens one; anything else needs a known session (400 without the header,
 * 404 for an unknown or closed one, as the specification says, so that the client starts over). */
void cge__mcp_sessions_post(struct cge__mcp_sessions *s, const char *session_id,
                            const char *version, const char *body, size_t len,
                            struct cge__mcp_http_answer *out);

/* DELETE /mcp: ends a session. Returns 200, 400 (no header) or 404 (unknown session). */
int cge__mcp_sessions_delete(struct cge__mcp_sessions *s, const char *session_id);

/* The number of open sessions. */
int cge__mcp_sessions_count(struct cge__mcp_sessions *s);

#endif /* CGE_SERVER_MCP_HTTP_H */
