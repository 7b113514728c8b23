"""The one flow convention of the project, and every warp built on it.

Convention (the same as RAFT and RIFE):

* ``flow: (B, 2, H, W)`` float, pixels; channel 0 = dx (right), channel 1 = dy (down).
* A *backward* flow ``F_{a->b}`` says: pixel ``x`` of frame ``a`` is seen at ``x + F(x)`` in frame ``b``.
  Backward warping builds frame ``a`` from frame ``b`` by sampling ``b`` at ``x + F_{a->b}(x)``.
* Pixel centres are at integer coordinates ``0 .. W-1``; normalised coordinates use ``(W - 1)`` with
  ``align_corners=True``, so pixel 0 maps to -1 and pixel W-1 to +1.

Every other module calls these functions rather than ``grid_sample`` directly.

>>> img = torch.arange(16.).view(1, 1, 4, 4)
>>> shift = torch.zeros(1, 2, 4, 4); shift[:, 0] = 1.0     # sample one pixel to the right
>>> backward_warp(img, shift)[0, 0, 0].round(decimals=4).tolist()  # border padding at the right edge
[1.0, 2.0, 3.0, 3.0]
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from .checks import check_finite, check_flow, check_frames

__all__ = [
    "backward_warp_many",
    "base_grid",
    "backward_warp",
    "resize_flow",
    "compose_flows",
    "accumulate_flows",
    "forward_splat",
    "reverse_flow",
]

_GRID_CACHE: dict[tuple, torch.Tensor] = {}


def base_grid(h: int, w: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel coordinates ``(1, 2, H, W)``: channel 0 = x (0..W-1), channel 1 = y (0..H-1).

    >>> base_grid(2, 3)[0, :, 1, 2].tolist()
    [2.0, 1.0]
    """
    key = (h, w, str(device), dtype)
    g = _GRID_CACHE.get(key)
    if g is None:
        ys, xs = torch.meshgrid(
            torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
        )
        g = torch.stack((xs, ys))[None]
        if len(_GRID_CACHE) > 64:  # bounded: many sizes in one process should not leak memory
            _GRID_CACHE.clear()
        _GRID_CACHE[key] = g
    return g


def backward_warp(
    img: torch.Tensor,
    flow: torch.Tensor,
    *,
    mode: Literal["bilinear", "nearest", "bicubic"] = "bilinear",
    padding_mode: Literal["border", "zeros", "reflection"] = "border",
    return_mask: bool = False,
):
    """Sample ``img`` at ``x + flow(x)``.

    Args:
        img: ``(B, C, H, W)`` any float tensor (frames, latents, features).
        flow: ``(B, 2, H, W)`` float, pixels, channel 0 = dx (right), channel 1 = dy (down).
            A batch of 1 broadcasts against ``img``'s batch.
        mode: ``grid_sample`` interpolation.
        padding_mode: what samples outside the image read (``border`` as RIFE and MoG).
        return_mask: also return ``(B, 1, H, W)`` float, 1 where ``x + flow(x)`` lies inside the image.

    Returns:
        The warped ``(B, C, H, W)`` tensor (and the validity mask when asked).
    """
    check_frames(img, "img")
    check_flow(flow, "flow")
    if flow.shape[-2:] != img.shape[-2:]:
        raise ValueError(
            f"flow size {tuple(flow.shape[-2:])} differs from img size {tuple(img.shape[-2:])}; "
            "resize the flow with flow.warp.resize_flow(flow, size) (it rescales magnitudes too)"
        )
    if flow.shape[0] != img.shape[0] and 1 not in (flow.shape[0], img.shape[0]):
        raise ValueError(f"batch sizes differ: img {img.shape[0]}, flow {flow.shape[0]} (one of them may be 1)")
    return _warp(img, flow, mode, padding_mode, return_mask)


def _warp(img, flow, mode="bilinear", padding_mode="border", return_mask=False):
    """:func:`backward_warp` without the checks, for the package's own inner loops on tensors it made
    itself (the NaN scan of a 720p flow costs as much as a quarter of the warp)."""
    if flow.shape[0] != img.shape[0]:
        if flow.shape[0] == 1:
            flow = flow.expand(img.shape[0], -1, -1, -1)
        else:
            img = img.expand(flow.shape[0], -1, -1, -1)
    b, _, h, w = img.shape
    flow = flow.to(img.dtype) if img.is_floating_point() else flow
    coords = base_grid(h, w, img.device, flow.dtype) + flow
    # Normalise with (W - 1): pixel centres 0 and W-1 map to -1 and +1 (align_corners=True).
    # (2x - (W-1)) / (W-1) rounds less than 2x/(W-1) - 1: integer shifts then sample exactly.
    gx = (2.0 * coords[:, 0] - (w - 1)) / max(w - 1, 1)
    gy = (2.0 * coords[:, 1] - (h - 1)) / max(h - 1, 1)
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(img, grid, mode=mode, padding_mode=padding_mode, align_corners=True)
    if not return_mask:
        return out
    inside = (coords[:, 0] >= 0) & (coords[:, 0] <= w - 1) & (coords[:, 1] >= 0) & (coords[:, 1] <= h - 1)
    return out, inside[:, None].to(img.dtype)


