"""Accuracy metrics: endpoint error for flows, PSNR and SSIM for frames.

* :func:`epe`: mean endpoint error ``|flow - gt|_2`` over a mask (all pixels, non-occluded, valid).
* :func:`flow_metrics`: EPE all / non-occluded and the 1/3/5 px outlier rates in one call.
* :func:`psnr`: peak signal-to-noise ratio, per image, averaged over the batch.
* :func:`ssim`: structural similarity (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5) from
  ``kornia.metrics.ssim``, computed on the valid region (no padding) and averaged.

>>> f = torch.zeros(1, 2, 4, 4); g = torch.zeros(1, 2, 4, 4); g[:, 0] = 3.0; g[:, 1] = 4.0
>>> epe(f, g)
5.0
>>> round(psnr(torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.1)), 4)
20.0
"""
from __future__ import annotations

import math

import torch

__all__ = ["epe", "epe_map", "flow_metrics", "psnr", "ssim"]


def _as_bchw(t: torch.Tensor, name: str, c: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] != c:
        raise ValueError(f"{name}: expected shape ({c}, H, W) or (B, {c}, H, W), got {tuple(t.shape)}")
    return t


def _as_mask(mask: torch.Tensor, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Mask as (B, 1, H, W) bool; accepts (H, W), (B, H, W), (1|B, 1, H, W), bool or float (nonzero = keep)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(mask).__name__}")
    m = mask
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != like.shape[-2:] or m.shape[0] not in (1, like.shape[0]):
        raise ValueError(
            f"{name}: expected (H, W), (B, H, W) or (B, 1, H, W) with H x W = {tuple(like.shape[-2:])}, "
            f"got {tuple(mask.shape)}"
        )
    return (m != 0).to(like.device).expand(like.shape[0], 1, *like.shape[-2:])


def epe_map(flow: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-pixel endpoint error ``(B, 1, H, W)`` of ``flow`` against ``gt`` (both ``(B, 2, H, W)`` or ``(2, H, W)``)."""
    f = _as_bchw(flow, "flow", 2)
    g = _as_bchw(gt, "gt", 2).to(f.device)
    if f.shape != g.shape:
        raise ValueError(
            f"flow and gt must have the same shape: got {tuple(flow.shape)} and {tuple(gt.shape)}; "
            "resize the flow with flow.warp.resize_flow (it rescales magnitudes)"
        )
    return (f.float() - g.float()).pow(2).sum(1, keepdim=True).sqrt()


def epe(flow: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean endpoint error in pixels over ``mask``.

    Args:
        flow: ``(B, 2, H, W)`` or ``(2, H, W)`` estimated flow, pixels.
        gt: same shape, ground truth. Non-finite ground-truth pixels are left out (Sintel/KITTI mark
            unknown flow that way).
        mask: optional ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``, nonzero = include (e.g. non-occluded
            and valid pixels).

    Returns:
        A Python float; ``nan`` when the mask selects no pixel.
    """
    e = epe_map(flow, torch.nan_to_num(gt, nan=0.0, posinf=0.0, neginf=0.0) if isinstance(gt, torch.Tensor) else gt)
    keep = _as_bchw(gt, "gt", 2).isfinite().all(1, keepdim=True).to(e.device)
    if mask is not None:
        keep = keep & _as_mask(mask, e)
    n = int(keep.sum())
    return float(e[keep].sum() / n) if n else math.nan


def flow_metrics(
    flow: torch.Tensor,
    gt: torch.Tensor,
    *,
    occlusion: torch.Tensor | None = None,
    invalid: torch.Tensor | None = None,
) -> dict[str, float]:
    """EPE over all valid pixels and over non-occluded valid pixels, plus outlier rates.

    Args:
        flow, gt: ``(B, 2, H, W)`` or ``(2, H, W)``.
        occlusion: optional mask, nonzero = occluded (Sintel ``gt/occlusions``).
        invalid: optional mask, nonzero = no ground truth (Sintel ``gt/invalid``).

    Returns:
        ``{"epe", "epe_noc", "px1", "px3", "px5"}``: mean EPE (all valid), mean EPE (non-occluded; equal
        to ``epe`` without an occlusion mask), and the fraction of valid pixels with EPE above 1/3/5 px.
    """
    e = epe_map(flow, torch.nan_to_num(gt))
    valid = _as_bchw(gt, "gt", 2).isfinite().all(1, keepdim=True).to(e.device)
    if invalid is not None:
        valid = valid & ~_as_mask(invalid, e, "invalid")
    noc = valid & ~_as_mask(occlusion, e, "occlusion") if occlusion is not None else valid
    ev = e[valid]
    n = max(int(valid.sum()), 1)
    return {
        "epe": float(ev.sum() / n) if valid.any() else math.nan,
        "epe_noc": float(e[noc].mean()) if noc.any() else math.nan,
        "px1": float((ev > 1).sum() / n),
        "px3": float((ev > 3).sum() / n),
        "px5": float((ev > 5).sum() / n),
    }


def _check_images(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for n, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{n}: expected a torch.Tensor (B, C, H, W), got {type(t).__name__}")
    if a.ndim == 3:
        a, b = a[None], b[None] if b.ndim == 3 else b
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(
            f"a and b must be images of the same shape (B, C, H, W) or (C, H, W): got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    return a.float(), b.float().to(a.device)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB of ``a`` against ``b`` (``(B, C, H, W)`` or ``(C, H, W)``), per image, averaged over B.

    Identical images give ``inf``. Per-image averaging is the convention of frame-interpolation papers.
    """
    a, b = _check_images(a, b)
    mse = (a - b).pow(2).flatten(1).mean(1)
    vals = 10.0 * torch.log10(data_range**2 / mse)  # mse == 0 -> inf, as it should
    return float(vals.mean())


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window_size: int = 11) -> float:
    """SSIM of ``a`` against ``b`` (``(B, C, H, W)`` or ``(C, H, W)``), mean over channels, pixels and batch.

    Uses ``kornia.metrics.ssim`` (Gaussian window, sigma 1.5) with ``padding="valid"`` so the border does
    not enter the mean, matching ``skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False)``. Images must be at least ``window_size`` pixels on each side.
    """
    import kornia

    a, b = _check_images(a, b)
    if min(a.shape[-2:]) < window_size:
        raise ValueError(f"ssim: images must be at least {window_size}x{window_size}, got {tuple(a.shape[-2:])}")
    return float(kornia.metrics.ssim(a, b, window_size, max_val=data_range, padding="valid").mean())
