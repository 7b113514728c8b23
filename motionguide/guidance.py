"""The guidance data type and its builders (reference motion, speed, extension, keyframes).

A :class:`Guidance` holds, at pixel resolution, everything the model is held to:

* the known frames (appearance), ``frames: (B, 3, N, H, W)`` float in [0, 1], and where each of them sits in
  the output clip (``positions``; ``None`` for a frame that is only a motion source, e.g. a real frame that
  falls between two output times when retiming);
* for every output frame ``t`` (``T = num_frames`` of them) up to ``K`` (1 or 2) sources: ``sources[t, k]``
  indexes the known frames (-1 = none), ``flows[:, t, k]`` is the *backward* flow from output frame ``t`` to
  that source (``flow.warp`` convention: output pixel ``x`` shows source pixel ``x + flow(x)``) and
  ``weights[:, t, k]`` the blend/validity weight (0 where the source cannot be trusted: out of frame,
  occluded; the weights of one frame sum to at most 1 and the model is free where they sum to 0);
* two knobs that stay apart: ``motion_scale`` (already applied to the flows by the builders: 0 freezes,
  1 keeps, 2 doubles) and ``strength`` (how hard the model is held: 0 = not at all, 1 = fully);
* once encoded, the known frames' latents ``latents: (B, C, N, h, w)`` (see :func:`motionguide.pipeline.encode_frames`).

Known output frames carry themselves as their only source with a zero flow and weight 1.

Builders all take the flow estimator as a callable ``estimator(frame0, frame1) -> flow`` with
``frame*: (B, 3, H, W)`` in [0, 1] and the backward flow ``F_{0->1}: (B, 2, H, W)`` (pixel x of frame0 is
seen at ``x + F(x)`` in frame1), e.g. ``flow.estimators.get_estimator("dis")``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, Sequence

import torch

from flow.checks import check_finite
from flow.occlusion import in_frame_mask
from flow.warp import compose_flows, reverse_flow

from .windows import GuidanceOps

__all__ = [
    "Guidance",
    "Estimator",
    "MOTION_SCALE_RANGE",
    "STRENGTH_RANGE",
    "reference_motion",
    "speed",
    "extension",
    "keyframes",
]

Estimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: ``motion_scale`` multiplies motion: 0 freezes, 1 keeps, 2 doubles; beyond 4x warps leave the frame.
MOTION_SCALE_RANGE = (0.0, 4.0)
#: ``strength`` is a blend weight: 0 = guidance off, 1 = full.
STRENGTH_RANGE = (0.0, 1.0)


def check_motion_scale(v: float) -> float:
    lo, hi = MOTION_SCALE_RANGE
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(
            f"motion_scale: expected a number in [{lo}, {hi}] (0 freezes, 1 keeps, 2 doubles motion), got {v!r}"
        )
    return float(v)


def check_strength(v: float, name: str = "strength") -> float:
    lo, hi = STRENGTH_RANGE
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{name}: expected a number in [{lo}, {hi}] (0 = guidance off, 1 = full), got {v!r}")
    return float(v)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ")"


@dataclass
class Guidance(GuidanceOps):
    """Motion guidance at pixel resolution (see the module docstring for the meaning of each field).

    Shapes: ``frames (B, 3, N, H, W)``, ``sources (T, K)`` long, ``flows (B, T, K, 2, H, W)``,
    ``weights (B, T, K, 1, H, W)``, ``latents (B, C, N, h, w)`` or None; ``positions`` has N entries.

    Fitting it to a model: :meth:`resized` (another pixel size), :meth:`window` and :meth:`compacted` (a window
    of its frames), from :class:`motionguide.windows.GuidanceOps`.
    """

    frames: torch.Tensor
    positions: tuple
    num_frames: int
    sources: torch.Tensor
    flows: torch.Tensor
    weights: torch.Tensor
    motion_scale: float = 1.0
    strength: float = 1.0
    latents: torch.Tensor | None = None

    def __post_init__(self) -> None:
        fr = self.frames
        if not isinstance(fr, torch.Tensor) or fr.ndim != 5 or fr.shape[1] != 3:
            got = _shape(fr) if isinstance(fr, torch.Tensor) else type(fr).__name__
            raise ValueError(f"frames: expected (B, 3, N, H, W) float RGB in [0, 1], got {got}")
        if not fr.is_floating_point():
            raise TypeError(f"frames: expected float in [0, 1], got dtype {fr.dtype}; convert uint8 with x.float() / 255")
        check_finite(fr, "frames")
        if fr.numel() and (float(fr.min()) < -1e-3 or float(fr.max()) > 1 + 1e-3):
            raise ValueError(
                f"frames: expected values in [0, 1], got [{float(fr.min()):.3g}, {float(fr.max()):.3g}]; "
                "frames in [-1, 1] convert with (x + 1) / 2"
            )
        b, _, n, h, w = fr.shape
        self.positions = tuple(None if p is None else int(p) for p in self.positions)
        if len(self.positions) != n:
            raise ValueError(f"positions: expected one entry per known frame ({n}), got {len(self.positions)}")
        t = int(self.num_frames)
        self.num_frames = t
        if t < 1:
            raise ValueError(f"num_frames: expected at least 1, got {t}")
        placed = [p for p in self.positions if p is not None]
        if any(not 0 <= p < t for p in placed) or len(set(placed)) != len(placed):
            raise ValueError(f"positions: expected distinct output frame indices in [0, {t - 1}] or None, got {self.positions}")
        s = self.sources
        if not isinstance(s, torch.Tensor) or s.ndim != 2 or s.shape[0] != t or s.dtype != torch.long:
            got = f"{_shape(s)} {s.dtype}" if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(f"sources: expected a long tensor (T={t}, K), got {got}")
        k = s.shape[1]
        if k < 1 or bool(((s < -1) | (s >= n)).any()):
            raise ValueError(f"sources: expected K >= 1 entries per frame, each -1 or a known frame index in [0, {n - 1}]")
        want = (b, t, k, 2, h, w)
        if not isinstance(self.flows, torch.Tensor) or tuple(self.flows.shape) != want:
            raise ValueError(f"flows: expected (B, T, K, 2, H, W) = {want}, got {_shape(self.flows)}")
        check_finite(self.flows, "flows")
        want = (b, t, k, 1, h, w)
        if not isinstance(self.weights, torch.Tensor) or tuple(self.weights.shape) != want:
            raise ValueError(f"weights: expected (B, T, K, 1, H, W) = {want}, got {_shape(self.weights)}")
        check_finite(self.weights, "weights")
        if float(self.weights.min()) < -1e-6 or float(self.weights.sum(2).max()) > 1 + 1e-4:
            raise ValueError("weights: expected values >= 0 that sum to at most 1 over the K sources of a frame")
        self.motion_scale = check_motion_scale(self.motion_scale)
        self.strength = check_strength(self.strength)
        if self.latents is not None:
            lt = self.latents
            if not isinstance(lt, torch.Tensor) or lt.ndim != 5 or lt.shape[0] != b or lt.shape[2] != n:
                raise ValueError(
                    f"latents: expected (B={b}, C, N={n}, h, w), one latent frame per known frame, got "
                    f"{_shape(lt) if isinstance(lt, torch.Tensor) else type(lt).__name__}"
                )
            check_finite(lt, "latents")

    # -- convenience --------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.frames.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """Pixel ``(H, W)``."""
        return tuple(self.frames.shape[-2:])

    def with_strength(self, strength: float) -> "Guidance":
        """A copy with another ``strength`` (tensors shared)."""
        return replace(self, strength=strength)

    def with_latents(self, latents: torch.Tensor) -> "Guidance":
        """A copy carrying the encoded known frames ``latents: (B, C, N, h, w)``."""
        return replace(self, latents=latents)

    def guided_frames(self) -> list[int]:
        """Output frames that have at least one source."""
        return [t for t in range(self.num_frames) if bool((self.sources[t] >= 0).any())]


# ------------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------------
def _check_clip(clip: torch.Tensor, name: str, min_frames: int = 1) -> torch.Tensor:
    if not isinstance(clip, torch.Tensor) or clip.ndim != 5 or clip.shape[1] != 3:
        got = _shape(clip) if isinstance(clip, torch.Tensor) else type(clip).__name__
        raise ValueError(f"{name}: expected a clip (B, 3, T, H, W) float in [0, 1], got {got}")
    if not clip.is_floating_point():
        raise TypeError(f"{name}: expected float in [0, 1], got {clip.dtype}; convert uint8 with x.float() / 255")
    check_finite(clip, name)
    if clip.shape[2] < min_frames:
        raise ValueError(f"{name}: expected at least {min_frames} frames, got {clip.shape[2]}")
    return clip


def _check_image(img: torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(img, torch.Tensor) and img.ndim == 3:
        img = img[None]
    if not isinstance(img, torch.Tensor) or img.ndim != 4 or img.shape[1] != 3:
        got = _shape(img) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"{name}: expected an image (B, 3, H, W) float in [0, 1], got {got}")
    if not img.is_floating_point():
        raise TypeError(f"{name}: expected float in [0, 1], got {img.dtype}")
    check_finite(img, name)
    return img


def _estimate(estimator: Estimator, a: torch.Tensor, b: torch.Tensor, what: str) -> torch.Tensor:
    if estimator is None or not callable(estimator):
        raise TypeError(
            f"estimator: expected a callable (frame0, frame1) -> flow (B, 2, H, W), got {type(estimator).__name__}; "
            "e.g. flow.estimators.get_estimator('dis')"
        )
    f = estimator(a, b)
    want = (a.shape[0], 2, *a.shape[-2:])
    if not isinstance(f, torch.Tensor) or tuple(f.shape) != want:
        raise ValueError(f"estimator returned {_shape(f) if isinstance(f, torch.Tensor) else type(f).__name__} for {what}, expected {want}")
    check_finite(f, f"flow estimated for {what}")
    return f.to(a.dtype)


def _assemble(
    known: torch.Tensor, positions: Sequence, num_frames: int, entries: dict, k: int, motion_scale: float, strength: float
) -> Guidance:
    """Build a Guidance from ``entries[t] = [(source, flow (B,2,H,W), weight (B,1,H,W)), ...]``."""
    b, _, n, h, w = known.shape
    sources = torch.full((num_frames, k), -1, dtype=torch.long)
    flows = known.new_zeros(b, num_frames, k, 2, h, w)
    weights = known.new_zeros(b, num_frames, k, 1, h, w)
    for i, p in enumerate(positions):
        if p is not None:
            entries[p] = [(i, None, None)]
    for t, items in entries.items():
        for j, (src, fl, wt) in enumerate(items):
            sources[t, j] = src
            if fl is not None:
                flows[:, t, j] = fl
            weights[:, t, j] = 1.0 if wt is None else wt
    return Guidance(known, tuple(positions), num_frames, sources, flows, weights, motion_scale, strength)


def reference_motion(
    image: torch.Tensor,
    reference: torch.Tensor,
    *,
    estimator: Estimator,
    mode: Literal["accumulate", "direct"] = "accumulate",
    motion_scale: float = 1.0,
    strength: float = 1.0,
) -> Guidance:
    """Motion from a reference clip, appearance from a new first frame.

    Output frame ``k`` is guided by the new image warped with the reference's backward flow ``F_{k->0}``
    (``accumulate``: chained from consecutive flows, ``F_{k->0} = F_{k->k-1} + F_{k-1->0}(x + F_{k->k-1})``,
    robust to large total motion; ``direct``: estimated between frame k and frame 0), times ``motion_scale``.
    Pixels whose source lands outside the frame get weight 0 (the model fills them).

    Args:
        image: ``(B, 3, H, W)`` float in [0, 1], the new first frame.
        reference: ``(B, 3, T, H, W)`` float in [0, 1], the clip whose motion is copied (T >= 2).

    Returns:
        A :class:`Guidance` of ``T`` frames, frame 0 known (the image), K = 1.
    """
    image = _check_image(image, "image")
    reference = _check_clip(reference, "reference", 2)
    motion_scale, strength = check_motion_scale(motion_scale), check_strength(strength)
    if mode not in ("accumulate", "direct"):
        raise ValueError(f"mode: expected 'accumulate' or 'direct', got {mode!r}")
    if image.shape[-2:] != reference.shape[-2:] or image.shape[0] != reference.shape[0]:
        raise ValueError(
            f"image {_shape(image)} and reference {_shape(reference)} must share batch and H x W; resize the image "
            "to the reference (or the reference to the image) first"
        )
    flows_k0 = _reference_flows(reference, estimator, mode)
    entries = {}
    for k in range(1, reference.shape[2]):
        fl = flows_k0[k - 1] * motion_scale
        entries[k] = [(0, fl, in_frame_mask(fl))]
    return _assemble(image[:, :, None], (0,), reference.shape[2], entries, 1, motion_scale, strength)


def _reference_flows(reference: torch.Tensor, estimator: Estimator, mode: str) -> list[torch.Tensor]:
    """Backward flows ``F_{k->0}`` for k = 1..T-1 of a clip."""
    out: list[torch.Tensor] = []
    frame = lambda i: reference[:, :, i]  # noqa: E731
    for k in range(1, reference.shape[2]):
        if mode == "direct" or k == 1:
            out.append(_estimate(estimator, frame(k), frame(0), f"reference frames {k}->0"))
        else:
            step = _estimate(estimator, frame(k), frame(k - 1), f"reference frames {k}->{k - 1}")
            out.append(compose_flows(step, out[-1]))
    return out


def _between(
    f0: torch.Tensor, f1: torch.Tensor, times: Sequence[float], estimator: Estimator | None, motion_scale: float,
    intermediate: Any = None,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For each t in ``times`` (0 < t < 1): ``(F_t0, F_t1, w0, w1)`` between real frames f0 and f1.

    Intermediate flows come from ``intermediate`` when given: a :class:`flow.interpolate.Interpolator`
    (its ``intermediate(f0, f1, times)``, one flow estimate for all times) or a callable
    ``(f0, f1, t) -> (F_t0, F_t1, mask)``; ``mask`` (B, 1, H, W) is frame 0's blend weight, as MoG's M, so
    ``w0 = M`` and ``w1 = 1 - M``. Otherwise from bidirectional ``estimator`` flow by flow reversal
    (:func:`flow.warp.reverse_flow`: ``F_t0(x + t F01(x)) = -t F01(x)``), with the linear approximation
    ``F_t0 = -(1-t) t F01 + t^2 F10`` filling the holes reversal leaves, and time weights ``1 - t``, ``t``
    (a hole of frame 0's reversal is a pixel disoccluded at t as seen from frame 0: frame 1 is trusted there).
    ``motion_scale`` multiplies the intermediate flows.
    """
    out = []
    inter: list = []
    if intermediate is not None:
        if hasattr(intermediate, "intermediate"):
            inter = list(intermediate.intermediate(f0, f1, list(times)))
        elif callable(intermediate):
            inter = [intermediate(f0, f1, t) for t in times]
        else:
            raise TypeError(
                "intermediate: expected a flow.interpolate.Interpolator or a callable (f0, f1, t) -> "
                f"(F_t0, F_t1, mask), got {type(intermediate).__name__}"
            )
    else:
        f01 = _estimate(estimator, f0, f1, "frames 0->1")
        f10 = _estimate(estimator, f1, f0, "frames 1->0")
    for i, t in enumerate(times):
        if intermediate is not None:
            ft0, ft1, m = (x.to(f0.dtype) for x in inter[i])
            want = (f0.shape[0], 2, *f0.shape[-2:])
            if tuple(ft0.shape) != want or tuple(ft1.shape) != want or tuple(m.shape) != (want[0], 1, *want[2:]):
                raise ValueError(f"intermediate flows: expected {want} flows and a (B, 1, H, W) mask, got "
                                 f"{_shape(ft0)}, {_shape(ft1)}, {_shape(m)}")
            check_finite(ft0, "F_t0"), check_finite(ft1, "F_t1"), check_finite(m, "blend mask")
            w0, w1 = m.clamp(0, 1), 1 - m.clamp(0, 1)
        else:
            r0, h0 = reverse_flow(f01, t)
            r1, h1 = reverse_flow(f10, 1 - t)
            lin0 = -(1 - t) * t * f01 + t * t * f10
            lin1 = (1 - t) * (1 - t) * f01 - t * (1 - t) * f10
            hole0, hole1 = (h0 > 1e-3).to(f0.dtype), (h1 > 1e-3).to(f0.dtype)
            ft0 = r0 * hole0 + lin0 * (1 - hole0)
            ft1 = r1 * hole1 + lin1 * (1 - hole1)
            w0, w1 = (1 - t) * (0.05 + 0.95 * hole0), t * (0.05 + 0.95 * hole1)
        ft0, ft1 = ft0 * motion_scale, ft1 * motion_scale
        w0, w1 = w0 * in_frame_mask(ft0), w1 * in_frame_mask(ft1)
        tot = w0 + w1
        norm = torch.where(tot > 0, tot, torch.ones_like(tot))
        out.append((ft0, ft1, w0 / norm, w1 / norm))
    return out


