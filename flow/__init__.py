"""flow: motion estimation and flow-based interpolation.

Never imports diffusers or motionguide (arrows point one way: motionguide -> flow).
Flow convention: see :mod:`flow.warp`. Importing ``flow`` loads torch and numpy only; OpenCV, PyAV,
torchvision and kornia are imported by the functions that need them.
"""
from .estimators import (
    FlowEstimator,
    WeightsNotFoundError,
    available_estimators,
    bidirectional_flow,
    clip_flows,
    get_estimator,
)
from .io import read_flo, read_flow, read_frames, read_image, write_flo, write_flow, write_image
from .metrics import epe, psnr, ssim
from .occlusion import fb_consistency, occlusion_masks, out_of_frame_mask
from .video import VideoReader, VideoWriter, read_video, write_video
from .viz import flow_to_color, save_strip
from .warp import accumulate_flows, backward_warp, compose_flows, forward_splat, resize_flow, reverse_flow

__all__ = [
    "accumulate_flows", "backward_warp", "compose_flows", "forward_splat", "resize_flow", "reverse_flow",
    "FlowEstimator", "WeightsNotFoundError", "available_estimators", "bidirectional_flow", "clip_flows",
    "get_estimator",
    "read_flo", "read_flow", "read_frames", "read_image", "write_flo", "write_flow", "write_image",
    "VideoReader", "VideoWriter", "read_video", "write_video",
    "epe", "psnr", "ssim",
    "fb_consistency", "occlusion_masks", "out_of_frame_mask",
    "flow_to_color", "save_strip",
]
