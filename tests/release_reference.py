"""Straightforward re-statements of the authors' forward passes, written from the documented facts
(``shared/reference/*-architecture.md``) directly on the authors' key names, with one convolution per
gate. They share no code with ``sian.models``; tests compare the two on the same weights."""

import torch
import torch.nn.functional as F

from sian.scale_space import dog_pyramid


def conv(sd, key, x):
    return F.conv2d(x, sd[f"{key}.weight"], sd.get(f"{key}.bias"), padding=1)


def release_sian(sd, rainy, stages=6, head_blocks=2):
    states = [None, None, None]  # index 0: 1/4, 1: 1/2, 2: full (the release's convention)
    x = rainy
    outputs = []
    for _ in range(stages):
        z = conv(sd, "body.tran_conv", torch.cat([rainy, x], 1))
        dogs = dog_pyramid(z, octaves=3, intervals=3, sigma=1.6, mode="release")  # full, 1/2, 1/4
        hs = []
        for j, pool in enumerate((4, 2, 1)):
            f = conv(sd, f"body.scale_conv.{j}.conv_f.0", F.avg_pool2d(z, pool) if pool > 1 else z)
            m = torch.sigmoid(conv(sd, f"body.scale_conv.{j}.conv_m.0", dogs[2 - j]))
            f = F.relu(conv(sd, f"body.scale_conv.{j}.conv_z.0", f + f * m))
            h, c = states[j] if states[j] is not None else (torch.zeros_like(f), torch.zeros_like(f))

            def gate(g, f=f, h=h, j=j):
                return conv(sd, f"body.lstm.{j}.conv_x{g}", f) + conv(sd, f"body.lstm.{j}.conv_h{g}", h)

            c = torch.sigmoid(gate("f")) * c + torch.sigmoid(gate("i")) * torch.tanh(gate("j"))
            h = torch.sigmoid(gate("o")) * torch.tanh(c)
            states[j] = (h, c)
            hs.append(h)
        fused = hs[0]
        for j, finer in ((0, hs[1]), (1, hs[2])):
            up = F.interpolate(fused, scale_factor=2, mode="bilinear", align_corners=True)
            dh, dw = finer.shape[2] - up.shape[2], finer.shape[3] - up.shape[3]
            up = F.pad(up, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
            fused = F.relu(conv(sd, f"body.up_conv.{j}.conv_m.0", torch.cat([finer, up], 1)))
        y = fused
        for b in range(head_blocks):
            y = F.relu(y + F.relu(conv(sd, f"body_end.{b}.body.2", F.relu(conv(sd, f"body_end.{b}.body.0", y)))))
        x = rainy - conv(sd, f"body_end.{head_blocks}", y)
        outputs.append(x)
    return outputs


def release_prenet(sd, rainy, stages=6):
    h = c = None
    x = rainy
    outputs = []
    for _ in range(stages):
        z = F.relu(conv(sd, "conv0.0", torch.cat([rainy, x], 1)))
        if h is None:
            h = c = torch.zeros_like(z)
        u = torch.cat([z, h], 1)
        i, f = torch.sigmoid(conv(sd, "conv_i.0", u)), torch.sigmoid(conv(sd, "conv_f.0", u))
        g, o = torch.tanh(conv(sd, "conv_g.0", u)), torch.sigmoid(conv(sd, "conv_o.0", u))
        c = f * c + i * g
        h = o * torch.tanh(c)
        y = h
        for k in range(1, 6):
            y = F.relu(F.relu(conv(sd, f"res_conv{k}.2", F.relu(conv(sd, f"res_conv{k}.0", y)))) + y)
        x = conv(sd, "conv.0", y) + rainy
        outputs.append(x)
    return outputs


def random_authors_sian(seed=0, dtype=torch.float64, head_blocks=2):
    """A state_dict with the release's keys and shapes (including the dead body.conv_m), random values."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"body.tran_conv": (32, 6), "body.conv_m.0": (32, 32), "body.conv_m.2": (32, 32)}
    for j in range(3):
        shapes |= {
            f"body.scale_conv.{j}.conv_f.0": (32, 32),
            f"body.scale_conv.{j}.conv_m.0": (32, 160),
            f"body.scale_conv.{j}.conv_z.0": (32, 32),
        }
        shapes |= {f"body.lstm.{j}.conv_x{g}": (32, 32) for g in "fioj"}
    shapes |= {f"body.up_conv.{j}.conv_m.0": (32, 64) for j in range(2)}
    shapes |= {f"body_end.{b}.body.{i}": (32, 32) for b in range(head_blocks) for i in (0, 2)}
    shapes[f"body_end.{head_blocks}"] = (3, 32)
    sd = {}
    for key, (out, inp) in shapes.items():
        sd[f"{key}.weight"] = torch.randn(out, inp, 3, 3, generator=g, dtype=dtype) * 0.05
        sd[f"{key}.bias"] = torch.randn(out, generator=g, dtype=dtype) * 0.05
    for j in range(3):
        for gname in "fioj":
            sd[f"body.lstm.{j}.conv_h{gname}.weight"] = torch.randn(32, 32, 3, 3, generator=g, dtype=dtype) * 0.05
    return sd


def random_authors_prenet(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shapes = {"conv0.0": (32, 6), "conv.0": (3, 32)}
    shapes |= {f"conv_{x}.0": (32, 64) for x in "ifgo"}
    shapes |= {f"res_conv{k}.{i}": (32, 32) for k in range(1, 6) for i in (0, 2)}
    sd = {}
    for key, (out, inp) in shapes.items():
        sd[f"{key}.weight"] = torch.randn(out, inp, 3, 3, generator=g, dtype=dtype) * 0.05
        sd[f"{key}.bias"] = torch.randn(out, generator=g, dtype=dtype) * 0.05
    return sd
