"""The pipeline trainer as a :class:`~motionguide.training.Recipe` of the shared loop.

Set-up (:class:`PipelineRecipe`, built by the loop after its checks and seeding): plan the cache (which
entries are missing), load the pipeline (its text encoder only when a prompt is missing; the VAE in its
family's dtype), check each bucket's size and frame count against its VAE and patch, and build the missing
entries, every process its share (:mod:`~motionguide.finetune.prepare`, barriers before and after); then
delete the VAE, text and image encoders, and on the transformer: trained motion guidance (zero latent
channels and feature gates), optionally a LoRA on ``--lora-targets`` (:func:`~motionguide.add_lora`) and
the first N blocks (:func:`~motionguide.adapter_weights.train_blocks`), and gradient checkpointing.
Everything else is frozen.

A step (:meth:`PipelineRecipe.micro_losses`): one layout, one bucket and ``batch_size x grad_accum`` clips of
it drawn from the step's generator, one generator per sample for its noise, split into ``grad_accum``
micro-batches; each micro-batch's guidance is set on the transformer (:func:`~motionguide.set_guidance`, kept
through backward for checkpointed blocks) and the pipeline's own loss (:mod:`~motionguide.finetune.objectives`)
runs through the accelerate-prepared model, each sample with its own prompt's embeddings.

Export (EMA weights): ``save_motion_guidance`` plus ``pipeline.json`` (pipeline class, transformer config,
what was trained on), which ``load_motion_guidance`` checks, and with a LoRA also
``pytorch_lora_weights.safetensors`` in diffusers' format (:mod:`.export`). Validation, on the held-out clips:
every process computes their loss (fixed noise, through the prepared model); the main process then loads the
VAE again and writes ``OUT/validation/step_N.mp4``, the first held-out clip generated with the current
adapter and the pipeline's classifier-free guidance, while the others wait (under FSDP every process makes
the same call, since the sharded transformer runs only with all of them, and the main one writes).
"""
from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any, Callable

import diffusers
import torch
import transformers
from accelerate import PartialState

from flow.estimators import get_estimator
from flow.interpolate import get_interpolator
from flow.video import write_video

from ..errors import UserError
from ..adapter import MotionGuidanceConfig, apply_motion_guidance, get_motion_guidance, set_guidance
from ..adapter_weights import PIPELINE_MANIFEST, add_lora, save_motion_guidance, train_blocks, trainable_parameters
from ..pipeline import generate_with_guidance
from ..registry import vae_from_pipeline
from ..training import Recipe, replace_dir
from .buckets import bucket_text
from .cache import Cache
from .config import LORA_TARGETS, PipelineTrainConfig
from .export import export_diffusers_lora
from .folder import PipelineFolder, call_default, call_defaults, load_pipeline
from .layouts import conditioning, layout_guidance
from .objectives import make_objective
from .prepare import build_cache, cache_owner, entry_guidance, missing_texts, plan_cache
from .videos import ClipSpec

__all__ = ["PipelineRecipe", "MANIFEST_FORMAT", "transformer_config"]

MANIFEST_FORMAT = "motionguide-pipeline-adapter"
_MEMO_BYTES = 1 << 30  # entries held in memory after their first load, up to this many bytes


def transformer_config(transformer: Any) -> dict:
    """The transformer's config without diffusers' private keys, JSON-ready (what an adapter must match)."""
    def plain(v):
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    return {k: plain(v) for k, v in dict(transformer.config).items() if not k.startswith("_")}


