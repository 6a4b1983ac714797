"""The unseen-architecture set: twelve architectures the compiler was not written against,
defined here in torch with seeded weights and exported to ONNX like a user's model would
be (`torch.onnx.export`, opset 17), for `benchmarks.run --models unseen`.

Each is small enough to time in seconds at batch 1 on 2 threads, and each stresses
something the zoo does not: 1-D and 3-D convolutions, transposed convolutions and skip
concatenations, squeeze-excitation, hard-swish, large depthwise kernels with LayerNorm,
patch embeddings and attention written out as matmuls, windowed attention (reshape and
permute heavy), a causal decoder, recurrent layers (ONNX LSTM), embedding lookups with
pairwise interactions, and overlapping transposed convolutions (a DCGAN generator).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 0


def _torch():
    import torch
    from torch import nn
    return torch, nn


def audio1d():
    torch, nn = _torch()

    def block(cin, cout, k, stride):
        return nn.Sequential(nn.Conv1d(cin, cout, k, stride, k // 2), nn.BatchNorm1d(cout), nn.ReLU(),
                             nn.MaxPool1d(2))
    model = nn.Sequential(block(1, 32, 80, 4), block(32, 64, 3, 1), block(64, 128, 3, 1), block(128, 256, 3, 1),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(256, 35))
    return model, (torch.randn(1, 1, 16000),)


def unet():
    torch, nn = _torch()

    def double(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.d1, self.d2, self.d3, self.mid = double(3, 32), double(32, 64), double(64, 128), double(128, 256)
            self.pool = nn.MaxPool2d(2)
            self.u3, self.c3 = nn.ConvTranspose2d(256, 128, 2, 2), double(256, 128)
            self.u2, self.c2 = nn.ConvTranspose2d(128, 64, 2, 2), double(128, 64)
            self.u1, self.c1 = nn.ConvTranspose2d(64, 32, 2, 2), double(64, 32)
            self.head = nn.Conv2d(32, 2, 1)

        def forward(self, x):
            a = self.d1(x)
            b = self.d2(self.pool(a))
            c = self.d3(self.pool(b))
            m = self.mid(self.pool(c))
            c = self.c3(torch.cat([self.u3(m), c], 1))
            b = self.c2(torch.cat([self.u2(c), b], 1))
            a = self.c1(torch.cat([self.u1(b), a], 1))
            return self.head(a)
    return UNet(), (torch.randn(1, 3, 128, 128),)


def _se(nn, channels, squeeze, gate):
    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, squeeze, 1), nn.ReLU(),
                                   nn.Conv2d(squeeze, channels, 1), gate())

        def forward(self, x):
            return x * self.f(x)
    return SE()


def mobilenetv3():
    torch, nn = _torch()

    class Block(nn.Module):
        def __init__(self, cin, exp, cout, k, stride, se, act):
            super().__init__()
            layers = [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), act(),
                      nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), act()]
            if se:
                layers.append(_se(nn, exp, max(8, exp // 4), nn.Hardsigmoid))
            layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.f, self.res = nn.Sequential(*layers), stride == 1 and cin == cout

        def forward(self, x):
            return x + self.f(x) if self.res else self.f(x)
    cfg = [(16, 16, 16, 3, 2, True, nn.ReLU), (16, 72, 24, 3, 2, False, nn.ReLU), (24, 88, 24, 3, 1, False, nn.ReLU),
           (24, 96, 40, 5, 2, True, nn.Hardswish), (40, 240, 40, 5, 1, True, nn.Hardswish),
           (40, 120, 48, 5, 1, True, nn.Hardswish), (48, 288, 96, 5, 2, True, nn.Hardswish),
           (96, 576, 96, 5, 1, True, nn.Hardswish)]
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
                          *[Block(*c) for c in cfg], nn.Conv2d(96, 576, 1), nn.Hardswish(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(576, 1024), nn.Hardswish(),
                          nn.Linear(1024, 1000))
    return model, (torch.randn(1, 3, 224, 224),)


def efficientnet():
    torch, nn = _torch()

    class MBConv(nn.Module):
        def __init__(self, cin, cout, expand, k, stride):
            super().__init__()
            exp = cin * expand
            layers = ([nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), nn.SiLU()] if expand > 1 else [])
            layers += [nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), nn.SiLU(),
                       _se(nn, exp, max(1, cin // 4), nn.Sigmoid),
                       nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.f, self.res = nn.Sequential(*layers), stride == 1 and cin == cout

        def forward(self, x):
            return x + self.f(x) if self.res else self.f(x)
    cfg = [(32, 16, 1, 3, 1), (16, 24, 6, 3, 2), (24, 24, 6, 3, 1), (24, 40, 6, 5, 2), (40, 40, 6, 5, 1),
           (40, 80, 6, 3, 2), (80, 80, 6, 3, 1), (80, 112, 6, 5, 1), (112, 192, 6, 5, 2), (192, 320, 6, 3, 1)]
    model = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU(),
                          *[MBConv(*c) for c in cfg], nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280),
                          nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000))
    return model, (torch.randn(1, 3, 224, 224),)


def convnext():
    torch, nn = _torch()

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x):
            y = self.dw(x).permute(0, 2, 3, 1)
            return x + self.mlp(self.norm(y)).permute(0, 3, 1, 2)

    class Down(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.norm, self.conv = nn.LayerNorm(cin), nn.Conv2d(cin, cout, 2, 2)

        def forward(self, x):
            return self.conv(self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    dims = (48, 96, 192, 384)
    layers = [nn.Conv2d(3, dims[0], 4, 4), Block(dims[0]), Block(dims[0])]
    for a, b in zip(dims, dims[1:]):
        layers += [Down(a, b), Block(b), Block(b)]
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(dims[-1]),
                          nn.Linear(dims[-1], 1000))
    return model, (torch.randn(1, 3, 224, 224),)


class _Attention:
    """Multi-head self-attention written as matmuls (what most exports look like)."""

    @staticmethod
    def make(nn, dim, heads, causal=False):
        import torch

        class Attn(nn.Module):
            def __init__(self):
                super().__init__()
                self.qkv, self.out, self.heads = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), heads

            def forward(self, x):
                b, n, d = x.shape
                q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
                s = q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5
                if causal:
                    s = s + torch.triu(torch.full((n, n), float("-inf")), 1)
                y = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
                return self.out(y)
        return Attn()


def _encoder_layer(nn, dim, heads, causal=False):
    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.attn = _Attention.make(nn, dim, heads, causal)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x):
            x = x + self.attn(self.n1(x))
            return x + self.mlp(self.n2(x))
    return Layer()


def vit():
    torch, nn = _torch()

    class ViT(nn.Module):
        def __init__(self, dim=192, depth=6, heads=3):
            super().__init__()
            self.patch = nn.Conv2d(3, dim, 16, 16)
            self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.pos = nn.Parameter(torch.randn(1, 197, dim) * 0.02)
            self.layers = nn.Sequential(*[_encoder_layer(nn, dim, heads) for _ in range(depth)])
            self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 1000)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
            return self.head(self.norm(self.layers(x))[:, 0])
    return ViT(), (torch.randn(1, 3, 224, 224),)


def window_attention():
    torch, nn = _torch()

    class Swin(nn.Module):
        """Attention inside 7x7 windows of a 56x56 map (Swin's first stage, no shift)."""

        def __init__(self, dim=96, heads=3, window=7):
            super().__init__()
            self.embed, self.window = nn.Conv2d(3, dim, 4, 4), window
            self.layers = nn.ModuleList([_encoder_layer(nn, dim, heads) for _ in range(2)])
            self.head = nn.Linear(dim, 1000)

        def forward(self, x):
            x = self.embed(x).permute(0, 2, 3, 1)  # (1, 56, 56, C)
            b, h, w, c = x.shape
            s = self.window
            for layer in self.layers:
                win = x.reshape(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)
                win = layer(win)
                x = win.reshape(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
            return self.head(x.mean((1, 2)))
    return Swin(), (torch.randn(1, 3, 224, 224),)


def gpt_decoder():
    torch, nn = _torch()

    class GPT(nn.Module):
        def __init__(self, vocab=8000, dim=256, depth=4, heads=4, seq=64):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, dim), nn.Parameter(torch.randn(1, seq, dim) * 0.02)
            self.layers = nn.Sequential(*[_encoder_layer(nn, dim, heads, causal=True) for _ in range(depth)])
            self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)

        def forward(self, ids):
            return self.head(self.norm(self.layers(self.tok(ids) + self.pos)))
    return GPT(), (torch.randint(0, 8000, (1, 64)),)


