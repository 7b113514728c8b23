"""Optical-flow estimators behind one small interface.

Every estimator is a :class:`FlowEstimator`: call it with two batches of frames and get a flow back::

    est = get_estimator("dis")                      # or "farneback", "raft_small", "raft_large"
    flow = est(frame0, frame1)
    # frame0, frame1: (B, 3, H, W) float in [0, 1] (uint8/uint16 are converted; 1- and 4-channel accepted)
    # flow:           (B, 2, H, W) float32, pixels, channel 0 = dx (right), channel 1 = dy (down),
    #                 backward convention: frame0 at x matches frame1 at x + flow(x) (see flow.warp)

Where things live:

* :mod:`flow.estimators.base`: the interface, :func:`bidirectional_flow` and :func:`clip_flows`;
* :mod:`flow.estimators.opencv`: ``dis`` (OpenCV Dense Inverse Search, with its presets) and ``farneback``;
* :mod:`flow.estimators.raft`: ``raft_small`` / ``raft_large`` (torchvision), their weights;
* :mod:`flow.estimators.registry`: :func:`get_estimator` by name.

Nothing is downloaded at import.
"""
from .base import FlowEstimator, WeightsNotFoundError, bidirectional_flow, clip_flows
from .opencv import DEFAULT_DIS_PRESET, DIS_PRESETS, DISEstimator, FarnebackEstimator
from .raft import RAFTEstimator, find_raft_weights
from .registry import available_estimators, get_estimator

__all__ = [
    "FlowEstimator",
    "DISEstimator",
    "FarnebackEstimator",
    "RAFTEstimator",
    "WeightsNotFoundError",
    "DEFAULT_DIS_PRESET",
    "DIS_PRESETS",
    "get_estimator",
    "available_estimators",
    "find_raft_weights",
    "bidirectional_flow",
    "clip_flows",
]
