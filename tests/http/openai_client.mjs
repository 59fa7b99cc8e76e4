// openai_client.mjs: the official `openai` npm client against `cge serve`, unchanged but for its
// baseURL. Usage: node openai_client.mjs PORT KEY FIXTURE_DIR
// Checks, on the shared ensemble fixture's plain texts (rows 0 and 1): the default call (the
// client asks for base64 and decodes it itself), encoding_format "float", encoding_format
// "base64" decoded here from the little-endian float32 bytes, a slot by model name, the model
// list, and a wrong key (AuthenticationError). Prints "openai_client: N passed, N failed".
import OpenAI from "openai";
import { readFileSync } from "node:fs";

const [port, key, dir] = process.argv.slice(2);
let passed = 0, failed = 0;
function check(cond, what) {
  if (cond) passed++;
  else { failed++; console.log("  FAIL " + what); }
}
const lines = f => readFileSync(`${dir}/${f}`, "utf8").split("\n").filter(l => l.trim()).map(l => JSON.parse(l));
const inputs = lines("inputs.jsonl"), expected = lines("expected.jsonl");
const rows = [0, 1];
const texts = rows.map(i => inputs[i].text);
function maxAbs(a, b) {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
function fromBase64(s) {
  const buf = Buffer.from(s, "base64");
  const out = [];
  for (let i = 0; i + 4 <= buf.length; i += 4) out.push(buf.readFloatLE(i));
  return out;
}

const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
try {
  for (const fmt of [undefined, "float", "base64"]) {
    const req = { model: "cge", input: texts };
    if (fmt) req.encoding_format = fmt;
    const r = await client.embeddings.create(req);
    check(r.object === "list" && r.data.length === rows.length, `${fmt}: list of ${rows.length}`);
    check(r.usage && r.usage.prompt_tokens >= 0, `${fmt}: usage`);
    r.data.forEach((d, k) => {
      const v = fmt === "base64" ? fromBase64(d.embedding) : d.embedding;
      const m = maxAbs(v, expected[rows[k]].embedding);
      check(d.index === k && v.length === 1536 && m <= 1e-5, `${fmt ?? "default"} row ${rows[k]}: max abs ${m}`);
    });
  }
  const s = await client.embeddings.create({ model: "E1", input: texts[0], encoding_format: "float" });
  const ref = expected[rows[0]].slots.E1;
  let num = 0, den = 0;
  s.data[0].embedding.forEach((x, i) => { num += (x - ref[i]) ** 2; den += ref[i] ** 2; });
  check(s.data[0].embedding.length === ref.length && Math.sqrt(num / den) <= 1e-5, "E1 slot vector");
  const models = await client.models.list();
  const ids = [];
  for await (const m of models) ids.push(m.id);
  check(ids.includes("cge") && ids.includes("E1") && ids.length === 13, `models: ${ids}`);
  let status = 0;
  try {
    await new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "wrong", maxRetries: 0 })
      .embeddings.create({ model: "cge", input: "x" });
  } catch (e) { status = e.status; check(e instanceof OpenAI.AuthenticationError, "AuthenticationError"); }
  check(status === 401, `wrong key: ${status}`);
  try {
    await client.embeddings.create({ model: "gpt-4", input: "x" });
    check(false, "unknown model accepted");
  } catch (e) { check(e instanceof OpenAI.NotFoundError && e.status === 404, `unknown model: ${e.status}`); }
} catch (e) {
  check(false, "unexpected: " + e);
}
console.log(`openai_client: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
