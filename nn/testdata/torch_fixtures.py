"""Writes the PyTorch fixtures of protoherb's weight-loading tests, with Debian's python3-torch and
python3-torchvision (/usr/bin/python3; no network, random weights).

  torch_fixtures.py tiny OUT.pth       the small committed fixture (nn/testdata/tiny_dataparallel.pth):
                                       a checkpoint dict holding a DataParallel state dict under
                                       "state_dict", with an optimizer state, an argparse.Namespace,
                                       numbers and one-item dicts and lists around it
  torch_fixtures.py torchvision DIR [NAME...]
                                       what the tests generate when this Python is present (too big to
                                       commit): resnet18.pth (saved from DataParallel) and resnet50.pth,
                                       torchvision's models with random weights and random batch-norm
                                       statistics, input.pth (x, a batch of images) and expected.pth
                                       (resnet18, resnet50: torchvision's features of x in eval mode,
                                       the global-average-pooled output before fc)
"""
import argparse
import collections
import sys

import torch


def tiny(out):
    sd = collections.OrderedDict()
    sd["module.conv.weight"] = torch.arange(2 * 1 * 2 * 2, dtype=torch.float32).reshape(2, 1, 2, 2) / 8
    sd["module.conv.bias"] = torch.tensor([0.5, -0.5])
    sd["module.bn.running_var"] = torch.tensor([1.0, 2.0], dtype=torch.float64)
    sd["module.bn.num_batches_tracked"] = torch.tensor(7)
    sd["module.half"] = torch.tensor([1.5, -2.0], dtype=torch.float16)
    sd["module.view"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()  # non-contiguous
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("conv", {"version": 1})])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    torch.save({"state_dict": sd, "optimizer": opt.state_dict(), "args": argparse.Namespace(lr=0.1),
                "epoch": 3, "best": 0.25, "tags": ["one"], "extra": {"only": 1}}, out)


def randomise(model, gen):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", "bn1.bias", "bn2.bias", "bn3.bias")):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
            elif name.endswith(("bn1.weight", "bn2.weight", "bn3.weight")) or ".downsample.1.weight" in name:
                t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.75)


def features(model, x):
    model.fc = torch.nn.Identity()
    model.eval()
    with torch.no_grad():
        return model(x)


def torchvision_files(d, names=("resnet18", "resnet50")):
    import torchvision

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64, generator=gen)
    expected = {}
    for name in names:
        model = getattr(torchvision.models, name)()
        randomise(model, gen)
        if name == "resnet18":
            torch.save(torch.nn.DataParallel(model).state_dict(), f"{d}/{name}.pth")
        else:
            torch.save(model.state_dict(), f"{d}/{name}.pth")
        expected[name] = features(model, x)
    torch.save({"x": x}, f"{d}/input.pth")
    torch.save(expected, f"{d}/expected.pth")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("tiny", "torchvision") or (sys.argv[1] == "tiny" and len(sys.argv) > 3):
        sys.exit(__doc__)
    if sys.argv[1] == "tiny":
        tiny(sys.argv[2])
    else:
        torchvision_files(sys.argv[2], sys.argv[3:] or ("resnet18", "resnet50"))
