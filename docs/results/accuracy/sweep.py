# leaf99 recipe sweep for protoherb issue 16 (docs/results/accuracy.md): Conv-4 in PyTorch on a GPU,
# every recipe at the same number of image passes as a 15-minute `protoherb run` on 2 cores, then
# nearest class mean on the training embeddings, scored on the test split (macro-F1, tail F1).
# Usage: python3 sweep.py DATA.npz first|second|herb|resnet12   (DATA.npz from pack.py; herb: the synthetic herbarium)
import math, sys, time, json, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from sklearn.metrics import f1_score
dev = 'cuda'
Z = np.load(sys.argv[1]); X = torch.tensor(Z['X']).float().div(255).to(dev)
X = X.permute(0, 3, 1, 2).contiguous() if X.dim() == 4 else X[:, None]  # N,C,L,L
WH = torch.tensor(Z['WH']).float().to(dev); y = torch.tensor(Z['y']).to(dev); test = torch.tensor(Z['test']).to(dev)
N, L = X.shape[0], X.shape[-1]
tr_idx = (~test).nonzero()[:, 0]; te_idx = test.nonzero()[:, 0]; C = int(y.max()) + 1
cnt = torch.bincount(y[tr_idx], minlength=C); tail = (cnt <= 5).cpu().numpy()
mask = torch.zeros_like(X[:, :1])
for i in range(N): mask[i, :, :int(WH[i, 1]), :int(WH[i, 0])] = 1
border = torch.stack([torch.cat([X[i, :, 0, :int(WH[i,0])], X[i, :, int(WH[i,1])-1, :int(WH[i,0])], X[i, :, :int(WH[i,1]), 0], X[i, :, :int(WH[i,1]), int(WH[i,0])-1]], 1).mean(1) for i in range(N)])  # N,C

def boxes(idx, mode, aug, g):
    w, h = WH[idx, 0], WH[idx, 1]; cx, cy = w / 2, h / 2
    if mode == 'squash': bw, bh = w.clone(), h.clone()
    elif mode == 'crop': bw = bh = torch.minimum(w, h)
    else: bw = bh = torch.maximum(w, h)
    n = len(idx); flip = torch.zeros(n, device=dev); rot = torch.zeros(n, device=dev)
    if aug:
        if mode == 'letter':
            s = torch.exp(torch.empty(n, device=dev).uniform_(math.log(aug.get('zmin', 0.8)), math.log(aug.get('zmax', 1.25)), generator=g))
            bw, bh = bw * s, bh * s
            cx = cx + bw * torch.empty(n, device=dev).uniform_(-aug.get('shift', .1), aug.get('shift', .1), generator=g)
            cy = cy + bh * torch.empty(n, device=dev).uniform_(-aug.get('shift', .1), aug.get('shift', .1), generator=g)
        else:  # random resized crop of the base box, scale [.35,1], ratio [3/4,4/3]
            a = torch.empty(n, device=dev).uniform_(0.35, 1, generator=g); r = torch.exp(torch.empty(n, device=dev).uniform_(math.log(3/4), math.log(4/3), generator=g))
            nw, nh = torch.minimum(bw * torch.sqrt(a * r), bw), torch.minimum(bh * torch.sqrt(a / r), bh)
            cx = cx + (bw - nw) * (torch.rand(n, device=dev, generator=g) - .5); cy = cy + (bh - nh) * (torch.rand(n, device=dev, generator=g) - .5); bw, bh = nw, nh
        flip = (torch.rand(n, device=dev, generator=g) < .5).float()
        if aug.get('rot'): rot = torch.empty(n, device=dev).uniform_(-math.pi, math.pi, generator=g) * aug['rot']
        if aug.get('vflip'): rot = rot + math.pi * (torch.rand(n, device=dev, generator=g) < .5).float()
    return cx, cy, bw, bh, flip, rot

