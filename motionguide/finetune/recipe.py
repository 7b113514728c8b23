"""The pipeline trainer as a :class:`~motionguide.training.Recipe` of the shared loop.

Set-up (:class:`PipelineRecipe`, built by the loop after its checks and seeding): load the pipeline (without
its text encoder when the prompt is cached), check the size and frame count against its VAE and patch, build
or find the cache (:func:`~motionguide.finetune.prepare.prepare_data`; under several processes the main one
first), delete the VAE, text and image encoders, then on the transformer: trained motion guidance (zero
latent channels and feature gates), optionally a LoRA (:func:`~motionguide.add_lora`) and the first N blocks
(:func:`~motionguide.adapter_weights.train_blocks`), and gradient checkpointing. Everything else is frozen.

A step: one layout and ``batch_size`` distinct clips drawn from the step's generator, their guidance set on
the transformer (:func:`~motionguide.set_guidance`, kept through backward for checkpointed blocks), the pipeline's own loss
(:mod:`~motionguide.finetune.objectives`) through the accelerate-prepared model.

Export (EMA weights): ``save_motion_guidance`` plus ``pipeline.json`` (pipeline class, transformer config,
what was trained on), which ``load_motion_guidance`` checks. Validation: the VAE is loaded again for the
call and freed after it; ``OUT/validation/step_N.mp4`` is generated with the current adapter.
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

from ..adapter import MotionGuidanceConfig, apply_motion_guidance, set_guidance
from ..adapter_weights import PIPELINE_MANIFEST, add_lora, save_motion_guidance, train_blocks, trainable_parameters
from ..pipeline import generate_with_guidance
from ..registry import vae_from_pipeline
from ..training import Recipe, replace_dir
from .cache import Cache
from .config import PipelineTrainConfig
from .folder import PipelineFolder, call_default, call_defaults, load_pipeline
from .layouts import conditioning, layout_guidance
from .objectives import make_objective
from .prepare import entry_guidance, prepare_data, text_key
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

    def __init__(self, cfg: PipelineTrainConfig, folder: PipelineFolder, specs: list[ClipSpec], num_frames: int, *,
                 notice: Callable[[str], None], log: Callable[[str], None]):
        self.cfg, self.folder, self.num_frames = cfg, folder, num_frames
        state = PartialState()
        self.device = state.device
        self.dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
        self.cache = Cache(Path(cfg.out) / "cache")
        msl = call_default(folder.class_name, "max_sequence_length")
        # the main process first: it writes the cache, the others then find it (and skip the text encoder)
        with state.main_process_first():
            pipe = load_pipeline(folder, text_encoder=not self.cache.has("text", text_key(folder, cfg.prompt, msl)),
                                 dtype=self.dtype)
            self.height, self.width = self._size(pipe)
            self.objective = make_objective(pipe, folder.family, height=self.height, width=self.width,
                                            num_frames=num_frames)
            self.objective.check_conditioning(cfg.layouts, cfg.last_frame)
            self.data = prepare_data(pipe, self.objective, folder, specs, self.cache, size=(self.height, self.width),
                                     layouts=cfg.layouts, flow=cfg.flow, interpolator=cfg.interpolator,
                                     last_frame=cfg.last_frame, prompt=cfg.prompt, dtype=cfg.dtype,
                                     validate=cfg.validate_every > 0, device=self.device, notice=notice, log=log)
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
            add_lora(tr, rank=cfg.lora_rank, blocks=cfg.lora_blocks)
        self._blocks = train_blocks(tr, range(cfg.train_blocks)) if cfg.train_blocks else []
        blocks = {id(p) for p in self._blocks}
        for n, p in tr.named_parameters():  # LoRA and unfrozen blocks train in float32 too
            if "lora_" in n or id(p) in blocks:
                p.data = p.data.float()
        if cfg.gradient_checkpointing:
            tr.enable_gradient_checkpointing()
        self.objective.setup(self.device)
        self.model = tr
        self._memo: dict[Path, dict[str, torch.Tensor]] = {}
        self._memo_bytes = 0
        log(f"training {', '.join(cfg.layouts)} on {len(self.data.entries)} clips of {num_frames} frames at "
            f"{self.width}x{self.height}; {sum(p.numel() for _, p in self.trainable())} trainable parameters")

    def _size(self, pipe) -> tuple[int, int]:
        h, w = self.cfg.size or (None, None)
        if h is None:
            dh, dw, _ = call_defaults(self.folder)
            tr = pipe.transformer.config
            s = vae_from_pipeline(pipe).spatial
            h = dh or int(tr.get("sample_height", 60)) * s
            w = dw or int(tr.get("sample_width", 90)) * s
        vae = vae_from_pipeline(pipe)
        vae.check_num_frames(self.num_frames)
        patch = pipe.transformer.config.patch_size
        vae.latent_size(h, w, multiple=int(patch[1] if isinstance(patch, (list, tuple)) else patch))
        return h, w

    # -- the loop's interface --------------------------------------------------------------------------
    def trainable(self):
        ids = {id(p) for p in trainable_parameters(self.model, blocks=(), lora=True, freeze=False)}
        ids |= {id(p) for p in self._blocks}
        return [(n, p) for n, p in self.model.named_parameters() if id(p) in ids]

    def _entry(self, path: Path) -> dict[str, torch.Tensor]:
        e = self._memo.get(path)
        if e is None:
            e = self.cache.load(path)
            size = sum(t.numel() * t.element_size() for t in e.values())
            if self._memo_bytes + size <= _MEMO_BYTES:
                self._memo[path], self._memo_bytes = e, self._memo_bytes + size
        return e

    def batch(self, layout: str, idx: list[int]) -> tuple[dict[str, torch.Tensor], Any]:
        """The step's tensors (on the model's device) and guidance for clips ``idx`` in ``layout``."""
        entries = [self._entry(self.data.entries[i]) for i in idx]
        c = conditioning(layout, self.cfg.last_frame)
        batch = {"x0": torch.cat([e["x0"] for e in entries]), "cond": torch.cat([e[f"cond.{c}"] for e in entries])}
        if f"image.{c}" in entries[0]:
            batch["image"] = torch.cat([e[f"image.{c}"] for e in entries])
        return {k: v.to(self.device) for k, v in batch.items()}, entry_guidance(entries, layout)

    def loss(self, step, rank, generator):
        layouts = self.cfg.layouts
        layout = layouts[int(torch.randint(len(layouts), (1,), generator=generator))]
        idx = torch.randperm(len(self.data.entries), generator=generator)[: self.cfg.batch_size].tolist()
        batch, lg = self.batch(layout, idx)
        text = {k: v.to(self.device) for k, v in self.data.text.items()}
        # set, not a context: with gradient checkpointing the blocks run again in backward, after this returns,
        # and must see the same guidance; the next step (or a validation call) replaces it
        set_guidance(self.model, lg)
        return self.objective.loss(self.prepared or self.model, batch, text, generator)

    def manifest(self, metrics: dict) -> dict:
        cfg = self.cfg
        return {"format": MANIFEST_FORMAT, "version": 1, "pipeline_class": self.folder.class_name,
                "transformer_class": type(self.model).__name__, "transformer_config": transformer_config(self.model),
                "objective": self.objective.describe(), "height": self.height, "width": self.width,
                "num_frames": self.num_frames, "layouts": list(cfg.layouts), "last_frame": cfg.last_frame,
                "prompt": cfg.prompt, "flow": cfg.flow, "interpolator": cfg.interpolator, "lora_rank": cfg.lora_rank,
                "train_blocks": cfg.train_blocks, "metrics": metrics,
                "load": "motionguide.generate_with_guidance(pipe, guidance, adapter=THIS_FOLDER) or "
                        "motionguide.load_motion_guidance(pipe.transformer, THIS_FOLDER)"}

    def export(self, folder, metrics):
        with replace_dir(folder) as tmp:
            save_motion_guidance(self.model, tmp)
            (tmp / PIPELINE_MANIFEST).write_text(json.dumps(self.manifest(metrics), indent=2))

    def validate(self, step, out):
        """``OUT/validation/step_N.mp4``: the first clip's first layout, generated with the current adapter."""
        layout = "first" if "first" in self.cfg.layouts else self.cfg.layouts[0]
        frames = self.data.validation
        g = layout_guidance(layout, frames, estimator=get_estimator(self.cfg.flow),
                            interpolator=get_interpolator(self.cfg.interpolator) if layout == "between" else None)
        batch, _ = self.batch(layout, [0])
        kw = self.objective.call_kwargs({k: v.to(self.device) for k, v in self.data.text.items()}, batch)
        if conditioning(layout, self.cfg.last_frame) == "ends":
            kw["last_image"] = frames[:, :, -1]
        # the freed parts the call needs, loaded again for it: the VAE, and Wan 2.1's image encoder (its call
        # cannot take both the image and cached image features)
        parts = ["vae"] + (["image_encoder"] if self.folder.has_image_encoder else [])
        for name in parts:
            lib, cls = self.folder.index[name]
            mod = getattr(diffusers if lib == "diffusers" else transformers, cls)
            setattr(self.pipe, name, mod.from_pretrained(str(self.folder.path), subfolder=name, dtype=self.dtype)
                    .to(self.device).eval())
        self.model.eval()
        try:
            with torch.no_grad():
                res = generate_with_guidance(self.pipe, g, num_inference_steps=self.cfg.validate_steps, output_type="pt",
                                             generator=torch.Generator().manual_seed(self.cfg.seed), **kw)
        finally:
            self.model.train()
            for name in parts:
                setattr(self.pipe, name, None)
            gc.collect()
        video = torch.as_tensor(res.frames[0]).float().clamp(0, 1)
        path = Path(out) / "validation" / f"step_{step}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, video, fps=self.data.fps / max(1, self.cfg.stride))

