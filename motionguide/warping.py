"""Flow-based synthesis from a :class:`~motionguide.guidance.Guidance`: every target frame is its sources
backward-warped by the guidance flows and blended by the guidance weights, at whatever resolution the
guidance is. It is the flow-only baseline of every job, the warp that guided generation starts from, and
where the per-pixel confidence comes from (:mod:`motionguide.compositing` composes with it).

:func:`synthesize` makes it in one pass over the sources: each source of a generated frame is warped once, and
the warp, the confidence and the known frames come back together as a :class:`Synthesis`, which the jobs, the
pipeline path, the compositing and the embedded generation take as given. The confidence is 1 on known frames
and, on generated ones, the product of

* **visibility**: the sum of the sources' weights, each 0 where its sample lies outside its frame (the
  guidance builders also set a weight to 0 where the forward-backward check finds the source occluded);
* **agreement**: where two sources both see the pixel, ``exp(-(d / AGREEMENT_SCALE)^2)`` of their mean
  absolute difference ``d`` (in [0, 1] units): two warps that disagree mean at least one flow is wrong.

"Outside its frame" is :func:`flow.occlusion.in_frame_mask` with :data:`IN_FRAME_SLACK` (half a pixel: a sample
within the edge pixels' own extent reads them as they are), the same rule the guidance builders use with none.

Where no source sees a pixel (every source's weight 0, or its sample outside its frame: content entering the
frame, a disocclusion), the flow says nothing, and the warp shows a fill (``unseen``):

* ``"clamp"``: the warp as it is: the source sampled along the flow the guidance gives there (an extension's
  plain reversed motion), and where that sample leaves the frame, the frame's nearest edge pixel (border
  padding: streaks where content enters);
* ``"hold"``: the first source frame, unwarped, at that pixel (for an extension: the last real frame);
* ``"telea"`` / ``"ns"``: OpenCV's inpainting (``cv2.inpaint``, Telea 2004 / Navier-Stokes) from the
  pixels around that a source sees, on the 8-bit frame;
* ``"hold_edge"``, ``"telea_edge"``, ``"ns_edge"``: the same only where every source's sample leaves its
  frame (content entering the frame, where the clamp draws streaks); where the sample stays inside (a
  disocclusion, a gap of the forward splat) the warp as it is;
* ``"mirror_edge"``: there, the first source sampled with reflection padding (the frame mirrored at its edge)
  instead of border padding;
* ``"clamp_telea"``: the mean of the clamp's guess and Telea's;
* ``"median"``: per pixel and channel, the median of three guesses: the clamp's, Telea's and the held frame's.

The fill is chosen per job on real footage at the input's size, inside the pixels no source sees (``python
benchmarks/real_footage.py --jobs extend --modes default,fill_clamp,fill_hold,fill_telea,fill_ns,fill_hold_edge,``
``fill_telea_edge,fill_ns_edge,fill_mirror_edge,fill_clamp_telea,fill_median``, its "Where no source ... sees"
lines; figures in docs/DECISIONS.md):

* an extension uses :data:`EXTEND_FILL`, the median: alone, no guess beats the clamp there (the reversed motion
  copies texture from beside the hole, which lands on the right content more often than a smooth inpainting,
  and the edge pixel predicts what enters better than a smooth or mirrored guess), and the mean of the clamp
  and Telea loses where the clamp is near-exact; but the three guesses err in different ways (the clamp with
  the wrong texture, Telea with none, the held frame with what moved away), and where one is wrong the median
  takes the one the other two bracket, so it beat the clamp on validation clips and on held-out ones it was
  not chosen on, and keeps the clamp's answer where the clamp and the held frame agree (a near-exact clamp);
* speed and transfer keep :data:`UNSEEN_FILL`, the clamp: there the median scored below it (speed's unseen
  pixels, between two sources, are near-exact already).

Pixels a source sees are the same whatever the fill.

Shapes: clips ``(B, 3, T, H, W)`` float in [0, 1]; flows in pixels, the convention of :mod:`flow.warp`.

>>> import torch
>>> frame, unseen = torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.bool)
>>> unseen[..., 3] = True  # the last column: no source sees it
>>> out = fill_unseen(frame, unseen, torch.ones(1, 3, 4, 4), "hold")
>>> out[0, 0, 0].tolist()
[0.0, 0.0, 0.0, 1.0]
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from flow.occlusion import in_frame_mask
from flow.warp import backward_warp

__all__ = ["UNSEEN_FILLS", "UNSEEN_FILL", "EXTEND_FILL", "AGREEMENT_SCALE", "IN_FRAME_SLACK", "Synthesis",
           "synthesize", "source_warps", "known_of", "unseen_of", "fill_unseen", "flow_only"]

#: what the warp shows where no source sees a pixel (module docstring)
UNSEEN_FILLS = ("clamp", "hold", "telea", "ns", "hold_edge", "telea_edge", "ns_edge", "mirror_edge", "clamp_telea",
                "median")
#: the default fill, kept by speed and transfer (module docstring)
UNSEEN_FILL = "clamp"
#: the extension's fill: chosen on validation clips, confirmed on held-out ones (module docstring)
EXTEND_FILL = "median"
#: cv2.inpaint's neighbourhood radius in pixels (its documented usual value)
INPAINT_RADIUS = 3
_CV2_INPAINT = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
#: colour difference (in [0, 1] units) at which two warped sources agree with weight exp(-1)
AGREEMENT_SCALE = 0.1
#: pixels of slack of "a source's sample lies inside its frame" for the confidence and the fills
IN_FRAME_SLACK = 0.5


@dataclass(frozen=True)
class Synthesis:
    """The flow-based synthesis of a Guidance, made once (:func:`synthesize`), at the guidance's size.

    warp: ``(B, 3, T, H, W)`` in [0, 1], :func:`flow_only`'s; confidence: ``(B, 1, T, H, W)`` in [0, 1], 1 on
    known frames (None when not asked for); known_frames: ``(B, 3, T, H, W)``, the guidance's placed frames,
    zeros elsewhere; known: ``(B, T)`` bool, where they are (:func:`known_of`).
    """

    warp: torch.Tensor
    confidence: torch.Tensor | None
    known_frames: torch.Tensor
    known: torch.Tensor


def source_warps(guidance, t: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``[(warped (B, 3, H, W), weight (B, 1, H, W), flow (B, 2, H, W))]`` for each source of output frame
    ``t`` of a Guidance, in source order (border padding)."""
    out = []
    for k in range(guidance.sources.shape[1]):
        s = int(guidance.sources[t, k])
        if s >= 0:
            flow = guidance.flows[:, t, k]
            out.append((backward_warp(guidance.frames[:, :, s], flow), guidance.weights[:, t, k], flow))
    return out


