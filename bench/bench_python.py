"""
bench_python.py: the Python binding's per-call cost, for bench_runtime_python (which times the
same calls in C and prints the difference as the binding's overhead).

Usage: PYTHONPATH=python CGE_LIBRARY=build/libcge.so python3 bench/bench_python.py N MODEL ENS
Prints one line per measurement: "py <name> <microseconds per call>", the best of 3 runs of N
calls each (batch of one, a short text, cache off), after a warm-up.
  model_embed      Model.embed("Hello world")           (cge_model_embed underneath)
  model_raw        the bare ctypes call of cge_model_embed with a prepared input and buffer
  engine_embed     Engine.embed("Hello world")          (cge_engine_embed, fused)
  engine_raw       the bare ctypes call of cge_engine_embed + cge_result_deinit
  provider_embed   Provider.embed("Hello world")        (cge_provider_embed)
"""
import ctypes
import sys
import time

import numpy as np

import cge
from cge import _capi


def best_us(fn, n):
    for _ in range(max(10, n // 20)):
        fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def main():
    n = int(sys.argv[1])
    model_dir, ens = sys.argv[2], sys.argv[3]
    cge.set_threads(1)
    L = _capi.lib()
    text = "Hello world"
    b = text.encode()

    with cge.Model(model_dir) as m:
        print("py model_embed %.2f" % best_us(lambda: m.embed(text), n), flush=True)
        inp = _capi.cge_input(text=b, text_len=len(b))
        out = np.empty(m.dimension, dtype=np.float32)
        ptr = out.ctypes.data
        h = m._h
        print("py model_raw %.2f" % best_us(
            lambda: L.cge_model_embed(h, ctypes.byref(inp), 1, ptr, None), n), flush=True)

    ne = max(1, n // 10)
    with cge.Engine(ens, cache=False) as e:
        print("py engine_embed %.2f" % best_us(lambda: e.embed(text), ne), flush=True)
        inp = _capi.cge_input(text=b, text_len=len(b))
        res = _capi.cge_result()
        opt = _capi.cge_embed_options(no_cache=1)
        h = e._h

        def raw():
            L.cge_engine_embed(h, ctypes.byref(inp), 1, ctypes.byref(opt), ctypes.byref(res))
            L.cge_result_deinit(ctypes.byref(res))

        print("py engine_raw %.2f" % best_us(raw, ne), flush=True)
    with cge.Provider(ens) as p:
        print("py provider_embed %.2f" % best_us(lambda: p.embed(text), ne), flush=True)


if __name__ == "__main__":
    main()