def render(idx, S, mode, aug=None, g=None, hflip=False):
    cx, cy, bw, bh, flip, rot = boxes(idx, mode, aug, g)
    if hflip: flip = 1 - flip
    n = len(idx); t = (torch.arange(S, device=dev) + .5) / S - .5
    gx, gy = t[None, None, :].expand(n, S, S), t[None, :, None].expand(n, S, S)
    gx = gx * torch.where(flip > 0, -1., 1.)[:, None, None]
    c, s = torch.cos(rot)[:, None, None], torch.sin(rot)[:, None, None]
    rx, ry = c * gx - s * gy, s * gx + c * gy
    px = cx[:, None, None] + rx * bw[:, None, None]; py = cy[:, None, None] + ry * bh[:, None, None]
    grid = torch.stack([px / L * 2 - 1, py / L * 2 - 1], -1)
    src = X[idx]
    if S < L * 0.75:  # anti-alias: blur before sampling when shrinking a lot
        k = max(1, int(round(float(torch.maximum(bw, bh).mean()) / S)))
        if k > 1: src = F.avg_pool2d(src, k, 1, k // 2, count_include_pad=False)[..., :L, :L]
    v = F.grid_sample(src, grid, align_corners=False); m = F.grid_sample(mask[idx], grid, align_corners=False)
    out = v + (1 - m) * border[idx][:, :, None, None]
    return ((out - 0.45) / 0.225).expand(-1, 3, -1, -1).contiguous()

def block(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
class Conv4(nn.Module):
    def __init__(s, w=64): super().__init__(); s.f = nn.Sequential(block(3, w), block(w, w), block(w, w), block(w, w))
    def forward(s, x): return s.f(x).flatten(1)

class RBlock(nn.Module):  # ResNet-12's block (MetaOptNet, Tian et al.): three 3x3 convs, 1x1 shortcut, max-pool
    def __init__(s, i, o):
        super().__init__()
        s.c = nn.ModuleList([nn.Conv2d(a, o, 3, padding=1, bias=False) for a in (i, o, o)])
        s.b = nn.ModuleList([nn.BatchNorm2d(o) for _ in range(3)])
        s.sc = nn.Sequential(nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o))
    def forward(s, x):
        r = s.sc(x)
        for k in range(3):
            x = s.b[k](s.c[k](x))
            if k < 2: x = F.leaky_relu(x, 0.1)
        return F.max_pool2d(F.leaky_relu(x + r, 0.1), 2)
class ResNet12(nn.Module):
    def __init__(s): super().__init__(); s.f = nn.Sequential(RBlock(3, 64), RBlock(64, 160), RBlock(160, 320), RBlock(320, 640))
    def forward(s, x): return F.adaptive_avg_pool2d(s.f(x), 1).flatten(1)

def embed(net, idx, S, mode, tta):
    net.eval(); out = []
    with torch.no_grad():
        for b in idx.split(256):
            e = net(render(b, S, mode))
            if tta: e = (e + net(render(b, S, mode, hflip=True))) / 2
            out.append(e)
    net.train(); return torch.cat(out)

def evaluate(net, S, mode, tta=False):
    res = {}
    etr, ete = embed(net, tr_idx, S, mode, tta), embed(net, te_idx, S, mode, tta)
    for name in ['l2', 'cos', 'cent-cos']:
        a, b = etr, ete
        if name == 'cent-cos': mu = a.mean(0); a, b = a - mu, b - mu
        if name != 'l2': a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        P = torch.zeros(C, a.shape[1], device=dev).index_add_(0, y[tr_idx], a) / cnt[:, None]
        if name != 'l2': P = F.normalize(P, dim=1)
        pred = torch.cdist(b, P).argmin(1).cpu().numpy(); t = y[te_idx].cpu().numpy()
        f1 = f1_score(t, pred, average=None, labels=range(C), zero_division=0)
        res[name] = (round(float(f1.mean()), 4), round(float(f1[tail].mean()), 4))
    return res

def run(name, S=84, mode='letter', passes=120000, aug={}, episodic=0.0, rotaux=0.0, seed=0, width=64, bs=64, lr=0.05, ls=0.1, wd=5e-4, tta=True, holdout=0.0, arch='conv4'):
    torch.manual_seed(seed); g = torch.Generator(device=dev); g.manual_seed(seed)
    net = (ResNet12() if arch == 'resnet12' else Conv4(width)).to(dev).to(memory_format=torch.channels_last); dim = net(render(tr_idx[:2], S, mode)).shape[1]
    head = nn.Linear(dim, C).to(dev); rhead = nn.Linear(dim, 4).to(dev)
    params = list(net.parameters()) + list(head.parameters()) + list(rhead.parameters())
    steps = int(passes * (1 - episodic) / bs / (1 + rotaux))
    opt = torch.optim.SGD(params, lr=lr, momentum=.9, nesterov=True, weight_decay=wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(steps, 1), pct_start=.05, anneal_strategy='cos')
    # balanced sampling: each class equally often
    percls = [tr_idx[y[tr_idx] == c] for c in range(C)]
    if holdout:
        gg = torch.Generator().manual_seed(seed)
        percls = [p[torch.randperm(len(p), generator=gg)[:len(p) - int(len(p) * holdout)]] if len(p) > 2 else p for p in percls]
    for st in range(steps):
        cls = torch.randint(0, C, (bs,), generator=torch.Generator().manual_seed(seed * 100003 + st))
        idx = torch.stack([percls[c][torch.randint(0, len(percls[c]), (1,))[0]] for c in cls.tolist()])
        x = render(idx, S, mode, aug, g); loss = F.cross_entropy(head(net(x)), y[idx], label_smoothing=ls)
        if rotaux:
            k = st % 4; xr = torch.rot90(x, k, (2, 3)); loss = loss + rotaux * F.cross_entropy(rhead(net(xr)), torch.full((bs,), k, device=dev))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
    if episodic > 0:
        way, shot, q = 20, 2, 2; eps = int(passes * episodic / (way * (shot + q)))
        elig = [c for c in range(C) if len(percls[c]) >= shot + q]
        opt = torch.optim.Adam(net.parameters(), lr=5e-4); sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(eps, 1))
        for e in range(eps):
            cs = [elig[i] for i in torch.randperm(len(elig))[:way].tolist()]
            sel = torch.stack([percls[c][torch.randperm(len(percls[c]))[:shot + q]] for c in cs])
            x = render(sel.flatten(), S, mode, aug, g); z = net(x).view(way, shot + q, -1)
            p = z[:, :shot].mean(1); qz = z[:, shot:].reshape(way * q, -1)
            loss = F.cross_entropy(-torch.cdist(qz, p) ** 2, torch.arange(way, device=dev).repeat_interleave(q))
            opt.zero_grad(); loss.backward(); opt.step(); sch.step()
    r = {'name': name, 'seed': seed, 'noTTA': evaluate(net, S, mode, False)}
    if tta: r['TTA'] = evaluate(net, S, mode, True)
    print(json.dumps(r), flush=True); return r

