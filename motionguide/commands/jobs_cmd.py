"""``motionguide transfer | speed | extend``: the three motion-guided jobs on the command line.

By default they run the embedded model shipped in ``assets/`` (32x32, 8 frames per window); ``--demo``
runs a job on built-in held-out clips (no input files, nothing downloaded).
"""
from __future__ import annotations

import argparse


def _common(p: argparse.ArgumentParser) -> None:
    from ..embedded.generation import MODES

    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .mkv, .mov)")
    p.add_argument("--motion-scale", type=float, default=1.0, help="multiply the motion (0 freezes, 1 keeps, 2 doubles; 0..4)")
    p.add_argument("--strength", type=float, default=1.0, help="how hard the model is held to the guidance (0..1; 0 = unguided)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--steps", type=int, default=None, help="sampling steps per window (default: the model's, 20)")
    p.add_argument("--compare", default=None, metavar="PNG", help="also write a strip: inputs, guidance warp, output, flows")
    p.add_argument("--mode", choices=MODES, default="both",
                   help="guidance: both levels with the trained adapters (default), one level, training-free, "
                        "unguided, or flow_only (warping without the model)")
    p.add_argument("--flow", default="dis", help="flow estimator for the guidance (dis, farneback, raft_small, raft_large)")
    p.add_argument("--pipeline", default=None, metavar="PATH_OR_ID",
                   help="a diffusers pipeline (local folder or cached hub id) to run instead of the embedded model")
    p.add_argument("--model", default=None, metavar="DIR", help="embedded base model folder (default: assets/embedded/base)")
    p.add_argument("--adapters", default=None, metavar="DIR", help="adapter folder (default: assets/embedded/adapters)")
    p.add_argument("--prompt", default="", help="text prompt for --pipeline (the embedded model takes none)")
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: the input's)")
    p.add_argument("--demo", action="store_true", help="use built-in held-out clips as input (no files needed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser("transfer", help="generate a clip with the motion of a reference and the look of an image",
                              description="Motion from --reference, appearance from --image (resized to the "
                                          "reference's size with a notice when they differ).", formatter_class=fmt)
    p.add_argument("--reference", help="reference video whose motion is copied")
    p.add_argument("--image", help="first frame of the output (PNG/JPEG)")
    p.add_argument("--frames", type=int, default=None, help="output frames (default: the reference's length)")
    _common(p)
    p.set_defaults(func=run, job="transfer")

    p = subparsers.add_parser("speed", help="change the speed of a clip (slow motion fills generated in-betweens)",
                              description="Output frame j shows input time j*FACTOR: 0.5 = 2x slow motion, "
                                          "2 = 2x faster (0.25 .. 4).", formatter_class=fmt)
    p.add_argument("input", nargs="?", help="input video")
    p.add_argument("--factor", type=float, default=None, help="input frames advanced per output frame (0.25 .. 4)")
    _common(p)
    p.set_defaults(func=run, job="speed")

    p = subparsers.add_parser("extend", help="continue a clip by N generated frames",
                              description="Continue the footage: new frames follow its last motion.",
                              formatter_class=fmt)
    p.add_argument("input", nargs="?", help="input video")
    p.add_argument("--frames", type=int, default=None, help="frames to add (1 .. 64)")
    p.add_argument("--damping", type=float, default=0.0, help="slow the continued motion per frame (0 .. <1)")
    p.add_argument("--fill-back", type=int, default=3, metavar="N",
                   help="fill what the last frame does not see (background a moving object uncovers) from the "
                        "input frame N frames before it; 0 = the last frame alone")
    _common(p)
    p.set_defaults(func=run, job="extend")


