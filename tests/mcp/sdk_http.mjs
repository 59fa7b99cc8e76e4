// sdk_http.mjs: cge's MCP server over the streamable HTTP transport (`cge serve --mcp`, at
// /mcp), driven by the official TypeScript SDK client (Client + StreamableHTTPClientTransport):
// every tool on the shared ensemble fixture and the errors (common.mjs), a negotiation per
// protocol version, sessions (Mcp-Session-Id; DELETE ends one; 404 after), the API key, and the
// transport's own answers (202, 400, 403, 405) with plain fetch. The server listens on
// 127.0.0.1 on a free port. Usage: node sdk_http.mjs CGE_BINARY. Prints "N passed, N failed".
import { spawn } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { check, fixtureDir, fullChecks, report, root, versionChecks, worst } from './common.mjs';
import { askVersion } from './version.mjs';

const cge = process.argv[2];
if (!cge) {
  console.error('usage: node sdk_http.mjs CGE_BINARY');
  process.exit(2);
}
const KEY = 'mcp-test-key';

// Starts `cge serve --mcp` and resolves with its base URL once it prints "listening on".
function startServer() {
  const child = spawn(cge, ['serve', '--ensemble', `${root}/tests/fixtures/ensemble/ensemble`,
    '--allow-files', fixtureDir, '--host', '127.0.0.1', '--port', '0', '--api-key', KEY, '--mcp',
    '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no "listening on" in 120 s: ${err}`)), 120000);
    child.stderr.on('data', (d) => {
      err += d;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, base: m[1] });
      }
    });
    child.on('exit', (code) => reject(new Error(`cge serve exited ${code}: ${err}`)));
  });
}

const auth = { Authorization: `Bearer ${KEY}` };
const transport = (base, headers = auth) => new StreamableHTTPClientTransport(new URL(`${base}/mcp`),
  { requestInit: { headers } });
const init = (v = '2025-06-18') => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: v, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });

let server;
try {
  server = await startServer();
  const { base } = server;

  // The SDK's newest version; every tool and the errors.
  const t = transport(base);
  const client = new Client({ name: 'cge-sdk-test', version: '1.0.0' });
  await client.connect(t);
  check(/^[0-9a-f]{32}$/.test(t.sessionId ?? ''), `http: session id ${t.sessionId}`);
  await fullChecks(client, 'http');
  // Ending the session: DELETE, then the old id is unknown (404).
  const sid = t.sessionId;
  await t.terminateSession();
  const after = await fetch(`${base}/mcp`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream', 'Mcp-Session-Id': sid },
  body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }) });
  check(after.status === 404, `http: a request on an ended session: ${after.status}`);
  await client.close();

  // Each supported version by name; an unknown one gets the newest.
  for (const [asked, want] of [['2025-06-18', '2025-06-18'], ['2025-03-26', '2025-03-26'],
    ['2024-11-05', '2024-11-05'], ['2099-01-01', '2025-06-18']]) {
    const tv = transport(base);
    const answered = askVersion(tv, asked);
    const c = new Client({ name: 'cge-sdk-test', version: '1.0.0' });
    await c.connect(tv);
    check(answered.version === want, `http: asked ${asked}: answered ${answered.version}, want ${want}`);
    await versionChecks(c, want, `http ${asked}`);
    await c.close();
  }

  // Without the API key the SDK cannot connect.
  let refused = false;
  try {
    const c = new Client({ name: 'cge-sdk-test', version: '1.0.0' });
    await c.connect(transport(base, {}));
  } catch (err) {
    refused = /401/.test(String(err?.message ?? err)) || err?.code === 401;
  }
  check(refused, 'http: no API key: refused (401)');

  // The transport's own answers, with plain fetch.
  const post = (body, headers = {}) => fetch(`${base}/mcp`, { method: 'POST', body,
    headers: { ...auth, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers } });
  let r = await post(JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'ping' }));
  check(r.status === 400 && /Mcp-Session-Id/.test(await r.text()), `http: ping without a session: ${r.status}`);
  r = await post('{nope');
  check(r.status === 400 && /-32700/.test(await r.text()), `http: parse error: ${r.status}`);
  r = await post(init(), { Origin: 'http://evil.example' });
  check(r.status === 403, `http: foreign Origin: ${r.status}`);
  r = await post(init(), { Origin: 'http://localhost:3000' });
  check(r.status === 200, `http: local Origin: ${r.status}`);
  const s2 = r.headers.get('mcp-session-id');
  check(/^[0-9a-f]{32}$/.test(s2 ?? ''), `http: raw initialize gave session ${s2}`);
  await r.text();
  r = await post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), { 'Mcp-Session-Id': s2 });
  check(r.status === 202 && (await r.text()) === '', `http: notification: ${r.status}`);
  r = await post(JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'ping' }),
    { 'Mcp-Session-Id': s2, 'MCP-Protocol-Version': '1999-01-01' });
  check(r.status === 400, `http: unsupported MCP-Protocol-Version: ${r.status}`);
  await r.text();
  r = await post(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'embed',
    arguments: { text: 'x', role: 'boss' } } }), { 'Mcp-Session-Id': s2, 'MCP-Protocol-Version': '2025-06-18' });
  const j = await r.json();
  check(r.status === 200 && j.error?.code === -32602 && /arguments\.role/.test(j.error?.message),
    `http: invalid params: ${r.status} ${JSON.stringify(j)}`);
  r = await fetch(`${base}/mcp`, { headers: { ...auth, Accept: 'text/event-stream', 'Mcp-Session-Id': s2 } });
  check(r.status === 405, `http: GET /mcp (no SSE stream): ${r.status}`);
  await r.text();
  r = await fetch(`${base}/mcp`, { method: 'DELETE', headers: { ...auth, 'Mcp-Session-Id': s2 } });
  check(r.status === 200, `http: DELETE: ${r.status}`);
  r = await fetch(`${base}/mcp`, { method: 'DELETE', headers: { ...auth, 'Mcp-Session-Id': s2 } });
  check(r.status === 404, `http: DELETE again: ${r.status}`);
  console.log(`  worst embedding/gate abs ${worst.abs.toExponential(2)}, worst slot rel ${worst.rel.toExponential(2)}`);
} catch (err) {
  check(false, `unexpected: ${err?.stack ?? err}`);
}
if (server) {
  const exited = new Promise((resolve) => server.child.on('exit', (code) => resolve(code)));
  server.child.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 30000))]);
  check(code === 0, `http: cge serve exit on SIGTERM: ${code}`);
  if (code === 'timeout') server.child.kill('SIGKILL');
}
process.exit(report('mcp_sdk_http'));
