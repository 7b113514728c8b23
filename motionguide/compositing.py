"""Generation where the flow fails: a per-pixel confidence in the flow-based synthesis, and the seamless
replacement of the pixels it does not trust by a generative model's output.

A generative model is worth running only where the flow cannot explain a pixel; flow-based synthesis is
cheap at any resolution and exact where motion is simple. So a job composes the two, as flow-guided video
inpainting systems do: the warp at the input's resolution wherever the flow is trusted, the model's output
where it is not (at its own size: the bands it resolves, the warp's detail above them), blended across the
scales of a Laplacian pyramid so that no seam shows (Burt & Adelson 1983). The confidence comes with the warp
from one pass over the sources (:func:`motionguide.warping.synthesize`, where its terms are defined: visibility,
in frame, agreement of two sources); :func:`composite` takes both as given.

Shapes: clips ``(B, 3, T, H, W)`` float in [0, 1]; the confidence ``(B, 1, T, H, W)`` in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .warping import AGREEMENT_SCALE, synthesize

__all__ = ["AGREEMENT_SCALE", "confidence", "laplacian_blend", "upsample", "composite"]


def confidence(guidance, *, agreement: bool = True) -> torch.Tensor:
    """How far the flow-based synthesis of ``guidance`` can be trusted, per pixel: ``(B, 1, T, H, W)``
    (:func:`motionguide.warping.synthesize`'s; a caller that needs the warp too takes both from one
    :class:`~motionguide.warping.Synthesis`).

    agreement: include the agreement of two sources (False: visibility and in-frame only)."""
    return synthesize(guidance, agreement=agreement).confidence


def _down(x: torch.Tensor) -> torch.Tensor:
    # a 5-tap binomial blur then half size (rounded up, so odd sizes keep their last row and column)
    k = x.new_tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    c = x.shape[1]
    x = F.pad(x, (2, 2, 2, 2), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    x = F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)
    return x[:, :, ::2, ::2]


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def laplacian_blend(base: torch.Tensor, other: torch.Tensor, alpha: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """``(N, C, H, W)``: ``other`` where ``alpha`` is 1, ``base`` where it is 0, blended band by band.

    Each band of the two images' Laplacian pyramids is mixed by the matching level of ``alpha``'s Gaussian
    pyramid, so the transition is as wide as each band's scale: fine detail switches sharply, smooth shading
    gradually, and no seam shows. Where ``alpha`` is 0 everywhere, ``base`` comes back unchanged.

    base, other: ``(N, C, H, W)`` float; alpha: ``(N, 1, H, W)`` in [0, 1].
    """
    if base.shape != other.shape or alpha.shape[0] != base.shape[0] or alpha.shape[-2:] != base.shape[-2:]:
        raise ValueError(f"laplacian_blend: base {tuple(base.shape)}, other {tuple(other.shape)} and alpha "
                         f"{tuple(alpha.shape)} must share (N, H, W)")
    if not bool((alpha > 0).any()):
        return base
    ga, gb, gm = [base], [other], [alpha]
    for _ in range(levels - 1):
        if min(ga[-1].shape[-2:]) < 16:  # the coarsest band stays at least 8 px: the blend stays local
            break
        ga.append(_down(ga[-1]))
        gb.append(_down(gb[-1]))
        gm.append(_down(gm[-1]))
    out = ga[-1] * (1 - gm[-1]) + gb[-1] * gm[-1]
    for i in range(len(ga) - 2, -1, -1):
        size = ga[i].shape[-2:]
        la = ga[i] - _up(ga[i + 1], size)
        lb = gb[i] - _up(gb[i + 1], size)
        out = _up(out, size) + la * (1 - gm[i]) + lb * gm[i]
    return out


def _fit(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # area when shrinking on both sides (each pixel the mean of those it covers), bicubic otherwise
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.interpolate(x, size=size, mode="area")
    return upsample(x, size)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, C, h, w)`` frames in [0, 1] enlarged to ``size`` (bicubic, clamped)."""
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def composite(warp: torch.Tensor, generated: torch.Tensor, conf: torch.Tensor, *,
              at_generated: bool = False) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The warp where ``conf`` trusts it, the generated clip where it does not: ``(out, conf, share)``.

    warp: ``(B, 3, T, H, W)`` the flow-based synthesis; generated: ``(B, 3, T, h, w)`` the model's clip at its
    own size; conf: ``(B, 1, T, H, W)`` at the warp's size.

    at_generated False (the input's size): the output is at the warp's size. A model smaller than the warp
    knows nothing finer than its own grid, so it supplies the bands it resolves and the warp keeps its detail
    above them: the fill is ``up(generated) + warp - up(down(warp))`` (down: area to the model's size, up:
    bicubic), which is the warp itself wherever the model reproduces the downscaled warp. Upsampled alone, a
    32 px model's output is a blur of a 640 px frame, and it scores below the warp even inside the pixels
    the warp gets wrong (``benchmarks/real_footage.py``).

    at_generated True (the model's size): the output is at the generated clip's size, the warp and the
    confidence area-downscaled to it, so the model supplies the same pixels at either size.

    Returns the output, the confidence on its grid, and share: the mean of ``1 - conf`` over the frames, the
    fraction of the pixels the model supplied.
    """
    b, _, t, h, w = warp.shape
    if generated.shape[:3] != warp.shape[:3] or conf.shape != (b, 1, t, h, w):
        raise ValueError(f"composite: warp {tuple(warp.shape)}, generated {tuple(generated.shape)} and confidence "
                         f"{tuple(conf.shape)} must share (B, T), the confidence the warp's size")
    flat = lambda x: x.transpose(1, 2).reshape(b * t, x.shape[1], *x.shape[-2:])  # noqa: E731
    base, gen, c = flat(warp), flat(generated), flat(conf)
    small = tuple(gen.shape[-2:])
    if at_generated and small != (h, w):
        base, c = _fit(base, small), _fit(c, small)
    elif small[0] <= h and small[1] <= w and small != (h, w):
        gen = (upsample(gen, (h, w)) + base - upsample(_fit(base, small), (h, w))).clamp(0, 1)
    elif small != (h, w):  # a model larger than the output on one side (e.g. --pipeline-size): its own detail
        gen = _fit(gen, (h, w))
    alpha = 1 - c
    out = laplacian_blend(base, gen, alpha).clamp(0, 1)
    unflat = lambda x: x.reshape(b, t, x.shape[1], *x.shape[-2:]).transpose(1, 2)  # noqa: E731
    return unflat(out), unflat(c), float(alpha.mean())
