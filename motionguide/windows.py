"""The operations of the guidance type that fit a job's guidance to a model: another pixel size
(:meth:`GuidanceOps.resized`) and a window of its frames (:meth:`GuidanceOps.window`,
:meth:`GuidanceOps.compacted`), and :func:`resize_clip` for the frames that go with it.

A job builds one :class:`~motionguide.guidance.Guidance` for its whole output at the input's resolution; a
model (the embedded one, :mod:`motionguide.embedded.windows`, or a diffusers pipeline,
:mod:`motionguide.pipeline_job`) takes it at its own size and a window of its frame count at a time, with the
frames made so far known. :class:`~motionguide.guidance.Guidance` inherits these methods from
:class:`GuidanceOps`, which lives here so that the data type's module stays about the type and its builders
(and this one needs nothing from it: the methods build ``type(self)``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from flow.warp import resize_flow

__all__ = ["GuidanceOps", "resize_clip"]


class GuidanceOps:
    """Methods of :class:`~motionguide.guidance.Guidance` that cut and resize it (its fields: ``frames``,
    ``positions``, ``num_frames``, ``sources``, ``flows``, ``weights``, ``motion_scale``, ``strength``,
    ``latents``)."""

    def resized(self, size: tuple[int, int]):
        """The same guidance at another pixel size ``(h, w)``: frames area-resized, flows resized with their
        magnitudes rescaled (:func:`flow.warp.resize_flow`), weights area-averaged."""
        return _resized(self, size)

    def window(self, start: int, length: int, generated: dict[int, torch.Tensor] | None = None):
        """The part for output frames ``start .. start+length-1`` (frames past the end are free), with frames
        generated so far (``generated[t]: (B, 3, H, W)``) known.

        Every known frame stays in the result's ``frames`` (those outside the window at position None), so
        source indices keep their meaning; :meth:`compacted` drops the ones the window does not use.
        """
        return _window(self, start, length, generated or {})

    def compacted(self):
        """Only the known frames it uses: those at a position, and those some frame's flow samples (its
        ``sources``), the source indices renumbered. A window of a long input then carries (and encodes) a few
        frames, not the whole input. ``latents``, when set, is cut the same way.

        >>> import torch
        >>> from motionguide.guidance import Guidance
        >>> g = Guidance(torch.rand(1, 3, 3, 4, 4), (None, 0, None), 2, torch.tensor([[-1], [1]]),
        ...              torch.zeros(1, 2, 1, 2, 4, 4), torch.zeros(1, 2, 1, 1, 4, 4))
        >>> c = g.compacted()
        >>> c.positions, c.sources.tolist(), c.frames.shape[2]
        ((0,), [[-1], [0]], 1)
        """
        return _compacted(self)


def _resized(g, size: tuple[int, int]):
    h, w = size
    if tuple(g.size) == (h, w):
        return g
    b, _, n, hh, ww = g.frames.shape
    t, k = g.flows.shape[1:3]
    mode = "area" if h <= hh and w <= ww else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    frames = resize_clip(g.frames, size)
    flows = resize_flow(g.flows.reshape(b * t * k, 2, hh, ww), (h, w)).reshape(b, t, k, 2, h, w)
    weights = F.interpolate(g.weights.reshape(b * t * k, 1, hh, ww), size=(h, w), mode=mode, **kw)
    weights = weights.reshape(b, t, k, 1, h, w).clamp(0, 1)
    tot = weights.sum(2, keepdim=True)
    weights = torch.where(tot > 1, weights / tot.clamp(min=1e-6), weights)
    return type(g)(frames, g.positions, g.num_frames, g.sources, flows, weights, g.motion_scale, g.strength)


def resize_clip(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, T, H, W)`` frames at another size: area when shrinking, bilinear when enlarging, in [0, 1]."""
    b, c, t, hh, ww = x.shape
    h, w = size
    if (hh, ww) == (h, w):
        return x
    mode = "area" if h <= hh and w <= ww else "bilinear"
    y = F.interpolate(x.transpose(1, 2).reshape(b * t, c, hh, ww), size=(h, w), mode=mode,
                      **({} if mode == "area" else {"align_corners": False}))
    return y.reshape(b, t, c, h, w).transpose(1, 2).clamp(0, 1)


def _window(g, start: int, length: int, generated: dict[int, torch.Tensor]):
    frames = [g.frames[:, :, i] for i in range(g.frames.shape[2])]
    positions: list = [p - start if p is not None and start <= p < start + length else None for p in g.positions]
    for t in sorted(generated):
        if start <= t < start + length and (t - start) not in positions:
            frames.append(generated[t])
            positions.append(t - start)
    b, _, _, h, w = g.frames.shape
    k = g.sources.shape[1]
    sources = torch.full((length, k), -1, dtype=torch.long)
    flows = g.flows.new_zeros(b, length, k, 2, h, w)
    weights = g.flows.new_zeros(b, length, k, 1, h, w)
    for j in range(length):
        t = start + j
        if j in positions:
            sources[j, 0] = positions.index(j)
            weights[:, j, 0] = 1.0
        elif t < g.num_frames:
            sources[j] = g.sources[t]
            flows[:, j] = g.flows[:, t]
            weights[:, j] = g.weights[:, t]
    return type(g)(torch.stack(frames, 2), tuple(positions), length, sources, flows, weights, g.motion_scale, g.strength)


def _compacted(g):
    used = sorted({i for i, p in enumerate(g.positions) if p is not None} | {int(i) for i in g.sources.unique() if i >= 0})
    if len(used) == g.frames.shape[2]:
        return g
    remap = torch.full((g.frames.shape[2] + 1,), -1, dtype=torch.long)  # index -1 -> the last slot, -1
    remap[torch.tensor(used, dtype=torch.long)] = torch.arange(len(used))
    sources = remap[g.sources]
    idx = torch.tensor(used, dtype=torch.long, device=g.frames.device)
    latents = None if g.latents is None else g.latents.index_select(2, idx.to(g.latents.device))
    return type(g)(g.frames.index_select(2, idx), tuple(g.positions[i] for i in used), g.num_frames, sources,
                    g.flows, g.weights, g.motion_scale, g.strength, latents)
