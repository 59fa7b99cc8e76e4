// common.mjs: what the SDK-client tests of cge's MCP server share: a tiny check harness that
// prints "N passed, N failed" (tests/run.sh sums it through the C wrapper), the shared ensemble
// fixture, and the checks run through any connected Client (stdio or streamable HTTP).
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { McpError } from '@modelcontextprotocol/sdk/types.js';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const fixtureDir = resolve(root, 'tests/fixtures/ensemble');

let passed = 0;
let failed = 0;
export function check(cond, what) {
  if (cond) passed++;
  else {
    failed++;
    console.log(`  FAIL ${what}`);
  }
}
export function report(suite) {
  console.log(`${suite}: ${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

const lines = (f) => readFileSync(resolve(fixtureDir, f), 'utf8').split('\n').filter((l) => l.trim());
export const inputs = lines('inputs.jsonl').map((l) => JSON.parse(l));
export const expected = lines('expected.jsonl').map((l) => JSON.parse(l));

// The embed tool's arguments for one fixture input: media by path (relative to the folder the
// server allows) or by base64.
export function toolArgs(input, base64 = false) {
  for (const kind of ['image', 'audio']) {
    if (input[kind] === undefined) continue;
    if (base64) return { [`${kind}_base64`]: readFileSync(resolve(fixtureDir, input[kind])).toString('base64') };
    return { [`${kind}_path`]: input[kind] };
  }
  const a = {};
  for (const k of ['text', 'code', 'language', 'role', 'instruction']) if (input[k] !== undefined) a[k] = input[k];
  return a;
}

const maxAbs = (a, b) => (a?.length === b.length ? Math.max(...a.map((x, i) => Math.abs(x - b[i]))) : Infinity);
function rel(a, b) {
  if (a?.length !== b.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(den > 0 ? num / den : num);
}

export const worst = { abs: 0, rel: 0 };

// One structured result against its expected.jsonl line (the README's tolerances).
export function compareResult(what, got, want, withSlots = true) {
  const e = maxAbs(got?.embedding, want.embedding);
  const g = maxAbs(got?.expert_weights, want.expert_weights);
  worst.abs = Math.max(worst.abs, e, g);
  check(e <= 1e-5, `${what}: embedding max abs ${e}`);
  check(g <= 1e-5, `${what}: expert_weights max abs ${g}`);
  check(JSON.stringify(got?.selected) === JSON.stringify(want.selected),
    `${what}: selected ${JSON.stringify(got?.selected)} vs ${JSON.stringify(want.selected)}`);
  if (!withSlots) return;
  for (const [slot, w] of Object.entries(want.slots)) {
    const v = got?.slots?.[slot];
    if (w === null) {
      check(v === null, `${what}: slot ${slot} should be null`);
      continue;
    }
    const r = rel(v, w);
    worst.rel = Math.max(worst.rel, r);
    check(r <= 1e-5, `${what}: slot ${slot} rel ${r}`);
  }
}

async function expectMcpError(promise, code, needle, what) {
  try {
    await promise;
    check(false, `${what}: expected error ${code}, got a result`);
  } catch (err) {
    check(err instanceof McpError && err.code === code && String(err.message).includes(needle),
      `${what}: expected ${code} naming '${needle}', got ${err?.code} ${err?.message}`);
  }
}

// Everything a client of the newest version can do: every tool on the fixture, and errors.
export async function fullChecks(client, label) {
  const info = client.getServerVersion();
  check(info?.name === 'cge' && typeof info.version === 'string', `${label}: serverInfo ${JSON.stringify(info)}`);
  check(typeof client.getInstructions() === 'string' && client.getInstructions().includes('embed'),
    `${label}: instructions`);
  check(client.getServerCapabilities()?.tools !== undefined, `${label}: tools capability`);
  await client.ping();
  check(true, `${label}: ping`);

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  check(JSON.stringify(names) === JSON.stringify(['embed', 'embed_batch', 'health', 'models', 'similarity']),
    `${label}: tool names ${names}`);
  check(tools.every((t) => t.inputSchema?.type === 'object' && t.outputSchema?.type === 'object'),
    `${label}: every tool has input and output schemas`);

  // embed, each fixture input (the SDK validates structuredContent against the outputSchema).
  for (let i = 0; i < inputs.length; i++) {
    for (const b64 of i === 8 || i === 10 ? [false, true] : [false]) {
      const r = await client.callTool({ name: 'embed', arguments: { ...toolArgs(inputs[i], b64), output: 'both' } });
      check(!r.isError, `${label}: embed ${i}${b64 ? ' base64' : ''}: ${r.isError ? r.content?.[0]?.text : ''}`);
      check(r.content?.[0]?.type === 'text' && r.content[0].text.length < 600, `${label}: embed ${i}: short text`);
      compareResult(`${label}: embed ${i}${b64 ? ' base64' : ''}`, r.structuredContent, expected[i]);
    }
  }
  const fused = await client.callTool({ name: 'embed', arguments: toolArgs(inputs[0]) });
  check(fused.structuredContent?.slots === undefined, `${label}: output fused has no slots`);
  compareResult(`${label}: embed fused`, fused.structuredContent, expected[0], false);

  // embed_batch, all inputs at once.
  const batch = await client.callTool({
    name: 'embed_batch',
    arguments: { inputs: inputs.map((x) => toolArgs(x)), output: 'slots' },
  });
  const results = batch.structuredContent?.results ?? [];
  check(results.length === inputs.length, `${label}: embed_batch gave ${results.length} results`);
  results.forEach((res, i) => compareResult(`${label}: embed_batch ${i}`, res, expected[i]));

  // similarity: the fused cosine is the expected vectors' dot product.
  for (const [a, b] of [[2, 3], [0, 9], [10, 11]]) {
    const s = await client.callTool({ name: 'similarity', arguments: { a: toolArgs(inputs[a]), b: toolArgs(inputs[b]) } });
    const dot = expected[a].embedding.reduce((acc, x, k) => acc + x * expected[b].embedding[k], 0);
    check(Math.abs((s.structuredContent?.cosine ?? NaN) - dot) <= 1e-5,
      `${label}: similarity ${a},${b}: ${s.structuredContent?.cosine} vs ${dot}`);
    check(Object.keys(s.structuredContent?.slots ?? {}).length === 12, `${label}: similarity per-slot cosines`);
  }

  // models and health.
  const m = await client.callTool({ name: 'models', arguments: {} });
  const slots = m.structuredContent?.slots ?? [];
  check(slots.length === 12 && slots.every((s) => s.state === 'ready' && s.dim > 0),
    `${label}: models: ${JSON.stringify(slots.map((s) => s.state))}`);
  const h = await client.callTool({ name: 'health', arguments: {} });
  check(h.structuredContent?.status === 'ok' && typeof h.structuredContent?.cache?.hit_rate === 'number',
    `${label}: health ${JSON.stringify(h.structuredContent)}`);

  // Errors: invalid arguments are JSON-RPC errors naming the parameter; failures are isError.
  await expectMcpError(client.callTool({ name: 'embed', arguments: { text: 'x', role: 'boss' } }), -32602,
    'arguments.role', `${label}: bad role`);
  await expectMcpError(client.callTool({ name: 'nope', arguments: {} }), -32602, 'nope', `${label}: unknown tool`);
  await expectMcpError(client.request({ method: 'resources/list', params: {} },
    (await import('@modelcontextprotocol/sdk/types.js')).ListResourcesResultSchema), -32601, 'resources/list',
  `${label}: unknown method`);
  const bad = await client.callTool({ name: 'embed', arguments: { image_base64: Buffer.from('not an image').toString('base64') } });
  check(bad.isError === true && /failed/.test(bad.content?.[0]?.text ?? ''), `${label}: bad image is isError`);
  const outside = await client.callTool({ name: 'embed', arguments: { image_path: '/etc/passwd' } });
  check(outside.isError === true && /outside/.test(outside.content?.[0]?.text ?? ''), `${label}: path outside is isError`);
}

// What a client of an older version sees: the negotiated version, the tool list without (or
// with) output schemas, and the embed tool's vectors.
export async function versionChecks(client, version, label) {
  const { tools } = await client.listTools();
  const newest = version === '2025-06-18';
  check(tools.length === 5, `${label}: ${tools.length} tools`);
  check(tools.every((t) => (t.outputSchema !== undefined) === newest), `${label}: outputSchema only for 2025-06-18`);
  check(tools.every((t) => (t.annotations !== undefined) === (version !== '2024-11-05')),
    `${label}: annotations from 2025-03-26`);
  const r = await client.callTool({ name: 'embed', arguments: { ...toolArgs(inputs[3]), output: 'both' } });
  compareResult(`${label}: embed 3`, r.structuredContent, expected[3]);
}
