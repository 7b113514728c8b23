"""``train_pipeline(config)``: check everything, then run the pipeline recipe on the shared training loop.

Before anything loads or is written: the pipeline folder (class, components), the videos (readable, long
enough for a clip), the frame count against the registry's VAE for the class. The loop then refuses a
checkpoint of another kind before the pipeline loads; the kind names the pipeline class
(``pipeline:WanImageToVideoPipeline``), so a checkpoint of another class is refused.

A run that fails during set-up leaves no output folder it created. A full disk while a checkpoint is written
is a one-line :class:`~motionguide.errors.UserError`; the previous checkpoint stays intact (the loop writes
folders atomically) and the same command resumes from it.
"""
from __future__ import annotations

import errno
import json
import shutil
import sys
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..registry import get_spec
from ..training import LoopConfig, run_training
from .config import PipelineTrainConfig
from .folder import check_pipeline_folder, call_defaults
from .recipe import PipelineRecipe
from .videos import find_videos, plan_clips

__all__ = ["train_pipeline", "kind_of"]


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


def train_pipeline(cfg: PipelineTrainConfig, *, log: Callable[[str], None] = print,
                   notice: Callable[[str], None] = _notice) -> dict:
    """Train MoG adapters for the pipeline in ``cfg.pipeline`` on ``cfg.videos``; returns the loop's result
    ``{"step", "loss", "out"}`` with ``adapters``: the adapter folder (``OUT/adapters``)."""
    folder = check_pipeline_folder(cfg.pipeline)
    if cfg.last_frame and (folder.family != "wan" or "between" not in cfg.layouts):
        raise UserError("--last-frame conditions Wan's in-betweening on the last frame (FLF2V): it needs a "
                        "WanImageToVideoPipeline and the between layout" + (f", not a {folder.class_name}"
                                                                           if folder.family != "wan" else ""))
    videos = find_videos(cfg.videos)
    frames = cfg.frames or call_defaults(folder)[2]
    try:
        get_spec(folder.transformer_class).vae.check_num_frames(frames)
    except ValueError as e:
        raise UserError(f"--frames: {e}") from None
    specs = plan_clips(videos, frames=frames, stride=cfg.stride, clips=cfg.clips, notice=notice)
    if len(specs) < cfg.batch_size:
        raise UserError(f"--batch-size {cfg.batch_size} needs as many clips; the videos give {len(specs)}")
    loop = LoopConfig(kind=kind_of(folder.class_name), steps=cfg.steps, out=cfg.out, lr=cfg.lr, warmup=cfg.warmup,
                      ema=cfg.ema, seed=cfg.seed, checkpoint_every=cfg.checkpoint_every, resume=cfg.resume,
                      threads=cfg.threads, progress=cfg.progress, export_name="adapters",
                      mixed_precision=cfg.mixed_precision, validate_every=cfg.validate_every)
    out = Path(cfg.out)
    fresh = not out.exists()
    try:
        res = run_training(loop, lambda: PipelineRecipe(cfg, folder, specs, frames, notice=notice, log=log),
                           config={"pipeline_class": folder.class_name, **cfg.to_dict()}, log=log)
    except Exception as e:
        step = _checkpoint_step(out)
        if fresh and step is None:
            shutil.rmtree(out, ignore_errors=True)  # failed before a checkpoint: no partial output folder
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            kept = (f"the previous checkpoint (step {step}) in {out / 'checkpoint'} is intact: free space and run the "
                    f"same command to resume" if step is not None else "nothing was kept")
            raise UserError(f"the disk is full ({e.strerror or e}) while writing {out}; {kept}") from None
        raise
    res["adapters"] = str(out / "adapters")
    return res
