#!/usr/bin/env python3
"""Can a model of the organism's shape learn in-context key->value lookup?

A PyTorch probe beside `cast organism train` (docs/organism.md, "Why no
key->value lookup"): a Llama-style model (hidden 128, 8 heads of 16, SwiGLU 384,
RoPE, tied embeddings, init N(0, INIT)) trained with AdamW (betas 0.9/0.95, wd
0.01, 300 warm-up steps, cosine, clip 1) on token-level tasks, loss on the
answer positions only, accuracy on 500 fresh examples every 250 steps.

  /usr/bin/python3 bench/organism_lookup_probe.py STEPS LR MODE [LAYERS [INIT [BATCH]]]

MODE (40 key tokens, 12 value tokens, lists of 2-4 pairs unless said):
  single     "Note that k1 is v1, k2 is v2. What is k2?" -> v2 (the world's lookup)
  multi      all keys asked at once, values answered in the asked order
  echo       the answer repeats each key: "k2 is v2, k1 is v1"
  echo1      as echo without "is": pairs "k v", answer "k2 v2, k1 v1"
  echo1many  echo1 with 8-10 pairs
  vfirst     value before key: "the v1 k1, the v2 k2"
  qfirst     the question before the list
  repeat     control: 12 random tokens, a gap of 1-9, the same tokens again
             (an induction head predicts the second copy)
"""
import math
import random
import sys
import time

import torch

torch.manual_seed(0); random.seed(0)
torch.set_num_threads(1)
MODE = sys.argv[3] if len(sys.argv) > 3 else 'single'
NK, NV = 40, 12
# vocab: 0 pad,1 bos,2 IS,3 COMMA,4 Q,5 QM,6 ANS, keys 10.., vals 60..
V = 80
def example():
    if MODE == 'repeat':
        n = 12; toks = [random.randrange(10, 80) for _ in range(n)]
        g = random.randrange(0, 9); t = [1] + toks + [4] * (1 + g) + toks
        return t[:-1], [(n + 1 + g + i, toks[i]) for i in range(1, n)]
    n = random.choice([8,9,10]) if MODE == 'echo1many' else random.choice([2,3,3,4]); ks = random.sample(range(NK), n); vs = random.sample(range(NV), n); q = random.randrange(n)
    t = [1, 7, 8]  # "Note that"
    if MODE == 'qfirst':
        q = random.randrange(n); t = [1, 4, 2, 10+ks[q], 5]
        for i,(k,v) in enumerate(zip(ks,vs)):
            if i: t.append(3)
            t += [10+k, 2, 60+v]
        t += [9, 11, 12, 13, 14, 6]
        return t, [(len(t)-1, 60+vs[q])]
    for i,(k,v) in enumerate(zip(ks,vs)):
        if i: t.append(3)
        t += [15, 60+v, 10+k] if MODE == 'vfirst' else [10+k, 60+v] if MODE.startswith('echo1') else [10+k, 2, 60+v]
    if MODE.startswith('echo1'):
        order = list(range(n)); random.shuffle(order); ys = []
        t += [9, 4, 2, 16, 5, 11, 12, 13, 14, 6]
        for j in order:
            t += [10+ks[j]]; ys.append((len(t)-1, 60+vs[j])); t += [60+vs[j], 3]
        return t, ys
    if MODE == 'echo':
        order = list(range(n)); random.shuffle(order); ys = []
        t += [9, 4, 2, 16, 5, 11, 12, 13, 14, 6]
        for j in order:
            t += [10+ks[j], 2]; ys.append((len(t)-1, 60+vs[j])); t += [60+vs[j], 3]
        return t, ys
    if MODE == 'multi':
        order = list(range(n)); random.shuffle(order); ys = []
        t += [9, 4, 2]
        for j in order: t += [10+ks[j], 3]
        t += [5, 11, 12, 13, 14, 6]
        for j in order: ys.append((len(t)-1, 60+vs[j])); t += [60+vs[j], 3]
        return t, ys
    t += [9, 4, 2, 10+ks[q], 5, 11, 12, 13, 14, 6]  # ". What is k ? <im_end> \n <im_start> assistant \n"
    return t, [(len(t)-1, 60+vs[q])]
