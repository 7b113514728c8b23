"""Build (or find) the cache a run trains on: every clip's latents, conditions and guidance, and its prompt.

Two phases, so that several processes share the work: :func:`plan_cache` reads the cache only (which entries
are valid, which are missing); after a barrier every process loads the pipeline (its text encoder only when a
prompt is missing) and :func:`build_cache` builds its share of the missing entries (``missing[rank::world]``,
progress per process); after a second barrier :meth:`CachePlan.finish` finds them all.

For each missing clip, the clip is decoded at its bucket's size, the guidance of every layout is built by the
flow core on the training device (:mod:`motionguide.finetune.layouts`) at the guidance size
(:func:`guide_factor`: the frames reduced to 4 pixels per latent cell, never below 64 pixels, since the
guidance lives on the latent grid), its known frames are encoded at full size with the pipeline's VAE
(:func:`motionguide.pipeline.encode_frames`, as ``generate_with_guidance`` encodes them) and mapped onto the
latent grid (:func:`motionguide.latent.latent_guidance`); the objective adds the clip's latents and the
pipeline's own condition tensors. Each distinct prompt (a clip's caption, else ``--prompt``) is encoded once
with the pipeline's text encoder.

Entry tensors: ``x0``, ``cond.<first|ends>`` (and Wan 2.1's ``image.<...>``), and per layout
``guide.<layout>.latents|mask|sources|flows|weights``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from flow.estimators import get_estimator
from flow.interpolate import get_interpolator

from ..errors import UserError
from ..latent import LatentGuidance, latent_guidance
from ..pipeline import encode_frames
from ..registry import VAECompression
from .cache import Cache
from .folder import PipelineFolder, weights_stamp
from .layouts import conditioning, layout_guidance
from .objectives import Objective
from .videos import ClipSpec, read_clips

__all__ = ["CachePlan", "Prepared", "clip_key", "text_key", "plan_cache", "build_cache", "missing_texts", "GUIDE_FIELDS",
           "entry_guidance", "guide_factor", "cache_owner"]

GUIDE_FIELDS = ("latents", "mask", "sources", "flows", "weights")
_VERSION = 2  # of what an entry holds; a change makes new keys
_MIN_GUIDE = 64  # pixels on the short side below which the guidance is not reduced


def guide_factor(size: tuple[int, int], vae: VAECompression) -> int:
    """How much the frames are reduced before the flow core runs: the largest power of two up to
    ``vae.spatial / 4`` (4 pixels per latent cell remain) that keeps the short side at 64 pixels or more."""
    f = 1
    while f * 2 <= vae.spatial // 4 and min(size) // (f * 2) >= _MIN_GUIDE and all(s % (f * 2) == 0 for s in size):
        f *= 2
    return f


@dataclass
class Prepared:
    """The cache of a run. ``entries``/``texts``/``buckets``: the training clips' entry files, their prompts'
    entry files and buckets; ``held*``: the same for the held-out clips, with their frames' entries
    (validation); ``negative``: the empty prompt's entry (the validation call's CFG), ``fps`` the videos' rate."""

    entries: list[Path]
    texts: list[Path]
    buckets: list[int]
    held: list[Path] = field(default_factory=list)
    held_texts: list[Path] = field(default_factory=list)
    held_buckets: list[int] = field(default_factory=list)
    held_frames: list[Path] = field(default_factory=list)
    negative: Path | None = None
    fps: float = 16.0


def text_key(folder: PipelineFolder, prompt: str, max_sequence_length: Any) -> dict:
    return {"v": _VERSION, "pipeline_class": folder.class_name, "pipeline": str(folder.path.resolve()),
            "text_encoder": weights_stamp(folder, "text_encoder"), "tokenizer": weights_stamp(folder, "tokenizer"),
            "prompt": prompt, "max_sequence_length": max_sequence_length}


def clip_key(spec: ClipSpec, *, folder: PipelineFolder, size: tuple[int, int], layouts: tuple[str, ...],
             flow: str, interpolator: str, last_frame: bool, dtype: str, guide: int = 1) -> dict:
    comps = ["vae"] + (["image_encoder"] if folder.has_image_encoder else [])
    return {"v": _VERSION, **spec.key(), "size": list(size), "pipeline_class": folder.class_name,
            "pipeline": str(folder.path.resolve()), **{c: weights_stamp(folder, c) for c in comps},
            "layouts": list(layouts), "flow": flow, "interpolator": interpolator, "last_frame": last_frame,
            "dtype": dtype, "guide_factor": guide}


