"""``motionguide transfer | speed | extend``: the three motion-guided jobs on the command line.

By default they run the embedded model shipped in ``assets/`` (32x32, 8 frames per window); ``--demo``
runs a job on built-in clips rendered from photographs (no input files, nothing downloaded). Every argument and every
output path is checked before a frame is decoded or a model loads.
"""
from __future__ import annotations

import argparse
import math
import re
import sys

from ._help import HelpFormatter
from ._job_checks import check_header as _check_header
from ._job_checks import check_pipeline_options as _check_pipeline_options
from ._job_checks import notice as _notice

#: most frames a job writes: the guidance holds flows for every output frame at the input's resolution,
#: so memory grows with it; longer outputs are made in several runs
MAX_OUTPUT_FRAMES = 256
_OUTPUT_NOTE = (
    "output: a video (.mp4/.mkv/.mov) at the input's frame rate (or --fps) and the input's size: the "
    "flow-based warp, and where the flow is not trusted the warp too (--fill warp, the default) or the embedded "
    "model (32x32: the content it resolves, the warp's detail above it) blended in without seams (--fill "
    "model); --output-size model writes 32x32 frames instead, the warp downscaled with the model where the "
    "flow is not trusted. With --pipeline DIR the pipeline takes the model's place: it runs at --pipeline-size "
    "(default: the input's aspect inside its native size, e.g. 832x480 for Wan) and fills what the flow "
    "does not explain (--fill model is its default), or --output-size model does the same at its size; "
    "--composite off writes the pipeline's own clip instead"
)


