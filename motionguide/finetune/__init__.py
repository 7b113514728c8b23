"""MoG adapters for a user's own pretrained diffusers pipeline: ``motionguide train pipeline``.

Rooms, one job each: :mod:`.folder` (which pipeline classes train, checking and loading a folder),
:mod:`.videos` (readable videos, where clips are cut, frames at the pipeline's size), :mod:`.captions` (a
caption per clip: text files beside the videos, CSV/JSONL manifests), :mod:`.buckets` (resolution and
frame-count buckets), :mod:`.layouts` (the three jobs' layouts and their guidance from the flow core),
:mod:`.objectives` (each pipeline's own conditioning and loss), :mod:`.cache` and :mod:`.prepare` (the VAE's
and text encoder's outputs, computed once, on disk, each process its share), :mod:`.recipe` (the recipe of
the shared loop :mod:`motionguide.training`), :mod:`.export` (the LoRA in diffusers' format),
:mod:`.config` and :mod:`.train` (the validated run and its entry point).
"""
from __future__ import annotations

from .config import PipelineTrainConfig, parse_blocks, parse_size
from .folder import SUPPORTED
from .layouts import LAYOUTS
from .train import kind_of, train_pipeline

__all__ = ["PipelineTrainConfig", "train_pipeline", "kind_of", "SUPPORTED", "LAYOUTS", "parse_size", "parse_blocks"]