def speed(
    clip: torch.Tensor,
    factor: float,
    *,
    estimator: Estimator | None = None,
    num_frames: int | None = None,
    motion_scale: float = 1.0,
    strength: float = 1.0,
    intermediate: Any = None,
) -> Guidance:
    """Resample a clip in time: output frame ``j`` shows real time ``j * factor``.

    ``factor < 1`` is slow motion (0.5 = twice as many frames), ``factor > 1`` speeds up. Output frames at
    integer times are the real frames (known); the others get the intermediate flows to the two nearest real
    frames, so consecutive output frames move ``factor`` times the real motion per frame.

    Args:
        clip: ``(B, 3, T, H, W)`` float in [0, 1], T >= 2.
        factor: real frames advanced per output frame, > 0.
        num_frames: output length; default ``floor((T - 1) / factor) + 1`` (ends at the last real frame).
        estimator: flow estimator for the default intermediate flows (not needed with ``intermediate``).
        intermediate: the interpolation component, ``flow.interpolate.get_interpolator("dis")`` (or any
            object with ``intermediate(f0, f1, times)``, or a callable ``(f0, f1, t) -> (F_t0, F_t1, mask)``);
            default: flow reversal of bidirectional ``estimator`` flows.

    Returns:
        A :class:`Guidance` with K = 2; real frames that are not output frames are sources with position None.
    """
    clip = _check_clip(clip, "clip", 2)
    motion_scale, strength = check_motion_scale(motion_scale), check_strength(strength)
    if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"factor: expected a positive number (0.5 = 2x slow motion, 2 = 2x faster), got {factor!r}")
    t_real = clip.shape[2]
    n_out = int(math.floor((t_real - 1) / factor + 1e-9)) + 1 if num_frames is None else int(num_frames)
    if n_out < 1 or (n_out - 1) * factor > t_real - 1 + 1e-6:
        raise ValueError(
            f"num_frames: {n_out} output frames at factor {factor} need real time up to {(n_out - 1) * factor:g}, "
            f"but the clip ends at {t_real - 1}; use at most {int(math.floor((t_real - 1) / factor + 1e-9)) + 1}"
        )
    times = [j * factor for j in range(n_out)]
    positions: list = [None] * t_real
    for j, tau in enumerate(times):
        if abs(tau - round(tau)) < 1e-6:
            positions[int(round(tau))] = j
    entries: dict = {}
    by_segment: dict[int, list[tuple[int, float]]] = {}
    for j, tau in enumerate(times):
        if abs(tau - round(tau)) >= 1e-6:
            by_segment.setdefault(int(math.floor(tau)), []).append((j, tau - math.floor(tau)))
    for a, items in by_segment.items():
        res = _between(clip[:, :, a], clip[:, :, a + 1], [t for _, t in items], estimator, motion_scale, intermediate)
        for (j, _), (ft0, ft1, w0, w1) in zip(items, res):
            entries[j] = [(a, ft0, w0), (a + 1, ft1, w1)]
    used = sorted({s for items in entries.values() for s, *_ in items} | {i for i, p in enumerate(positions) if p is not None})
    remap = {old: new for new, old in enumerate(used)}
    entries = {j: [(remap[s], fl, wt) for s, fl, wt in items] for j, items in entries.items()}
    known = clip[:, :, used]
    return _assemble(known, [positions[i] for i in used], n_out, entries, 2, motion_scale, strength)


