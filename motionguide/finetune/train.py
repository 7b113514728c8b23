"""``train_pipeline(config)``: check everything, then run the pipeline recipe on the shared training loop.

Before anything loads or is written: the pipeline folder (class, components), the videos and their captions
(readable, long enough for a clip), the buckets (each gets clips), the frame count against the registry's VAE
for the class, and FSDP only under several processes. The effective settings are printed. The loop then
refuses a checkpoint of another kind before the pipeline loads; the kind names the pipeline class
(``pipeline:WanImageToVideoPipeline``), so a checkpoint of another class is refused. ``cache_only`` builds
the cache (every process its share) and stops before training.

A run that fails during set-up leaves no output folder it created. A full disk while a checkpoint is written
is a one-line :class:`~motionguide.errors.UserError`; the previous checkpoint stays intact (the loop writes
folders atomically) and the same command resumes from it.
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import torch
from accelerate import PartialState

from ..errors import UserError
from ..registry import get_spec
from ..training import LoopConfig, run_training
from .buckets import plan_buckets
from .config import PipelineTrainConfig
from .folder import check_pipeline_folder, call_defaults
from .recipe import PipelineRecipe
from .videos import find_videos, plan_clips

__all__ = ["train_pipeline", "kind_of", "fsdp_requested"]


def _notice(msg: str) -> None:
    print(f"notice: {msg}", file=sys.stderr)


def kind_of(class_name: str) -> str:
    """The shared loop's ``kind`` of a pipeline run: names the pipeline class."""
    return f"pipeline:{class_name}"


def _checkpoint_step(out: Path) -> int | None:
    try:
        return int(json.loads((out / "checkpoint" / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fsdp_requested() -> bool:
    """True when the run was launched for FSDP (``accelerate launch`` with an FSDP config sets
    ``ACCELERATE_USE_FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")


def _processes() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def train_pipeline(cfg: PipelineTrainConfig, *, log: Callable[[str], None] = print,
                   notice: Callable[[str], None] = _notice) -> dict:
    """Train MoG adapters for the pipeline in ``cfg.pipeline`` on ``cfg.videos``; returns the loop's result
    ``{"step", "loss", "out"}`` with ``adapters``: the adapter folder (``OUT/adapters``)."""
    folder = check_pipeline_folder(cfg.pipeline)
    if cfg.last_frame and (folder.family != "wan" or "between" not in cfg.layouts):
        raise UserError("--last-frame conditions Wan's in-betweening on the last frame (FLF2V): it needs a "
                        "WanImageToVideoPipeline and the between layout" + (f", not a {folder.class_name}"
                                                                           if folder.family != "wan" else ""))
    if fsdp_requested() and _processes() < 2:
        raise UserError("FSDP shards the model over several processes, and this run has one; launch it with "
                        "`accelerate launch --config_file fsdp.yaml --num_processes N -m motionguide train pipeline "
                        "...` (N >= 2), or without the FSDP config for one process")
    videos = find_videos(cfg.videos)
    frames = cfg.frames or call_defaults(folder)[2]
    buckets = [(b[0], b[1], b[2]) for b in cfg.buckets] if cfg.buckets else \
        [((cfg.size or (None, None))[0], (cfg.size or (None, None))[1], frames)]
    vae = get_spec(folder.transformer_class).vae
    for b in buckets:
        try:
            vae.check_num_frames(b[2])
        except ValueError as e:
            raise UserError(f"--{'buckets' if cfg.buckets else 'frames'}: {e}") from None
    held = cfg.validation_clips
    specs = plan_buckets(videos, [(h or 1, w or 1, n) for h, w, n in buckets], stride=cfg.stride,
                         clips=cfg.clips + held, batch_size=min(cfg.batch_size, cfg.clips), notice=notice, held=held) \
        if cfg.buckets else _plain_plan(videos, frames, cfg, held, notice)
    if len(specs) - held < cfg.batch_size:
        raise UserError(f"--batch-size {cfg.batch_size} needs as many clips; the videos give {len(specs) - held}"
                        + (f" after the {held} held out for validation" if held else ""))
    if os.environ.get("RANK", "0") == "0":
        log(cfg.settings(folder.family, _processes()))
    loop = LoopConfig(kind=kind_of(folder.class_name), steps=cfg.steps, out=cfg.out, lr=cfg.lr, warmup=cfg.warmup,
                      ema=cfg.ema, seed=cfg.seed, checkpoint_every=cfg.checkpoint_every, resume=cfg.resume,
                      threads=cfg.threads, progress=cfg.progress, export_name="adapters",
                      mixed_precision=cfg.mixed_precision, validate_every=cfg.validate_every,
                      grad_accum=cfg.grad_accum, timeout_minutes=cfg.nccl_timeout, fsdp=fsdp_requested())
    out = Path(cfg.out)
    fresh = not out.exists()
    make = lambda: PipelineRecipe(cfg, folder, specs, buckets, held=held, fsdp=loop.fsdp,  # noqa: E731
                                  notice=notice, log=log)
    if cfg.cache_only:
        return _cache_only(cfg, make, log)
    try:
        res = run_training(loop, make, config={"pipeline_class": folder.class_name, **cfg.to_dict()}, log=log)
    except Exception as e:
        step = _checkpoint_step(out)
        if fresh and step is None:  # failed before a checkpoint: no partial output folder, except the cache
            _remove_run(out)  # entries built so far (each complete), which the next run reuses
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            kept = (f"the previous checkpoint (step {step}) in {out / 'checkpoint'} is intact: free space and run the "
                    f"same command to resume" if step is not None else "nothing was kept")
            raise UserError(f"the disk is full ({e.strerror or e}) while writing {out}; {kept}") from None
        raise
    res["adapters"] = str(out / "adapters")
    return res


def _remove_run(out: Path) -> None:
    """Remove a run folder that failed before its first checkpoint; keep ``out/cache`` when it holds entries."""
    cache = out / "cache"
    if not any(cache.glob("*.safetensors")):
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p != cache:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _plain_plan(videos, frames, cfg, held, notice):
    return plan_clips(videos, frames=frames, stride=cfg.stride, clips=cfg.clips + held, notice=notice, held=held)


def _cache_only(cfg: PipelineTrainConfig, make, log) -> dict:
    """Build the cache (every process its share, under ``cfg.nccl_timeout``) and stop."""
    PartialState(cpu=not torch.cuda.is_available(), timeout=datetime.timedelta(minutes=cfg.nccl_timeout))
    recipe = make()
    n = len(recipe.data.entries) + len(recipe.data.held)
    log(f"the cache in {recipe.cache.folder} holds every clip of this run ({n}); train with the same options")
    return {"step": 0, "loss": float("nan"), "out": str(cfg.out), "cache": str(recipe.cache.folder), "clips": n}
