// page_test.mjs: the page of `cge serve` (GET /) in headless Chromium (Debian's /usr/bin/chromium,
// driven by puppeteer-core: no browser download), as a person uses it: type two texts, press
// Compare, read what the page shows (fused cosine, per-slot cosines in the bars, the experts the
// gate chose for each side) and check every number against POST /similarity of the same server,
// to the digits shown; then the same with an image picked in the file input against a text; then
// a full-page screenshot.
// With a fourth argument "model": the server runs --model (one model): two texts, the cosine
// labelled with the model's name, no bars, no experts; no screenshot.
// Usage: node page_test.mjs PORT FIXTURE_DIR SCREENSHOT.png [model]
// Prints "page_test: N passed, N failed"; exits 1 when a check failed or the browser did not run.
import puppeteer from "puppeteer-core";
import { readFileSync } from "node:fs";

const [port, dir, shot, mode] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
const WAIT_MS = 20000;
let passed = 0, failed = 0;
function check(cond, what) {
  if (cond) passed++;
  else { failed++; console.log("  FAIL " + what); }
}

// The page prints 4 decimals: a shown number equals the API's when it is the API's rounded.
function sameShown(shown, api, what) {
  if (api === null) { check(shown === "-", `${what}: page shows ${shown}, the API null`); return; }
  const x = Number(shown);
  check(/^-?\d+\.\d{4}$/.test(shown) && Math.abs(x - api) <= 0.5e-4 + 1e-7,
        `${what}: page shows ${shown}, the API ${api}`);
}

async function similarity(a, b) {
  const r = await fetch(`${base}/similarity`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ a, b }),
  });
  check(r.status === 200, `POST /similarity: ${r.status}`);
  return r.json();
}

// What the page shows after its run number `run` ended.
async function shown(page, run) {
  await page.waitForFunction(n => document.body.dataset.runs === String(n) &&
                                  document.body.dataset.state !== "busy", { timeout: WAIT_MS }, run);
  return page.evaluate(() => ({
    state: document.body.dataset.state,
    error: document.getElementById("error").textContent,
    fused: document.getElementById("fused").textContent,
    label: document.getElementById("fusedlabel").textContent,
    experts: !document.getElementById("experts").hidden,
    sela: document.getElementById("sela").textContent,
    selb: document.getElementById("selb").textContent,
    bars: [...document.querySelectorAll("#bars .bar")].map(b => ({
      id: b.id,
      slot: b.querySelector(".name").textContent,
      val: b.querySelector(".val").textContent,
      width: parseFloat(b.querySelector(".fill").style.width),
    })),
  }));
}

function compare(what, got, api) {
  check(got.state === "done", `${what}: page state ${got.state} (${got.error})`);
  sameShown(got.fused, api.cosine, `${what}: fused cosine`);
  check(got.sela === api.a.selected.join(", "), `${what}: experts A: page ${got.sela}, API ${api.a.selected}`);
  check(got.selb === api.b.selected.join(", "), `${what}: experts B: page ${got.selb}, API ${api.b.selected}`);
  const slots = Object.keys(api.slots);
  check(got.bars.length === slots.length && slots.length === 12,
        `${what}: ${got.bars.length} bars, the API ${slots.length} slots`);
  got.bars.forEach((b, i) => {
    const c = api.slots[slots[i]];
    check(b.slot === slots[i] && b.id === "bar-" + slots[i], `${what}: bar ${i} is ${b.slot}`);
    sameShown(b.val, c, `${what}: ${b.slot} cosine`);
    const w = c === null ? 0 : Math.max(0, Math.min(1, (c + 1) / 2)) * 100;
    check(Math.abs(b.width - w) < 0.01, `${what}: ${b.slot} bar ${b.width}%, expected ${w}%`);
  });
}

let browser;
try {
  const args = ["--headless=new", "--disable-gpu", "--disable-dev-shm-usage"];
  if (process.getuid && process.getuid() === 0) args.push("--no-sandbox"); // root: no sandbox
  browser = await puppeteer.launch({
    executablePath: process.env.CGE_CHROMIUM || "/usr/bin/chromium",
    headless: true, args, timeout: WAIT_MS,
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 900 });
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });
  const res = await page.goto(`${base}/`, { waitUntil: "load", timeout: WAIT_MS });
  check(res.status() === 200, `GET /: ${res.status()}`);
  check((await page.title()).startsWith("cge"), "title");

  // 1. Two texts, typed.
  const ta = "The cat sat on the mat.", tb = "A kitten was sitting on the rug.";
  for (const [id, t] of [["#a", ta], ["#b", tb]]) {
    await page.$eval(id, el => { el.value = ""; });
    await page.type(id, t);
  }
  await page.click("#go");
  const g1 = await shown(page, 1);
  const api1 = await similarity({ text: ta }, { text: tb });
  if (mode === "model") {
    check(g1.state === "done", `model: page state ${g1.state} (${g1.error})`);
    sameShown(g1.fused, api1.cosine, "model: cosine");
    check(typeof api1.model === "string" && g1.label === `cosine (${api1.model})`, `model: label ${g1.label}`);
    check(g1.bars.length === 0 && !g1.experts, "model: no bars, no experts");
    check(errors.length === 0, `page errors: ${errors.join(" | ")}`);
    throw "done";
  }
  compare("texts", g1, api1);
  check(g1.label === "fused cosine" && g1.experts, `texts: label ${g1.label}`);
  check(api1.cosine > -1 && api1.cosine < 1 && api1.a.selected.length > 0, "texts: API answer sane");

  // 2. An image picked in A's file input, against B's text.
  const png = `${dir}/camera.png`;
  const input = await page.$("#filea");
  await input.uploadFile(png);
  await page.waitForFunction(() => document.getElementById("labela").textContent.startsWith("image: camera.png"),
                             { timeout: WAIT_MS });
  await page.click("#go");
  const g2 = await shown(page, 2);
  const url = "data:image/png;base64," + readFileSync(png).toString("base64");
  const api2 = await similarity({ image: url }, { text: tb });
  compare("image", g2, api2);
  check(api2.slots.E4 !== null && api2.slots.E1 === null, "image: only the image slot compares");

  check(errors.length === 0, `page errors: ${errors.join(" | ")}`);
  await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  if (e !== "done") check(false, `browser: ${e && e.stack || e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}
console.log(`page_test: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
