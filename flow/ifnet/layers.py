"""The layers of the IFNet versions, and the tensor helpers their forward passes share.

Attribute names follow the published checkpoints' keys, so a RIFE state dict loads as is. Every block works
on an input already resized to the block's scale; shapes are in each docstring.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..warp import backward_warp

__all__ = [
    "BlockV3",
    "BlockV4",
    "FeatureHead",
    "blend",
    "cat_channels",
    "is_channels_last",
    "resize",
    "swap_directions",
    "warp_pair",
]


def _conv_prelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.PReLU(cout))


def _conv_lrelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class BlockV3(nn.Module):
    """RIFE HD v3 IFBlock on an input already resized to the block's scale.

    x: (N, cin, h, w), h and w multiples of 4 -> flow (N, 4, h, w) pixels at this scale, mask logit (N, 1, h, w).
    """

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv0 = nn.Sequential(_conv_prelu(cin, c // 2, 2), _conv_prelu(c // 2, c, 2))  # 1/4 resolution
        self.convblock0 = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        self.convblock1 = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        self.convblock2 = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        self.convblock3 = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        # Two heads back to the input resolution: 4 flow channels (t->0, t->1) and 1 mask logit.
        self.conv1 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, 4, 4, 2, 1))
        self.conv2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, 1, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.conv0(_to_cl(x, self.conv0[0][0].weight))
        for cb in (self.convblock0, self.convblock1, self.convblock2, self.convblock3):
            feat = cb(feat).add_(feat)  # residual pair
        return self.conv1(feat), self.conv2(feat)


class _ResConv(nn.Module):
    """``lrelu(conv(x) * beta + x)``; beta is folded into the conv weights at run time (one pass less)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.beta.view(-1)
        y = F.conv2d(x, self.conv.weight * b.view(-1, 1, 1, 1), self.conv.bias * b, 1, 1)
        return F.leaky_relu_(y.add_(x), 0.2)


class BlockV4(nn.Module):
    """Practical-RIFE 4.25 IFBlock on an input already resized to the block's scale.

    x: (N, cin, h, w), h and w multiples of 4 -> (N, 13, h, w): flow (4, pixels at this scale), mask logit (1),
    features for the next block (8).
    """

    def __init__(self, cin: int, c: int, n_res: int = 8):
        super().__init__()
        self.conv0 = nn.Sequential(_conv_lrelu(cin, c // 2, 2), _conv_lrelu(c // 2, c, 2))
        self.convblock = nn.Sequential(*[_ResConv(c) for _ in range(n_res)])
        # Transposed conv to 1/2, then pixel shuffle to 1/1 of the block's input: 13 * 4 = 52 channels.
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * 13, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, out_channels: int = 13) -> torch.Tensor:
        feat = self.convblock(self.conv0(_to_cl(x, self.conv0[0][0].weight)))
        if out_channels == 13:
            return self.lastconv(feat)
        # The last block needs only flow + mask: pixel-shuffle channel k reads conv channels 4k..4k+3.
        convt = self.lastconv[0]
        n = 4 * out_channels
        y = F.conv_transpose2d(feat, convt.weight[:, :n], convt.bias[:n], 2, 1)
        return F.pixel_shuffle(y, 2)


class FeatureHead(nn.Module):
    """Practical-RIFE 4.x feature head: (N, 3, H, W) frame -> (N, 4, H, W) features."""

    def __init__(self):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, 4, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu_(self.cnn0(_to_cl(x, self.cnn0.weight)), 0.2)
        x = F.leaky_relu_(self.cnn1(x), 0.2)
        x = F.leaky_relu_(self.cnn2(x), 0.2)
        return self.cnn3(x)


def is_channels_last(weight: torch.Tensor) -> bool:
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def _to_cl(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Give the activations the weights' memory format. Channels-last (NHWC) convs run ~1.3-1.5x faster on
    CPU (oneDNN works in NHWC without reordering every call); :func:`load_ifnet` stores weights that way."""
    return x.contiguous(memory_format=torch.channels_last) if is_channels_last(weight) else x


def cat_channels(parts: Sequence[torch.Tensor], channels_last: bool, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Concatenate on channels straight into the dtype and memory format the next conv wants (one pass)."""
    dtype = dtype or parts[0].dtype
    if not channels_last:
        return torch.cat([p.to(dtype) for p in parts], 1)
    n, _, h, w = parts[0].shape
    out = torch.empty((n, sum(p.shape[1] for p in parts), h, w), dtype=dtype, device=parts[0].device,
                      memory_format=torch.channels_last)
    c = 0
    for p in parts:
        out[:, c:c + p.shape[1]].copy_(p)
        c += p.shape[1]
    return out


def resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize by ``factor`` (half-pixel centres), as the reference blocks resize; 1 is a no-op."""
    if factor == 1.0:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False, recompute_scale_factor=False)


def swap_directions(flow4: torch.Tensor) -> torch.Tensor:
    """(N, 4, H, W) [t->0, t->1] -> [t->1, t->0]."""
    return torch.cat((flow4[:, 2:4], flow4[:, :2]), 1)


def blend(warped: torch.Tensor, mask_logit: torch.Tensor) -> torch.Tensor:
    """(2N, 3, H, W) [w0; w1], (N, 1, H, W) logits -> (N, 3, H, W) = w0 * m + w1 * (1 - m)."""
    n = mask_logit.shape[0]
    m = torch.sigmoid(mask_logit)
    w0, w1 = warped[:n], warped[n:]
    return w1 + (w0 - w1) * m


def warp_pair(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """x: (2N, C, H, W) = [from frame0; from frame1], flow (N, 4, H, W) -> both warped in one grid_sample."""
    return backward_warp(x, torch.cat((flow[:, :2], flow[:, 2:4]), 0))