def known_of(guidance) -> tuple[torch.Tensor, torch.Tensor]:
    """``(known_frames (B, 3, T, H, W) in [0, 1], known (B, T) bool)`` from a Guidance's placed frames."""
    b, _, _, h, w = guidance.frames.shape
    t = guidance.num_frames
    kf = guidance.frames.new_zeros(b, 3, t, h, w)
    known = torch.zeros(b, t, dtype=torch.bool)
    for i, p in enumerate(guidance.positions):
        if p is not None:
            kf[:, :, p] = guidance.frames[:, :, i]
            known[:, p] = True
    if not bool(known.any()):
        raise ValueError("guidance places no known frame in the clip; the embedded model needs at least one")
    return kf, known


def _inside(srcs) -> list[torch.Tensor]:
    """Each source's ``(B, 1, H, W)`` in-frame mask (the half-pixel rule), once per source."""
    return [in_frame_mask(fl, slack=IN_FRAME_SLACK) for _, _, fl in srcs]


def _unseen(srcs, inside, outside: bool = False) -> torch.Tensor:
    """(B, 1, H, W) bool: no source sees the pixel (outside: and every source samples outside its frame)."""
    vis = sum(wt * m for (_, wt, _), m in zip(srcs, inside)) <= 1e-6
    return vis & (sum(inside) == 0) if outside else vis


def _confidence(srcs, inside, agreement: bool) -> torch.Tensor:
    """(B, 1, H, W): visibility times (for two sources) their agreement (module docstring)."""
    vis = sum(wt * m for (_, wt, _), m in zip(srcs, inside)).clamp(0, 1)
    agree = torch.ones_like(vis)
    if len(srcs) == 2 and agreement:
        (w0, a0, _), (w1, a1, _) = srcs
        both = (a0 > 0.05) & (a1 > 0.05) & (inside[0] > 0) & (inside[1] > 0)
        d = (w0 - w1).abs().mean(1, keepdim=True)
        agree = torch.where(both, torch.exp(-(d / AGREEMENT_SCALE) ** 2), agree)
    return vis * agree


def unseen_of(guidance, *, outside: bool = False) -> torch.Tensor:
    """``(B, 1, T, H, W)`` bool: True where no source of a generated frame sees the pixel (the sum of the
    sources' weights, each 0 where its sample leaves its frame, vanishes); False on known frames.
    outside: only those where every source's sample leaves its frame (content entering the frame)."""
    _, known = known_of(guidance)
    b, _, _, h, w = guidance.frames.shape
    out = torch.zeros(b, 1, guidance.num_frames, h, w, dtype=torch.bool)
    for t in range(guidance.num_frames):
        if not bool(known[0, t]):
            srcs = source_warps(guidance, t)
            out[:, :, t] = _unseen(srcs, _inside(srcs), outside) if srcs else True
    return out