class PipelineRecipe(Recipe):
    """MoG adapters (and optionally a LoRA and the first blocks) for one pipeline; see the module docstring."""

    forwards_through_prepared = True  # the loss runs the DDP-wrapped transformer

    def __init__(self, cfg: PipelineTrainConfig, folder: PipelineFolder, specs: list[ClipSpec],
                 buckets: list[tuple[int | None, int | None, int]], *, held: int = 0, fsdp: bool = False,
                 notice: Callable[[str], None], log: Callable[[str], None]):
        self.cfg, self.folder, self.fsdp = cfg, folder, fsdp
        state = PartialState()
        self.device = state.device
        self.dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
        self.vae_dtype = torch.bfloat16 if cfg.vae_dtype(folder.family) == "bfloat16" else torch.float32
        self.cache = Cache(cfg.cache or Path(cfg.out) / "cache")
        msl = call_default(folder.class_name, "max_sequence_length")
        if state.is_main_process:
            self.cache.claim(cache_owner(folder))
        state.wait_for_everyone()  # a refused cache stops every process here
        need_text = missing_texts(self.cache, folder, specs, held=held, prompt=cfg.prompt, max_sequence_length=msl)
        small = {"vae": self.vae_dtype, "image_encoder": self.vae_dtype}
        pipe = load_pipeline(folder, text_encoder=bool(need_text), dtype={"default": self.dtype, **small})
        vae = vae_from_pipeline(pipe)
        self.shapes = [self._size(pipe, b) for b in buckets]  # (H, W, N) per bucket
        self.objectives = {b: make_objective(pipe, folder.family, height=h, width=w, num_frames=n)
                           for b, (h, w, n) in enumerate(self.shapes)}
        self.objective = self.objectives[0]
        self.objective.check_conditioning(cfg.layouts, cfg.last_frame)
        self.height, self.width, self.num_frames = self.shapes[0]
        plan = plan_cache(self.cache, folder, specs, held=held, sizes={b: s[:2] for b, s in enumerate(self.shapes)},
                          vae=vae, layouts=cfg.layouts, flow=cfg.flow, interpolator=cfg.interpolator,
                          last_frame=cfg.last_frame, prompt=cfg.prompt, dtype=cfg.dtype, max_sequence_length=msl)
        state.wait_for_everyone()  # every process has read the cache before any writes to it
        build_cache(pipe, self.objectives, plan, layouts=cfg.layouts, flow=cfg.flow, interpolator=cfg.interpolator,
                    last_frame=cfg.last_frame, device=self.device, rank=state.process_index,
                    world=state.num_processes, notice=notice, log=log)
        state.wait_for_everyone()  # every share is built
        fps = next((s.video.fps for s in specs), 16.0)
        self.data = plan.finish(fps, notice)
        if state.is_main_process:
            self.cache.write_manifest([("clip", plan.keys[i]) for i in range(len(specs))]
                                      + [("text", k) for k in plan.text_keys.values()])
        for name in ("vae", "text_encoder", "tokenizer", "image_encoder"):  # freed before training starts
            if getattr(pipe, name, None) is not None:
                setattr(pipe, name, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.pipe = pipe
        tr = pipe.transformer.to(self.device)
        adapter = apply_motion_guidance(tr, MotionGuidanceConfig(mode="trained", blocks=cfg.feature_blocks))
        adapter.float()  # the new weights train in float32 also when the frozen ones are bf16
        if cfg.lora_rank:
            add_lora(tr, rank=cfg.lora_rank, blocks=cfg.lora_blocks, targets=LORA_TARGETS[cfg.lora_targets])
        self._blocks = train_blocks(tr, range(cfg.train_blocks)) if cfg.train_blocks else []
        blocks = {id(p) for p in self._blocks}
        for n, p in tr.named_parameters():  # LoRA and unfrozen blocks train in float32 too
            if "lora_" in n or id(p) in blocks:
                p.data = p.data.float()
        if cfg.gradient_checkpointing:
            tr.enable_gradient_checkpointing()
        for obj in self.objectives.values():
            obj.setup(self.device)
        self.model = tr
        self._memo: dict[Path, dict[str, torch.Tensor]] = {}
        self._memo_bytes = 0
        self.by_bucket = [[i for i, b in enumerate(self.data.buckets) if b == k] for k in range(len(self.shapes))]
        shapes = ", ".join(f"{bucket_text(s)} ({len(ix)} clips)" for s, ix in zip(self.shapes, self.by_bucket))
        log(f"training {', '.join(cfg.layouts)} on {len(self.data.entries)} clips ({shapes}), "
            f"{len(self.data.held)} held out; {sum(p.numel() for _, p in self.trainable())} trainable parameters")

    def _size(self, pipe, bucket: tuple[int | None, int | None, int]) -> tuple[int, int, int]:
        """A bucket's ``(H, W, N)``: the pipeline's default size where none is given, checked against its VAE
        and patch."""
        h, w, n = bucket
        vae = vae_from_pipeline(pipe)
        if h is None:
            dh, dw, _ = call_defaults(self.folder)
            tr = pipe.transformer.config
            h = dh or int(tr.get("sample_height", 60)) * vae.spatial
            w = dw or int(tr.get("sample_width", 90)) * vae.spatial
        try:
            vae.check_num_frames(n)
        except ValueError as e:
            raise UserError(f"--frames: {e}") from None
        patch = pipe.transformer.config.patch_size
        vae.latent_size(h, w, multiple=int(patch[1] if isinstance(patch, (list, tuple)) else patch))
        return h, w, n

    # -- the loop's interface --------------------------------------------------------------------------
    def trainable(self):
        ids = {id(p) for p in trainable_parameters(self.model, blocks=(), lora=True, freeze=False)}
        ids |= {id(p) for p in self._blocks}
        return [(n, p) for n, p in self.model.named_parameters() if id(p) in ids]

    def fsdp_units(self):
        """The transformer's blocks (FSDP shards each, then the transformer)."""
        mod = self.model
        for part in get_motion_guidance(self.model).spec.blocks_path.split("."):
            mod = getattr(mod, part)
        return list(mod)

    def _entry(self, path: Path) -> dict[str, torch.Tensor]:
        e = self._memo.get(path)
        if e is None:
            e = self.cache.load(path)
            size = sum(t.numel() * t.element_size() for t in e.values())
            if self._memo_bytes + size <= _MEMO_BYTES:
                self._memo[path], self._memo_bytes = e, self._memo_bytes + size
        return e

    def batch(self, layout: str, idx: list[int], *, held: bool = False) -> tuple[dict, dict, Any]:
        """The tensors (on the model's device), the prompts' embeddings and the guidance of clips ``idx`` (of
        the training clips, or of the held-out ones) in ``layout``."""
        paths, texts = (self.data.held, self.data.held_texts) if held else (self.data.entries, self.data.texts)
        entries = [self._entry(paths[i]) for i in idx]
        prompts = [self._entry(texts[i]) for i in idx]
        c = conditioning(layout, self.cfg.last_frame)
        batch = {"x0": torch.cat([e["x0"] for e in entries])}
        if f"cond.{c}" in entries[0]:
            batch["cond"] = torch.cat([e[f"cond.{c}"] for e in entries])
        if f"image.{c}" in entries[0]:
            batch["image"] = torch.cat([e[f"image.{c}"] for e in entries])
        text = {k: torch.cat([p[k] for p in prompts]).to(self.device) for k in prompts[0]}
        return {k: v.to(self.device) for k, v in batch.items()}, text, entry_guidance(entries, layout)

    def _loss(self, layout: str, idx: list[int], generators: list[torch.Generator], *, held: bool = False):
        batch, text, lg = self.batch(layout, idx, held=held)
        bucket = (self.data.held_buckets if held else self.data.buckets)[idx[0]]
        # set, not a context: with gradient checkpointing the blocks run again in backward, after this returns,
        # and must see the same guidance; the next step (or a validation call) replaces it
        set_guidance(self.model, lg)
        return self.objectives[bucket].loss(self.prepared or self.model, batch, text, generators)

    def micro_losses(self, step, rank, generator, parts):
        """One layout and one bucket (drawn by its share of the clips), then ``batch_size * parts`` clips of it
        (distinct while the bucket has enough) and one noise generator per sample, all from the step's
        generator; yields the loss of each micro-batch of ``batch_size`` in turn."""
        layouts, b = self.cfg.layouts, self.cfg.batch_size
        layout = layouts[int(torch.randint(len(layouts), (1,), generator=generator))]
        sizes = torch.tensor([len(ix) for ix in self.by_bucket], dtype=torch.float)
        pool = self.by_bucket[int(torch.multinomial(sizes, 1, generator=generator)) if len(sizes) > 1 else 0]
        order: list[int] = []
        while len(order) < b * parts:
            order += [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]
        base = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        for k in range(parts):
            idx = order[k * b:(k + 1) * b]
            yield self._loss(layout, idx, [torch.Generator().manual_seed(base + k * b + j) for j in range(b)])

    def loss(self, step, rank, generator):
        return next(self.micro_losses(step, rank, generator, 1))

    def manifest(self, metrics: dict) -> dict:
        cfg = self.cfg
        return {"format": MANIFEST_FORMAT, "version": 1, "pipeline_class": self.folder.class_name,
                "transformer_class": type(self.model).__name__, "transformer_config": transformer_config(self.model),
                "objective": self.objective.describe(), "height": self.height, "width": self.width,
                "num_frames": self.num_frames, "layouts": list(cfg.layouts), "last_frame": cfg.last_frame,
                "buckets": [bucket_text(s) for s in self.shapes], "prompt": cfg.prompt, "flow": cfg.flow,
                "interpolator": cfg.interpolator, "lora_rank": cfg.lora_rank, "lora_targets": cfg.lora_targets,
                "train_blocks": cfg.train_blocks, "metrics": metrics,
                "load": "motionguide.generate_with_guidance(pipe, guidance, adapter=THIS_FOLDER) or "
                        "motionguide.load_motion_guidance(pipe.transformer, THIS_FOLDER)"}

    def export(self, folder, metrics):
        with replace_dir(folder) as tmp:
            save_motion_guidance(self.model, tmp)
            if self.cfg.lora_rank:  # the LoRA alone, as pipe.load_lora_weights(folder) reads it
                export_diffusers_lora(self.model, tmp, self.folder.class_name)
            (tmp / PIPELINE_MANIFEST).write_text(json.dumps(self.manifest(metrics), indent=2))

    def validate(self, step, out):
        """Every process: the held-out clips' loss in each layout (fixed noise, through the prepared model);
        the main process: ``OUT/validation/step_N.mp4``, the first held-out clip generated in its first layout
        with the current adapter and the pipeline's classifier-free guidance. Returns ``{"val_loss": x}``."""
        held = self.data.held
        if not held:
            return None
        self.model.eval()
        try:
            with torch.no_grad():
                losses = [float(self._loss(x, [i], [torch.Generator().manual_seed(self.cfg.seed + i)], held=True))
                          for x in self.cfg.layouts for i in range(len(held))]
                # a sharded (FSDP) transformer runs only with every process: each makes the same call then
                main = PartialState().is_main_process
                if main or self.fsdp:
                    self._validation_clip(step, out, write=main)
        finally:
            self.model.train()
        return {"val_loss": sum(losses) / len(losses)}

    def _validation_clip(self, step, out, *, write: bool = True):
        layout = "first" if "first" in self.cfg.layouts else self.cfg.layouts[0]
        frames = self.cache.load(self.data.held_frames[0])["frames"].float()[None] / 255
        g = layout_guidance(layout, frames, estimator=get_estimator(self.cfg.flow),
                            interpolator=get_interpolator(self.cfg.interpolator) if layout == "between" else None)
        _, text, _ = self.batch(layout, [0], held=True)
        neg = {k: v.to(self.device) for k, v in self.cache.load(self.data.negative).items()} if self.data.negative else None
        kw = self.objective.call_kwargs(text, neg)
        h, w, n = self.shapes[self.data.held_buckets[0]]
        kw.update(height=h, width=w, num_frames=n)
        if conditioning(layout, self.cfg.last_frame) == "ends":
            kw["last_image"] = frames[:, :, -1]
        # the freed parts the call needs, loaded again for it: the VAE, and Wan 2.1's image encoder (its call
        # cannot take both the image and cached image features)
        parts = ["vae"] + (["image_encoder"] if self.folder.has_image_encoder else [])
        for name in parts:
            lib, cls = self.folder.index[name]
            mod = getattr(diffusers if lib == "diffusers" else transformers, cls)
            setattr(self.pipe, name, mod.from_pretrained(str(self.folder.path), subfolder=name, dtype=self.vae_dtype)
                    .to(self.device).eval())
        try:
            res = generate_with_guidance(self.pipe, g, num_inference_steps=self.cfg.validate_steps, output_type="pt",
                                         generator=torch.Generator().manual_seed(self.cfg.seed), **kw)
        finally:
            for name in parts:
                setattr(self.pipe, name, None)
            gc.collect()
        if not write:
            return
        video = torch.as_tensor(res.frames[0]).float().clamp(0, 1)
        path = Path(out) / "validation" / f"step_{step}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, video, fps=self.data.fps / max(1, self.cfg.stride))