def _common(p: argparse.ArgumentParser) -> None:
    from ._choices import DEFAULT_LIMIT_GB, MODES
    from ._outputs import add_overwrite_argument

    p.add_argument("-o", "--output", required=True, metavar="VIDEO", help="output video (.mp4, .mkv, .mov)")
    add_overwrite_argument(p, "output files (-o, --compare)")
    p.add_argument("--motion-scale", type=float, default=1.0,
                   help="multiply the motion (0 freezes, 1 keeps, 2 doubles; 0 .. 4)")
    p.add_argument("--strength", type=float, default=1.0,
                   help="how hard the model is held to the guidance (0 .. 1; 0 = unguided)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps per window [default: the model's, 20 for the embedded model]")
    p.add_argument("--compare", default=None, metavar="PNG",
                   help="also write a strip (.png): inputs, guidance warp, output, flows and, at the input's "
                        "size, the confidence (white: the warp, black: the model)")
    p.add_argument("--mode", choices=MODES, default="both",
                   help="guidance: both levels with the trained adapters, one level, training-free, "
                        "unguided, or flow_only (warping without the model, at the input's size)")
    p.add_argument("--flow", default="dis", help="flow estimator for the guidance (dis, farneback, raft_small, raft_large)")
    p.add_argument("--pipeline", default=None, metavar="DIR_OR_ID",
                   help="a diffusers pipeline (local folder, or a hub id already in the local cache) to run "
                        "instead of the embedded model")
    p.add_argument("--pipeline-size", default=None, metavar="WxH",
                   help="the size --pipeline runs at, e.g. 832x480; sides are multiples of the pipeline's VAE factor "
                        "times its patch (16 for Wan) [default: the input's aspect ratio inside the pipeline's "
                        "default call size, never above the input's size]")
    p.add_argument("--pipeline-frames", type=int, default=None, metavar="N",
                   help="the most frames --pipeline makes per call; longer outputs are made in overlapping windows, "
                        "each starting from frames known or made before it (N: a count its VAE takes, 4k+1 for Wan) "
                        "[default: its native count: 81 for Wan, 49 for CogVideoX, 161 for LTX]")
    p.add_argument("--composite", choices=("confidence", "off"), default="confidence",
                   help="with --pipeline: confidence: the warp where the flow is trusted, the pipeline where it is "
                        "not (a row of --compare shows where); off: the pipeline's own clip, every frame as it made "
                        "it (known frames included), resized to the output's size")
    p.add_argument("--device", default=None, help="where --pipeline runs: cpu, cuda or cuda:N [default: cuda when "
                                                  "available, else cpu]")
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default=None,
                   help="the dtype --pipeline loads in [default: bfloat16 on CUDA, float32 on the CPU]; the "
                        "components its family needs in float32 stay float32 (Wan's VAE and image encoder)")
    p.add_argument("--offload", choices=("none", "model", "group", "sequential"), default="none",
                   help="keep --pipeline's weights on the CPU and move them to the device as they run: a whole "
                        "model at a time (model), groups of blocks (group) or layer by layer (sequential): each "
                        "needs less GPU memory and runs slower than the one before")
    p.add_argument("--vae-tiling", action="store_true",
                   help="decode --pipeline's frames in tiles (less memory at large sizes)")
    p.add_argument("--model", default=None, metavar="DIR", help="embedded base model folder [default: assets/embedded/base]")
    p.add_argument("--adapters", default=None, metavar="DIR",
                   help="adapter folder [default: assets/embedded/adapters for the embedded model, none for --pipeline]")
    p.add_argument("--prompt", default="", help="text prompt for --pipeline (the embedded model takes none)")
    p.add_argument("--fps", type=float, default=None, help="output frame rate [default: the input's]")
    p.add_argument("--output-size", choices=("input", "model"), default="input",
                   help="input: the input's size, the model only where the flow fails; model: the model's own "
                        "size (32x32, or --pipeline-size with --pipeline), the model where the flow fails there "
                        "too (--mode unguided: its output as it is)")
    p.add_argument("--fill", choices=("warp", "model"), default=None,
                   help="at the input's size, what fills the pixels the flow does not explain (the confidence map, "
                        "a row of --compare): the warp, or the model's output blended in [default: warp for the "
                        "embedded model, which ties with the warp there on real footage and costs time "
                        "(docs/BENCHMARKS.md); "
                        "model with --pipeline, whose output is what it runs for]")
    p.add_argument("--demo", action="store_true", help="use built-in clips rendered from scikit-image's photographs as input (no files needed)")
    p.add_argument("--max-memory", type=float, default=DEFAULT_LIMIT_GB, metavar="GB",
                   help=f"refuse, before decoding, a job whose estimated peak memory (from the video's header) is "
                        f"above GB, naming the frame count or input size that fits (default: {DEFAULT_LIMIT_GB:g})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "transfer", help="generate a clip with the motion of a reference and the look of an image",
        description="Motion from --reference, appearance from --image (resized to the reference's size with a "
                    "notice when they differ). Takes a video (any format PyAV reads) and an image (PNG/JPEG).\n"
                    + _OUTPUT_NOTE + "; frame count: the reference's, or --frames.",
        epilog="examples:\n"
               "  motionguide transfer --demo -o demo.mp4 --compare demo.png\n"
               "  motionguide transfer --reference walk.mp4 --image first.png -o out.mp4\n"
               "  motionguide transfer --reference walk.mp4 --image first.png -o out.mp4 --motion-scale 0.5 --frames 16\n"
               "  motionguide transfer --reference walk.mp4 --image first.png -o out.mp4 --pipeline ./wan-i2v",
        formatter_class=HelpFormatter)
    p.add_argument("--reference", metavar="VIDEO", help="reference video whose motion is copied")
    p.add_argument("--image", metavar="IMAGE", help="first frame of the output (PNG/JPEG)")
    p.add_argument("--frames", type=int, default=None, help="output frames [default: the reference's length]")
    _common(p)
    p.set_defaults(func=run, job="transfer")

    p = subparsers.add_parser(
        "speed", help="change the speed of a clip (slow motion fills generated in-betweens)",
        description="Output frame j shows input time j*FACTOR: 0.5 = 2x slow motion, 2 = 2x faster (0.25 .. 4). "
                    "Takes a video.\n" + _OUTPUT_NOTE + "; frame count: (input frames - 1) / FACTOR + 1.",
        epilog="examples:\n"
               "  motionguide speed --demo -o slow.mp4 --compare slow.png\n"
               "  motionguide speed in.mp4 --factor 0.5 -o slow.mp4\n"
               "  motionguide speed in.mp4 --factor 0.25 -o slower.mp4 --mode flow_only   # warping alone, full size\n"
               "  motionguide speed in.mp4 --factor 0.5 -o slow.mp4 --pipeline ./wan-i2v --pipeline-size 832x464\n"
               "      # 1280x720 in, 1280x720 out: the warp, and Wan at 832x464 (upsampled) where the flow fails",
        formatter_class=HelpFormatter)
    p.add_argument("input", nargs="?", metavar="VIDEO", help="input video")
    p.add_argument("--factor", type=float, default=None, help="input frames advanced per output frame (0.25 .. 4)")
    p.add_argument("--interpolator", default="auto",
                   help="the in-betweens' motion: intermediate flows and blend mask of this interpolation backend "
                        "(auto: IFNet when RIFE weights are installed, else dis; ifnet, dis), or 'none' for flow "
                        "reversal of the --flow estimator")
    _common(p)
    p.set_defaults(func=run, job="speed")

    p = subparsers.add_parser(
        "extend", help="continue a clip by N generated frames",
        description="Continue the footage: new frames follow its last motion. Takes a video.\n"
                    + _OUTPUT_NOTE + "; frame count: the input's plus --frames. Where the last frame sees nothing "
                    "(content coming into view, background an object uncovers) the warp shows, per pixel, the "
                    "median of three guesses: the edge continued along the motion, an inpainting, the last frame.",
        epilog="examples:\n"
               "  motionguide extend --demo -o longer.mp4 --compare longer.png\n"
               "  motionguide extend in.mp4 --frames 8 -o longer.mp4\n"
               "  motionguide extend in.mp4 --frames 8 --damping 0.1 -o longer.mp4   # the motion slows down",
        formatter_class=HelpFormatter)
    p.add_argument("input", nargs="?", metavar="VIDEO", help="input video")
    p.add_argument("--frames", type=int, default=None, help="frames to add (1 .. 64)")
    p.add_argument("--damping", type=float, default=0.0, help="slow the continued motion per frame (0 .. <1)")
    _common(p)
    p.set_defaults(func=run, job="extend")


