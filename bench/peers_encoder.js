// peers_encoder.js: ONNX Runtime (npm onnxruntime-node, CPU) timing of the BERT-base ONNX graph
// that peers_encoder.py exported from the PyTorch module, on the same thread count.
// Usage: node peers_encoder.js MODEL.onnx THREADS SEQ FLOPS_B1 FLOPS_B32 PEAK_GFLOPS
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.log('(ONNX Runtime peer skipped: ' + e.message.split('\n')[0] + ')');
  process.exit(0);
}

async function main() {
  const [model, threads, seq, f1, f32, peak] = process.argv.slice(2);
  const T = parseInt(threads, 10), L = parseInt(seq, 10);
  const opts = {intraOpNumThreads: T, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential'};
  // On a busy machine the OpenMP runs (cge, PyTorch) are timed with OMP_WAIT_POLICY=passive;
  // ONNX Runtime's own thread pool then gets the matching setting: no spinning.
  if (process.env.OMP_WAIT_POLICY === 'passive') opts.extra = {session: {intra_op: {allow_spinning: '0'}}};
  const sess = await ort.InferenceSession.create(model, opts);
  const flops = {1: parseFloat(f1), 32: parseFloat(f32)};
  for (const B of [1, 32]) {
    const ids = new BigInt64Array(B * L);
    for (let i = 0; i < ids.length; i++) ids[i] = BigInt((i * 7919) % 30000);
    const feed = {input_ids: new ort.Tensor('int64', ids, [B, L])};
    await sess.run(feed); // warm-up
    let best = 1e30, total = 0, reps = 0, bestCpu = 1e30;
    while (reps < (B === 1 ? 20 : 2)) {
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      await sess.run(feed);
      const s = Number(process.hrtime.bigint() - t0) * 1e-9;
      const cu = process.cpuUsage(c0);
      const c = (cu.user + cu.system) * 1e-6 / T;
      best = Math.min(best, s); total += s; reps++; bestCpu = Math.min(bestCpu, c);
      if (total > (B === 1 ? 3.0 : 0.1)) break;
    }
    const gf = flops[B] / best * 1e-9;
    const name = 'ORT ' + ort.env.versions.common;
    console.log(`${name.padEnd(11)} ${'f32'.padEnd(5)} ${String(B).padStart(3)}x${String(L).padEnd(4)} ` +
                `${best.toFixed(4).padStart(9)} ${(B / best).toFixed(1).padStart(8)} ${(B * L / best).toFixed(0).padStart(9)} ` +
                `${gf.toFixed(1).padStart(8)} ${(100 * gf / parseFloat(peak)).toFixed(1).padStart(6)}% ${''.padStart(9)} ` +
                `${(flops[B] / bestCpu * 1e-9).toFixed(1).padStart(8)}`);
  }
}
main().catch((e) => { console.log('(ONNX Runtime peer failed: ' + e.message + ')'); process.exit(0); });
