"""The pipeline folder: which classes train, what a folder must hold, and loading it.

:func:`check_pipeline_folder` reads ``model_index.json`` (no weights load) and refuses, in one line, a folder
of another pipeline class (naming the supported ones), a folder missing a component the trainer needs (the
VAE, the transformer, the scheduler, the text encoder and tokenizer), and the Wan layouts this trainer does
not handle (Wan 2.2's two experts, TI2V's expanded timesteps). :func:`load_pipeline` then loads it with the
class's own ``from_pretrained`` from disk only; :func:`call_defaults` gives the size and frame count the
pipeline makes when a call names none.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch

from ..errors import UserError
from ..families import FAMILIES
from ..registry import get_spec

__all__ = ["SUPPORTED", "PipelineFolder", "check_pipeline_folder", "load_pipeline", "call_defaults", "call_default",
           "weights_stamp"]

#: pipeline class -> model family (:mod:`motionguide.families`: those it marks trainable)
SUPPORTED = {e.class_name: f.name for f in FAMILIES.values() for e in f.pipelines if e.trainable}
_NEEDED = ("transformer", "vae", "scheduler", "text_encoder", "tokenizer")


@dataclass(frozen=True)
class PipelineFolder:
    """A checked pipeline folder: its path, class, the transformer class and the ``model_index.json`` entries."""

    path: Path
    class_name: str
    transformer_class: str
    index: dict

    @property
    def family(self) -> str:
        return SUPPORTED[self.class_name]

    @property
    def has_image_encoder(self) -> bool:
        entry = self.index.get("image_encoder")
        return isinstance(entry, list) and entry[0] is not None


def _supported_text() -> str:
    return ", ".join(SUPPORTED)


def check_pipeline_folder(path: str | Path) -> PipelineFolder:
    """Check a pipeline folder without loading any weights; raises :class:`UserError` naming what is wrong."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise UserError(f"--pipeline {path}: not a folder; pass a folder written by a pipeline's save_pretrained "
                        f"(python examples/tiny_pipeline.py --arch wan -o DIR writes a tiny one)")
    idx_path = p / "model_index.json"
    try:
        index = json.loads(idx_path.read_text())
    except FileNotFoundError:
        raise UserError(f"--pipeline {path}: no model_index.json; pass a folder written by a pipeline's "
                        f"save_pretrained") from None
    except (OSError, ValueError) as e:
        raise UserError(f"--pipeline {path}: model_index.json cannot be read ({e})") from None
    if not isinstance(index, dict):
        raise UserError(f"--pipeline {path}: model_index.json is not a JSON object")
    cls = index.get("_class_name")
    if cls not in SUPPORTED:
        raise UserError(f"--pipeline {path} is a {cls}; motionguide train pipeline trains adapters for "
                        f"{_supported_text()}")
    for name in _NEEDED:
        entry = index.get(name)
        sub = p / name
        if not (isinstance(entry, list) and entry and entry[0] is not None) or not sub.is_dir():
            raise UserError(f"--pipeline {path} has no {name} (model_index.json names "
                            f"{entry if entry is not None else 'none'}, folder {sub} "
                            f"{'exists' if sub.is_dir() else 'is missing'}); the trainer needs the pipeline's own "
                            f"{name}: pass the complete folder save_pretrained wrote")
        if name in ("transformer", "vae", "text_encoder") and not any(sub.glob("*.safetensors")) \
                and not any(sub.glob("*.bin")):
            raise UserError(f"--pipeline {path}: {sub} holds no weights (*.safetensors or *.bin); pass the complete "
                            f"folder save_pretrained wrote")
    if cls in ("WanImageToVideoPipeline", "WanPipeline"):
        two = index.get("transformer_2")
        if isinstance(two, list) and two and two[0] is not None:
            raise UserError(f"--pipeline {path} has two transformers (Wan 2.2's high- and low-noise experts); the "
                            f"trainer trains one transformer: use a Wan 2.1 pipeline")
        if index.get("expand_timesteps"):
            raise UserError(f"--pipeline {path} expands timesteps per frame (Wan 2.2 TI2V); the trainer supports the "
                            f"Wan image-to-video layout with condition channels (Wan 2.1 I2V/FLF2V)")
    tcls = index["transformer"][1]
    try:
        get_spec(tcls)
    except ValueError as e:
        raise UserError(f"--pipeline {path}: {e}") from None
    return PipelineFolder(p, cls, tcls, index)


def weights_stamp(folder: PipelineFolder, component: str) -> list:
    """``[name, bytes, mtime_ns]`` of a component's config and weight files (a cache key part)."""
    sub = folder.path / component
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(sub.iterdir()) if f.is_file()]


def load_pipeline(folder: PipelineFolder, *, text_encoder: bool = True,
                  dtype: torch.dtype | dict[str, torch.dtype] = torch.float32) -> Any:
    """Load the folder with its class's own ``from_pretrained`` (local files only), progress bar off.

    text_encoder: False skips the text encoder and tokenizer (their output is already cached).
    dtype: one for every component, or per component (``{"default": bf16, "vae": float32}``, as diffusers takes).
    """
    cls = getattr(diffusers, folder.class_name)
    skip = {} if text_encoder else {"text_encoder": None, "tokenizer": None}
    try:
        pipe = cls.from_pretrained(str(folder.path), local_files_only=True, dtype=dtype, **skip)
    except (OSError, ValueError, EnvironmentError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--pipeline {folder.path} could not be loaded ({first}); check that the folder is complete "
                        f"(every component save_pretrained wrote)") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_defaults(folder: PipelineFolder) -> tuple[int | None, int | None, int]:
    """``(height, width, num_frames)`` the pipeline makes by default (from its ``__call__``; CogVideoX's size
    comes from its transformer's sample size, as its pipeline computes it; None = read after loading)."""
    params = inspect.signature(getattr(diffusers, folder.class_name).__call__).parameters
    h, w = params["height"].default, params["width"].default
    n = params["num_frames"].default
    return (h if isinstance(h, int) else None), (w if isinstance(w, int) else None), int(n)


def call_default(class_name: str, name: str) -> Any:
    """One default of the pipeline class's ``__call__`` (e.g. ``max_sequence_length``), or None."""
    p = inspect.signature(getattr(diffusers, class_name).__call__).parameters.get(name)
    return None if p is None or p.default is inspect.Parameter.empty else p.default