def _check_args(args) -> None:
    """Every value that can be checked without the inputs, in one place, before anything is read. The jobs'
    own checks (:mod:`motionguide.job_options`: the shared options, speed's factor, extend's frames and
    damping) run here as they are, before torch loads; their errors name parameters, which the command line
    turns into flags (:mod:`motionguide.commands._words`)."""
    from flow.atomic import check_outputs

    from ..errors import UserError
    from ..job_options import check_damping, check_factor, check_new_frames
    from ._choices import ESTIMATORS, MAX_EXTEND, SPEED_RANGE

    job = args.job
    explicit_fill, args.pipeline_hw = args.fill, None
    if args.fill is None:  # with --pipeline its output is what it runs for
        args.fill = "model" if args.pipeline else "warp"
    if args.demo:
        given = [f for f, v in (("--reference", getattr(args, "reference", None)), ("--image", getattr(args, "image", None)),
                                ("input", getattr(args, "input", None))) if v]
        if given:
            raise UserError(f"--demo uses built-in clips, but {', '.join(given)} was given too; drop one of them")
        if job == "speed" and args.factor is None:
            args.factor = 0.5
        if job == "extend" and args.frames is None:
            args.frames = 4
    elif job == "transfer" and (not args.reference or not args.image):
        raise UserError("transfer needs --reference REF.mp4 and --image FIRST.png (or --demo)")
    elif job != "transfer" and not args.input:
        raise UserError(f"{job} needs an input video (or --demo)")
    if job == "speed":
        lo, hi = SPEED_RANGE
        if args.factor is None:
            raise UserError(f"speed needs --factor F ({lo:g} .. {hi:g}; 0.5 = 2x slow motion)")
        check_factor(args.factor)
    if args.flow.strip().lower().replace("-", "_") not in ESTIMATORS:
        raise ValueError(f"--flow: expected one of {', '.join(ESTIMATORS)}, got {args.flow!r}")
    if job == "speed" and args.interpolator not in ("auto", "ifnet", "dis", "none"):
        raise ValueError(f"--interpolator: expected auto, ifnet, dis or none, got {args.interpolator!r}")
    if job == "extend":
        if args.frames is None:
            raise UserError(f"extend needs --frames N (1 .. {MAX_EXTEND})")
        check_new_frames(args.frames)
        check_damping(args.damping)
    if job == "transfer" and args.frames is not None and not 2 <= args.frames <= MAX_OUTPUT_FRAMES:
        raise ValueError(f"--frames: expected 2 .. {MAX_OUTPUT_FRAMES}, got {args.frames}; make longer clips in "
                         f"several runs")
    _options(args)  # --motion-scale, --strength, --steps, --seed, --mode, --output-size, --fill
    if not (math.isfinite(args.max_memory) and args.max_memory > 0):
        raise ValueError(f"--max-memory: expected a positive number of GB, got {args.max_memory}")
    if args.fps is not None and not (math.isfinite(args.fps) and 0 < args.fps <= 1000):
        raise ValueError(f"--fps: expected a frame rate above 0 and at most 1000, got {args.fps}")
    if args.pipeline_size is not None:
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", args.pipeline_size)
        if not m or min(int(m[1]), int(m[2])) <= 0:
            raise ValueError(f"--pipeline-size: expected WxH in pixels, both positive (e.g. 832x480), got "
                             f"{args.pipeline_size!r}")
        args.pipeline_hw = (int(m[2]), int(m[1]))
        if not args.pipeline:
            _notice("--pipeline-size applies to --pipeline only; the embedded model works at 32x32, so it is ignored")
    if args.pipeline:
        if args.output_size == "input" and args.fill == "warp" and args.composite == "confidence":
            raise UserError("--fill warp keeps the warp in every pixel, so --pipeline would run for nothing; drop "
                            "--fill warp (the pipeline fills what the flow does not explain) or drop --pipeline "
                            "(the warp alone)")
        if args.output_size == "model" and explicit_fill is not None:
            _notice(f"--fill {args.fill} applies at the input's size; --output-size model writes the pipeline's "
                    f"frames as they are")
        if args.model:
            raise UserError("--model names an embedded model, but --pipeline runs a diffusers pipeline instead; "
                            "drop one of them")
        if args.mode != "both":
            raise UserError(f"--mode {args.mode} applies to the embedded model; --pipeline runs the pipeline with "
                            f"its own guidance mode (trained when --adapters is given, else training-free)")
    else:
        if args.prompt:
            _notice("--prompt applies to --pipeline only; the embedded model takes no prompt, so it is ignored")
        if args.mode == "flow_only" and (args.steps is not None or args.model or args.adapters):
            _notice("--mode flow_only warps without a model, so --steps, --model and --adapters do not apply")
        elif not _uses_model(args) and (args.steps is not None or args.model or args.adapters):
            _notice("at the input's size with --fill warp the model supplies no pixel, so --steps, --model and "
                    "--adapters do not apply; add --fill model or --output-size model to run it")
        if args.mode == "flow_only" and args.fill == "model":
            _notice("--fill model needs a model, but --mode flow_only runs none: the warp fills every pixel")
        if args.output_size == "input" and args.fill == "warp" and args.mode not in ("both", "flow_only", "unguided"):
            _notice(f"--mode {args.mode} shapes the model's output, which --fill warp at the input's size does not "
                    f"use; add --fill model or --output-size model")
        if args.mode in ("unguided", "training_free") and args.adapters:
            _notice(f"--mode {args.mode} does not use trained adapters, so --adapters is ignored")
    _check_paths(args)
    _check_pipeline_options(args, explicit_fill)
    inputs = [x for x in (getattr(args, "reference", None), getattr(args, "image", None), getattr(args, "input", None)) if x]
    check_outputs({"-o": args.output, "--compare": args.compare}, inputs=inputs,
                  kinds={"-o": "video", **({"--compare": "png"} if args.compare else {})}, overwrite=args.overwrite)


