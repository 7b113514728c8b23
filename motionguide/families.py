"""One specification per model family: everything the plugin, the jobs and the trainer know about a model.

A :class:`ModelFamily` (finetrainers' ``ModelSpecification``, read from diffusers 0.42's pipelines) says

* which transformer class it is (its :class:`~motionguide.registry.ArchSpec` holds the token layout) and which
  pipeline classes it serves, each with how a known frame enters the call (:class:`PipelineEntry`: no image
  for text-to-video; ``image`` and optionally ``last_image`` for Wan, whose 2.1 I2V/FLF2V checkpoints also
  send the image(s) through a CLIP encoder; ``image`` for CogVideoX; condition frames at their positions for
  LTX's condition pipeline);
* how the VAE's latents are normalised (:meth:`ModelFamily.normalize`), so the known frames the plugin encodes
  and the clips the trainer encodes land where the pipeline's own latents do;
* the native size and frame count, and whether they are fixed (CogVideoX-5B-I2V's learned positional
  embeddings take only 720x480 and 49 frames), which the jobs fit to and cut windows by;
* the trainer's objective (``flow_matching`` or ``ddpm``).

One name for the model type everywhere: ``family.name`` (``wan``, ``cogvideox``, ``ltx``, ``hunyuanvideo``,
``latte``) is the name the trainer, the tiny test pipelines and the docs use. Nothing here imports diffusers:
pipeline and transformer classes are matched by name, so ``model_index.json`` is checked before any weight loads.

>>> get_family("WanImageToVideoPipeline").name, get_family("LTXConditionPipeline").entry("LTXConditionPipeline").image
('wan', 'conditions')
>>> get_family("WanTransformer3DModel").native_frames
81
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .registry import get_spec

__all__ = [
    "PipelineEntry",
    "ModelFamily",
    "NativeShape",
    "FAMILIES",
    "get_family",
    "supported_pipelines",
    "read_model_index",
    "to_pil",
]

ImageInput = Literal["none", "image", "conditions"]


@dataclass(frozen=True)
class PipelineEntry:
    """One pipeline class of a family and how the known frames of a job enter its call.

    Attributes:
        class_name: the diffusers pipeline class (``WanImageToVideoPipeline``).
        image: ``none`` (text-to-video: motion guidance alone carries the known frames), ``image`` (the first
            frame as the call's ``image``, a PIL image as the pipeline documents), ``conditions`` (LTX: every
            known frame as an ``LTXVideoCondition`` at its frame index).
        last_image: the call also takes ``last_image`` (Wan: first-last-frame conditioning).
        trainable: ``motionguide train pipeline`` trains adapters for it.
    """

    class_name: str
    image: ImageInput
    last_image: bool = False
    trainable: bool = True

    @property
    def task(self) -> str:
        return "t2v" if self.image == "none" else "i2v"


@dataclass(frozen=True)
class NativeShape:
    """The size and frame count a checkpoint was trained at; ``fixed``: it takes no other (learned
    positional embeddings)."""

    height: int
    width: int
    frames: int
    fixed: bool = False


@dataclass(frozen=True)
class ModelFamily:
    """What is known about one model family (see the module docstring).

    Attributes:
        name: the one name of the model type (``wan``).
        transformer: the transformer class name (its :class:`~motionguide.registry.ArchSpec`).
        pipelines: the pipeline classes it serves.
        latent_norm: ``mean_std`` (Wan: ``(z - mean) / std`` from the VAE config), ``ltx`` (``(z - mean) *
            scaling_factor / std`` from the VAE's buffers), ``scale`` (``z * scaling_factor``).
        native_height, native_width, native_frames: what the released checkpoints make by default (a
            checkpoint's own config can say otherwise: :meth:`native`).
        objective: the trainer's objective, ``flow_matching`` or ``ddpm``.
    """

    name: str
    transformer: str
    pipelines: tuple[PipelineEntry, ...]
    latent_norm: Literal["mean_std", "ltx", "scale"]
    native_height: int
    native_width: int
    native_frames: int
    objective: Literal["flow_matching", "ddpm"]

    # -- pipelines ----------------------------------------------------------------------------------------
    def entry(self, class_name: str) -> PipelineEntry:
        for e in self.pipelines:
            if e.class_name == class_name:
                return e
        raise ValueError(f"{class_name} is not a {self.name} pipeline; {self.name} pipelines: "
                         f"{', '.join(e.class_name for e in self.pipelines)}")

    @property
    def arch(self):
        """The transformer's :class:`~motionguide.registry.ArchSpec`."""
        return get_spec(self.transformer)

    # -- latents ------------------------------------------------------------------------------------------
    def normalize(self, vae: Any, z: torch.Tensor) -> torch.Tensor:
        """``z: (B, C, ...)`` raw VAE latents -> the latents the pipeline's transformer sees (float32)."""
        z = z.float()
        view = (1, -1) + (1,) * (z.ndim - 2)
        cfg = vae.config
        if self.latent_norm == "mean_std":
            mean = torch.tensor(cfg.latents_mean, device=z.device).view(view)
            std = torch.tensor(cfg.latents_std, device=z.device).view(view)
            return (z - mean) / std
        if self.latent_norm == "ltx":
            mean = vae.latents_mean.to(z.device).view(view)
            std = vae.latents_std.to(z.device).view(view)
            return (z - mean) * float(getattr(cfg, "scaling_factor", 1.0)) / std
        return z * float(getattr(cfg, "scaling_factor", 1.0))

    # -- shape --------------------------------------------------------------------------------------------
    def native(self, pipe: Any) -> NativeShape:
        """The native shape of a loaded pipeline: its call's defaults, or (CogVideoX, whose call defaults are
        None) its transformer's sample size; fixed where the transformer has learned positional embeddings."""
        cfg = getattr(pipe.transformer, "config", {})
        get = (lambda k, d=None: cfg.get(k, d)) if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        h, w, n = call_defaults(pipe)
        if self.name == "cogvideox":
            s = int(getattr(pipe, "vae_scale_factor_spatial", 8) or 8)
            sh, sw, sf = get("sample_height"), get("sample_width"), get("sample_frames")
            if sh and sw:
                h, w = int(sh) * s, int(sw) * s
            n = int(sf) if sf else n
            return NativeShape(h or self.native_height, w or self.native_width, n or self.native_frames,
                               bool(get("use_learned_positional_embeddings", False)))
        return NativeShape(h or self.native_height, w or self.native_width, n or self.native_frames)

    def needs_last_image(self, transformer: Any) -> bool:
        """The transformer takes the CLIP features of a first *and* a last image (Wan FLF2V: its image
        embedding has a positional embedding for two images, ``pos_embed_seq_len``)."""
        if self.name != "wan":
            return False
        cfg = getattr(transformer, "config", {})
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        return bool(get("image_dim", None)) and bool(get("pos_embed_seq_len", None))


def call_defaults(pipe_or_class: Any) -> tuple[int | None, int | None, int | None]:
    """``(height, width, num_frames)`` a pipeline's ``__call__`` makes when the call names none (None where
    its default is not a number)."""
    cls = pipe_or_class if isinstance(pipe_or_class, type) else type(pipe_or_class)
    try:
        params = inspect.signature(cls.__call__).parameters
    except (TypeError, ValueError):
        return None, None, None

    def num(name: str) -> int | None:
        p = params.get(name)
        v = None if p is None else p.default
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    return num("height"), num("width"), num("num_frames") or num("video_length")


FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (
    ModelFamily(
        name="wan", transformer="WanTransformer3DModel",
        pipelines=(PipelineEntry("WanPipeline", "none"),
                   PipelineEntry("WanImageToVideoPipeline", "image", last_image=True)),
        latent_norm="mean_std", native_height=480, native_width=832, native_frames=81, objective="flow_matching"),
    ModelFamily(
        name="cogvideox", transformer="CogVideoXTransformer3DModel",
        pipelines=(PipelineEntry("CogVideoXImageToVideoPipeline", "image"),),
        latent_norm="scale", native_height=480, native_width=720, native_frames=49, objective="ddpm"),
    ModelFamily(
        name="ltx", transformer="LTXVideoTransformer3DModel",
        pipelines=(PipelineEntry("LTXConditionPipeline", "conditions"),
                   PipelineEntry("LTXImageToVideoPipeline", "image")),
        latent_norm="ltx", native_height=512, native_width=704, native_frames=161, objective="flow_matching"),
    ModelFamily(
        name="hunyuanvideo", transformer="HunyuanVideoTransformer3DModel",
        pipelines=(PipelineEntry("HunyuanVideoPipeline", "none", trainable=False),),
        latent_norm="scale", native_height=720, native_width=1280, native_frames=129, objective="flow_matching"),
    ModelFamily(
        name="latte", transformer="LatteTransformer3DModel",
        pipelines=(PipelineEntry("LattePipeline", "none", trainable=False),),
        latent_norm="scale", native_height=512, native_width=512, native_frames=16, objective="ddpm"),
)}


def supported_pipelines(*, trainable: bool = False) -> list[str]:
    """The pipeline classes the jobs run (``trainable``: those the trainer trains), in family order."""
    return [e.class_name for f in FAMILIES.values() for e in f.pipelines if e.trainable or not trainable]


def get_family(obj: Any) -> ModelFamily:
    """The :class:`ModelFamily` of a family name, a pipeline or transformer class name, a pipeline object
    (by its class) or a transformer (by its class, subclasses included).

    >>> get_family("cogvideox").transformer
    'CogVideoXTransformer3DModel'
    >>> get_family("StableDiffusionPipeline")
    Traceback (most recent call last):
    ...
    ValueError: StableDiffusionPipeline is not a supported pipeline or transformer; motionguide runs WanPipeline, WanImageToVideoPipeline, CogVideoXImageToVideoPipeline, LTXConditionPipeline, LTXImageToVideoPipeline, HunyuanVideoPipeline, LattePipeline
    """
    if isinstance(obj, str):
        if obj in FAMILIES:
            return FAMILIES[obj]
        for f in FAMILIES.values():
            if obj == f.transformer or any(e.class_name == obj for e in f.pipelines):
                return f
        name = obj
    else:
        if hasattr(obj, "transformer") and hasattr(obj, "components"):  # a pipeline object
            cls_name = type(obj).__name__
            for f in FAMILIES.values():
                if any(e.class_name == cls_name for e in f.pipelines):
                    return f
            name = cls_name
        else:
            spec = get_spec(obj)  # raises for an unsupported transformer class
            return next(f for f in FAMILIES.values() if f.transformer == spec.name)
    raise ValueError(f"{name} is not a supported pipeline or transformer; motionguide runs "
                     f"{', '.join(supported_pipelines())}")


def read_model_index(folder: str | Path) -> dict:
    """``model_index.json`` of a pipeline folder, checked to name a supported pipeline class (no weight loads).

    Raises ``ValueError`` with the supported classes when the class is not one of them, ``FileNotFoundError``
    when the folder has no ``model_index.json``.
    """
    p = Path(folder).expanduser() / "model_index.json"
    if not p.is_file():
        raise FileNotFoundError(f"{Path(folder)} has no model_index.json; pass a folder written by a pipeline's "
                                "save_pretrained")
    try:
        index = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{p} cannot be read as JSON ({e})") from None
    cls = index.get("_class_name") if isinstance(index, dict) else None
    if cls not in supported_pipelines():
        raise ValueError(f"{Path(folder)} holds a {cls}; motionguide runs {', '.join(supported_pipelines())}")
    return index


def to_pil(frame: torch.Tensor):
    """``frame: (3, H, W)`` or ``(1, 3, H, W)`` float in [0, 1] -> an RGB ``PIL.Image``, rounded to 8 bits.

    Pipelines document their ``image`` inputs as PIL images: their CLIP image processors rescale by 1/255
    (a [0, 1] tensor would reach CLIP as a near-black image) and their video processors normalise PIL images
    to [-1, 1] themselves.
    """
    from PIL import Image

    if frame.ndim == 4 and frame.shape[0] == 1:
        frame = frame[0]
    if frame.ndim != 3 or frame.shape[0] != 3:
        raise ValueError(f"frame: expected (3, H, W) float in [0, 1], got {tuple(frame.shape)}")
    arr = (frame.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")