t0 = time.time()
first = [
    dict(name='squash-seedaug', mode='squash', aug={'rrc': 1}),
    dict(name='crop-rrc(current)', mode='crop', aug={'rrc': 1}),
    dict(name='letter', mode='letter', aug={'shift': .1}),
    dict(name='letter-rot', mode='letter', aug={'shift': .1, 'rot': 1}),
    dict(name='letter-rot-vflip', mode='letter', aug={'shift': .1, 'rot': 1, 'vflip': 1}),
    dict(name='letter-rot-ep40', mode='letter', aug={'shift': .1, 'rot': 1}, episodic=.4),
    dict(name='letter-rot-rotaux', mode='letter', aug={'shift': .1, 'rot': 1}, rotaux=.5),
    dict(name='letter-rot-128', mode='letter', aug={'shift': .1, 'rot': 1}, S=128, passes=int(120000 * (84 / 128) ** 2)),
    dict(name='letter-rot-half', mode='letter', aug={'shift': .1, 'rot': 1}, passes=60000),
    dict(name='letter-rot-ls0', mode='letter', aug={'shift': .1, 'rot': 1}, ls=0.0),
    dict(name='letter-noaug', mode='letter', aug={}),
]
second = [
    dict(name='letter-rot-holdout20', mode='letter', aug={'shift': .1, 'rot': 1}, holdout=.2),
    dict(name='letter-rot-200k', mode='letter', aug={'shift': .1, 'rot': 1}, passes=200000),
    dict(name='letter-rot-strong', mode='letter', aug={'shift': .15, 'rot': 1, 'zmin': .65, 'zmax': 1.3}),
    dict(name='letter-rot-lr0.1', mode='letter', aug={'shift': .1, 'rot': 1}, lr=0.1),
    dict(name='letter-rot-ep15', mode='letter', aug={'shift': .1, 'rot': 1}, episodic=.15),
]
P = 36000  # a 5-minute `protoherb run` on the synthetic herbarium
herb = [
    dict(name='herb-crop', mode='crop', aug={'rrc': 1}, passes=P),
    dict(name='herb-squash', mode='squash', aug={'rrc': 1}, passes=P),
    dict(name='herb-fit', mode='letter', aug={'shift': .1}, passes=P),
    dict(name='herb-squash-ep40', mode='squash', aug={'rrc': 1}, passes=P, episodic=.4),
    dict(name='herb-fit-ep40', mode='letter', aug={'shift': .1}, passes=P, episodic=.4),
    dict(name='herb-squash-holdout20', mode='squash', aug={'rrc': 1}, passes=P, holdout=.2),
    dict(name='herb-fit-holdout20', mode='letter', aug={'shift': .1}, passes=P, holdout=.2),
    dict(name='herb-squash-2x', mode='squash', aug={'rrc': 1}, passes=2 * P),
    dict(name='herb-fit-2x', mode='letter', aug={'shift': .1}, passes=2 * P),
    dict(name='herb-squash-ep40-2x', mode='squash', aug={'rrc': 1}, passes=2 * P, episodic=.4),
]
# ResNet-12 costs 15.9x Conv-4's step on these 2 cores at 84 px (bench step, 64 images): equal time
# is 120k/15.9 = 7.5k passes on leaf99
resnet12 = [
    dict(name='squash', mode='squash', aug={'rrc': 1}),
    dict(name='squash-resnet12-equal-time', mode='squash', aug={'rrc': 1}, arch='resnet12', passes=7500),
    dict(name='squash-resnet12-120k', mode='squash', aug={'rrc': 1}, arch='resnet12'),
]
configs = {'first': first, 'second': second, 'herb': herb, 'resnet12': resnet12}[sys.argv[2]]
for cfg in configs:
    for seed in (0, 1):
        run(seed=seed, **cfg)
    print('elapsed', round(time.time() - t0), flush=True)
