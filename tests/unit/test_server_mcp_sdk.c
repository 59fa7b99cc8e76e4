/*
 * test_server_mcp_sdk.c: runs the official MCP TypeScript SDK client against `cge mcp`
 * (tests/mcp/sdk_stdio.mjs: Client + StdioClientTransport) and `cge serve --mcp`
 * (tests/mcp/sdk_http.mjs: StreamableHTTPClientTransport): every tool on the shared ensemble
 * fixture and errors on both; a negotiation per protocol version, sessions and the API key over
 * HTTP. Their checks count as this program's. The SDK comes from npm at the version pinned in
 * tests/mcp/package-lock.json, installed with `npm ci` when tests/mcp/node_modules is missing.
 * No node, no npm or a failed install is a failure, never a silent skip.
 */
#include "testhelp.h"

#include <unistd.h>

static char cge_bin[1024];

static int find_cge(void) {
    return th_find_cge(cge_bin, sizeof cge_bin);
}

/* Runs a node script and adds its "N passed, N failed" to this program's counts. */
static void run_script(const char *script) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "timeout 300 node tests/mcp/%s '%s' 2>&1", script, cge_bin);
    FILE *p = popen(cmd, "r");
    CHECK_MSG(p != NULL, "cannot run %s", cmd);
    if (!p) return;
    char line[4096];
    int got = 0, np = 0, nf = 0;
    while (fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        const char *s = strstr(line, ": ");
        if (s && sscanf(s + 2, "%d passed, %d failed", &np, &nf) == 2) got = 1;
    }
    int rc = pclose(p);
    CHECK_MSG(got, "%s printed no summary (exit %d)", script, rc);
    if (got) {
        th_passed += np;
        th_failed += nf;
    }
    CHECK_MSG(rc == 0 || nf > 0, "%s exited %d", script, rc);
}

int main(void) {
    CHECK_MSG(find_cge(), "no cge binary at %s", cge_bin);
    CHECK_MSG(system("node --version >/dev/null 2>&1") == 0, "node is not installed");
    if (access("tests/mcp/node_modules/@modelcontextprotocol/sdk/package.json", F_OK) != 0) {
        int rc = system("cd tests/mcp && npm ci --no-audit --no-fund --loglevel=error >&2");
        CHECK_MSG(rc == 0, "npm ci in tests/mcp failed (%d)", rc);
    }
    if (th_failed) return test_report("server_mcp_sdk");
    run_script("sdk_stdio.mjs");
    run_script("sdk_http.mjs");
    return test_report("server_mcp_sdk");
}