def backward_warp_many(img: torch.Tensor, flows: torch.Tensor, *, mode: str = "bilinear",
                       padding_mode: str = "border") -> torch.Tensor:
    """Sample one ``img`` at ``x + flows[:, n](x)`` for every n: ``(B, N, C, H, W)``.

    Equal to N :func:`backward_warp` calls (the same arithmetic for every sample), but ``img`` enters one
    ``grid_sample`` once, the N sampling grids stacked along the height, so autograd saves one input instead
    of N copies (what matters when ``img`` is a wide feature map).

    Args:
        img: ``(B, C, H, W)`` float; flows: ``(B, N, 2, H, W)`` float pixels (the flow convention above).

    >>> img = torch.arange(12.0).view(1, 1, 3, 4)
    >>> flows = torch.stack([torch.zeros(1, 2, 3, 4), torch.ones(1, 2, 3, 4)], 1)
    >>> bool(torch.equal(backward_warp_many(img, flows)[:, 1], backward_warp(img, flows[:, 1])))
    True
    """
    check_frames(img, "img")
    if flows.ndim != 5 or flows.shape[2] != 2 or flows.shape[-2:] != img.shape[-2:] or flows.shape[0] != img.shape[0]:
        raise ValueError(f"flows: expected (B, N, 2, H, W) = ({img.shape[0]}, N, 2, {img.shape[-2]}, {img.shape[-1]}) "
                         f"for img {tuple(img.shape)}, got {tuple(flows.shape)}")
    b, n = flows.shape[:2]
    h, w = img.shape[-2:]
    coords = base_grid(h, w, img.device, img.dtype)[:, None] + flows.to(img.dtype)  # (B, N, 2, H, W)
    gx = (2.0 * coords[:, :, 0] - (w - 1)) / max(w - 1, 1)
    gy = (2.0 * coords[:, :, 1] - (h - 1)) / max(h - 1, 1)
    grid = torch.stack((gx, gy), dim=-1).reshape(b, n * h, w, 2)
    out = F.grid_sample(img, grid, mode=mode, padding_mode=padding_mode, align_corners=True)  # (B, C, N*H, W)
    return out.view(b, img.shape[1], n, h, w).transpose(1, 2)


