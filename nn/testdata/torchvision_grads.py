# Gradients of a training-mode step of torchvision's ResNet-18 (fc: Linear(512, 5)), for
# TestGradientsMatchPyTorch(CUDA). Usage: torchvision_grads.py WEIGHTS.safetensors INPUT.f32 GRADS.safetensors [DEVICE]
# DEVICE (default cpu) is where PyTorch runs; on a GPU with TF32 off for cuDNN and matmuls.
# Reads protoherb's weights and input, runs forward (train mode), cross-entropy against classes
# 0..3 and backward, and prints JSON {"logits": rel, "grads": {name: rel}}: the largest difference
# from protoherb's, over the largest magnitude (at least 1e-6).
import json, struct, sys
import numpy as np, torch, torch.nn as nn, torchvision

def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head, data, out = json.loads(b[8:8 + n]), b[8 + n:], {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
        out[k] = torch.from_numpy(np.frombuffer(data[s:e], dtype=dt).reshape(v["shape"]).copy())
    return out

torch.set_num_threads(1)
dev = torch.device(sys.argv[4] if len(sys.argv) > 4 else "cpu")
if dev.type == "cuda":
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
w, g = load(sys.argv[1]), load(sys.argv[3])
m = torchvision.models.resnet18(weights=None)
m.fc = nn.Linear(512, 5)
m.load_state_dict(w, strict=True)
m = m.to(dev).train()
x = torch.from_numpy(np.fromfile(sys.argv[2], dtype=np.float32).reshape(4, 3, 64, 64)).to(dev)
y = m(x)
nn.functional.cross_entropy(y, torch.arange(4, device=dev)).backward()
rel = lambda a, b: float((a.flatten() - b.flatten()).abs().max() / a.abs().max().clamp_min(1e-6))
print(json.dumps({"logits": rel(y.detach().cpu(), g["logits"]),
                  "grads": {n: rel(p.grad.cpu(), g[n]) for n, p in m.named_parameters()}}))
