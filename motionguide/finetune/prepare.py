"""Build (or find) the cache a run trains on: every clip's latents, conditions and guidance, and the prompt.

For each planned clip whose entry is missing, the clip is decoded at the pipeline's size, the guidance of
every layout is built by the flow core on its real frames (:mod:`motionguide.finetune.layouts`), its known
frames are encoded one by one with the pipeline's VAE (:func:`motionguide.pipeline.encode_frames`, as
``generate_with_guidance`` encodes them) and mapped onto the latent grid with the pipeline's own compression
(:func:`motionguide.latent.latent_guidance`); the objective adds the clip's latents and the pipeline's own
condition tensors. The prompt is encoded once with the pipeline's text encoder.

Entry tensors: ``x0``, ``cond.<first|ends>`` (and Wan 2.1's ``image.<...>``), and per layout
``guide.<layout>.latents|mask|sources|flows|weights``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from flow.estimators import get_estimator
from flow.interpolate import get_interpolator

from ..errors import UserError
from ..latent import LatentGuidance, latent_guidance
from ..pipeline import encode_frames
from .cache import Cache
from .folder import PipelineFolder, weights_stamp
from .layouts import conditioning, layout_guidance
from .objectives import Objective
from .videos import ClipSpec, read_clips

__all__ = ["Prepared", "clip_key", "text_key", "prepare_data", "GUIDE_FIELDS", "entry_guidance"]

GUIDE_FIELDS = ("latents", "mask", "sources", "flows", "weights")
_VERSION = 1  # of what an entry holds; a change makes new keys


@dataclass
class Prepared:
    """The cache of a run: entry files (one per clip that could be read, the validation clip first), the
    prompt's tensors, the validation clip's frames ``(1, 3, N, H, W)`` (None without validation) and its rate."""

    entries: list[Path]
    text: dict[str, torch.Tensor]
    validation: torch.Tensor | None
    fps: float


def text_key(folder: PipelineFolder, prompt: str, max_sequence_length: Any) -> dict:
    return {"v": _VERSION, "pipeline_class": folder.class_name, "pipeline": str(folder.path.resolve()),
            "text_encoder": weights_stamp(folder, "text_encoder"), "tokenizer": weights_stamp(folder, "tokenizer"),
            "prompt": prompt, "max_sequence_length": max_sequence_length}


def clip_key(spec: ClipSpec, *, folder: PipelineFolder, size: tuple[int, int], layouts: tuple[str, ...],
             flow: str, interpolator: str, last_frame: bool, dtype: str) -> dict:
    comps = ["vae"] + (["image_encoder"] if folder.has_image_encoder else [])
    return {"v": _VERSION, **spec.key(), "size": list(size), "pipeline_class": folder.class_name,
            "pipeline": str(folder.path.resolve()), **{c: weights_stamp(folder, c) for c in comps},
            "layouts": list(layouts), "flow": flow, "interpolator": interpolator, "last_frame": last_frame,
            "dtype": dtype}


def entry_guidance(entries: list[dict[str, torch.Tensor]], layout: str) -> LatentGuidance:
    """The batched :class:`LatentGuidance` of ``layout`` from loaded entries (sources shared by the batch)."""
    g = {f: [e[f"guide.{layout}.{f}"] for e in entries] for f in GUIDE_FIELDS}
    return LatentGuidance(torch.cat(g["latents"]), torch.cat(g["mask"]), g["sources"][0], torch.cat(g["flows"]),
                          torch.cat(g["weights"]))


def _encode_clip(pipe: Any, objective: Objective, clip: torch.Tensor, *, layouts, last_frame, estimator,
                 interpolator, device) -> dict[str, torch.Tensor]:
    out = objective.encode_clip(clip, {conditioning(x, last_frame) for x in layouts}, device)
    guides = {x: layout_guidance(x, clip, estimator=estimator, interpolator=interpolator) for x in layouts}
    known = sorted({p for g in guides.values() for p in g.positions if p is not None})
    lat = encode_frames(pipe, clip[:, :, known]).cpu()  # each known frame once, as generate_with_guidance does
    for x, g in guides.items():
        sel = [known.index(p) for p in g.positions]
        lg = latent_guidance(g, lat[:, :, sel], vae=objective.vae_c)
        for f in GUIDE_FIELDS:
            out[f"guide.{x}.{f}"] = getattr(lg, f).cpu()
    return out


def prepare_data(pipe: Any, objective: Objective, folder: PipelineFolder, specs: list[ClipSpec], cache: Cache, *,
                 size: tuple[int, int], layouts: tuple[str, ...], flow: str, interpolator: str, last_frame: bool,
                 prompt: str, dtype: str, validate: bool, device: torch.device, notice: Callable[[str], None],
                 log: Callable[[str], None]) -> Prepared:
    """Find or build every entry; the VAE and text encoder run only for what is missing. ``validate``: also
    keep the first clip's frames (``frames-<hash>``) for the validation clips."""
    keys = [clip_key(s, folder=folder, size=size, layouts=layouts, flow=flow, interpolator=interpolator,
                     last_frame=last_frame, dtype=dtype) for s in specs]
    missing = [i for i, k in enumerate(keys) if not cache.has("clip", k)]
    clips: dict[int, torch.Tensor | None] = {}
    if missing:
        log(f"encoding {len(missing)} of {len(specs)} clips with the pipeline's VAE into {cache.folder}")
        clips = {i: (None if c is None else c[None])
                 for i, c in zip(missing, read_clips([specs[i] for i in missing], size, notice=notice))}
        pipe.vae.to(device)
        if getattr(pipe, "image_encoder", None) is not None:
            pipe.image_encoder.to(device)
        est, interp = get_estimator(flow), get_interpolator(interpolator)
        with torch.no_grad():
            for i in missing:
                if clips[i] is not None:
                    cache.put("clip", keys[i], _encode_clip(pipe, objective, clips[i], layouts=layouts,
                                                            last_frame=last_frame, estimator=est, interpolator=interp,
                                                            device=device))
    ok = [i for i, k in enumerate(keys) if cache.has("clip", k)]
    if not ok:
        raise UserError("no training clip could be read: every video ended before the frames its container states")
    frames = None
    if validate:  # the validation clip is the first that could be read
        got = cache.get("frames", keys[ok[0]])
        if got is None:
            c = clips.get(ok[0])
            c = c if c is not None else read_clips([specs[ok[0]]], size, notice=notice)[0][None]
            got = {"frames": (c[0] * 255).round().to(torch.uint8)}
            cache.put("frames", keys[ok[0]], got)
        frames = got["frames"].float()[None] / 255
    tkey = text_key(folder, prompt, objective.max_sequence_length)
    text = cache.get("text", tkey)
    if text is None:
        pipe.text_encoder.to(device)
        with torch.no_grad():
            text = objective.encode_text(prompt, device)
        cache.put("text", tkey, text)
    fps = specs[ok[0]].video.fps
    return Prepared([cache.path("clip", keys[i]) for i in ok], text, frames, fps if fps == fps and fps > 0 else 16.0)
