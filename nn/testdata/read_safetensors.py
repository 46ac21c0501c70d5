#!/usr/bin/python3
"""Reads a safetensors file the way the reference loader does (header checks included) with only torch,
json and struct, and prints {name: [dtype, shape, sum]} as JSON. nn's tests run it on files written
by SaveSafetensors to prove Python reads them without protoherb. Usage: read_safetensors.py FILE"""
import json, struct, sys
import torch

DT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
      "BOOL": torch.bool}

def load(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    assert data[8:9] == b"{", "header must start with {"
    body = data[8 + n:]
    meta = header.pop("__metadata__", {})
    assert all(isinstance(v, str) for v in meta.values()), "metadata values must be strings"
    out, pos = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, end = e["data_offsets"]
        assert b == pos, f"{name}: tensors must tile the data section (starts at {b}, expected {pos})"
        dt = DT[e["dtype"]]
        count = 1
        for d in e["shape"]:
            count *= d
        size = torch.empty(0, dtype=dt).element_size()
        assert end - b == count * size, f"{name}: {end - b} bytes for {count} x {size}"
        raw = torch.frombuffer(bytearray(body[b:end]), dtype=torch.uint8) if end > b else torch.empty(0, dtype=torch.uint8)
        out[name] = raw.view(dt).reshape(e["shape"]) if dt != torch.bool else raw.to(torch.bool).reshape(e["shape"])
        pos = end
    assert pos == len(body), f"data section has {len(body)} bytes, tensors cover {pos}"
    return out, meta

tensors, meta = load(sys.argv[1])
print(json.dumps({"metadata": meta, "tensors": {k: [str(v.dtype).replace("torch.", ""), list(v.shape), float(v.double().sum())] for k, v in tensors.items()}}))
