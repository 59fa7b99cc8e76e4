#!/usr/bin/env python3
"""gen.py: writes the pytorch_model.bin variants of the encoder fixtures used by
tests/unit/test_models_bert_load.c (run with Debian's python3-torch from the repository root):

- bert_bin/: tests/fixtures/models/bert as an older BertForMaskedLM-style checkpoint: every
  tensor under a `bert.` prefix, plus the persistent `bert.embeddings.position_ids` buffer,
  saved with torch.save (zip format) as pytorch_model.bin; config.json copied.
- dense_bin/2_Dense/: the t5_mean_dense_l2 Dense layer as pytorch_model.bin (`linear.weight`).
"""
import json
import os
import shutil
import struct

import numpy as np
import torch


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
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).reshape(t["shape"]).copy())
    return out


here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, "bert_bin"), exist_ok=True)
w = read_safetensors("tests/fixtures/models/bert/model.safetensors")
sd = {"bert." + k: v for k, v in w.items()}
sd["bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
torch.save(sd, os.path.join(here, "bert_bin", "pytorch_model.bin"))
shutil.copy("tests/fixtures/models/bert/config.json", os.path.join(here, "bert_bin", "config.json"))

os.makedirs(os.path.join(here, "dense_bin", "2_Dense"), exist_ok=True)
d = read_safetensors("tests/fixtures/e2e/t5_mean_dense_l2/model/2_Dense/model.safetensors")
torch.save({"linear.weight": d["linear.weight"]}, os.path.join(here, "dense_bin", "2_Dense", "pytorch_model.bin"))
shutil.copy("tests/fixtures/e2e/t5_mean_dense_l2/model/2_Dense/config.json",
            os.path.join(here, "dense_bin", "2_Dense", "config.json"))
