#!/usr/bin/python3
"""Writes a randomly initialised torchvision ResNet (its state dict as safetensors, with torch + json +
struct) and its eval-mode logits on a fixed input, for nn's torchvision compatibility test (skipped
without python3-torchvision). Usage: torchvision_ref.py resnet18|resnet50 OUT_DIR"""
import json, os, struct, sys
import torch, torchvision

name, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
m = getattr(torchvision.models, name)(weights=None).eval()
with torch.no_grad():  # non-trivial running statistics, so the test checks that they are used
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.num_batches_tracked.fill_(3)
header, blobs, off = {"__metadata__": {"source": "torchvision " + name}}, [], 0
for k, t in m.state_dict().items():
    t = t.contiguous()
    b = t.reshape(-1).view(torch.uint8).numpy().tobytes()
    header[k] = {"dtype": {torch.float32: "F32", torch.int64: "I64"}[t.dtype], "shape": list(t.shape),
                 "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(out, name + ".safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
x = torch.linspace(-2, 2, 2 * 3 * 64 * 64).reshape(2, 3, 64, 64)
with torch.no_grad():
    y = m(x)
json.dump({"logits": y.flatten().tolist(), "params": sum(p.numel() for p in m.parameters())},
          open(os.path.join(out, name + ".json"), "w"))
