# Is a GPU/CPU gap in training-mode logits and gradients PyTorch's own (cuDNN TF32), not protoherb's?
import copy, torch, torch.nn as nn, torchvision
torch.manual_seed(0)
def cb(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
def models():
    m = torchvision.models.resnet18(weights=None); m.fc = nn.Linear(512, 5)
    yield "resnet18-64px", m, 64
    yield "conv4-28px", nn.Sequential(cb(3, 64), cb(64, 64), cb(64, 64), cb(64, 64), nn.Flatten(), nn.Linear(64, 5)), 28
def run(m, x, dev):
    m = copy.deepcopy(m).to(dev).train(); m.zero_grad()
    y = m(x.to(dev)); l = nn.functional.cross_entropy(y, torch.arange(4, device=dev)); l.backward()
    return y.detach().cpu(), {n: p.grad.cpu() for n, p in m.named_parameters()}
for name, m, s in models():
    x = torch.randn(4, 3, s, s)
    yc, gc = run(m, x, "cpu")
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = tf32
        yg, gg = run(m, x, "cuda")
        rel = lambda a, b: float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))
        worst = max((rel(gc[n], gg[n]), n) for n in gc if gc[n].abs().max() > 1e-6)
        print(f"{name} cudnn.allow_tf32={tf32}: logits {rel(yc, yg):.2e} of the largest; worst gradient {worst[0]:.2e} ({worst[1]})", flush=True)