def _options(args, **changes):
    """The jobs' shared options from the arguments (checked on construction), with ``changes``."""
    from ..job_options import JobOptions

    given = dict(motion_scale=args.motion_scale, strength=args.strength, steps=args.steps, seed=args.seed,
                 mode=args.mode, flow=args.flow, output_size=args.output_size, fill=args.fill)
    return JobOptions(**{**given, **changes})


_ASSETS_ENV = "MOTIONGUIDE_ASSETS"
_MODEL_FOLDER = "the embedded model's folder (config.json, diffusion_pytorch_model.safetensors, embedded_config.json)"
_ADAPTER_FOLDER = "an adapter folder (motion_guidance.safetensors, motion_guidance.json, gates.safetensors)"


def _check_paths(args) -> None:
    """Each input is the kind of file its option takes (from its first bytes), each folder option a folder."""
    import os
    from pathlib import Path

    from ._choices import EMBEDDED_ADAPTER_FILES, EMBEDDED_MODEL_FILES
    from ._inputs import check_files, check_folder, check_image_file, check_video_file

    if not args.demo:
        if args.job == "transfer":
            check_video_file(args.reference, "--reference")
            check_image_file(args.image, "--image")
        else:
            check_video_file(args.input, "input")
    if args.model:
        check_folder(args.model, "--model", _MODEL_FOLDER)
        check_files(args.model, "--model", EMBEDDED_MODEL_FILES, "an embedded model folder",
                    "pass the folder 'motionguide train base' wrote (DIR/model), or leave --model out")
    if args.adapters:
        check_folder(args.adapters, "--adapters", _ADAPTER_FOLDER)
        if not args.pipeline:  # a pipeline's adapter folder has its own layout, checked by its loader
            check_files(args.adapters, "--adapters", EMBEDDED_ADAPTER_FILES, "an adapter folder of the embedded "
                        "model", "pass the folder 'motionguide train adapters' wrote (DIR/adapters), or leave "
                        "--adapters out")
    env = os.environ.get(_ASSETS_ENV)
    if env:
        check_folder(env, _ASSETS_ENV, "a folder with the embedded model's base/ and adapters/")
        fix = f"point ${_ASSETS_ENV} at a folder with base/ and adapters/ (as assets/embedded), or unset it"
        check_files(Path(env) / "base", f"${_ASSETS_ENV}'s", EMBEDDED_MODEL_FILES, "an embedded model folder", fix)
        check_files(Path(env) / "adapters", f"${_ASSETS_ENV}'s", EMBEDDED_ADAPTER_FILES, "an adapter folder", fix)
    if args.pipeline:
        p = Path(args.pipeline).expanduser()
        if p.exists() and not p.is_dir():
            check_folder(p, "--pipeline", "a pipeline folder written by save_pretrained (with model_index.json)")


