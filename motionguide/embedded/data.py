"""Clips with known motion (rendered from :mod:`motionguide.embedded.scenes`), and the guidance of a clip
built from its exact flows or from flow estimated on its frames.

* :func:`make_clip` renders a clip at any frame times with its exact flows (:class:`Clip`);
  :class:`ClipDataset` serves them deterministically for training, with motion-scale augmentation;
* :func:`true_guidance` is the ground-truth guidance of a batch of clips (exact flows and visibility);
  :func:`estimated_guidance` is what a user has: the plugin's builders on flow estimated from the frames.

>>> clip = make_clip(3, split="heldout", num_frames=4, size=(32, 32))
>>> tuple(clip.frames.shape), tuple(clip.flow_to_first.shape)
((4, 3, 32, 32), (4, 2, 32, 32))
>>> bool(torch.equal(clip.frames, make_clip(3, split="heldout", num_frames=4, size=(32, 32)).frames))
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..guidance import Guidance, extension, keyframes, reference_motion
from .scenes import SPLITS, Scene, sample_scene

__all__ = ["Clip", "make_clip", "make_batch", "ClipDataset", "true_guidance", "estimated_guidance"]


@dataclass
class Clip:
    """A rendered clip with its exact motion.

    frames: ``(T, 3, H, W)`` float in [0, 1] at ``times``.
    flow_to_first: ``(T, 2, H, W)`` backward flow from each frame to frame 0
        (``backward_warp(frames[0:1], flow_to_first[k:k+1]) ~= frames[k]``); zeros for k = 0.
    valid_to_first: ``(T, 1, H, W)`` 1 where that flow points at a visible, in-frame point of frame 0.
    flow_to_prev: ``(T, 2, H, W)`` backward flow from frame k to frame k-1 (zeros for k = 0).
    """

    frames: torch.Tensor
    flow_to_first: torch.Tensor
    valid_to_first: torch.Tensor
    flow_to_prev: torch.Tensor
    times: tuple[float, ...]
    scene: Scene
    seed: int
    split: str


def make_clip(
    seed: int,
    *,
    split: str = "train",
    num_frames: int = 8,
    size: tuple[int, int] = (32, 32),
    motion_scale: float = 1.0,
    times: Sequence[float] | None = None,
    supersample: int = 2,
    with_flow: bool = True,
    with_prev_flow: bool = True,
) -> Clip:
    """Render clip ``seed`` of ``split`` with its exact flows (see :class:`Clip`).

    times: frame times to render (default ``0 .. num_frames-1``); fractional times are allowed, which is
        how the ground truth of slow motion is made.
    with_flow / with_prev_flow: skip computing the flows (left as zeros, valid as ones) when a caller
        needs frames only; training the base model does, and it halves the cost of a clip.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    ts = tuple(float(t) for t in (times if times is not None else range(num_frames)))
    span = max(num_frames, int(math.ceil(max(ts) - min(ts))) + 1)
    scene = sample_scene(seed, split=split, size=size, num_frames=span, motion_scale=motion_scale, supersample=supersample)
    frames = scene.render(ts)
    fl0, val0, flp = [], [], []
    zero = torch.zeros(2, *scene.size)
    for i, t in enumerate(ts):
        if with_flow:
            f, occ, out = scene.flow(t, ts[0])
            fl0.append(f)
            val0.append(1 - torch.clamp(occ + out, max=1))
        else:
            fl0.append(zero)
            val0.append(torch.ones(1, *scene.size))
        flp.append(scene.flow(t, ts[i - 1])[0] if (i > 0 and with_prev_flow) else zero)
    return Clip(
        frames=frames, flow_to_first=torch.stack(fl0), valid_to_first=torch.stack(val0),
        flow_to_prev=torch.stack(flp), times=ts, scene=scene, seed=int(seed), split=split,
    )


def make_batch(
    seeds: Sequence[int],
    *,
    split: str = "train",
    num_frames: int = 8,
    size: tuple[int, int] = (32, 32),
    motion_scales: Sequence[float] | float = 1.0,
    with_flow: bool = True,
) -> dict[str, torch.Tensor]:
    """A training batch: ``frames (B, 3, T, H, W)``, ``flow (B, T, 2, H, W)`` (to frame 0),
    ``valid (B, T, 1, H, W)`` and ``motion_scale (B,)``."""
    if isinstance(motion_scales, (int, float)):
        motion_scales = [float(motion_scales)] * len(seeds)
    clips = [
        make_clip(s, split=split, num_frames=num_frames, size=size, motion_scale=m, with_flow=with_flow,
                  with_prev_flow=False)
        for s, m in zip(seeds, motion_scales)
    ]
    return {
        "frames": torch.stack([c.frames.permute(1, 0, 2, 3) for c in clips]),
        "flow": torch.stack([c.flow_to_first for c in clips]),
        "valid": torch.stack([c.valid_to_first for c in clips]),
        "motion_scale": torch.tensor([float(m) for m in motion_scales]),
    }


