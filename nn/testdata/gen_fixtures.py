#!/usr/bin/python3
"""Writes the test fixtures of package nn with Debian's python3-torch (no safetensors module needed).

  fixture.safetensors  tensors of several dtypes + metadata, written with json + struct exactly as the
                       safetensors format specifies (8-byte little-endian header length, JSON header,
                       raw little-endian data). nn's tests check every value.
  tiny.pt              a TorchScript backbone (conv 3x3 1->4 + batch norm + relu + 2x2 adaptive average
                       pool + flatten: 16-d) for the torchscript:PATH backbone test.

Run from any folder: /usr/bin/python3 nn/testdata/gen_fixtures.py
"""
import json, os, struct
import torch

here = os.path.dirname(os.path.abspath(__file__))

def save_safetensors(path, tensors, metadata):
    names = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
             torch.uint8: "U8", torch.bool: "BOOL"}
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        # raw bytes via a uint8 view of the storage (little-endian host)
        b = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.to(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)

def arange(n, dtype):
    return torch.arange(n).to(dtype)

tensors = {
    "layer.weight": (torch.arange(6, dtype=torch.float32) * 0.5 - 1).reshape(2, 3),
    "layer.double": torch.tensor([1.0 / 3, -2.5e300], dtype=torch.float64),
    "bn.num_batches_tracked": torch.tensor(42, dtype=torch.int64),
    "half": torch.tensor([1.0, -0.5, 65504.0, 6.103515625e-05, 5.960464477539063e-08], dtype=torch.float16),
    "bfloat": torch.tensor([1.0, -3.140625, 1e30], dtype=torch.bfloat16),
    "ints32": torch.tensor([[-7, 2147483647], [0, -2147483648]], dtype=torch.int32),
    "ints16": torch.tensor([-32768, 12345], dtype=torch.int16),
    "ints8": torch.tensor([-128, 127, 5], dtype=torch.int8),
    "bytes": torch.tensor([0, 255, 7], dtype=torch.uint8),
    "mask": torch.tensor([True, False, True]),
    "empty": torch.zeros(0, 4),
}
save_safetensors(os.path.join(here, "fixture.safetensors"), tensors, {"format": "pt", "note": "written by gen_fixtures.py"})

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.pool = torch.nn.AdaptiveAvgPool2d(2)

    def forward(self, x):
        return torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1)

torch.manual_seed(0)
m = torch.jit.script(Tiny())
m.save(os.path.join(here, "tiny.pt"))
x = torch.linspace(-1, 1, 2 * 1 * 8 * 8).reshape(2, 1, 8, 8)
m.eval()
with torch.no_grad():
    y = m(x)
# expected eval-mode output on that input, for the Go test
with open(os.path.join(here, "tiny_expected.json"), "w") as f:
    json.dump({"input": "linspace(-1,1,128) as 2x1x8x8", "output": [round(v, 6) for v in y.flatten().tolist()]}, f)
print("wrote fixture.safetensors, tiny.pt, tiny_expected.json")