def resize_flow(
    flow: torch.Tensor, size: tuple[int, int], *, mode: Literal["bilinear", "area", "nearest"] = "bilinear"
) -> torch.Tensor:
    """Resize ``flow`` to ``size = (H', W')`` and rescale its magnitudes by the same factors.

    dx is multiplied by ``W'/W`` and dy by ``H'/H`` (a motion of 4 px at 64 wide is 1 px at 16 wide).

    >>> f = torch.ones(1, 2, 8, 8) * 4
    >>> resize_flow(f, (2, 4))[0, :, 0, 0].tolist()
    [2.0, 1.0]
    """
    check_flow(flow)
    h, w = flow.shape[-2:]
    hh, ww = int(size[0]), int(size[1])
    if hh <= 0 or ww <= 0:
        raise ValueError(f"size must be positive (H, W), got {size}")
    if (hh, ww) == (h, w):
        return flow
    if mode == "area" and (hh > h or ww > w):
        mode = "bilinear"  # area is for shrinking only
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(flow, size=(hh, ww), mode=mode, **kwargs)
    scale = torch.tensor([ww / w, hh / h], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    return out * scale


def compose_flows(flow_ab: torch.Tensor, flow_bc: torch.Tensor) -> torch.Tensor:
    """Backward flow ``a -> c`` from ``a -> b`` and ``b -> c``: ``F_ac(x) = F_ab(x) + F_bc(x + F_ab(x))``.

    >>> a = torch.zeros(1, 2, 5, 5); a[:, 0] = 1.0
    >>> b = torch.zeros(1, 2, 5, 5); b[:, 1] = 2.0
    >>> compose_flows(a, b)[0, :, 2, 2].tolist()
    [1.0, 2.0]
    """
    check_flow(flow_ab, "flow_ab")
    check_flow(flow_bc, "flow_bc")
    return flow_ab + backward_warp(flow_bc, flow_ab)


def accumulate_flows(flows: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Chain consecutive backward flows ``F_{0->1}, F_{1->2}, ...`` into ``F_{0->k}`` for every k.

    Args:
        flows: a sequence of K ``(B, 2, H, W)`` flows, or a ``(B, K, 2, H, W)`` tensor.

    Returns:
        ``(B, K, 2, H, W)``: entry k-1 is the flow from frame 0 to frame k.
    """
    if isinstance(flows, torch.Tensor):
        if flows.ndim != 5 or flows.shape[2] != 2:
            raise ValueError(f"flows: expected (B, K, 2, H, W), got {tuple(flows.shape)}")
        flows = list(flows.unbind(1))
    if len(flows) == 0:
        raise ValueError("flows: expected at least one flow, got an empty sequence")
    acc = [flows[0]]
    for f in flows[1:]:
        acc.append(compose_flows(acc[-1], f))
    return torch.stack(acc, dim=1)


def forward_splat(
    src: torch.Tensor,
    flow: torch.Tensor,
    *,
    mode: Literal["average", "softmax", "sum"] = "average",
    metric: torch.Tensor | None = None,
    eps: float = 1e-7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward-splat ``src`` along ``flow``: each pixel ``x`` is pushed to ``x + flow(x)``.

    Bilinear splatting (each source pixel spreads over its four target neighbours), pure torch with
    ``index_add_`` so it is differentiable and runs anywhere; written by hand because no installed
    library ships softmax splatting (Niklaus & Liu, CVPR 2020) without a CUDA extension.

    Args:
        src: ``(B, C, H, W)`` values to move.
        flow: ``(B, 2, H, W)`` forward flow, pixels.
        mode: ``average`` (normalise by the splatted weights), ``softmax`` (weights ``exp(metric)``, so
            pixels with a larger metric win where several land on the same target) or ``sum`` (no
            normalisation).
        metric: ``(B, 1, H, W)`` importance for ``softmax`` (e.g. ``-alpha * brightness error`` or
            ``-depth``); zeros when omitted.

    Returns:
        ``(out, weight)``: the splatted ``(B, C, H, W)`` and the ``(B, 1, H, W)`` total weight that landed
        on each pixel (0 marks holes, where nothing landed).
    """
    check_frames(src, "src")
    check_flow(flow, "flow")
    if src.shape[0] != flow.shape[0] or src.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"src {tuple(src.shape)} and flow {tuple(flow.shape)} must share batch, H and W")
    if mode == "softmax" and metric is not None:
        check_finite(metric, "metric")
    return _splat(src, flow, mode, metric, eps)


def _splat(src, flow, mode="average", metric=None, eps=1e-7):
    """:func:`forward_splat` without the checks (the package's inner loops, on tensors it made itself)."""
    b, c, h, w = src.shape
    if mode == "softmax":
        if metric is None:
            metric = torch.zeros_like(src[:, :1])
        # Subtract the max for numerical safety: softmax weights are invariant to a shared offset.
        wsrc = torch.exp(metric - metric.amax(dim=(2, 3), keepdim=True))
    elif mode in ("average", "sum"):
        wsrc = torch.ones_like(src[:, :1])
    else:
        raise ValueError(f"mode: expected 'average', 'softmax' or 'sum', got {mode!r}")

    coords = base_grid(h, w, src.device, flow.dtype) + flow
    x, y = coords[:, 0], coords[:, 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    vals = torch.cat((src * wsrc, wsrc), dim=1).reshape(b, c + 1, -1)
    out = torch.zeros(b, c + 1, h * w, dtype=src.dtype, device=src.device)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        wgt = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
        valid = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        wgt = (wgt * valid).reshape(b, 1, -1)
        idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().reshape(b, -1)
        # Batched scatter: offset each batch's indices so one index_add_ covers the whole batch.
        flat_idx = (idx + torch.arange(b, device=src.device)[:, None] * (h * w)).reshape(-1)
        contrib = (vals * wgt).permute(1, 0, 2).reshape(c + 1, -1)
        out_flat = out.permute(1, 0, 2).reshape(c + 1, -1)
        out_flat = out_flat.index_add(1, flat_idx, contrib)
        out = out_flat.reshape(c + 1, b, h * w).permute(1, 0, 2)
    out = out.reshape(b, c + 1, h, w)
    acc, weight = out[:, :c], out[:, c:]
    if mode == "sum":
        return acc, weight
    return acc / (weight + eps) * (weight > eps), weight


def reverse_flow(
    flow: torch.Tensor,
    t: float = 1.0,
    *,
    mode: Literal["average", "softmax"] = "average",
    metric: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow reversal by splatting: from ``F_{0->1}`` get the backward flow ``F_{t->0}``.

    A pixel ``x`` of frame 0 sits at ``x + t F(x)`` at time ``t`` and came from ``x``, so
    ``F_{t->0}(x + t F(x)) = -t F(x)``. With ``t = 1`` this is ``F_{1->0}``.

    Returns:
        ``(flow_t0, weight)``: ``(B, 2, H, W)`` and the ``(B, 1, H, W)`` splat weight (0 = hole, where no
        pixel of frame 0 arrives: disoccluded at time t).
    """
    check_flow(flow)
    if not (0.0 <= float(t) <= 1.0):
        raise ValueError(f"t: expected a time in [0, 1], got {t}")
    return forward_splat(-t * flow, t * flow, mode=mode, metric=metric)
