// sdk_stdio.mjs: cge's MCP server over stdio, driven by the official TypeScript SDK client
// (Client + StdioClientTransport), as an agent launches it: `cge mcp --ensemble DIR
// --allow-files DIR`. Usage: node sdk_stdio.mjs CGE_BINARY. Prints "N passed, N failed".
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { check, fixtureDir, fullChecks, report, root, versionChecks, worst } from './common.mjs';
import { askVersion } from './version.mjs';

const cge = process.argv[2];
if (!cge) {
  console.error('usage: node sdk_stdio.mjs CGE_BINARY');
  process.exit(2);
}

const transport = () => new StdioClientTransport({
  command: cge,
  args: ['mcp', '--ensemble', `${root}/tests/fixtures/ensemble/ensemble`, '--allow-files', fixtureDir],
  stderr: 'ignore',
});

try {
  // The SDK asks for its own newest version (newer than cge's): cge answers 2025-06-18, which
  // the SDK accepts; then every tool and the errors.
  const client = new Client({ name: 'cge-sdk-test', version: '1.0.0' });
  await client.connect(transport());
  await fullChecks(client, 'stdio');
  await client.close();

  // The oldest version asked for by name (each process loads the ensemble, so the full round of
  // versions runs over HTTP in sdk_http.mjs, on one server, and over raw stdio in
  // test_server_mcp_stdio.c).
  for (const [asked, want] of [['2024-11-05', '2024-11-05']]) {
    const t = transport();
    const answered = askVersion(t, asked);
    const c = new Client({ name: 'cge-sdk-test', version: '1.0.0' });
    await c.connect(t);
    check(answered.version === want, `stdio: asked ${asked}: answered ${answered.version}, want ${want}`);
    await versionChecks(c, want, `stdio ${asked}`);
    await c.close();
  }
  console.log(`  worst embedding/gate abs ${worst.abs.toExponential(2)}, worst slot rel ${worst.rel.toExponential(2)}`);
} catch (err) {
  check(false, `unexpected: ${err?.stack ?? err}`);
}
process.exit(report('mcp_sdk_stdio'));
