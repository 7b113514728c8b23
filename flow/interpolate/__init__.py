"""Intermediate flows and frame synthesis behind one interface.

Two frames and times ``t`` in (0, 1) in; for every t an :class:`Intermediate` out (``flow_t0``, ``flow_t1``:
``(B, 2, H, W)`` backward flows from time t to each frame, ``mask``: ``(B, 1, H, W)`` frame 0's blend
weight); :func:`synthesize` turns them into the frame at t. Two families of :class:`Interpolator`:

* :class:`FlowInterpolator` (:mod:`flow.interpolate.from_flow`): from the pairwise flow of any estimator of
  :mod:`flow.estimators` (no learned weights with ``dis``/``farneback``);
* :class:`IFNetInterpolator` (:mod:`flow.interpolate.ifnet_adapter`): the RIFE-compatible network of
  :mod:`flow.ifnet`;

and :class:`FusionInterpolator` (:mod:`flow.interpolate.fusion`), which averages several in flow space.
:func:`get_interpolator` (:mod:`flow.interpolate.registry`) builds one by name (``"auto"`` picks the best one
installed and says which). The interface itself lives in :mod:`flow.interpolate.base`.

>>> import torch
>>> f0 = torch.rand(1, 3, 24, 32); f1 = torch.roll(f0, 2, dims=3)   # frame 1 = frame 0 moved 2 px right
>>> interp = FlowInterpolator("dis", preset="medium")
>>> inter = interp.intermediate(f0, f1, [0.5])[0]
>>> [tuple(x.shape) for x in inter]
[(1, 2, 24, 32), (1, 2, 24, 32), (1, 1, 24, 32)]
>>> tuple(interp.interpolate(f0, f1, [0.25, 0.75])[1].shape)
(1, 3, 24, 32)
"""
from ..checks import check_times
from .base import Intermediate, Interpolator, synthesize
from .from_flow import FULL_PIXELS, WORK_PIXELS, FlowInterpolator, linear_intermediate
from .fusion import ConfidenceFusion, FusionInterpolator
from .ifnet_adapter import IFNetInterpolator
from .tiling import TiledInterpolator
from .registry import BACKENDS, available_backends, get_interpolator

__all__ = [
    "Intermediate",
    "Interpolator",
    "FlowInterpolator",
    "IFNetInterpolator",
    "FusionInterpolator",
    "ConfidenceFusion",
    "TiledInterpolator",
    "synthesize",
    "linear_intermediate",
    "check_times",
    "get_interpolator",
    "available_backends",
    "BACKENDS",
    "WORK_PIXELS",
    "FULL_PIXELS",
]