D, H, HD, FF = 128, 8, 16, 384
L = int(sys.argv[4]) if len(sys.argv) > 4 else 4
INIT = float(sys.argv[5]) if len(sys.argv) > 5 else 0.02
BATCH = int(sys.argv[6]) if len(sys.argv) > 6 else 32
class Block(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.g1 = torch.nn.Parameter(torch.ones(D)); s.g2 = torch.nn.Parameter(torch.ones(D))
        s.qkv = torch.nn.Linear(D, 3*D, bias=False); s.o = torch.nn.Linear(D, D, bias=False)
        s.w1 = torch.nn.Linear(D, FF, bias=False); s.w3 = torch.nn.Linear(D, FF, bias=False); s.w2 = torch.nn.Linear(FF, D, bias=False)
def rms(x, g): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * g
def rope(x, T):
    inv = 1.0 / (10000 ** (torch.arange(0, HD, 2).float() / HD)); f = torch.outer(torch.arange(T).float(), inv)
    c, s = f.cos(), f.sin(); x1, x2 = x[..., :HD//2], x[..., HD//2:]
    return torch.cat([x1*c - x2*s, x2*c + x1*s], -1)
class M(torch.nn.Module):
    def __init__(s):
        super().__init__(); s.emb = torch.nn.Embedding(V, D); s.blocks = torch.nn.ModuleList([Block() for _ in range(L)]); s.gf = torch.nn.Parameter(torch.ones(D))
        for p in s.parameters():
            if p.dim() > 1: torch.nn.init.normal_(p, std=INIT)
    def forward(s, x):
        B, T = x.shape; h = s.emb(x); mask = torch.full((T,T), float('-inf')).triu(1)
        for b in s.blocks:
            a = rms(h, b.g1); q,k,v = b.qkv(a).view(B,T,3,H,HD).permute(2,0,3,1,4)
            q, k = rope(q,T), rope(k,T); att = (q @ k.transpose(-1,-2)) / math.sqrt(HD) + mask
            h = h + b.o((att.softmax(-1) @ v).transpose(1,2).reshape(B,T,D))
            a = rms(h, b.g2); h = h + b.w2(torch.nn.functional.silu(b.w1(a)) * b.w3(a))
        return rms(h, s.gf) @ s.emb.weight.T
m = M(); steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3000; lr = float(sys.argv[2]) if len(sys.argv) > 2 else 3e-3
opt = torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9,0.95), weight_decay=0.01)
def batch(n):
    ex = [example() for _ in range(n)]; T = max(len(t) for t,_ in ex)
    x = torch.zeros(n, T, dtype=torch.long); bi, pi, y = [], [], []
    for i,(t,ys) in enumerate(ex):
        x[i,:len(t)] = torch.tensor(t)
        for p, a in ys: bi.append(i); pi.append(p); y.append(a)
    return x, torch.tensor(y), (torch.tensor(bi), torch.tensor(pi))
t0 = time.time()
for step in range(1, steps+1):
    cur = lr * min(1, step/300) * 0.5 * (1 + math.cos(math.pi * step / steps))
    for g in opt.param_groups: g['lr'] = cur
    x, y, last = batch(BATCH); lg = m(x)[last[0], last[1]]; loss = torch.nn.functional.cross_entropy(lg, y)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    if step % 250 == 0:
        with torch.no_grad():
            x, y, last = batch(500); acc = (m(x)[last[0], last[1]].argmax(-1) == y).float().mean().item()
        print(step, round(loss.item(), 3), 'acc', round(acc, 3), '%.0fs' % (time.time()-t0), flush=True)
