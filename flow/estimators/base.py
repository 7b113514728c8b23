"""The flow-estimator interface: :class:`FlowEstimator`, and flows of pairs and clips through any of them.

Every estimator takes two batches of frames and returns one batch of flows::

    frame0, frame1: (B, 3, H, W) float in [0, 1] (uint8/uint16 are converted; 1- and 4-channel accepted)
    flow:           (B, 2, H, W) float32, pixels, channel 0 = dx (right), channel 1 = dy (down),
                    backward convention: frame0 at x matches frame1 at x + flow(x) (see flow.warp)
"""
from __future__ import annotations

import torch

from ..checks import check_finite, check_frames, check_same_size, to_float_frames

__all__ = ["FlowEstimator", "WeightsNotFoundError", "bidirectional_flow", "canonical_name", "clip_flows"]


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not on this machine and could not be fetched."""


# ------------------------------------------------------------------------------------------------ base


class FlowEstimator:
    """Base class: two batches of frames in, one batch of flows out.

    Subclasses implement :meth:`_estimate` on shape-checked input (``(B, C, H, W)``, C in 1/3/4, equal
    sizes, any image dtype) and convert it themselves (:meth:`_prepare` for torch models; the OpenCV
    estimators go straight to grey uint8 in numpy, which is 10x cheaper than torch ops on a busy CPU);
    it returns ``(B, 2, H, W)`` float.

    Attributes:
        name: the registry name (``"dis"``, ``"raft_small"``, ...).
        device: where the computation runs (OpenCV estimators: always CPU; the output goes back to the
            input's device).
        batched: ``True`` when one call on a batch is cheaper than one call per pair (network
            estimators); :func:`bidirectional_flow` and :func:`clip_flows` use it.
    """

    name: str = "flow"
    batched: bool = False

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def __call__(self, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:
        """Flow from ``frame0`` to ``frame1``.

        Args:
            frame0: ``(B, 3, H, W)`` float in [0, 1]; uint8/uint16 converted, 1 or 4 channels accepted.
            frame1: same shape as ``frame0``.

        Returns:
            ``(B, 2, H, W)`` float32 on ``frame0``'s device, pixels, channel 0 = dx, channel 1 = dy.
        """
        for name, f in (("frame0", frame0), ("frame1", frame1)):
            check_frames(f, name)
            if f.shape[1] not in (1, 3, 4):
                raise ValueError(
                    f"{name}: expected 1 (grey), 3 (RGB) or 4 (RGBA) channels in dim 1, got {f.shape[1]} "
                    f"(shape {tuple(f.shape)})"
                )
        check_same_size(frame0, frame1)
        if frame0.shape[-2] < 2 or frame0.shape[-1] < 2:
            raise ValueError(f"frames must be at least 2x2 pixels, got {tuple(frame0.shape[-2:])}")
        # no_grad rather than inference_mode: inference tensors cannot be saved for backward, and callers
        # use flows as fixed inputs of trained modules.
        with torch.no_grad():
            flow = self._estimate(frame0, frame1)
        return flow.to(device=frame0.device, dtype=torch.float32)

    @staticmethod
    def _prepare(frames: torch.Tensor, name: str) -> torch.Tensor:
        """(B, C, H, W) any supported dtype -> (B, 3, H, W) float in [0, 1], finite (for torch estimators)."""
        f = to_float_frames(frames, name)
        check_finite(f, name)
        return f

    def _estimate(self, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @property
    def description(self) -> str:
        """What runs, in a user's words (a message or a report line; ``repr`` has every setting)."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_ALIASES = {"raft-small": "raft_small", "raft-large": "raft_large", "raftsmall": "raft_small", "raftlarge": "raft_large"}


def canonical_name(name: str) -> str:
    n = str(name).strip().lower()
    return _ALIASES.get(n, n)



def bidirectional_flow(estimator: FlowEstimator, frame0: torch.Tensor, frame1: torch.Tensor):
    """Forward and backward flow of a pair, in one batched call where the estimator batches.

    Args:
        frame0, frame1: ``(B, 3, H, W)`` float in [0, 1].

    Returns:
        ``(flow01, flow10)``, each ``(B, 2, H, W)`` float32.
    """
    if estimator.batched:
        f0 = to_float_frames(frame0, "frame0")
        f1 = to_float_frames(frame1, "frame1")
        check_same_size(f0, f1)
        both = estimator(torch.cat((f0, f1)), torch.cat((f1, f0)))
        return both[: f0.shape[0]], both[f0.shape[0] :]
    return estimator(frame0, frame1), estimator(frame1, frame0)


def clip_flows(
    estimator: FlowEstimator,
    frames: torch.Tensor,
    *,
    bidirectional: bool = False,
    batch_size: int = 8,
    progress: bool = False,
):
    """Flows between consecutive frames of a clip.

    Args:
        frames: ``(T, 3, H, W)`` float in [0, 1] (or uint8), T >= 2.
        bidirectional: also return the backward flows.
        batch_size: pairs per estimator call (memory vs speed for RAFT).
        progress: show a tqdm bar over pairs.

    Returns:
        ``flows`` ``(T-1, 2, H, W)`` with ``flows[i]`` = frame i -> i+1; with ``bidirectional``
        ``(fwd, bwd)`` where ``bwd[i]`` = frame i+1 -> i.
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames: expected a clip of shape (T, 3, H, W), got {got}")
    if frames.shape[0] < 2:
        raise ValueError(f"frames: expected at least 2 frames (T >= 2) to get a flow, got T = {frames.shape[0]}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    n = frames.shape[0] - 1
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="pair", desc=f"flow ({estimator.name})")
    fwd, bwd = [], []
    try:
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            a, b = frames[i:j], frames[i + 1 : j + 1]
            if bidirectional:
                f, g = bidirectional_flow(estimator, a, b)
                fwd.append(f)
                bwd.append(g)
            else:
                fwd.append(estimator(a, b))
            if bar is not None:
                bar.update(j - i)
    finally:
        if bar is not None:
            bar.close()
    if bidirectional:
        return torch.cat(fwd), torch.cat(bwd)
    return torch.cat(fwd)
