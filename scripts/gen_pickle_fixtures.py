#!/usr/bin/python3
"""Writes the PyTorch checkpoint fixtures of tests/fixtures/io/ with Debian's python3-torch.

Run with /usr/bin/python3 (the interpreter that has python3-torch 1.13):
    /usr/bin/python3 scripts/gen_pickle_fixtures.py

The generated files are committed (CI has no torch). tests/unit/test_io_torch.c reads them.
manifest.json lists, for every file, the tensors torch itself sees after torch.load:
name, dtype, shape and the values (flattened, row-major) -- the expectation the C loader must
match. Files:
  fp32.bin         two float32 tensors
  dtypes.bin       float16, bfloat16, float64, int64, int32, int8, uint8 tensors, a scalar
  param.bin        an nn.Parameter in the dict (torch._utils._rebuild_parameter)
  views.bin        tied tensors (two names, one tensor), a slice with a non-zero storage
                   offset, and a transposed (non-contiguous) view of the same storage
  bert_like/pytorch_model.bin  the state_dict() of a small module tree with a `bert.` prefix
                   (OrderedDict with _metadata, an int64 position_ids buffer)
  deflated.bin     fp32.bin re-zipped with deflate (read through libzip)
  legacy.bin       the pre-1.6 (non-zip) format: refused as unsupported
  malicious.bin    a torch.save zip whose pickle calls os.system: must be refused
  malicious_eval.bin  the same with builtins.eval via a tensor-like REDUCE
"""
import collections
import json
import os
import shutil
import sys
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "io")


def vals(n, seed):
    # exactly representable in fp16 and bf16: multiples of 0.25 in [-2, 2]
    return [((i * 7 + seed) % 17) * 0.25 - 2.0 for i in range(n)]


def tensor(shape, dtype, seed):
    n = 1
    for s in shape:
        n *= s
    t = torch.tensor(vals(n, seed), dtype=torch.float64)
    if dtype in (torch.int64, torch.int32, torch.int8):
        t = t * 4
    if dtype == torch.uint8:
        t = t * 4 + 8
    return t.to(dtype).reshape(shape)


DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
      torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int8: "I8",
      torch.uint8: "U8"}

manifest = {}


def record(fname, sd):
    loaded = torch.load(os.path.join(OUT, fname))
    ent = []
    for k, v in loaded.items():
        ent.append({"name": k, "dtype": DT[v.dtype], "shape": list(v.shape),
                    "values": [float(x) for x in v.detach().reshape(-1).to(torch.float64).tolist()]})
    manifest[fname] = sorted(ent, key=lambda e: e["name"])


def save(fname, sd):
    path = os.path.join(OUT, fname)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(sd, path)
    record(fname, sd)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo cge-unpickler-executed-code > /tmp/cge_pwned",))


class EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').system('echo pwned')",))


class Emb(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = torch.nn.Embedding(20, 8)
        self.LayerNorm = torch.nn.LayerNorm(8)
        self.register_buffer("position_ids", torch.arange(16).expand((1, -1)))


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.query = torch.nn.Linear(8, 8)
        self.dense = torch.nn.Linear(8, 12)


class Bert(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = Emb()
        self.layer = torch.nn.ModuleList([Layer(), Layer()])


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bert = Bert()
        self.classifier = torch.nn.Linear(8, 2)


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    torch.manual_seed(0)

    save("fp32.bin", collections.OrderedDict([
        ("a", tensor((2, 3), torch.float32, 1)),
        ("b.weight", tensor((4, 5), torch.float32, 2)),
    ]))

    save("dtypes.bin", collections.OrderedDict([
        ("h", tensor((3, 4), torch.float16, 3)),
        ("bf", tensor((5,), torch.bfloat16, 4)),
        ("d", tensor((2, 2), torch.float64, 5)),
        ("pos", tensor((1, 6), torch.int64, 6)),
        ("i", tensor((3,), torch.int32, 7)),
        ("c", tensor((4,), torch.int8, 8)),
        ("u", tensor((4,), torch.uint8, 9)),
        ("scalar", torch.tensor(1.5)),
        ("empty", torch.zeros((0, 3))),
    ]))

    save("param.bin", {"p": torch.nn.Parameter(tensor((3, 2), torch.float32, 10)),
                       "q": tensor((2,), torch.float32, 11)})

    base = tensor((4, 6), torch.float32, 12)
    emb = tensor((5, 3), torch.float16, 13)
    save("views.bin", collections.OrderedDict([
        ("emb", emb),
        ("lm_head.weight", emb),              # tied: same tensor under two names
        ("rows", base[1:3]),                  # storage offset 6
        ("col", base[:, 2]),                  # strided 1-d view (offset 2, stride 6)
        ("t", base.t()),                      # transposed: non-contiguous
        ("base", base),
    ]))

    m = Model()
    with torch.no_grad():
        for i, p in enumerate(m.parameters()):
            p.copy_(tensor(tuple(p.shape), torch.float32, 20 + i))
    save("bert_like/pytorch_model.bin", m.state_dict())

    # deflate: the same content as fp32.bin, re-zipped with compression
    src = zipfile.ZipFile(os.path.join(OUT, "fp32.bin"))
    with zipfile.ZipFile(os.path.join(OUT, "deflated.bin"), "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename))
    src.close()
    record("deflated.bin", None)

    torch.save({"a": torch.ones(2)}, os.path.join(OUT, "legacy.bin"),
               _use_new_zipfile_serialization=False)

    torch.save({"a": torch.ones(2), "evil": Evil()}, os.path.join(OUT, "malicious.bin"))
    torch.save({"a": torch.ones(2), "evil": EvalEvil()}, os.path.join(OUT, "malicious_eval.bin"))

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "scripts/gen_pickle_fixtures.py", "torch": torch.__version__,
                   "python": sys.version.split()[0], "files": manifest}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