def _validate_unused(args) -> None:
    """--model, --adapters and $MOTIONGUIDE_ASSETS when this run does not use them (no embedded model runs, or
    its mode takes no trained adapters): a notice says so (the options' own notices in _check_args), and the
    folders are still loaded and verified, so a broken or foreign one is an error now, not when --fill model
    is added later."""
    import os

    from .. import jobs

    env = os.environ.get(_ASSETS_ENV)
    uses_model = _uses_model(args)
    adapters_unused = bool(args.adapters) and (not uses_model or args.mode in ("unguided", "training_free"))
    if env and args.pipeline:
        _notice(f"${_ASSETS_ENV} ({env}) names the embedded model's weights; --pipeline runs instead, so they are "
                "not used (their files were checked)")
    if args.pipeline or not (adapters_unused or (not uses_model and (args.model or env))):
        return
    if env and not uses_model and not (args.model and args.adapters):
        _notice(f"${_ASSETS_ENV} ({env}) names the embedded model's weights, which this run does not use; they "
                "are checked all the same")
    # the folders the library reads from $MOTIONGUIDE_ASSETS (its base/ and adapters/), named here so that the
    # value of this run is checked, not the one the library read when it was imported
    from pathlib import Path

    model = args.model or (str(Path(env) / "base") if env else None)
    adapters = args.adapters or (str(Path(env) / "adapters") if env else None)
    jobs.load_models(model, adapters, mode="both" if (adapters or not model) else "unguided")


