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
  byteorder_little.bin, byteorder_big.bin  fp32.bin re-zipped (unaligned) with a byteorder entry
  zip64.bin        fp32.bin with zip64 sizes/offsets and a zip64 end of central directory
  bert_like_sharded/  the bert_like state dict in two .bin shards + pytorch_model.bin.index.json
  legacy.bin       the pre-1.6 (non-zip) format: refused as unsupported
  malicious.bin    a torch.save zip whose pickle calls os.system: must be refused
  malicious_eval.bin  the same with builtins.eval via a tensor-like REDUCE
"""
import collections
import json
import os
import shutil
import struct
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


def to_zip64(src, dst):
    """Rewrites a stored zip so that the central directory uses zip64 extra fields for sizes and
    local header offsets, ending with a zip64 EOCD record + locator + a classic EOCD of 0xff."""
    b = open(src, "rb").read()
    eocd = b.rindex(b"PK\x05\x06")
    n, cd_size, cd_off = struct.unpack("<HII", b[eocd + 10:eocd + 20])
    body = b[:cd_off]
    cd = bytearray()
    q = cd_off
    for _ in range(n):
        fixed = bytearray(b[q:q + 46])
        nl, xl, cl = struct.unpack("<HHH", fixed[28:34])
        name = b[q + 46:q + 46 + nl]
        csize, usize = struct.unpack("<II", fixed[20:28])
        off = struct.unpack("<I", fixed[42:46])[0]
        extra = struct.pack("<HHQQQ", 1, 24, usize, csize, off)
        fixed[20:28] = struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF)
        fixed[42:46] = struct.pack("<I", 0xFFFFFFFF)
        fixed[30:32] = struct.pack("<H", len(extra))
        fixed[32:34] = struct.pack("<H", 0)
        fixed[4:6] = struct.pack("<H", 45)   # version made by: 4.5 (zip64)
        fixed[6:8] = struct.pack("<H", 45)   # version needed
        cd += fixed + name + extra
        q += 46 + nl + xl + cl
    z64_off = len(body) + len(cd)
    z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(cd), len(body))
    loc = struct.pack("<IIQI", 0x07064B50, 0, z64_off, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(dst, "wb") as f:
        f.write(body + cd + z64 + loc + end)


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

    # torch >= 2.1 adds <prefix>/byteorder; Python's zipfile does not align stored entries, so
    # these also exercise the loader's aligned copy of a misaligned stored storage
    src = zipfile.ZipFile(os.path.join(OUT, "fp32.bin"))
    for order in ("little", "big"):
        with zipfile.ZipFile(os.path.join(OUT, "byteorder_%s.bin" % order), "w",
                             zipfile.ZIP_STORED) as z:
            z.writestr("fp32/byteorder", order)
            z.writestr("fp32/.data/serialization_id", "0123456789")
            for info in src.infolist():
                z.writestr(info.filename, src.read(info.filename))
    src.close()
    record("byteorder_little.bin", None)

    # zip64: fp32.bin with every size and offset moved into zip64 extra fields and a zip64 end
    # of central directory (what multi-GB checkpoints such as instructor-xl's hold)
    to_zip64(os.path.join(OUT, "fp32.bin"), os.path.join(OUT, "zip64.bin"))
    record("zip64.bin", None)

    # a sharded pytorch_model.bin.index.json with two .bin shards
    sd = m.state_dict()
    keys = list(sd.keys())
    half = len(keys) // 2
    shards = {"pytorch_model-00001-of-00002.bin": keys[:half],
              "pytorch_model-00002-of-00002.bin": keys[half:]}
    os.makedirs(os.path.join(OUT, "bert_like_sharded"))
    wmap = {}
    for fname, ks in shards.items():
        torch.save(collections.OrderedDict((k, sd[k]) for k in ks),
                   os.path.join(OUT, "bert_like_sharded", fname))
        for k in ks:
            wmap[k] = fname
    with open(os.path.join(OUT, "bert_like_sharded", "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f, indent=1)

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
