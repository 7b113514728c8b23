"""Occlusion masks from flows.

* :func:`fb_consistency`: forward-backward consistency (Sundaram, Brox and Keutzer, "Dense point
  trajectories by GPU-accelerated large displacement optical flow", ECCV 2010, eq. 5): a pixel is
  occluded when following the forward flow and then the backward flow does not bring it back, with a
  tolerance that grows with the motion:

      |w(x) + w_hat(x + w(x))|^2 > alpha1 * (|w(x)|^2 + |w_hat(x + w(x))|^2) + alpha2

* :func:`in_frame_mask`: pixels whose flow points inside the other frame, with ``slack`` pixels of margin
  (the one in-frame rule: the guidance builders, the warp's fills and its confidence all use it);
* :func:`out_of_frame_mask`: its complement, pixels whose flow points outside the other frame.
* :func:`occlusion_masks`: both directions at once.

Masks are ``(B, 1, H, W)`` float, 1 = occluded (or out of frame), 0 = visible.

>>> fw = torch.zeros(1, 2, 4, 4); fw[:, 0] = 1.0   # everything moves one pixel right
>>> bw = -fw                                        # and back
>>> fb_consistency(fw, bw, include_out_of_frame=False)[0, 0, 0].tolist()   # consistent everywhere
[0.0, 0.0, 0.0, 0.0]
>>> fb_consistency(fw, bw)[0, 0, 0].tolist()       # the last column has no match in frame 1
[0.0, 0.0, 0.0, 1.0]
>>> out_of_frame_mask(fw)[0, 0, 0].tolist()        # the last column leaves the frame
[0.0, 0.0, 0.0, 1.0]
>>> in_frame_mask(fw * 0.5, slack=0.5)[0, 0, 0].tolist()   # x + 0.5 <= W - 1 + 0.5 everywhere
[1.0, 1.0, 1.0, 1.0]
"""
from __future__ import annotations

import torch

from .checks import check_flow
from .warp import backward_warp, base_grid

__all__ = ["fb_consistency", "in_frame_mask", "out_of_frame_mask", "occlusion_masks"]


def _check_pair(flow_fw: torch.Tensor, flow_bw: torch.Tensor) -> None:
    check_flow(flow_fw, "flow_fw")
    check_flow(flow_bw, "flow_bw")
    if flow_fw.shape != flow_bw.shape:
        raise ValueError(
            f"flow_fw and flow_bw must have the same shape (B, 2, H, W): got {tuple(flow_fw.shape)} and "
            f"{tuple(flow_bw.shape)}; estimate both on the same pair of frames"
        )


def fb_consistency(
    flow_fw: torch.Tensor,
    flow_bw: torch.Tensor,
    *,
    alpha1: float = 0.01,
    alpha2: float = 0.5,
    include_out_of_frame: bool = True,
) -> torch.Tensor:
    """Forward-backward consistency occlusion mask of frame 0 (Sundaram et al. 2010).

    Args:
        flow_fw: ``(B, 2, H, W)`` flow frame 0 -> frame 1, pixels, channel 0 = dx, channel 1 = dy.
        flow_bw: ``(B, 2, H, W)`` flow frame 1 -> frame 0.
        alpha1: tolerance relative to the squared motion (0.01 as in the paper).
        alpha2: absolute tolerance in squared pixels (0.5 as in the paper).
        include_out_of_frame: also mark pixels whose forward flow leaves the frame (their backward flow is
            read from the border and the test there is meaningless).

    Returns:
        ``(B, 1, H, W)`` float, 1 = occluded in frame 1 (no reliable correspondence), 0 = visible.
    """
    _check_pair(flow_fw, flow_bw)
    # Backward flow read at x + w(x), i.e. at the corresponding point in frame 1.
    bw_at = backward_warp(flow_bw, flow_fw, padding_mode="border")
    diff = (flow_fw + bw_at).pow(2).sum(1, keepdim=True)
    bound = alpha1 * (flow_fw.pow(2).sum(1, keepdim=True) + bw_at.pow(2).sum(1, keepdim=True)) + alpha2
    occ = diff > bound
    if include_out_of_frame:
        occ = occ | (out_of_frame_mask(flow_fw) > 0)
    return occ.to(flow_fw.dtype)


def in_frame_mask(flow: torch.Tensor, *, slack: float = 0.0) -> torch.Tensor:
    """``(B, 1, H, W)`` float, 1 where ``x + flow(x)`` lies inside the image: pixel centres ``0..W-1``,
    ``0..H-1``, widened by ``slack`` pixels on every side (0: where a backward warp reads real pixels, not its
    padding; 0.5: the pixels' own extent, as the warp's confidence counts it).

    Args:
        flow: ``(B, 2, H, W)`` float, pixels, channel 0 = dx, channel 1 = dy (its shape is checked; its values
            are not scanned, as the package's inner loops call it on flows they made).
        slack: pixels of margin outside the outermost centres, >= 0.
    """
    if not isinstance(flow, torch.Tensor) or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow: expected shape (B, 2, H, W) (channel 0 = dx, channel 1 = dy), got "
                         f"{tuple(flow.shape) if isinstance(flow, torch.Tensor) else type(flow).__name__}")
    if not slack >= 0:
        raise ValueError(f"slack: expected pixels >= 0, got {slack}")
    h, w = flow.shape[-2:]
    c = base_grid(h, w, flow.device, flow.dtype) + flow
    lo = -float(slack)
    inside = (c[:, 0] >= lo) & (c[:, 0] <= w - 1 + slack) & (c[:, 1] >= lo) & (c[:, 1] <= h - 1 + slack)
    return inside[:, None].to(flow.dtype)


def out_of_frame_mask(flow: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` float, 1 where ``x + flow(x)`` falls outside the image (pixel centres 0..W-1, 0..H-1):
    ``1 - in_frame_mask(flow)``.

    Args:
        flow: ``(B, 2, H, W)`` float, pixels, channel 0 = dx, channel 1 = dy.
    """
    check_flow(flow)
    return 1 - in_frame_mask(flow)


def occlusion_masks(
    flow_fw: torch.Tensor, flow_bw: torch.Tensor, *, alpha1: float = 0.01, alpha2: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Occlusion masks of both frames: ``(occ0, occ1)``, each ``(B, 1, H, W)`` float, 1 = occluded.

    ``occ0`` marks pixels of frame 0 not visible in frame 1 (checked with ``flow_fw``), ``occ1`` pixels of
    frame 1 not visible in frame 0.
    """
    occ0 = fb_consistency(flow_fw, flow_bw, alpha1=alpha1, alpha2=alpha2)
    occ1 = fb_consistency(flow_bw, flow_fw, alpha1=alpha1, alpha2=alpha2)
    return occ0, occ1
