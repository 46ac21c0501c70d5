# PyTorch's side of `protoherb bench embed`: eval-mode, no-grad forward passes of the same backbone on
# random input, in the style of /work/shared/bench/protonet.py's fwd_bench.
# Usage: bench_embed_torch.py THREADS BACKBONE SIZE BATCH CHANNELS_LAST(0|1) ITERS WARMUP [DEVICE [FOLD_BN(0|1) [MODE]]]
# FOLD_BN=1 folds each batch norm into its convolution with torch.fx's fuse, as protoherb's embedder does.
# MODE is how PyTorch runs the model:
#   eager      (default) the nn.Module as it is;
#   prepacked  each convolution rewritten (torch.fx) into libtorch's mkldnn_prepacked::conv2d_prepack/run,
#              with a ReLU that follows it fused in: what protoherb's PrepackConvolutions does;
#   ofi        torch.jit.optimize_for_inference of the traced model (frozen TorchScript, oneDNN layouts).
# On a GPU the input is copied from host memory and the embeddings back every batch, as protoherb's
# embedder does.
# Last lines: "torch-cpu: <CPU ms per image> ms/image", "torch: <images/s> images/s (median <ms> ms/batch)".
import sys, time, statistics
import torch, torch.nn as nn

threads, backbone, size, batch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
channels_last, iters, warm = sys.argv[5] == "1", int(sys.argv[6]), int(sys.argv[7])
device = torch.device(sys.argv[8] if len(sys.argv) > 8 else "cpu")
fold_bn = len(sys.argv) > 9 and sys.argv[9] == "1"
mode = sys.argv[10] if len(sys.argv) > 10 else "eager"
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


def prepacked(model, x):
    """Rewrites each Conv2d of model into the prepacked operators, packed for input like x, fusing a
    ReLU module or function that is the convolution's only user."""
    import torch.fx as fx
    from torch.fx.passes.shape_prop import ShapeProp
    P = torch.ops.mkldnn_prepacked
    g = fx.symbolic_trace(model)
    ShapeProp(g).propagate(x)
    mods = dict(g.named_modules())
    convs = [n for n in g.graph.nodes if n.op == "call_module" and isinstance(mods[n.target], nn.Conv2d)]
    sizes = {n.name: list(n.args[0].meta["tensor_meta"].shape) for n in convs}

    class Packed(nn.Module):
        def __init__(self, conv, size, attr):
            super().__init__()
            w = conv.weight.detach().contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            b = None if conv.bias is None else conv.bias.detach()
            self.ctx = P.conv2d_prepack(w, b, list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups, size, attr)

        def forward(self, x):
            return P.conv2d_run(x, self.ctx)

    def is_relu(n):
        return (n.op == "call_module" and isinstance(mods.get(n.target), nn.ReLU)) or \
               (n.op == "call_function" and n.target in (torch.relu, torch.nn.functional.relu))
    for n in convs:
        users = list(n.users)
        fuse_relu = len(users) == 1 and is_relu(users[0])
        name = n.target.replace(".", "_") + "_packed"
        g.add_submodule(name, Packed(mods[n.target], sizes[n.name], "relu" if fuse_relu else "none"))
        with g.graph.inserting_after(n):
            p = g.graph.call_module(name, n.args)
        n.replace_all_uses_with(p)
        g.graph.erase_node(n)
        if fuse_relu:
            users[0].replace_all_uses_with(p)
            g.graph.erase_node(users[0])
    g.recompile()
    return g

with torch.no_grad():
    if mode == "prepacked":
        model = prepacked(model, x)
    elif mode == "ofi":
        model = torch.jit.optimize_for_inference(torch.jit.trace(model, x.to(device)))
    elif mode != "eager":
        sys.exit(f"bench_embed_torch.py: mode {mode}: want eager, prepacked or ofi")
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
      f"channels_last={channels_last} fold_bn={fold_bn} mode={mode} out={tuple(y.shape)}: median {m*1e3:.1f} ms/batch "
      f"(min {min(ts)*1e3:.1f}, max {max(ts)*1e3:.1f})", flush=True)
print(f"torch-cpu: {cpu / (iters * batch) * 1e3:.2f} ms/image", flush=True)
print(f"torch: {batch/m:.1f} images/s (median {m*1e3:.1f} ms/batch)", flush=True)
