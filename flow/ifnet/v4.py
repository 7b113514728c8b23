"""Practical-RIFE 4.25/4.26: a feature head and five IFBlocks with the time t as an input; any t in one pass.

A small feature head (4 channels per frame) and 5 IFBlocks (widths 192, 128, 96, 64, 32; 8 residual convs
with a learnt per-channel scale ``beta``; LeakyReLU 0.2) at 1/16 .. 1/1. Each block passes 8 feature channels
and the blend mask to the next; each replaces the mask (the 4.21+ design).
"""
from __future__ import annotations

import torch

from ..rife_weights import RifeWeights
from .layers import BlockV4, FeatureHead, blend, cat_channels, is_channels_last, resize, warp_pair
from .network import IFNet

__all__ = ["IFNetV4"]


class IFNetV4(IFNet):
    version = "v4.25"
    supports_arbitrary_t = True
    pad_base = RifeWeights.V4_25.value.pad_base
    block_scales = RifeWeights.V4_25.value.block_scales

    def __init__(self):
        super().__init__()
        # Block 0: both frames (6), their head features (8), t (1). Later blocks: warped frames (6), warped
        # features (8), t (1), mask logit (1), previous block's features (8), flow (4) = 28.
        self.block0 = BlockV4(7 + 8, c=192)
        self.block1 = BlockV4(8 + 4 + 8 + 8, c=128)
        self.block2 = BlockV4(8 + 4 + 8 + 8, c=96)
        self.block3 = BlockV4(8 + 4 + 8 + 8, c=64)
        self.block4 = BlockV4(8 + 4 + 8 + 8, c=32)
        self.encode = FeatureHead()

    def _frames_and_features(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) x2 -> (2N, 7, H, W) = [frame0 | head(frame0); frame1 | head(frame1)] in the warp dtype.

        Computed once per frame pair, however many t (the reference recomputes the head for every t)."""
        frames = torch.cat((img0, img1), 0).to(self.warp_dtype)
        feats = self.encode(frames.to(self.dtype))
        return cat_channels([frames, feats], is_channels_last(self.encode.cnn0.weight), self.warp_dtype)

    def forward(self, img0, img1, t=None, *, scale=1.0, warp_frames=True):
        n = img0.shape[0]
        return self._forward(self._frames_and_features(img0, img1), n, 0.5 if t is None else t, scale, warp_frames)

    def _forward(self, x_all, n, t, scale, warp_frames):
        """x_all: (2N, 7, H, W) from :meth:`_frames_and_features`; t: (N,) or a float."""
        cl = is_channels_last(self.encode.cnn0.weight)
        dt, wd = self.dtype, self.warp_dtype  # convs in dt; frames, flows and warps in wd (float32 for half)
        t = torch.as_tensor(t, dtype=wd, device=x_all.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(n)
        blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)
        flow = mask = feat = None
        for i, block in enumerate(blocks):
            s = self.block_scales[i] / scale
            last = i == len(blocks) - 1
            src = x_all if flow is None else warp_pair(x_all, flow)
            sd = resize(src, 1.0 / s)
            tmap = t.view(n, 1, 1, 1).expand(n, 1, *sd.shape[-2:])
            a, b = sd[:n], sd[n:]
            parts = [a[:, :3], b[:, :3], a[:, 3:], b[:, 3:], tmap]
            if flow is not None:
                parts += [resize(mask, 1.0 / s), resize(feat, 1.0 / s), resize(flow, 1.0 / s) / s]
            tmp = block(cat_channels(parts, cl, dt), out_channels=5 if last else 13)
            tmp = resize(tmp.to(wd), s)
            df = tmp[:, :4] * s
            flow = df if flow is None else flow + df
            mask = tmp[:, 4:5]  # each block replaces the mask (4.21+ design)
            feat = tmp[:, 5:] if not last else None
        warped = warp_pair(x_all[:, :3], flow) if warp_frames else None
        return flow, mask, warped

    def _chunks(self, b, ts):
        per = max(1, self.max_batch // b)
        return [ts[i:i + per] for i in range(0, len(ts), per)]

    def _run(self, p0, p1, ts, scale, warp_frames):
        b = p0.shape[0]
        x_pair = self._frames_and_features(p0, p1)  # once per frame pair, shared by every t
        out = []
        for chunk in self._chunks(b, ts):
            k = len(chunk)
            # t-major batch: item j*b + i = (t_j, pair i); frame0 items first, then frame1 items
            x_all = x_pair if k == 1 else torch.cat([x_pair[:b]] * k + [x_pair[b:]] * k, 0)
            tt = torch.tensor(chunk, dtype=p0.dtype, device=p0.device).repeat_interleave(b)
            fl, ml, warped = self._forward(x_all, k * b, tt, scale, warp_frames)
            for j in range(k):
                sl = slice(j * b, (j + 1) * b)
                nk = k * b
                w = None if warped is None else torch.cat((warped[sl], warped[nk + j * b: nk + (j + 1) * b]), 0)
                out.append((fl[sl], ml[sl], w))
        return out

    def _intermediate_padded(self, p0, p1, ts, scale):
        return [(fl, torch.sigmoid(ml)) for fl, ml, _ in self._run(p0, p1, ts, scale, warp_frames=False)]

    def _interpolate_padded(self, p0, p1, ts, scale):
        return [blend(w, ml) for _, ml, w in self._run(p0, p1, ts, scale, warp_frames=True)]