def extension(
    clip: torch.Tensor,
    num_new: int,
    *,
    estimator: Estimator | None = None,
    mode: Literal["constant", "reference"] = "constant",
    damping: float = 0.0,
    reference: torch.Tensor | None = None,
    motion_scale: float = 1.0,
    strength: float = 1.0,
) -> Guidance:
    """Continue a clip by ``num_new`` frames, guided from its last frame.

    ``constant``: the last motion (velocity of each pixel of the last frame, ``-F_{last->prev}``) continues,
    slowed by ``damping`` per frame (displacement after k frames: ``sum_{i<k} (1 - damping)^i`` velocities);
    the target's backward flow comes from reversing that forward motion, so regions no pixel moves into
    (disocclusions, content entering the frame) get weight 0 and are left to the model.
    ``reference``: motion ``F_{k->0}`` of a reference clip applied to the last frame.
    Either way each extended frame has one source, the last known frame (K = 1).

    Args:
        clip: ``(B, 3, T, H, W)`` known frames (T >= 2 for ``constant``).
        num_new: frames to add (>= 1); output has ``T + num_new`` frames, the first T known.
        reference: ``(B, 3, >= num_new + 1, H, W)`` for ``mode='reference'``.
    """
    clip = _check_clip(clip, "clip", 2 if mode == "constant" else 1)
    motion_scale, strength = check_motion_scale(motion_scale), check_strength(strength)
    if not isinstance(num_new, int) or num_new < 1:
        raise ValueError(f"num_new: expected a positive int, got {num_new!r}")
    if not 0.0 <= float(damping) < 1.0:
        raise ValueError(f"damping: expected a number in [0, 1) (0 = constant velocity), got {damping!r}")
    t_known = clip.shape[2]
    last = clip[:, :, -1]
    entries: dict = {}
    if mode == "constant":
        velocity = -_estimate(estimator, last, clip[:, :, -2], "last frame -> previous frame")
        for k in range(1, num_new + 1):
            steps = sum((1.0 - damping) ** i for i in range(k))
            fwd = velocity * (steps * motion_scale)
            back, hit = reverse_flow(fwd, 1.0)
            wt = (hit > 1e-3).to(clip.dtype)
            back = back * wt - fwd * (1 - wt)  # holes: fill with the plain reversed motion (weight 0 anyway)
            wt = wt * in_frame_mask(back)
            entries[t_known - 1 + k] = [(t_known - 1, back, wt)]
    elif mode == "reference":
        reference = _check_clip(reference, "reference", num_new + 1)
        if reference.shape[-2:] != clip.shape[-2:]:
            raise ValueError(f"reference {_shape(reference)} and clip {_shape(clip)} must share H x W")
        flows_k0 = _reference_flows(reference[:, :, : num_new + 1], estimator, "accumulate")
        for k in range(1, num_new + 1):
            fl = flows_k0[k - 1] * motion_scale
            entries[t_known - 1 + k] = [(t_known - 1, fl, in_frame_mask(fl))]
    else:
        raise ValueError(f"mode: expected 'constant' or 'reference', got {mode!r}")
    return _assemble(clip, list(range(t_known)), t_known + num_new, entries, 1, motion_scale, strength)


