"""IFNet: a RIFE-compatible intermediate-flow network that loads the published RIFE checkpoints.

Written from the checkpoints' key/shape structure and the papers (Huang et al., "Real-Time Intermediate Flow
Estimation for Video Frame Interpolation", ECCV 2022; the Practical-RIFE model notes), not copied from the
reference code. Two layouts are supported, detected from the checkpoint's keys and shapes:

* ``"v3.6"`` (RIFE HD v3.6, :mod:`flow.ifnet.v3`): t = 0.5 per pass; other t by recursive bisection.
* ``"v4.25"`` (Practical-RIFE 4.25/4.26, :mod:`flow.ifnet.v4`): the time t is an input, any t in one pass.

Both produce, at every output pixel, the backward flows to the two frames and a blend-mask logit. Flow
convention (the project's, :mod:`flow.warp`): ``flow_t0`` (B, 2, H, W) pixels, ch0 = dx right, ch1 = dy down;
the frame at t is sampled from frame0 at ``x + flow_t0(x)``. RIFE's internal ``warp`` is exactly this
convention (``align_corners=True``, border padding), so its flows are ours without conversion.

Where things live:

* :mod:`flow.ifnet.network`: :class:`IFNet`, the inference driver (checks, padding, times, flip TTA);
* :mod:`flow.ifnet.v3`, :mod:`flow.ifnet.v4`: the two architectures (v3's bisection lives with it);
* :mod:`flow.ifnet.layers`: their blocks and shared tensor helpers;
* :mod:`flow.ifnet.loading`: reading a checkpoint safely, detecting its layout, :func:`load_ifnet`.

>>> import torch
>>> net = IFNet.random("v4.25", seed=0)
>>> f0, f1 = torch.rand(1, 3, 40, 56), torch.rand(1, 3, 40, 56)
>>> [tuple(x.shape) for x in net.intermediate(f0, f1, [0.5])[0]]
[(1, 2, 40, 56), (1, 2, 40, 56), (1, 1, 40, 56)]
"""
from .loading import detect_version, load_ifnet, read_checkpoint
from .network import SCALES, VERSIONS, IFNet
from .v3 import IFNetV3
from .v4 import IFNetV4

__all__ = ["IFNet", "IFNetV3", "IFNetV4", "load_ifnet", "read_checkpoint", "detect_version", "VERSIONS", "SCALES"]
