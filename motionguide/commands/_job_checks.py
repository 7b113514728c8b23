"""Checks of a job's command line that read more than the arguments: the options of ``--pipeline`` against
its folder (before a weight loads), and the input's header (before a frame decodes). Light imports only: the
libraries they need load inside each check."""
from __future__ import annotations

import math
import sys


def notice(msg: str) -> None:
    # the readers' own notices start with "note: "; one prefix is enough
    print(f"notice: {msg.removeprefix('note: ')}", file=sys.stderr)


def check_pipeline_options(args, explicit_fill) -> None:
    """The options of --pipeline, and what its folder says, checked before a frame is decoded or a weight loads."""
    from ..errors import UserError

    given = [f for f, v in (("--pipeline-frames", args.pipeline_frames), ("--device", args.device),
                            ("--dtype", args.dtype), ("--offload", args.offload != "none"),
                            ("--vae-tiling", args.vae_tiling)) if v]
    if not args.pipeline:
        if args.composite == "off":
            raise UserError("--composite off gives a pipeline's own clip, but no --pipeline was given; add --pipeline "
                            "DIR, or drop --composite off (the embedded model's output is composited by the "
                            "confidence, or used as it is with --mode unguided)")
        if given:
            notice(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to --pipeline only; the embedded "
                    f"model runs on the CPU in float32, so {'it is' if len(given) == 1 else 'they are'} ignored")
        return
    if args.composite == "off" and explicit_fill is not None:
        notice(f"--fill {explicit_fill} chooses what fills the pixels the flow does not explain; --composite off "
                f"writes the pipeline's own clip, so it does not apply")
    if args.pipeline_frames is not None and args.pipeline_frames < 2:
        raise ValueError(f"--pipeline-frames: expected at least 2 frames per call, got {args.pipeline_frames}")
    from ..pipeline_job import check_request, find_pipeline, resolve_device, resolve_dtype

    src = find_pipeline(args.pipeline)
    device = resolve_device(args.device)
    resolve_dtype(args.dtype, device)
    check_request(src, size=args.pipeline_hw, frames=args.pipeline_frames, offload=args.offload,
                  vae_tiling=args.vae_tiling, device=device, adapter=args.adapters)
    if device.type == "cpu" and args.offload != "none":
        notice(f"--offload {args.offload} with --device cpu moves weights from the CPU to the CPU: it saves no memory")


def check_header(args, max_frames: int = 256) -> None:
    """The input's header only, before a frame decodes or the jobs' libraries load: the variable-frame-rate
    rule and the memory bound (:mod:`motionguide.memory`). Neither loads torch for speed and extend."""
    from ..memory import check_job_memory, probe_video

    if args.demo:
        return
    image_px = 0
    if args.job == "transfer":  # the image's size from its header (flow.io brings torch with it)
        from flow.io import image_size

        image_px = math.prod(image_size(args.image))
    video = probe_video(args.reference if args.job == "transfer" else args.input, args.job)
    check_job_memory(args.job, video, min(video.frames or max_frames + 1, max_frames + 1),
                     factor=getattr(args, "factor", None), frames=getattr(args, "frames", None),
                     limit_gb=args.max_memory, fill=args.fill, compare=bool(args.compare),
                     image_px=image_px)
