"""flow: motion estimation and flow-based interpolation.

Never imports diffusers or motionguide (arrows point one way: motionguide -> flow).
Flow convention: see :mod:`flow.warp`. Importing ``flow`` is cheap: the names below resolve on first use
(``flow.backward_warp`` imports torch then), so a light submodule such as :mod:`flow.atomic` loads without
torch; OpenCV, PyAV, torchvision and kornia are imported by the functions that need them.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the submodule that defines it
_LAZY = {
    **dict.fromkeys(("accumulate_flows", "backward_warp", "compose_flows", "forward_splat", "resize_flow",
                     "reverse_flow"), "warp"),
    **dict.fromkeys(("FlowEstimator", "WeightsNotFoundError", "available_estimators", "bidirectional_flow",
                     "clip_flows", "get_estimator"), "estimators"),
    **dict.fromkeys(("read_flo", "read_flow", "read_frames", "read_image", "write_flo", "write_flow",
                     "write_image"), "io"),
    **dict.fromkeys(("VideoReader", "VideoWriter", "read_video", "write_video"), "video"),
    **dict.fromkeys(("epe", "psnr", "ssim"), "metrics"),
    **dict.fromkeys(("fb_consistency", "in_frame_mask", "occlusion_masks", "out_of_frame_mask"), "occlusion"),
    **dict.fromkeys(("flow_to_color", "save_strip"), "viz"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'flow' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
