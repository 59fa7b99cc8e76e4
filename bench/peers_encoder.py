#!/usr/bin/env python3
"""peers_encoder.py: the peers of bench_models_encoder on the same weights and thread count.

Reads the BERT-base safetensors file the C benchmark wrote (--weights), builds a PyTorch module
of the same architecture (post-LN BERT: embeddings + LayerNorm, fused-free Q/K/V, erf GELU),
times batch 1x128 and 32x128 (best of a few runs, no grad), then exports it with
torch.onnx.export and times the same inputs in ONNX Runtime through bench/peers_encoder.js
(npm onnxruntime-node in bench/node_modules). Any peer that is missing is reported and skipped.
Prints rows in the C benchmark's table format. Needs python3-torch (Debian) and numpy; with
Debian's default reference BLAS (libblas3) PyTorch's CPU GEMM is ~10x slow: install
libopenblas0-pthread (it takes over the libblas.so.3 alternative) for a fair PyTorch figure.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import torch
except ImportError as e:  # the peer is absent: say so and stop quietly
    print(f"(PyTorch peer skipped: {e})")
    sys.exit(0)

SEQ = 128


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        assert t["dtype"] == "F32"
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).reshape(t["shape"]).copy())
    return out


class Layer(torch.nn.Module):
    def __init__(self, d, n_head, d_ff, eps):
        super().__init__()
        self.h, self.dh = n_head, d // n_head
        self.q, self.k, self.v, self.o = (torch.nn.Linear(d, d) for _ in range(4))
        self.ln1 = torch.nn.LayerNorm(d, eps=eps)
        self.ff1, self.ff2 = torch.nn.Linear(d, d_ff), torch.nn.Linear(d_ff, d)
        self.ln2 = torch.nn.LayerNorm(d, eps=eps)

    def forward(self, x):
        B, L, d = x.shape
        def split(t):
            return t.view(B, L, self.h, self.dh).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        s = torch.matmul(q, k.transpose(-1, -2)) / (self.dh ** 0.5)
        a = torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(B, L, d)
        x = self.ln1(self.o(a) + x)
        return self.ln2(self.ff2(torch.nn.functional.gelu(self.ff1(x))) + x)


class Bert(torch.nn.Module):
    def __init__(self, w, n_head):
        super().__init__()
        d = w["embeddings.word_embeddings.weight"].shape[1]
        n_layer = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.layer."))
        d_ff = w["encoder.layer.0.intermediate.dense.weight"].shape[0]
        self.tok = torch.nn.Embedding.from_pretrained(w["embeddings.word_embeddings.weight"])
        self.pos = torch.nn.Parameter(w["embeddings.position_embeddings.weight"], requires_grad=False)
        self.typ = torch.nn.Parameter(w["embeddings.token_type_embeddings.weight"][0], requires_grad=False)
        self.ln = torch.nn.LayerNorm(d, eps=1e-12)
        self.ln.weight.data, self.ln.bias.data = w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]
        self.layers = torch.nn.ModuleList(Layer(d, n_head, d_ff, 1e-12) for _ in range(n_layer))
        names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
                 "ff1": "intermediate.dense", "ff2": "output.dense", "ln2": "output.LayerNorm"}
        for i, l in enumerate(self.layers):
            for attr, hf in names.items():
                m = getattr(l, attr)
                m.weight.data = w[f"encoder.layer.{i}.{hf}.weight"]
                m.bias.data = w[f"encoder.layer.{i}.{hf}.bias"]
        self.dims = (d, n_layer, d_ff)

    def forward(self, ids):
        L = ids.shape[1]
        x = self.ln(self.tok(ids) + self.pos[:L] + self.typ)
        for l in self.layers:
            x = l(x)
        return x


def flops(d, n_layer, d_ff, B, L):
    return n_layer * (B * L * (8.0 * d * d + 4.0 * d * d_ff) + 4.0 * B * L * L * d)


def row(name, dtype, B, s, fl, peak, cpu):
    gf = fl / s * 1e-9
    print(f"{name:<11} {dtype:<5} {B:3d}x{SEQ:<4d} {s:9.4f} {B / s:8.1f} {B * SEQ / s:9.0f} {gf:8.1f} {100 * gf / peak:6.1f}% {'':>9}"
          f" {fl / cpu * 1e-9:8.1f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--peak", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w = read_safetensors(args.weights)
    model = Bert(w, args.heads).eval()
    d, n_layer, d_ff = model.dims
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, w["embeddings.word_embeddings.weight"].shape[0], (32, SEQ), generator=g)
    print(f"peers on the same BERT-base weights, {args.threads} threads: PyTorch {torch.__version__}", flush=True)
    with torch.no_grad():
        model(ids[:1])
        for B in (1, 32):
            best, total, reps, best_cpu = 1e30, 0.0, 0, 1e30
            while reps < (20 if B == 1 else 2):
                t0, c0 = time.perf_counter(), time.process_time()
                model(ids[:B])
                s, c = time.perf_counter() - t0, (time.process_time() - c0) / args.threads
                best, total, reps, best_cpu = min(best, s), total + s, reps + 1, min(best_cpu, c)
                if total > (3.0 if B == 1 else 0.1):
                    break
            row("PyTorch", "f32", B, best, flops(d, n_layer, d_ff, B, SEQ), args.peak, best_cpu)

    node = shutil.which("node")
    here = os.path.dirname(os.path.abspath(__file__))
    if not node or not os.path.isdir(os.path.join(here, "node_modules", "onnxruntime-node")):
        print("(ONNX Runtime peer skipped: node or bench/node_modules/onnxruntime-node missing; "
              "cd bench && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save onnxruntime-node)")
        return
    with tempfile.TemporaryDirectory() as td:
        onnx_path = os.path.join(td, "bert_base.onnx")
        with torch.no_grad():
            torch.onnx.export(model, (ids[:1],), onnx_path, input_names=["input_ids"],
                              output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "seq"}}, opset_version=14)
        r = subprocess.run([node, os.path.join(here, "peers_encoder.js"), onnx_path, str(args.threads),
                            str(SEQ), str(flops(d, n_layer, d_ff, 1, SEQ)), str(flops(d, n_layer, d_ff, 32, SEQ)),
                            str(args.peak)], cwd=here)
        if r.returncode:
            print("(ONNX Runtime peer failed)")


if __name__ == "__main__":
    main()