def _inputs(args) -> dict:
    """The job's inputs, decoded; the checks that need them (lengths) follow."""
    import torch

    from flow.io import read_image
    from flow.video import read_video

    from ..jobs import demo_inputs

    if args.demo:
        return demo_inputs(args.job, seed=args.seed)
    limit = MAX_OUTPUT_FRAMES + 1
    if args.job == "transfer":
        n = args.frames if args.frames is not None else limit
        ref, fps = read_video(args.reference, max_frames=n, notify=_notice)
        if args.frames is None and ref.shape[0] >= limit:
            raise ValueError(f"--reference {args.reference}: more than {MAX_OUTPUT_FRAMES} frames, the most one run "
                             f"writes; pass --frames N (at most {MAX_OUTPUT_FRAMES}) or cut the reference into parts")
        return {"reference": ref, "image": read_image(args.image, notify=_notice), "fps": fps}
    clip, fps = read_video(args.input, max_frames=limit, notify=_notice)
    if clip.shape[0] >= limit or _output_frames(args, {"clip": clip}) > MAX_OUTPUT_FRAMES:
        raise ValueError(f"{args.input}: the output would have more than {MAX_OUTPUT_FRAMES} frames, the most one run "
                         f"writes; cut the input into shorter parts and run each")
    return {"clip": clip.to(torch.float32), "fps": fps}


def _uses_model(args) -> bool:
    """At the input's size with the warp as fill the model would supply no pixel, so it is not loaded."""
    return args.mode != "flow_only" and (args.output_size == "model" or args.fill == "model" or args.mode == "unguided")


def _interpolator(args):
    return None if args.interpolator == "none" else args.interpolator


def _output_frames(args, d) -> int:
    if args.job == "transfer":
        return args.frames or d["reference"].shape[0]
    n = d["clip"].shape[0]
    return n + args.frames if args.job == "extend" else math.floor((n - 1) / args.factor) + 1


def _check_inputs(args, d) -> None:
    clip = d["reference"] if args.job == "transfer" else d["clip"]
    if clip.shape[0] < 2:
        what = "--reference" if args.job == "transfer" else "the input"
        raise ValueError(f"{what} has 1 frame; {args.job} estimates motion between frames, so it needs a video of "
                         f"at least 2 frames")