def _inputs(args) -> dict:
    from flow.atomic import check_output_path
    from flow.io import read_image
    from flow.video import read_video

    from ..errors import UserError
    from ..jobs import demo_inputs

    if args.demo:
        d = demo_inputs(args.job, seed=args.seed)
        if args.job == "speed" and args.factor is None:
            args.factor = 0.5
        if args.job == "extend" and args.frames is None:
            args.frames = 4
        return d
    if args.job == "transfer":
        if not args.reference or not args.image:
            raise UserError("transfer needs --reference REF.mp4 and --image FIRST.png (or --demo)")
        check_output_path(args.output, inputs=(args.reference, args.image))
        ref, fps = read_video(args.reference)
        return {"reference": ref.float() / 255 if ref.dtype == __import__("torch").uint8 else ref,
                "image": read_image(args.image), "fps": fps}
    if not args.input:
        raise UserError(f"{args.job} needs an input video (or --demo)")
    check_output_path(args.output, inputs=(args.input,))
    clip, fps = read_video(args.input)
    return {"clip": clip.float() / 255 if clip.dtype == __import__("torch").uint8 else clip, "fps": fps}


def run(args) -> int:
    import torch
    from tqdm.auto import tqdm

    from flow.atomic import check_output_path
    from flow.video import write_video

    from .. import jobs
    from ..errors import UserError

    if args.job == "speed" and args.factor is None and not args.demo:
        raise UserError("speed needs --factor F (0.25 .. 4)")
    if args.job == "extend" and args.frames is None and not args.demo:
        raise UserError("extend needs --frames N")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps: expected a positive number, got {args.steps}")
    check_output_path(args.output)
    if args.compare:
        check_output_path(args.compare)
    d = _inputs(args)
    if args.pipeline:
        return _run_pipeline(args, d)
    model = None if args.mode == "flow_only" else jobs.load_models(args.model, args.adapters, mode=args.mode)
    steps = args.steps or (model.config.steps if model is not None else 1)
    common = dict(model=model, motion_scale=args.motion_scale, strength=args.strength, steps=args.steps,
                  seed=args.seed, mode=args.mode, flow=args.flow)
    bar = tqdm(desc=args.job, unit="step", disable=args.no_progress or model is None)
    common["progress"] = lambda i: bar.update(1)
    torch.manual_seed(args.seed)
    try:
        if args.job == "transfer":
            res = jobs.transfer(d["reference"], d["image"], frames=args.frames, **common)
        elif args.job == "speed":
            res = jobs.speed(d["clip"], args.factor, **common)
        else:
            res = jobs.extend(d["clip"], args.frames, damping=args.damping, fill_back=args.fill_back, **common)
    finally:
        bar.close()
    fps = args.fps or d.get("fps") or 8.0
    write_video(args.output, res.frames, fps)
    print(f"wrote {args.output}: {res.frames.shape[0]} frames of {res.frames.shape[2]}x{res.frames.shape[3]} "
          f"at {fps:g} fps ({args.mode}, {steps} steps per window)")
    if args.compare:
        jobs.save_compare(args.compare, res)
        print(f"wrote {args.compare}")
    return 0


def _run_pipeline(args, d) -> int:
    """The job's guidance (built at the input's size) through a diffusers pipeline."""
    from flow.video import write_video

    from .. import jobs
    from ..embedded.windows import generate_windows, resize_guidance, window

    pipe = jobs.load_pipeline(args.pipeline)
    common = dict(model=None, motion_scale=args.motion_scale, strength=args.strength, mode="flow_only", flow=args.flow)
    if args.job == "transfer":
        res = jobs.transfer(d["reference"], d["image"], frames=args.frames, **common)
    elif args.job == "speed":
        res = jobs.speed(d["clip"], args.factor, **common)
    else:
        res = jobs.extend(d["clip"], args.frames, damping=args.damping, fill_back=args.fill_back, **common)
    frames = jobs.run_pipeline(pipe, res.guidance, strength=args.strength, steps=args.steps, seed=args.seed,
                               adapter=args.adapters, prompt=args.prompt)
    fps = args.fps or d.get("fps") or 8.0
    write_video(args.output, frames, fps)
    print(f"wrote {args.output}: {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[3]} ({type(pipe).__name__})")
    if args.compare:
        n = frames.shape[0]
        g = window(res.guidance, 0, n, {}) if n != res.guidance.num_frames else res.guidance
        g = resize_guidance(g, tuple(frames.shape[-2:]))
        warped = generate_windows(None, g, mode="flow_only")[0].transpose(0, 1)
        jobs.save_compare(args.compare, jobs.JobResult(frames, g, warped, res.inputs))
        print(f"wrote {args.compare}")
    return 0
