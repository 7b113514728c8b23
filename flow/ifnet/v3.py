"""RIFE HD v3.6: three IFBlocks, each run on both frame orders; t = 0.5 per pass, other t by bisection.

3 IFBlocks (width 90, PReLU, 4 residual pairs) at 1/4, 1/2, 1/1 of the input. Each block runs twice, on
(frame0, frame1) and on the swapped pair, and the two estimates are averaged (the symmetric trick of the HD
models). There is no time input: the network interpolates t = 0.5, and other t are reached by recursive
bisection over synthesised frames (the ECCV2022-RIFE ``inference_img.py --ratio`` rule), with the node flows
composed back to the end frames for :meth:`~flow.ifnet.IFNet.intermediate`.
"""
from __future__ import annotations

import torch

from ..rife_weights import RifeWeights
from ..warp import backward_warp, compose_flows
from .layers import BlockV3, blend, cat_channels, is_channels_last, resize, swap_directions, warp_pair
from .network import IFNet

__all__ = ["IFNetV3"]


class IFNetV3(IFNet):
    version = "v3.6"
    supports_arbitrary_t = False
    supports_spread = True
    pad_base = RifeWeights.V3_6.value.pad_base
    block_scales = RifeWeights.V3_6.value.block_scales

    def __init__(self):
        super().__init__()
        # Input per block: frame0 and frame1 warped to t (6), mask logit (1), flow (4) = 11 channels.
        self.block0 = BlockV3(7 + 4, c=90)
        self.block1 = BlockV3(7 + 4, c=90)
        self.block2 = BlockV3(7 + 4, c=90)

    def forward(self, img0, img1, t=None, *, scale=1.0, warp_frames=True, spread=False):
        """See :meth:`IFNet.forward`. With ``spread=True`` a fourth output: (N, 1, H, W) pixels, how far the
        finest block's estimates from the two frame orders lie apart (half their difference, the length over
        the 4 flow channels): where it is large the network is unsure of the motion."""
        cl = is_channels_last(self.block0.conv0[0][0].weight)
        dt, wd = self.dtype, self.warp_dtype  # convs in dt; frames, flows and warps in wd (float32 for half)
        img0, img1 = img0.to(wd), img1.to(wd)
        if t is not None and bool((torch.as_tensor(t) != 0.5).any()):
            raise ValueError("v3.6 interpolates t = 0.5 only; use interpolate()/intermediate() for other t")
        n, _, hh, ww = img0.shape
        frames = torch.cat((img0, img1), 0)  # (2N, 3, H, W): both directions share every conv call
        warped = frames
        flow = mask = None
        for i, block in enumerate((self.block0, self.block1, self.block2)):
            s = self.block_scales[i] / scale
            low = resize(warped, 1.0 / s)  # (2N, 3, h, w)
            w0d, w1d = low[:n], low[n:]
            if flow is None:  # first block: zero flow and mask, made directly at the block's size
                z = low.new_zeros(n, 1, *low.shape[-2:])
                md, fd = z, z.expand(n, 4, -1, -1)
            else:
                md = resize(mask, 1.0 / s)
                fd = resize(flow, 1.0 / s) / s
            # Direction A sees (frame0, frame1, mask); direction B the swapped pair, -mask and swapped flow.
            x = torch.cat((cat_channels((w0d, w1d, md, fd), cl, dt), cat_channels((w1d, w0d, -md, swap_directions(fd)), cl, dt)), 0)
            f, m = block(x)
            f, m = f.to(wd), m.to(wd)
            # Average A with B mapped back (resizing is linear, so averaging before upsampling is the same).
            df = resize((f[:n] + swap_directions(f[n:])) * 0.5, s) * s
            dm = resize((m[:n] - m[n:]) * 0.5, s)
            if spread and i == 2:
                sp = resize(((f[:n] - swap_directions(f[n:])) * 0.5).norm(dim=1, keepdim=True), s) * s
            flow = df if flow is None else flow + df
            mask = dm if mask is None else mask + dm
            if i < 2 or warp_frames:
                warped = warp_pair(frames, flow)
        out = flow, mask, (warped if warp_frames else None)
        return (*out, sp) if spread else out

    # v3.6 is a t = 0.5 model: other t come from recursive bisection over synthesised frames.
    def _bisection_plan(self, ts, tol=0.01, max_depth=8):
        """For each t, the path of dyadic nodes (lo, hi) visited (ECCV2022-RIFE inference_img.py --ratio rule)."""
        plans = []
        for t in ts:
            lo, hi, path = 0.0, 1.0, []
            if t <= tol:
                plans.append(("frame0", path))
                continue
            if t >= 1.0 - tol:
                plans.append(("frame1", path))
                continue
            for _ in range(max_depth):
                mid = (lo + hi) / 2
                path.append((lo, hi))
                if abs(t - mid) <= tol:
                    break
                lo, hi = (mid, hi) if t > mid else (lo, mid)
            plans.append(("node", path))
        return plans

    def _run_nodes(self, p0, p1, ts, scale, want_flows, spread=False):
        """Evaluate every bisection node the ts need, level by level, batching the nodes of a level."""
        plans = self._bisection_plan(ts)
        frames = {0.0: p0, 1.0: p1}
        flows = {}  # node time -> (flow (B,4,H,W) to its own lo/hi, mask logit, lo, hi)
        needed = sorted({node for _, path in plans for node in path}, key=lambda lh: lh[1] - lh[0], reverse=True)
        levels: dict[float, list] = {}
        for lo, hi in needed:
            levels.setdefault(hi - lo, []).append((lo, hi))
        b = p0.shape[0]
        for width in sorted(levels, reverse=True):
            nodes = levels[width]
            for i in range(0, len(nodes), max(1, self.max_batch // b)):
                chunk = nodes[i:i + max(1, self.max_batch // b)]
                a = torch.cat([frames[lo] for lo, _ in chunk], 0)
                c = torch.cat([frames[hi] for _, hi in chunk], 0)
                if spread and (0.0, 1.0) in chunk:
                    fl, ml, warped, sp = self(a, c, scale=scale, spread=True)
                    k = chunk.index((0.0, 1.0))
                    flows["spread"] = sp[k * b:(k + 1) * b]
                else:
                    fl, ml, warped = self(a, c, scale=scale)
                out = blend(warped, ml)
                for k, (lo, hi) in enumerate(chunk):
                    sl = slice(k * b, (k + 1) * b)
                    mid = (lo + hi) / 2
                    frames[mid] = out[sl]
                    if want_flows:
                        flows[mid] = (fl[sl], ml[sl], lo, hi)
        return plans, frames, flows

    def _interpolate_padded(self, p0, p1, ts, scale):
        plans, frames, _ = self._run_nodes(p0, p1, ts, scale, want_flows=False)
        res = []
        for kind, path in plans:
            if kind == "frame0":
                res.append(p0.clone())
            elif kind == "frame1":
                res.append(p1.clone())
            else:
                lo, hi = path[-1]
                res.append(frames[(lo + hi) / 2])
        return res

    def _intermediate_padded(self, p0, p1, ts, scale, spread=False):
        # spread: that of the first node (t = 0.5 between the two frames), which every t passes through
        plans, _, flows = self._run_nodes(p0, p1, ts, scale, want_flows=True, spread=spread)
        sp = flows.pop("spread", None)
        # Compose node flows back to the end frames: F_{m->0} = F_{m->lo} then F_{lo->0} (and the same towards 1);
        # frame0's weight at m mixes the local mask with the weights of the two frames it blends.
        total: dict[float, tuple] = {}

        def to_ends(mid):
            if mid in total:
                return total[mid]
            fl, ml, lo, hi = flows[mid]
            f_lo, f_hi = fl[:, :2], fl[:, 2:4]
            m = torch.sigmoid(ml)
            if lo == 0.0:
                f0, w_lo = f_lo, torch.ones_like(m)
            else:
                lo_f0, _, lo_w = to_ends(lo)
                f0 = compose_flows(f_lo, lo_f0)
                w_lo = backward_warp(lo_w, f_lo)
            if hi == 1.0:
                f1, w_hi = f_hi, torch.zeros_like(m)
            else:
                _, hi_f1, hi_w = to_ends(hi)
                f1 = compose_flows(f_hi, hi_f1)
                w_hi = backward_warp(hi_w, f_hi)
            total[mid] = (f0, f1, m * w_lo + (1 - m) * w_hi)
            return total[mid]

        res = []
        b, _, hh, ww = p0.shape
        for kind, path in plans:
            if kind != "node":  # t within 0.01 of an end: that frame itself (zero flow to it)
                z = p0.new_zeros(b, 4, hh, ww)
                res.append((z, p0.new_full((b, 1, hh, ww), 1.0 if kind == "frame0" else 0.0)))
            else:
                lo, hi = path[-1]
                f0, f1, w0 = to_ends((lo + hi) / 2)
                res.append((torch.cat((f0, f1), 1), w0))
        if spread:  # t within 0.01 of an end runs no node: nothing to be unsure about
            sp = p0.new_zeros(b, 1, hh, ww) if sp is None else sp
            res = [(fl, m, sp) for fl, m in res]
        return res