def cache_owner(folder: PipelineFolder) -> dict:
    """What a cache folder is built for (``cache.json``): the pipeline's class, folder and VAE files."""
    return {"pipeline_class": folder.class_name, "pipeline": str(folder.path.resolve()),
            "vae": weights_stamp(folder, "vae")}


def entry_guidance(entries: list[dict[str, torch.Tensor]], layout: str) -> LatentGuidance:
    """The batched :class:`LatentGuidance` of ``layout`` from loaded entries (sources shared by the batch)."""
    g = {f: [e[f"guide.{layout}.{f}"] for e in entries] for f in GUIDE_FIELDS}
    return LatentGuidance(torch.cat(g["latents"]), torch.cat(g["mask"]), g["sources"][0], torch.cat(g["flows"]),
                          torch.cat(g["weights"]))


@dataclass
class CachePlan:
    """Which entries a run needs and which are missing (read from the cache before anything is written).

    ``specs``: every planned clip, the last ``held`` of them held out of training; ``sizes``: ``(H, W)`` per
    bucket; ``prompts``: each clip's prompt; ``missing``: indices of clips whose entry (or held-out frames) is
    not valid; ``missing_text``: prompts whose entry is not valid."""

    cache: Cache
    specs: list[ClipSpec]
    held: int
    sizes: dict[int, tuple[int, int]]
    keys: list[dict]
    prompts: list[str]
    text_keys: dict[str, dict]
    missing: list[int]
    missing_text: list[str]
    guides: dict[int, int]

    def share(self, rank: int, world: int) -> tuple[list[int], list[str]]:
        return self.missing[rank::world], self.missing_text[rank::world]

    def finish(self, fps: float, notice: Callable[[str], None]) -> Prepared:
        """The :class:`Prepared` run once every process has built its share; clips whose video ended early
        (no entry) are dropped."""
        c = self.cache
        n_train = len(self.specs) - self.held
        ok = [i for i, k in enumerate(self.keys) if c.valid("clip", k)
              and (i < n_train or c.valid("frames", k))]
        lost = len(self.specs) - len(ok)
        if lost:
            notice(f"{lost} clip(s) could not be read (their video ended before its stated frames): left out")
        train = [i for i in ok if i < n_train]
        held = [i for i in ok if i >= n_train]
        if not train:
            raise UserError("no training clip could be read: every video ended before the frames its container states")
        for p, k in self.text_keys.items():
            if not c.valid("text", k):
                raise UserError(f"the prompt {p[:40]!r} has no cache entry after the build; run again (the cache "
                                f"{c.folder} is completed, not rebuilt)")
        tpath = lambda i: c.path("text", self.text_keys[self.prompts[i]])  # noqa: E731
        neg = c.path("text", self.text_keys[""]) if held and "" in self.text_keys else None
        return Prepared([c.path("clip", self.keys[i]) for i in train], [tpath(i) for i in train],
                        [self.specs[i].bucket for i in train], [c.path("clip", self.keys[i]) for i in held],
                        [tpath(i) for i in held], [self.specs[i].bucket for i in held],
                        [c.path("frames", self.keys[i]) for i in held], neg, fps if fps == fps and fps > 0 else 16.0)


def plan_cache(cache: Cache, folder: PipelineFolder, specs: list[ClipSpec], *, held: int,
               sizes: dict[int, tuple[int, int]], vae: VAECompression, layouts: tuple[str, ...], flow: str,
               interpolator: str, last_frame: bool, prompt: str, dtype: str, max_sequence_length: Any) -> CachePlan:
    """Read which entries exist and are valid; nothing is written."""
    guides = {b: guide_factor(s, vae) for b, s in sizes.items()}
    keys = [clip_key(s, folder=folder, size=sizes[s.bucket], layouts=layouts, flow=flow, interpolator=interpolator,
                     last_frame=last_frame, dtype=dtype, guide=guides[s.bucket]) for s in specs]
    n_train = len(specs) - held
    missing = [i for i, k in enumerate(keys) if not cache.valid("clip", k) or (i >= n_train and not cache.valid("frames", k))]
    prompts = [s.video.caption or prompt for s in specs]
    wanted = list(dict.fromkeys(prompts + ([""] if held else [])))  # "" : the validation call's negative prompt
    tkeys = {p: text_key(folder, p, max_sequence_length) for p in wanted}
    missing_text = [p for p in wanted if not cache.valid("text", tkeys[p])]
    return CachePlan(cache, specs, held, sizes, keys, prompts, tkeys, missing, missing_text, guides)


