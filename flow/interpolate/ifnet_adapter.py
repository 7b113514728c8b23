"""The RIFE-compatible network as an interpolator: :class:`IFNetInterpolator` over :mod:`flow.ifnet`."""
from __future__ import annotations

import contextlib
import copy
from typing import Literal

import torch

from ..ifnet import SCALES, load_ifnet
from ..warp import forward_splat
from .base import Intermediate, Interpolator

__all__ = ["AUTO_SCALE_PIXELS", "IFNetInterpolator", "auto_scale"]

# scale="auto": the network works on at most about this many pixels (a little over 1080p), as RIFE's drivers
# recommend scale 0.5 for 4K: coarser blocks keep large motion inside their reach, and memory bounded.
AUTO_SCALE_PIXELS = 2_500_000
# Items (frame pair, t) per network batch: as many as keep items x pixels under this (8 at most): 8 at 720p,
# 4 at 1080p, 1 at 4K, so that the memory of a call with many t stays near that of one (flow.interpolate.memory).
BATCH_PIXELS = 8_300_000


def auto_scale(h: int, w: int) -> float:
    """The largest network scale of 1, 0.5, 0.25 at which ``h x w`` frames work on at most
    :data:`AUTO_SCALE_PIXELS` pixels (0.25 for anything larger).

    >>> [auto_scale(h, w) for h, w in ((480, 640), (1080, 1920), (1440, 2560), (2160, 3840), (4320, 7680))]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    for s in (1.0, 0.5):
        if h * w * s * s <= AUTO_SCALE_PIXELS:
            return s
    return 0.25


class IFNetInterpolator(Interpolator):
    """Adapter over the RIFE-compatible :class:`flow.ifnet.IFNet`.

    Args:
        net: a loaded network; when None, ``load_ifnet(weights, device=device, dtype=dtype)``.
        weights: ``"auto"``, ``"v3.6"``, ``"v4.25"`` or a checkpoint path (see :func:`flow.ifnet.load_ifnet`).
        device, dtype: where and in what precision the network runs.
        scale: the network's processing scale (RIFE's ``--scale``: one of 0.25, 0.5, 1, 2, 4), or ``"auto"``
            (default): :func:`auto_scale` of each input's size (1 up to 2.5 MP, 0.5 for 1440p and 4K).
        times: how a t = 0.5 model (v3.6) reaches other times:

            * ``"network"``: the network's own recursive bisection over synthesised frames (the reference
              ``--ratio`` rule: up to 8 passes per t for t = 1/3);
            * ``"midpoint"``: one pass at t = 0.5, then every point of the middle frame is moved along its
              own straight path to time t by splatting (:func:`flow.warp.forward_splat`), carrying its flows
              to both frames and its mask (holes take the flows scaled by ``2t``, ``2(1-t)``);
            * ``"auto"`` (default): ``network`` for times within 0.01 of a quarter (at most two bisection
              levels: 3 passes for 1/4, 1/2, 3/4 together), ``midpoint`` for the rest.

            Measured on hold-out quadruplets (frames i, i+3 -> i+1, i+2; Sintel 0016..0025 and vtest.avi, 12
            frames): bisection 25.89 / 30.91 dB at 13x the time of midpoint 25.57 / 30.63 dB. v4.25 takes
            any t natively and ignores this option.

    :meth:`interpolate` of network times returns exactly the network's own frames (``IFNet.interpolate``);
    :meth:`intermediate` returns its flows and masks.
    """

    name = "ifnet"

    def __init__(
        self,
        net=None,
        *,
        weights="auto",
        device="cpu",
        dtype: torch.dtype = torch.float32,
        scale: float | Literal["auto"] = "auto",
        times: Literal["auto", "network", "midpoint"] = "auto",
    ):
        if scale != "auto" and (isinstance(scale, str) or float(scale) not in SCALES):
            raise ValueError(f"scale: expected 'auto' or one of {SCALES} (0.5 for 4K input), got {scale!r}")
        if times not in ("auto", "network", "midpoint"):
            raise ValueError(f"times: expected 'auto', 'network' or 'midpoint', got {times!r}")
        self.net = net if net is not None else load_ifnet(weights, device=device, dtype=dtype)
        self.scale = scale if scale == "auto" else float(scale)
        self.times = times
        self.max_items = self.net.max_batch  # the network's own bound on items per batch

    @property
    def version(self) -> str:
        return self.net.version

    @property
    def description(self) -> str:
        src = self.net.source if self.net.source is not None else "random init"
        extra = f", times={self.times}" if not self.net.supports_arbitrary_t else ""
        scale = "auto" if self.scale == "auto" else f"{self.scale:g}"
        return f"IFNet {self.net.version} ({src}), scale={scale}{extra}"

    def scale_for(self, h: int, w: int) -> float:
        """The network scale used for ``h x w`` frames."""
        return auto_scale(h, w) if self.scale == "auto" else self.scale

    def batch_items(self, h: int, w: int) -> int:
        """Items per network batch for ``h x w`` frames (:data:`BATCH_PIXELS`, at most the network's own)."""
        return max(1, min(self.max_items, BATCH_PIXELS // max(1, h * w)))

    @contextlib.contextmanager
    def _batches(self, f0):
        """The network's batch bound for this call's frame size, put back afterwards."""
        before = self.net.max_batch
        self.net.max_batch = self.batch_items(*f0.shape[-2:]) * f0.shape[0]  # the same in nested calls
        try:
            yield
        finally:
            self.net.max_batch = before

    def fixed_for(self, h: int, w: int) -> "IFNetInterpolator":
        fixed = copy.copy(self)  # shares the network
        fixed.scale = self.scale_for(h, w)
        return fixed


    def _by_network(self, t: float) -> bool:
        if self.net.supports_arbitrary_t or self.times == "network":
            return True
        if self.times == "midpoint":
            return False
        return abs(t * 4 - round(t * 4)) <= 0.04  # within 0.01 of k/4

    def _split(self, ts):
        net_ts = [t for t in ts if self._by_network(t)]
        mid_ts = [t for t in ts if not self._by_network(t)]
        return net_ts, mid_ts

    def _midpoint(self, f0, f1, ts, spread=False) -> list[Intermediate]:
        """Flows at t from one t = 0.5 pass: each middle-frame point moves along its straight path to time t.

        A point at x in the middle frame is at ``x + F_h0(x)`` in frame 0 and ``x + F_h1(x)`` in frame 1, so
        at time t at ``x + d`` with ``d = (1-t) F_h0 + t F_h1``; from there its flows to the frames are
        ``F_h0 - d`` and ``F_h1 - d``. Splatting those (and the mask) along ``d`` gives them on the grid at t.
        """
        scale = self.scale_for(*f0.shape[-2:])
        half = self.net.intermediate(f0, f1, [0.5], scale=scale, spread=spread)[0]
        fh0, fh1, mh = half[0].float(), half[1].float(), half[2].float()
        out = []
        for t in ts:
            d = (1.0 - t) * fh0 + t * fh1
            vals, wgt = forward_splat(torch.cat((fh0 - d, fh1 - d, mh), 1), d)
            hole = wgt < 1e-3  # nothing of the middle frame lands here: constant motion from the pixel itself
            ft0 = torch.where(hole, 2.0 * t * fh0, vals[:, 0:2])
            ft1 = torch.where(hole, 2.0 * (1.0 - t) * fh1, vals[:, 2:4])
            m = torch.where(hole, mh, vals[:, 4:5]).clamp(0.0, 1.0)
            # The network's mask is frame 0's weight at t = 0.5; move it towards the nearer frame with t
            # (odds multiplied by (1-t)/t, so t = 0.5 keeps it and t -> 0 gives frame 0 alone).
            num = (1.0 - t) * m
            m = num / (num + t * (1.0 - m)).clamp_min(1e-6)
            out.append(Intermediate(ft0, ft1, m))
        return (out, half[3]) if spread else out

    def _intermediate(self, f0, f1, ts):
        return self._intermediate_and_spread(f0, f1, ts, spread=False)[0]

    def _intermediate_and_spread(self, f0, f1, ts, spread=True):
        """(one :class:`Intermediate` per t, spread (B, 1, H, W) or None): with ``spread`` (v3.6), how unsure
        the network is of the motion between the two frames (:meth:`flow.ifnet.IFNet.intermediate`)."""
        with self._batches(f0):
            return self._intermediate_batched(f0, f1, ts, spread)

    def _intermediate_batched(self, f0, f1, ts, spread):
        net_ts, mid_ts = self._split(ts)
        res: dict[float, Intermediate] = {}
        sp = None
        if net_ts:
            scale = self.scale_for(*f0.shape[-2:])
            for t, r in zip(net_ts, self.net.intermediate(f0, f1, net_ts, scale=scale, spread=spread)):
                res[t] = Intermediate(*r[:3])
                sp = r[3] if spread else None
        if mid_ts:
            mids = self._midpoint(f0, f1, mid_ts, spread=spread)
            if spread:
                mids, sp = mids
            res.update(zip(mid_ts, mids))
        return [res[t] for t in ts], sp

    def _interpolate(self, f0, f1, ts, tta):
        with self._batches(f0):
            return self._interpolate_batched(f0, f1, ts, tta)

    def _interpolate_batched(self, f0, f1, ts, tta):
        net_ts, mid_ts = self._split(ts)
        res: dict[float, torch.Tensor] = {}
        if net_ts:
            # The network's own synthesis (padded warps, v3.6 bisection over synthesised frames): exactly the
            # function the benchmark compares with the RIFE peers; its TTA averages the two frames.
            scale = self.scale_for(*f0.shape[-2:])
            res.update(zip(net_ts, self.net.interpolate(f0, f1, net_ts, scale=scale, tta=tta)))
        if mid_ts:
            res.update(zip(mid_ts, super()._interpolate(f0, f1, mid_ts, tta)))
        return [res[t] for t in ts]