def run(args) -> int:
    _check_args(args)  # before the libraries load: an argument error prints at once
    _check_header(args, MAX_OUTPUT_FRAMES)  # the input's header: variable frame rate, the memory bound
    import torch
    from tqdm.auto import tqdm

    from .. import jobs

    _validate_unused(args)
    d = _inputs(args)
    _check_inputs(args, d)
    if args.pipeline:
        return _run_pipeline(args, d)
    uses_model = _uses_model(args)
    model = jobs.load_models(args.model, args.adapters, mode=args.mode) if uses_model else None
    bar, done = None, 0

    def progress(i):  # the bar starts with the first step, so the notices before it keep their own lines
        nonlocal bar, done
        if bar is None:
            bar = tqdm(desc=args.job, unit=" steps", disable=args.no_progress, dynamic_ncols=True)
        bar.update(1)
        done += 1

    common = dict(model=model, options=_options(args, mode=args.mode if uses_model else "flow_only",
                                                progress=progress))
    print(f"{args.job}: {_output_frames(args, d)} output frames, "
          + ("the warp at the input's size (the model fills no pixel: --fill model to blend it in)" if model is None
             else f"the embedded model in windows of {model.config.num_frames} frames"), file=sys.stderr)
    torch.manual_seed(args.seed)
    try:
        if args.job == "transfer":
            res = jobs.transfer(d["reference"], d["image"], frames=args.frames, **common)
        elif args.job == "speed":
            res = jobs.speed(d["clip"], args.factor, interpolator=_interpolator(args), **common)
        else:
            res = jobs.extend(d["clip"], args.frames, damping=args.damping, **common)
    finally:
        if bar is not None:
            bar.close()
    fps = args.fps or d.get("fps") or 8.0
    _write(args, res, fps)
    h, w = res.frames.shape[2:]
    how = ("the warp; the model supplied no pixel)" if model is None else
           f"{args.mode}, {done} sampler steps in all; the model supplied "
           f"{100 * res.model_share:.1f} % of the pixels)")
    print(f"wrote {args.output}: {res.frames.shape[0]} frames of {w}x{h} at {fps:g} fps ({how}")
    if args.compare:
        print(f"wrote {args.compare}")
    return 0


def _write(args, res, fps: float) -> None:
    """The video and its --compare strip as one unit: both are written to temporaries, then both renamed into
    place; on any failure (a full disk, a file that appeared meanwhile) neither is left."""
    from flow.atomic import atomic_group
    from flow.video import write_video

    from .. import jobs

    with atomic_group([args.output, args.compare]) as (video, strip):
        write_video(video, res.frames, fps, notify=_notice)
        if strip is not None:
            jobs.save_compare(strip, res)


def _run_pipeline(args, d) -> int:
    """The job's guidance, warp and confidence (at the input's size) through a diffusers pipeline
    (:func:`motionguide.jobs.pipeline_job`)."""
    from .. import jobs

    pipe = jobs.load_pipeline(args.pipeline, device=args.device, dtype=args.dtype, offload=args.offload,
                              vae_tiling=args.vae_tiling)
    if args.no_progress and hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    name = type(pipe).__name__
    clip = d["reference"] if args.job == "transfer" else d["clip"]
    if args.pipeline_hw is not None:  # a size the pipeline cannot take is refused before the work
        jobs.pipeline_size(pipe, tuple(clip.shape[-2:]), args.pipeline_hw)
    where = "the input" if args.output_size == "input" else name
    print(f"{args.job}: {_output_frames(args, d)} output frames, "
          + (f"{name}'s own clip at {where}'s size" if args.composite == "off" else
             f"the warp at {where}'s size, {name} where the flow is not trusted"), file=sys.stderr)
    # the guidance, the warp and the confidence at the input's size: the options the pipeline path reads
    common = dict(model=None, options=_options(args, steps=None, seed=0, mode="flow_only", output_size="input",
                                               fill="warp"))
    if args.job == "transfer":
        res = jobs.transfer(d["reference"], d["image"], frames=args.frames, **common)
    elif args.job == "speed":
        res = jobs.speed(d["clip"], args.factor, interpolator=_interpolator(args), **common)
    else:
        res = jobs.extend(d["clip"], args.frames, damping=args.damping, **common)
    res = jobs.pipeline_job(pipe, res, size=args.pipeline_hw, output_size=args.output_size, composite=args.composite,
                            frames=args.pipeline_frames, strength=args.strength,
                            steps=args.steps, seed=args.seed, adapter=args.adapters, prompt=args.prompt)
    fps = args.fps or d.get("fps") or 8.0
    _write(args, res, fps)
    h, w = res.frames.shape[2:]
    how = ("its output as it is" if res.confidence is None else
           f"the pipeline supplied {100 * res.model_share:.1f} % of the pixels")
    print(f"wrote {args.output}: {res.frames.shape[0]} frames of {w}x{h} at {fps:g} fps ({name}; {how})")
    if args.compare:
        print(f"wrote {args.compare}")
    return 0