def missing_texts(cache: Cache, folder: PipelineFolder, specs: list[ClipSpec], *, held: int, prompt: str,
                  max_sequence_length: Any) -> list[str]:
    """The prompts (captions, ``--prompt``, and the empty negative prompt with held-out clips) whose entry is
    not valid: whether the text encoder must load."""
    wanted = dict.fromkeys([s.video.caption or prompt for s in specs] + ([""] if held else []))
    return [p for p in wanted if not cache.valid("text", text_key(folder, p, max_sequence_length))]


def _encode_clip(pipe: Any, objective: Objective, clip: torch.Tensor, *, layouts, last_frame, estimator,
                 interpolator, device, guide: int) -> dict[str, torch.Tensor]:
    out = objective.encode_clip(clip, {conditioning(x, last_frame) for x in layouts}, device)
    small = clip.to(device)
    if guide > 1:  # the flow core at the guidance size: (1, 3, N, H/g, W/g)
        n, (h, w) = clip.shape[2], clip.shape[-2:]
        small = F.interpolate(small[0].transpose(0, 1), size=(h // guide, w // guide), mode="area")
        small = small.transpose(0, 1)[None]
    vae = dataclasses.replace(objective.vae_c, spatial=objective.vae_c.spatial // guide)
    guides = {x: layout_guidance(x, small, estimator=estimator, interpolator=interpolator) for x in layouts}
    known = sorted({p for g in guides.values() for p in g.positions if p is not None})
    lat = encode_frames(pipe, clip[:, :, known]).cpu()  # each known frame once, at full size
    for x, g in guides.items():
        sel = [known.index(p) for p in g.positions]
        lg = latent_guidance(g, lat[:, :, sel].to(g.flows.device), vae=vae)
        for f in GUIDE_FIELDS:
            out[f"guide.{x}.{f}"] = getattr(lg, f).cpu()
    return out


def build_cache(pipe: Any, objectives: dict[int, Objective], plan: CachePlan, *, layouts: tuple[str, ...], flow: str,
                interpolator: str, last_frame: bool, device: torch.device, rank: int, world: int,
                notice: Callable[[str], None], log: Callable[[str], None]) -> None:
    """Build this process's share of the missing entries (clips, held-out frames, prompts)."""
    mine, texts = plan.share(rank, world)
    who = f"cache (process {rank + 1}/{world})" if world > 1 else "cache"
    c, n_train = plan.cache, len(plan.specs) - plan.held
    if mine:
        log(f"{who}: encoding {len(mine)} of {len(plan.specs)} clips with the pipeline's VAE into {c.folder}")
        for name in ("vae", "image_encoder"):
            if getattr(pipe, name, None) is not None:
                getattr(pipe, name).to(device)
        est = get_estimator(flow, **({} if flow in ("dis", "farneback") else {"device": device}))
        interp = get_interpolator(interpolator, device=device) if "between" in layouts else None
        t0, done = time.time(), 0
        for b in sorted({plan.specs[i].bucket for i in mine}):
            idx = [i for i in mine if plan.specs[i].bucket == b]
            for i, clip in zip(idx, read_clips([plan.specs[i] for i in idx], plan.sizes[b], notice=notice)):
                if clip is None:
                    continue
                clip = clip[None]
                with torch.no_grad():
                    entry = _encode_clip(pipe, objectives[b], clip, layouts=layouts, last_frame=last_frame,
                                         estimator=est, interpolator=interp, device=device, guide=plan.guides[b])
                if i >= n_train:  # a held-out clip: its frames for the validation call
                    c.put("frames", plan.keys[i], {"frames": (clip[0] * 255).round().to(torch.uint8)})
                c.put("clip", plan.keys[i], entry)
                done += 1
                log(f"{who}: {done}/{len(mine)} clips, {time.time() - t0:.1f} s")
    if texts:
        pipe.text_encoder.to(device)
        obj = next(iter(objectives.values()))
        with torch.no_grad():
            for p in texts:
                plan.cache.put("text", plan.text_keys[p], obj.encode_text(p, device))
        log(f"{who}: encoded {len(texts)} prompt(s)")
