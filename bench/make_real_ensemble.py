#!/usr/bin/python3
"""make_real_ensemble.py OUT: a one-slot ensemble of real size for the benchmarks.

E1 is a BertModel shaped like all-MiniLM-L6-v2 (384 wide, 6 layers, 12 heads, 1536 FFN, the real
30522-token vocabulary) with random weights, the real tokenizer files (copied from the demo
ensemble's E1) and its sentence-transformers head (mean, Normalize); the fusion is the production
FuseMoE layout made by `cge fusion init`. Random weights: the timings are real, the vectors mean
nothing. Needs python3-numpy and a built cge (CGE_BIN, default build/cge).
"""
import json, os, shutil, struct, subprocess, sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_E1 = os.path.join(ROOT, "tests", "fixtures", "ensemble", "ensemble", "E1")
D, L, H, FF, V, P = 384, 6, 12, 1536, 30522, 512


def write_safetensors(path, tensors):
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/cge-bench-minilm"
    cge = os.environ.get("CGE_BIN", os.path.join(ROOT, "build", "cge"))
    if os.path.exists(os.path.join(out, "ensemble.json")):
        print(out)
        return
    e1 = os.path.join(out, "E1")
    os.makedirs(e1, exist_ok=True)
    rng = np.random.default_rng(384)
    t = {"embeddings.word_embeddings.weight": rng.normal(0, 0.5, (V, D)),
         "embeddings.position_embeddings.weight": rng.normal(0, 0.5, (P, D)),
         "embeddings.token_type_embeddings.weight": rng.normal(0, 0.5, (2, D)),
         "embeddings.LayerNorm.weight": np.ones(D), "embeddings.LayerNorm.bias": np.zeros(D)}
    for l in range(L):
        p = "encoder.layer.%d." % l
        for m, (o, i) in {"attention.self.query": (D, D), "attention.self.key": (D, D),
                          "attention.self.value": (D, D), "attention.output.dense": (D, D),
                          "intermediate.dense": (FF, D), "output.dense": (D, FF)}.items():
            t[p + m + ".weight"] = rng.normal(0, 1 / np.sqrt(i), (o, i))
            t[p + m + ".bias"] = np.zeros(o)
        for m in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + m + ".weight"] = np.ones(D)
            t[p + m + ".bias"] = np.zeros(D)
    write_safetensors(os.path.join(e1, "model.safetensors"), t)
    cfg = json.load(open(os.path.join(DEMO_E1, "config.json")))
    cfg.update(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=FF,
               vocab_size=V, max_position_embeddings=P)
    json.dump(cfg, open(os.path.join(e1, "config.json"), "w"), indent=1)
    for f in os.listdir(DEMO_E1):
        src = os.path.join(DEMO_E1, f)
        if f in ("config.json", "model.safetensors"):
            continue
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(e1, f), dirs_exist_ok=True)
        else:
            shutil.copy(src, e1)
    # sentence_bert_config: all-MiniLM-L6-v2's 256 tokens
    json.dump({"max_seq_length": 256, "do_lower_case": False},
              open(os.path.join(e1, "sentence_bert_config.json"), "w"))
    pool = os.path.join(e1, "1_Pooling", "config.json")
    pc = json.load(open(pool))
    pc["word_embedding_dimension"] = D
    json.dump(pc, open(pool, "w"), indent=1)
    # the production fusion layout (E1 at 384, the other slots at their table dims)
    fcfg = os.path.join(out, "fusion-config.json")
    json.dump({}, open(fcfg, "w"))
    subprocess.run([cge, "fusion", "init", "--config", fcfg, "--out", os.path.join(out, "fusion")],
                   check=True, stdout=subprocess.DEVNULL)
    json.dump({"version": 1, "name": "bench-minilm-real-size",
               "slots": [{"slot": "E1", "path": "E1"}], "fusion": "fusion"},
              open(os.path.join(out, "ensemble.json"), "w"), indent=1)
    print(out)


if __name__ == "__main__":
    main()