def lstm():
    torch, nn = _torch()

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5000, 128)
            self.rnn = nn.LSTM(128, 256, num_layers=2, batch_first=True)
            self.out = nn.Linear(256, 20)

        def forward(self, ids):
            y, _ = self.rnn(self.emb(ids))
            return self.out(y)
    return Tagger(), (torch.randint(0, 5000, (1, 50)),)


def dlrm():
    torch, nn = _torch()

    class DLRM(nn.Module):
        def __init__(self, tables=8, rows=10000, dim=64):
            super().__init__()
            self.bottom = nn.Sequential(nn.Linear(13, 256), nn.ReLU(), nn.Linear(256, dim), nn.ReLU())
            self.emb = nn.ModuleList([nn.Embedding(rows, dim) for _ in range(tables)])
            pairs = (tables + 1) * tables // 2
            self.top = nn.Sequential(nn.Linear(dim + pairs, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                     nn.Linear(256, 1), nn.Sigmoid())
            self.iu = torch.triu_indices(tables + 1, tables + 1, 1)

        def forward(self, dense, sparse):
            x = self.bottom(dense)
            feats = torch.stack([x] + [e(sparse[:, i]) for i, e in enumerate(self.emb)], 1)
            inter = feats @ feats.transpose(1, 2)
            pairs = inter[:, self.iu[0], self.iu[1]]
            return self.top(torch.cat([x, pairs], 1))
    return DLRM(), (torch.randn(16, 13), torch.randint(0, 10000, (16, 8)))


def video3d():
    torch, nn = _torch()

    def block(cin, cout, stride):
        return nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm3d(cout), nn.ReLU())
    model = nn.Sequential(block(3, 32, (1, 2, 2)), block(32, 64, 2), block(64, 128, 2), block(128, 256, 2),
                          nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(256, 400))
    return model, (torch.randn(1, 3, 8, 112, 112),)


def dcgan():
    torch, nn = _torch()

    def up(cin, cout, stride, pad):
        return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
    model = nn.Sequential(up(100, 512, 1, 0), up(512, 256, 2, 1), up(256, 128, 2, 1), up(128, 64, 2, 1),
                          nn.ConvTranspose2d(64, 3, 4, 2, 1), nn.Tanh())
    return model, (torch.randn(1, 100, 1, 1),)


ARCHITECTURES = {f.__name__: f for f in (audio1d, unet, mobilenetv3, efficientnet, convnext, vit, window_attention,
                                          gpt_decoder, lstm, dlrm, video3d, dcgan)}


def export(name: str, path: Path) -> dict[str, np.ndarray]:
    """Write architecture `name` (seeded weights, eval mode) to `path` as ONNX; return its
    seeded inputs by graph-input name."""
    import warnings

    import torch

    torch.manual_seed(SEED)
    model, args = ARCHITECTURES[name]()
    model.eval()
    names = [f"input{i}" for i in range(len(args))]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, input_names=names,
                              output_names=["output"], do_constant_folding=True)
    return {n: a.numpy() for n, a in zip(names, args)}
