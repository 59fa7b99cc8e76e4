"""
bench_python.py: the Python binding's per-call cost, for bench_runtime_python (which times the
same calls in C and prints the difference as the binding's overhead).

Usage: PYTHONPATH=python CGE_LIBRARY=build/libcge.so python3 bench/bench_python.py N MODEL ENS
Prints one line per measurement: "py <name> <microseconds per call>", the best of short runs
over N calls (batch of one, a short text, cache off), after a warm-up.
  model_embed      Model.embed("Hello world")           (cge_model_embed underneath)
  model_raw        the bare ctypes call of cge_model_embed with a prepared input and buffer
  engine_embed     Engine.embed("Hello world")          (cge_engine_embed, fused)
  engine_raw       the bare ctypes call of cge_engine_embed + cge_result_deinit
  engine_hit       Engine.embed("Hello world") answered from the cache (the C side is cheap,
                   so this is the binding's own cost); engine_hit_raw: the bare ctypes call;
                   engine_hit_both: output="both" (a Result with 12 slot arrays)
  provider_embed   Provider.embed("Hello world")        (cge_provider_embed; cache on)
  model_batch      Model.embed of 32 texts (the e2e bert_mean_l2 texts x 4); model_batch_raw:
                   the bare ctypes call on prepared inputs, interleaved
  engine_batch     Engine.embed of the same 32 texts; engine_batch_raw: the bare call
"""
import ctypes
import json
import sys
import time

import numpy as np

import cge
from cge import _capi


def _runs(n):
    per = max(1, min(20, n // 20))
    return per, max(5, n // per)


def best_us(fn, n):
    """Microseconds per call: the best of many short runs (n calls in all, in runs of up to 20
    calls), after a warm-up, as the C side measures."""
    per, runs = _runs(n)
    for _ in range(per):
        fn()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(per):
            fn()
        best = min(best, (time.perf_counter() - t0) / per)
    return best * 1e6


def best_pair_us(fa, fb, n):
    """best_us of fa and fb, their runs interleaved, so that a busy machine slows both alike:
    the difference is what fa adds to fb."""
    per, runs = _runs(n)
    for _ in range(per):
        fa()
        fb()
    ba = bb = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(per):
            fa()
        t1 = time.perf_counter()
        for _ in range(per):
            fb()
        t2 = time.perf_counter()
        ba = min(ba, (t1 - t0) / per)
        bb = min(bb, (t2 - t1) / per)
    return ba * 1e6, bb * 1e6


def texts(path, reps):
    with open(path) as f:
        xs = [json.loads(line)["text"] for line in f if line.strip()]
    return xs * reps


def main():
    n = int(sys.argv[1])
    model_dir, ens, inputs = sys.argv[2], sys.argv[3], sys.argv[4]
    many = texts(inputs, 64)
    cge.set_threads(1)
    L = _capi.lib()
    text = "Hello world"
    b = text.encode()

    with cge.Model(model_dir) as m:
        inp = _capi.cge_input(text=b, text_len=len(b))
        out = np.empty(m.dimension, dtype=np.float32)
        ptr = out.ctypes.data
        h = m._h
        a, r = best_pair_us(lambda: m.embed(text),
                            lambda: L.cge_model_embed(h, ctypes.byref(inp), 1, ptr, None), n)
        print("py model_embed %.2f\npy model_raw %.2f" % (a, r), flush=True)
        batch = many[:32]  # every batch of 32 of `many` holds the same texts
        arr, _keep = cge._make_inputs(batch)
        outb = np.empty((32, m.dimension), dtype=np.float32)
        a, r = best_pair_us(lambda: m.embed(batch),
                            lambda: L.cge_model_embed(h, arr, 32, outb.ctypes.data, None), 40)
        print("py model_batch %.2f\npy model_batch_raw %.2f" % (a, r), flush=True)

    ne = max(1, n // 10)
    with cge.Engine(ens, cache=False) as e:
        inp = _capi.cge_input(text=b, text_len=len(b))
        res = _capi.cge_result()
        opt = _capi.cge_embed_options(no_cache=1)
        h = e._h

        def raw():
            L.cge_engine_embed(h, ctypes.byref(inp), 1, ctypes.byref(opt), ctypes.byref(res))
            L.cge_result_deinit(ctypes.byref(res))

        a, r = best_pair_us(lambda: e.embed(text), raw, ne)
        print("py engine_embed %.2f\npy engine_raw %.2f" % (a, r), flush=True)
        batch = many[:32]
        arr, _keep = cge._make_inputs(batch)
        resb = (_capi.cge_result * 32)()

        def raw_batch():
            L.cge_engine_embed(h, arr, 32, ctypes.byref(opt), resb)
            for i in range(32):
                L.cge_result_deinit(ctypes.byref(resb[i]))

        a, r = best_pair_us(lambda: e.embed(batch), raw_batch, 5)
        print("py engine_batch %.2f\npy engine_batch_raw %.2f" % (a, r), flush=True)
    with cge.Engine(ens) as e:  # cache on: every call but the first hits
        inp = _capi.cge_input(text=b, text_len=len(b))
        res = _capi.cge_result()
        h = e._h

        def raw_hit():
            L.cge_engine_embed(h, ctypes.byref(inp), 1, None, ctypes.byref(res))
            L.cge_result_deinit(ctypes.byref(res))

        a, r = best_pair_us(lambda: e.embed(text), raw_hit, n)
        print("py engine_hit %.2f\npy engine_hit_raw %.2f" % (a, r), flush=True)
        print("py engine_hit_both %.2f" % best_us(lambda: e.embed(text, output="both"), n),
              flush=True)
    with cge.Provider(ens) as p:
        print("py provider_embed %.2f" % best_us(lambda: p.embed(text), ne), flush=True)


if __name__ == "__main__":
    main()