def fill_unseen(frame: torch.Tensor, unseen: torch.Tensor, held: torch.Tensor, how: str = UNSEEN_FILL) -> torch.Tensor:
    """``frame`` with its ``unseen`` pixels filled by ``how`` (one of :data:`UNSEEN_FILLS`); every other pixel
    is returned as it is.

    frame, held: ``(B, 3, H, W)`` float in [0, 1] (held: what ``"hold"`` shows there); unseen:
    ``(B, 1, H, W)`` bool. ``frame`` is the clamp's guess, which ``"clamp_telea"`` and ``"median"`` combine
    with Telea's inpainting (and ``held``). Inpainting reads the pixels around the hole from ``frame``; a frame
    no source sees at all has nothing to inpaint from and holds ``held`` in the inpainting's place.
    """
    if how not in UNSEEN_FILLS:
        raise ValueError(f"unseen fill: expected one of {UNSEEN_FILLS}, got {how!r}")
    if frame.ndim != 4 or frame.shape[1] != 3 or unseen.shape != (frame.shape[0], 1, *frame.shape[-2:]):
        raise ValueError(f"fill_unseen: expected frame (B, 3, H, W) and unseen (B, 1, H, W), got "
                         f"{tuple(frame.shape)} and {tuple(unseen.shape)}")
    if how == "clamp" or not bool(unseen.any()):
        return frame
    if how in ("clamp_telea", "median"):
        telea = fill_unseen(frame, unseen, held, "telea")
        guess = 0.5 * (frame + telea) if how == "clamp_telea" else \
            torch.stack([frame, telea, held.to(frame)]).median(0).values
        return torch.where(unseen, guess, frame)
    how = how.removesuffix("_edge")  # the mask says where
    if how in ("hold", "mirror"):  # the caller passes the mirrored warp as held
        return torch.where(unseen, held.to(frame), frame)
    out = frame.clone()
    for i in range(frame.shape[0]):
        m = unseen[i, 0]
        if bool(m.all()):
            out[i] = held[i].to(frame)
            continue
        img = (frame[i].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        filled = cv2.inpaint(np.ascontiguousarray(img), m.cpu().numpy().astype(np.uint8), INPAINT_RADIUS,
                             _CV2_INPAINT[how])
        filled = torch.from_numpy(filled).to(frame).permute(2, 0, 1) / 255
        out[i] = torch.where(m.to(frame.device), filled, frame[i])
    return out


def synthesize(guidance, *, unseen: str = UNSEEN_FILL, agreement: bool = True,
               with_confidence: bool = True) -> Synthesis:
    """The flow-based synthesis of ``guidance`` in one pass over its sources: the warp, the confidence and
    the known frames (:class:`Synthesis`). Each target frame is the weighted blend of its warped sources
    (border padding), the first source alone where the weights vanish, and where no source sees a pixel the
    fill ``unseen`` (:data:`UNSEEN_FILLS`; held: the first source frame); a frame with no source holds the
    nearest known frame before it (confidence 0).

    agreement: include the agreement of two sources in the confidence (False: visibility only);
    with_confidence: False skips the confidence (``Synthesis.confidence`` None)."""
    if unseen not in UNSEEN_FILLS:
        raise ValueError(f"unseen: expected one of {UNSEEN_FILLS}, got {unseen!r}")
    kf, known = known_of(guidance)
    out = kf.clone()
    b, _, n, h, w = kf.shape
    conf = kf.new_ones(b, 1, n, h, w) if with_confidence else None
    for t in range(n):
        if bool(known[0, t]):
            continue
        srcs = source_warps(guidance, t)
        if not srcs:  # no source at all: hold the nearest known frame
            out[:, :, t] = kf[:, :, int(torch.nonzero(known[0, : t + 1])[-1])]
            if conf is not None:
                conf[:, :, t] = 0
            continue
        inside = _inside(srcs)
        acc = sum(wt * warped for warped, wt, _ in srcs)
        wsum = sum(wt for _, wt, _ in srcs)
        frame = torch.where(wsum > 1e-6, acc / wsum.clamp(min=1e-6), srcs[0][0]).clamp(0, 1)
        if unseen != "clamp":
            held = guidance.frames[:, :, int(guidance.sources[t][guidance.sources[t] >= 0][0])]
            if unseen == "mirror_edge":
                held = backward_warp(held, srcs[0][2], padding_mode="reflection")
            frame = fill_unseen(frame, _unseen(srcs, inside, outside=unseen.endswith("_edge")), held, unseen)
        out[:, :, t] = frame
        if conf is not None:
            conf[:, :, t] = _confidence(srcs, inside, agreement)
    return Synthesis(out.clamp(0, 1), conf, kf, known)


def flow_only(guidance, *, unseen: str = UNSEEN_FILL) -> torch.Tensor:
    """Plain warping without the model ``(B, 3, T, H, W)`` in [0, 1]: :func:`synthesize`'s warp alone."""
    return synthesize(guidance, unseen=unseen, with_confidence=False).warp
