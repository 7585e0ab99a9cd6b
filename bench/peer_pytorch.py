#!/usr/bin/env python3
"""The peer benchmark's PyTorch side (issue #10, docs/BENCHMARKS.md): the
model of configs/small.yaml (d 256, 8 transformer blocks, T 128, byte
vocabulary, SwiGLU, RoPE, RMSNorm), trained with AdamW on 32 random
sequences per step on N threads, in the standard residual or Block AttnRes
(DESIGN §1.1: 8 blocks of 2 sublayers, zero-initialised pseudo-queries,
key-side RMSNorm). Prints one line: `<mode> <tokens/s>` (median over the
timed steps). With precision bf16 the forward runs under
torch.autocast('cpu', dtype=torch.bfloat16) (fp32 weights and optimizer),
PyTorch's own mixed precision. PyTorch is a benchmark dependency only
(Debian's python3-torch).

usage: peer_pytorch.py standard|block [threads] [steps] [fp32|bf16]
"""
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

D, LAYERS, HEADS, FF, T, VOCAB, BATCH, BLOCKS, EPS = 256, 8, 4, 512, 128, 256, 32, 8, 1e-6


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.g = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.g * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)


def rope(x, cos, sin):  # rotate-half on [B, H, T, hd]
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = RMSNorm(D)
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.o = nn.Linear(D, D, bias=False)
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).triu(1))

    def forward(self, h, cos, sin):
        B = h.shape[0]
        q, k, v = self.qkv(self.norm(h)).view(B, T, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # PyTorch 1.13 has no fused attention
        scores = scores.masked_fill(self.mask, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        return self.o(y.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = RMSNorm(D)
        self.gate = nn.Linear(D, FF, bias=False)
        self.up = nn.Linear(D, FF, bias=False)
        self.down = nn.Linear(FF, D, bias=False)

    def forward(self, h, cos, sin):
        x = self.norm(h)
        return self.down(F.silu(self.gate(x)) * self.up(x))


class DepthAttention(nn.Module):
    """One AttnRes site: softmax over sources of w · RMSNorm(v_s), weights on the raw sources."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(D))
        self.g = nn.Parameter(torch.ones(D))

    def forward(self, sources):
        v = torch.stack(sources)  # [K, B, T, D]
        k = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + EPS)
        alpha = torch.softmax((k * (self.w * self.g)).sum(-1), dim=0)
        return (alpha.unsqueeze(-1) * v).sum(0)


class Model(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block
        self.embed = nn.Embedding(VOCAB, D)
        self.sub = nn.ModuleList([Attention() if j % 2 == 0 else SwiGLU() for j in range(2 * LAYERS)])
        self.res = nn.ModuleList([DepthAttention() for _ in range(2 * LAYERS + 1)]) if block else None
        self.final_norm = RMSNorm(D)
        self.head = nn.Linear(D, VOCAB, bias=False)
        hd = D // HEADS
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(T).float(), inv)
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())

    def forward(self, tokens):
        x = self.embed(tokens)
        if not self.block:
            for f in self.sub:
                x = x + f(x, self.cos, self.sin)
            return self.head(self.final_norm(x))
        S = (2 * LAYERS) // BLOCKS
        sources, p = [x], None
        for j, f in enumerate(self.sub):
            if j > 0 and j % S == 0:
                sources.append(p)
                p = None
            h = self.res[j](sources + ([p] if p is not None else []))
            y = f(h, self.cos, self.sin)
            p = y if p is None else p + y
        sources.append(p)
        return self.head(self.final_norm(self.res[-1](sources)))


def main():
    mode = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    if mode not in ("standard", "block"):
        sys.exit("peer_pytorch.py: mode must be standard or block, got " + mode)
    if precision not in ("fp32", "bf16"):
        sys.exit("peer_pytorch.py: precision must be fp32 or bf16, got " + precision)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Model(mode == "block")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    times = []
    for step in range(steps):
        tokens = torch.randint(0, VOCAB, (BATCH, T + 1))
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step > 0:  # the first step warms up
            times.append(time.perf_counter() - t0)
    print(f"{mode} {BATCH * T / statistics.median(times):.0f}")


if __name__ == "__main__":
    main()
