# PyTorch's side of `protoherb bench embed`: eval-mode, no-grad forward passes of the same backbone on
# random input, in the style of /work/shared/bench/protonet.py's fwd_bench.
# Usage: bench_embed_torch.py THREADS BACKBONE SIZE BATCH CHANNELS_LAST(0|1) ITERS WARMUP [DEVICE [FOLD_BN(0|1)]]
# FOLD_BN=1 folds each batch norm into its convolution with torch.fx's fuse, as protoherb's embedder does.
# On a GPU the input is copied from host memory and the embeddings back every batch, as protoherb's
# embedder does.
# Last lines: "torch-cpu: <CPU ms per image> ms/image", "torch: <images/s> images/s (median <ms> ms/batch)".
import sys, time, statistics
import torch, torch.nn as nn

threads, backbone, size, batch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
channels_last, iters, warm = sys.argv[5] == "1", int(sys.argv[6]), int(sys.argv[7])
device = torch.device(sys.argv[8] if len(sys.argv) > 8 else "cpu")
fold_bn = len(sys.argv) > 9 and sys.argv[9] == "1"
torch.set_num_threads(threads)
torch.manual_seed(0)

def conv_block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

if backbone == "conv4":  # Snell et al. 2017: 4 x [Conv3x3(64)+BN+ReLU+MaxPool2], flatten
    model = nn.Sequential(conv_block(3, 64), conv_block(64, 64), conv_block(64, 64), conv_block(64, 64), nn.Flatten())
elif backbone in ("resnet18", "resnet50"):
    import torchvision
    model = getattr(torchvision.models, backbone)(weights=None)
    model.fc = nn.Identity()  # protoherb's backbone ends at the pooled features
else:
    sys.exit(f"bench_embed_torch.py: backbone {backbone} has no PyTorch counterpart here")
model.eval()
if fold_bn:
    from torch.fx.experimental.optimization import fuse
    model = fuse(model)
model = model.to(device)
x = torch.randn(batch, 3, size, size)
if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
ts = []
with torch.no_grad():
    for i in range(warm + iters):
        if i == warm:
            c0 = time.process_time()
        t = time.perf_counter()
        y = model(x.to(device)).cpu()
        if i >= warm:
            ts.append(time.perf_counter() - t)
    cpu = time.process_time() - c0
m = statistics.median(ts)
print(f"torch {torch.__version__} {backbone} {size}px batch={batch} device={device} threads={torch.get_num_threads()} "
      f"channels_last={channels_last} fold_bn={fold_bn} out={tuple(y.shape)}: median {m*1e3:.1f} ms/batch "
      f"(min {min(ts)*1e3:.1f}, max {max(ts)*1e3:.1f})", flush=True)
print(f"torch-cpu: {cpu / (iters * batch) * 1e3:.2f} ms/image", flush=True)
print(f"torch: {batch/m:.1f} images/s (median {m*1e3:.1f} ms/batch)", flush=True)