class ClipDataset(torch.utils.data.Dataset):
    """Map-style dataset: item ``i`` is clip ``base_seed + i`` of ``split`` (deterministic).

    ``motion_scale_range=(lo, hi)`` draws a log-uniform motion scale per item from its seed (augmentation:
    the model sees slow and fast motion, so guidance at motion scale 2 is not out of distribution).
    """

    def __init__(
        self,
        split: str = "train",
        *,
        length: int = 100_000,
        num_frames: int = 8,
        size: tuple[int, int] = (32, 32),
        base_seed: int = 0,
        motion_scale_range: tuple[float, float] = (1.0, 1.0),
        with_flow: bool = True,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        lo, hi = motion_scale_range
        if not (0 < lo <= hi):
            raise ValueError(f"motion_scale_range must satisfy 0 < lo <= hi, got {motion_scale_range}")
        self.split, self.length, self.num_frames, self.size = split, int(length), int(num_frames), tuple(size)
        self.base_seed, self.motion_scale_range = int(base_seed), (float(lo), float(hi))
        self.with_flow = bool(with_flow)

    def __len__(self) -> int:
        return self.length

    def motion_scale(self, i: int) -> float:
        lo, hi = self.motion_scale_range
        if lo == hi:
            return lo
        u = np.random.default_rng([self.base_seed + i, 7]).random()
        return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        m = self.motion_scale(i)
        c = make_clip(
            self.base_seed + i, split=self.split, num_frames=self.num_frames, size=self.size, motion_scale=m,
            with_flow=self.with_flow, with_prev_flow=False,
        )
        return {
            "frames": c.frames.permute(1, 0, 2, 3).contiguous(),  # (3, T, H, W)
            "flow": c.flow_to_first,  # (T, 2, H, W)
            "valid": c.valid_to_first,  # (T, 1, H, W)
            "motion_scale": torch.tensor(m),
        }


def true_guidance(clips: list, positions: tuple[int, ...], num_frames: int):
    """A :class:`~motionguide.guidance.Guidance` from the exact flows of rendered clips (one batch).

    Unknown frame ``k`` takes the known frames before (``a``) and after (``b``) it as sources, weighted
    ``(1 - tau)`` and ``tau`` (``tau = (k - a) / (b - a)``) times their visibility (occluded and out-of-frame
    points get 0, the model fills them); after the last known frame, that frame alone (as
    :func:`motionguide.guidance.extension` does). Layout as the plugin's builders.
    """
    frames = torch.stack([c.frames.permute(1, 0, 2, 3) for c in clips])  # (B, 3, T, H, W)
    b, _, _, h, w = frames.shape
    pos = list(positions)
    sources = torch.full((num_frames, 2), -1, dtype=torch.long)
    flows = frames.new_zeros(b, num_frames, 2, 2, h, w)
    weights = frames.new_zeros(b, num_frames, 2, 1, h, w)
    for i, p in enumerate(pos):
        sources[p, 0] = i
        weights[:, p, 0] = 1.0
    for k in range(num_frames):
        if k in pos:
            continue
        before = [i for i, p in enumerate(pos) if p < k]
        after = [i for i, p in enumerate(pos) if p > k]
        ends = [(before[-1], 1.0)] if not after else [
            (before[-1], (pos[after[0]] - k) / (pos[after[0]] - pos[before[-1]])),
            (after[0], (k - pos[before[-1]]) / (pos[after[0]] - pos[before[-1]]))]
        tot = 0
        for j, (i, wt) in enumerate(ends):
            sources[k, j] = i
            for n, c in enumerate(clips):
                f, occ, out = c.scene.flow(c.times[k], c.times[pos[i]])
                flows[n, k, j] = f
                weights[n, k, j] = wt * (1 - torch.clamp(occ + out, max=1))
        tot = weights[:, k].sum(1, keepdim=True)
        weights[:, k] = torch.where(tot > 0, weights[:, k] / tot.clamp(min=1e-6), weights[:, k])
    return Guidance(frames[:, :, pos], tuple(pos), num_frames, sources, flows, weights)


def estimated_guidance(frames: torch.Tensor, kind: str, positions: tuple[int, ...], estimator):
    """The same layouts built by the plugin's builders from flow estimated on the known frames (what a
    user has): reference motion for ``first`` (the clip itself is the reference), extension from the last
    known frame at constant velocity, keyframe in-betweening. ``frames: (B, 3, T, H, W)``."""
    t = frames.shape[2]
    if kind == "first":
        return reference_motion(frames[:, :, 0], frames, estimator=estimator)
    if kind == "extend":
        return extension(frames[:, :, : len(positions)], t - len(positions), estimator=estimator)
    return keyframes(frames[:, :, list(positions)], list(positions), t, estimator=estimator)
