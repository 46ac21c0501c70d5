# Forward passes/s on the GPU (eval, no-grad) for the scale projection of issue 17.
import time, torch, torchvision, torch.nn as nn
def block(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
conv4 = nn.Sequential(block(3, 64), block(64, 64), block(64, 64), block(64, 64), nn.Flatten())
for name, m, s, bs in [('resnet50', torchvision.models.resnet50(), 224, 256), ('resnet18', torchvision.models.resnet18(), 224, 256), ('conv4', conv4, 84, 1024)]:
    m = m.cuda().eval().to(memory_format=torch.channels_last)
    for dt in (torch.float32, torch.bfloat16):
        x = torch.randn(bs, 3, s, s, device='cuda').to(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast('cuda', dtype=torch.bfloat16, enabled=dt == torch.bfloat16):
            for _ in range(5): m(x)
            torch.cuda.synchronize(); t = time.time(); n = 0
            while time.time() - t < 5: m(x); n += bs
            torch.cuda.synchronize(); el = time.time() - t
        print(f"{name} {s}px batch {bs} {'bf16-autocast' if dt == torch.bfloat16 else 'fp32(tf32 off)'}: {n/el:.0f} images/s", flush=True)
print(torch.__version__, torch.cuda.get_device_name())