def keyframes(
    frames: torch.Tensor,
    times: Sequence[int],
    num_frames: int | None = None,
    *,
    estimator: Estimator | None = None,
    motion_scale: float = 1.0,
    strength: float = 1.0,
    intermediate: Any = None,
) -> Guidance:
    """In-between given keyframes: output frame ``j`` between keyframes at ``times[a] < j < times[a+1]`` gets
    intermediate flows to both (``t = (j - times[a]) / (times[a+1] - times[a])``), MoG's two-end guidance.

    Args:
        frames: ``(B, 3, N, H, W)`` keyframes in [0, 1], N >= 2.
        times: N strictly increasing output frame indices.
        num_frames: output length, default ``times[-1] + 1``; frames after the last keyframe are unguided.
        estimator, intermediate: as for :func:`speed`.
    """
    frames = _check_clip(frames, "frames", 2)
    motion_scale, strength = check_motion_scale(motion_scale), check_strength(strength)
    times = [int(t) for t in times]
    if len(times) != frames.shape[2]:
        raise ValueError(f"times: expected one output index per keyframe ({frames.shape[2]}), got {len(times)}")
    if times[0] < 0 or any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError(f"times: expected strictly increasing indices >= 0, got {times}")
    n_out = times[-1] + 1 if num_frames is None else int(num_frames)
    if n_out <= times[-1]:
        raise ValueError(f"num_frames: expected more than the last keyframe index {times[-1]}, got {n_out}")
    entries: dict = {}
    for a in range(len(times) - 1):
        ta, tb = times[a], times[a + 1]
        js = list(range(ta + 1, tb))
        if not js:
            continue
        res = _between(frames[:, :, a], frames[:, :, a + 1], [(j - ta) / (tb - ta) for j in js], estimator, motion_scale, intermediate)
        for j, (ft0, ft1, w0, w1) in zip(js, res):
            entries[j] = [(a, ft0, w0), (a + 1, ft1, w1)]
    return _assemble(frames, times, n_out, entries, 2, motion_scale, strength)
