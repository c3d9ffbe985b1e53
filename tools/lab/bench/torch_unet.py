#!/usr/bin/env python3
"""The paper's U-Net in PyTorch, as the reference of `ddpm bench torch` (and `npm run bench`).

The same architecture as packages/unet (the official diffusion code's): sinusoidal time embedding
→ dense → swish → dense; residual blocks of GroupNorm(32, eps 1e-6) + swish + 3×3 conv, the
projected time embedding added, dropout, a 1×1 shortcut where channels change; single-head
self-attention at the configured resolutions; stride-2 convolutions with TensorFlow 'SAME'
padding (nothing before, one after) down; nearest-neighbour ×2 then a 3×3 conv up. The benchmark
checks that the parameter count equals ours, which an architecture that differs would not.

`torch_unet.py --params` reads {name: config} as JSON on stdin and prints {name: parameter count}.
Otherwise the config arrives as JSON in argv[1]; then one JSON command per line on stdin,
{"cmd": "train"|"sample", "threads": N}, each answered by one line {"ms": time of one step}.
A training step is what our trainer's is: forward with dropout + L_simple (MSE to the noise) +
backward + clipping to global norm 1 + Adam + the EMA update; a sampling step is one forward pass
without gradients plus Algorithm 2's update with the x̂0 clip, as ours.
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def swish(x):
    return x * torch.sigmoid(x)


def norm(c, groups):
    return nn.GroupNorm(groups, c, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups, dropout):
        super().__init__()
        self.norm1 = norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb_proj = nn.Linear(temb, cout)
        self.norm2 = norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb_swish):
        h = self.conv1(swish(self.norm1(x)))
        h = h + self.temb_proj(temb_swish)[:, :, None, None]
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm = norm(c, groups)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, c, hh * ww).permute(0, 2, 1)
        k = self.k(h).reshape(b, c, hh * ww)
        v = self.v(h).reshape(b, c, hh * ww).permute(0, 2, 1)
        w = torch.softmax(torch.bmm(q * c ** -0.5, k), dim=-1)
        out = torch.bmm(w, v).permute(0, 2, 1).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, mult, nres = cfg["ch"], cfg["chMult"], cfg["numResBlocks"]
        groups, dropout, attn = cfg["numGroups"], cfg["dropout"], cfg["attnResolutions"]
        self.ch = ch
        temb = 4 * ch
        self.dense0 = nn.Linear(ch, temb)
        self.dense1 = nn.Linear(temb, temb)
        self.conv_in = nn.Conv2d(cfg["inChannels"], ch, 3, padding=1)
        res = cfg["imageSize"]
        chans = [ch]
        cur = ch
        self.down = nn.ModuleList()
        for level, m in enumerate(mult):
            for _ in range(nres):
                blocks = [ResBlock(cur, ch * m, temb, groups, dropout)]
                cur = ch * m
                if res in attn:
                    blocks.append(AttnBlock(cur, groups))
                self.down.append(nn.ModuleList(blocks))
                chans.append(cur)
            if level != len(mult) - 1:
                self.down.append(nn.ModuleList([Downsample(cur)]))
                chans.append(cur)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(cur, cur, temb, groups, dropout), AttnBlock(cur, groups), ResBlock(cur, cur, temb, groups, dropout)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(mult))):
            for _ in range(nres + 1):
                blocks = [ResBlock(cur + chans.pop(), ch * mult[level], temb, groups, dropout)]
                cur = ch * mult[level]
                if res in attn:
                    blocks.append(AttnBlock(cur, groups))
                self.up.append(nn.ModuleList(blocks))
            if level != 0:
                self.up.append(nn.ModuleList([Upsample(cur)]))
                res *= 2
        self.norm_out = norm(cur, groups)
        self.conv_out = nn.Conv2d(cur, cfg["outChannels"], 3, padding=1)

    def embed(self, t):
        half = self.ch // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
        args = t.float()[:, None] * freqs[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)

    def forward(self, x, t):
        temb = swish(self.dense1(swish(self.dense0(self.embed(t)))))
        hs = [self.conv_in(x)]
        for blocks in self.down:
            h = hs[-1]
            for blk in blocks:
                h = blk(h, temb) if isinstance(blk, ResBlock) else blk(h)
            hs.append(h)
        h = hs[-1]
        h = self.mid[2](self.mid[1](self.mid[0](h, temb)), temb)
        for blocks in self.up:
            for blk in blocks:
                if isinstance(blk, ResBlock):
                    h = blk(torch.cat([h, hs.pop()], dim=1), temb)
                else:
                    h = blk(h)
        return self.conv_out(swish(self.norm_out(h)))


def main():
    if sys.argv[1] == "--params":
        # {name: config} on stdin → {name: parameter count}: what the tests compare with ours.
        configs = json.loads(sys.stdin.read())
        print(json.dumps({name: sum(p.numel() for p in UNet(c).parameters()) for name, c in configs.items()}))
        return
    cfg = json.loads(sys.argv[1])
    torch.manual_seed(0)
    batch, size = cfg["batch"], cfg["imageSize"]
    net = UNet(cfg)
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    ema = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(batch, cfg["inChannels"], size, size)
    eps = torch.randn(batch, cfg["outChannels"], size, size)
    t = torch.randint(0, 1000, (batch,))
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphas_bar = torch.cumprod(1 - betas, 0)

    def train():
        net.train()
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(net(x, t), eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            params = [p.detach() for p in net.parameters()]
            torch._foreach_mul_(ema, 0.9999)
            torch._foreach_add_(ema, params, alpha=1 - 0.9999)
        loss.item()

    def sample():
        # Algorithm 2's step with the x̂0 clip, as ours: ε → x̂0 → clip → posterior mean + σ·z.
        net.eval()
        with torch.no_grad():
            e = net(x, t)
            ab = alphas_bar[t].float()[:, None, None, None]
            x0 = ((x - torch.sqrt(1 - ab) * e) / torch.sqrt(ab)).clamp(-1, 1)
            ab_prev = alphas_bar[(t - 1).clamp(min=0)].float()[:, None, None, None]
            beta = betas[t].float()[:, None, None, None]
            mean = (torch.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (torch.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x
            out = mean + torch.sqrt(beta) * eps
            out.sum().item()

    print(json.dumps({"ready": True, "params": params, "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        torch.set_num_threads(int(command["threads"]))
        step = train if command["cmd"] == "train" else sample
        started = time.perf_counter()
        step()
        print(json.dumps({"ms": (time.perf_counter() - started) * 1000}), flush=True)


if __name__ == "__main__":
    main()
