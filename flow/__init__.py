"""flow: motion estimation and flow-based interpolation.

Never imports diffusers or motionguide (arrows point one way: motionguide -> flow).
Flow convention: see :mod:`flow.warp`.
"""
from .warp import accumulate_flows, backward_warp, compose_flows, forward_splat, resize_flow, reverse_flow

__all__ = ["accumulate_flows", "backward_warp", "compose_flows", "forward_splat", "resize_flow", "reverse_flow"]
