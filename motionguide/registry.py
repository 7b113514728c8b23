"""Architecture registry: how pixels map to latents and latents to tokens, per diffusers transformer class.

Each supported class has one :class:`ArchSpec` saying

* the VAE compression its pipelines use (:class:`VAECompression`: spatial factor, temporal factor, whether the
  first frame is encoded alone, as the causal video VAEs of Wan, CogVideoX, LTX and HunyuanVideo do);
* where the patch embedding lives and what it sees (the latent-level adapter hooks its output);
* where the transformer blocks live and how their video tokens are laid out (the feature-level hooks reshape
  them to ``(frames, rows, cols)``);
* how to read the latent grid ``(B, F, h, w)`` from the transformer's own forward arguments.

Nothing here imports diffusers: classes are matched by name along the MRO, so ``import motionguide`` stays
cheap and a subclass of a supported class is supported too.

>>> vae = VAECompression(spatial=8, temporal=4, first_frame_alone=True)
>>> vae.latent_frames(49), vae.pixel_frames_of(0), vae.pixel_frames_of(1)
(13, (0,), (1, 2, 3, 4))
>>> VAECompression(spatial=1, temporal=1, first_frame_alone=False).latent_frames(5)   # identity "VAE"
5
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

__all__ = [
    "VAECompression",
    "ArchSpec",
    "get_spec",
    "register_architecture",
    "supported_architectures",
    "vae_from_pipeline",
]


@dataclass(frozen=True)
class VAECompression:
    """How a video VAE compresses pixels into latents.

    Args:
        spatial: pixels per latent cell along H and W (8 for Wan/CogVideoX/Hunyuan, 32 for LTX, 1 for none).
        temporal: pixel frames per latent frame (4 for Wan/CogVideoX/Hunyuan, 8 for LTX, 1 for image VAEs).
        first_frame_alone: the first pixel frame gets a latent frame of its own (causal video VAEs), so a clip
            of ``temporal * k + 1`` frames has ``k + 1`` latent frames.
    """

    spatial: int = 8
    temporal: int = 4
    first_frame_alone: bool = True

    def __post_init__(self) -> None:
        for name in ("spatial", "temporal"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"VAECompression.{name}: expected a positive int, got {v!r}")

    # -- time -------------------------------------------------------------------------------------------
    def check_num_frames(self, num_frames: int) -> None:
        """Raise when the VAE cannot take ``num_frames`` pixel frames; the message suggests the nearest counts."""
        n, r = int(num_frames), self.temporal
        if n < 1:
            raise ValueError(f"num_frames: expected at least 1 frame, got {num_frames}")
        if r == 1:
            return
        if self.first_frame_alone:
            if (n - 1) % r:
                lo = (n - 1) // r * r + 1
                raise ValueError(
                    f"num_frames: this model takes {r}k+1 frames (its VAE compresses time {r}x after a first frame "
                    f"kept alone), got {n}; use {lo} or {lo + r}"
                )
        elif n % r:
            lo = max(r, n // r * r)
            raise ValueError(f"num_frames: this model takes a multiple of {r} frames, got {n}; use {lo} or {lo + r}")

    def latent_frames(self, num_frames: int) -> int:
        """Number of latent frames for ``num_frames`` pixel frames (checked)."""
        self.check_num_frames(num_frames)
        if self.first_frame_alone:
            return (int(num_frames) - 1) // self.temporal + 1
        return int(num_frames) // self.temporal

    def pixel_frames_of(self, latent_index: int) -> tuple[int, ...]:
        """The pixel frames latent frame ``latent_index`` covers (in time order)."""
        j, r = int(latent_index), self.temporal
        if self.first_frame_alone:
            return (0,) if j == 0 else tuple(range((j - 1) * r + 1, j * r + 1))
        return tuple(range(j * r, (j + 1) * r))

    def latent_index_of(self, pixel_frame: int) -> int:
        """The latent frame covering pixel frame ``pixel_frame``."""
        p, r = int(pixel_frame), self.temporal
        if self.first_frame_alone:
            return 0 if p == 0 else (p - 1) // r + 1
        return p // r

    # -- space ------------------------------------------------------------------------------------------
    def latent_size(self, height: int, width: int, *, multiple: int = 1) -> tuple[int, int]:
        """Latent ``(h, w)`` for a ``height x width`` frame; both must divide by ``spatial * multiple``."""
        m = self.spatial * multiple
        if height % m or width % m:
            def near(v: int) -> str:
                lo = max(m, v // m * m)
                return f"{lo} or {lo + m}" if lo != v else str(v)

            raise ValueError(
                f"frame size: height and width must be multiples of {m} (VAE {self.spatial}x times patch "
                f"{multiple}), got {height}x{width}; use height {near(height)} and width {near(width)}"
            )
        return height // self.spatial, width // self.spatial

    def to_dict(self) -> dict:
        return asdict(self)


InputLayout = Literal["bcfhw", "bfchw", "tokens"]
EmbedKind = Literal["conv3d", "conv2d_frames", "linear_patches", "linear_tokens"]
BlockLayout = Literal["b(fhw)d", "(bf)(hw)d"]


def _cfg(transformer: Any, name: str, default: Any = None) -> Any:
    cfg = getattr(transformer, "config", None)
    if cfg is None:
        return default
    return getattr(cfg, name, cfg.get(name, default) if isinstance(cfg, dict) else default)


def _resolve(module: torch.nn.Module, path: str) -> Any:
    obj: Any = module
    for part in path.split("."):
        if not hasattr(obj, part):
            raise AttributeError(path)
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ArchSpec:
    """What motionguide needs to know about one transformer class.

    Attributes:
        name: the diffusers class name (``WanTransformer3DModel``).
        vae: the compression its pipelines use (override per call for custom VAEs, e.g. an identity one).
        embed_path: attribute path of the patch-embedding projection whose output the latent adapter extends.
        embed_kind: what that projection sees: ``conv3d`` on ``(B, C, F, h, w)``; ``conv2d_frames`` on
            ``(B*F, C, h, w)``; ``linear_patches`` on CogVideoX-1.5 patches ``(B, N, C*pt*p*p)`` packed
            ``(C, pt, p, p)``; ``linear_tokens`` on LTX tokens packed by the pipeline ``(B, N, C*pt*p*p)``.
        blocks_path: attribute path of the ``nn.ModuleList`` of blocks the feature hooks may attach to.
        block_layout: video tokens of a block output: ``b(fhw)d`` = ``(B, F'*R*C, D)`` frame-major, or
            ``(bf)(hw)d`` = ``(B*F', R*C, D)`` (Latte's spatial blocks).
        block_output: ``tensor`` or ``tuple0`` (a tuple whose item 0 is the video tokens).
        input_layout: layout of the transformer's ``hidden_states`` argument.
        pipeline_latents: layout of the pipeline's ``latents`` seen by ``callback_on_step_end``.
        latent_channels_key: config key giving the VAE latent channels (``out_channels`` for models whose input
            also carries conditioning channels; ``in_channels`` for Latte, whose output doubles for sigma).
        frame_rule: human text for the frame-count rule (docs and errors).
    """

    name: str
    vae: VAECompression
    embed_path: str
    embed_kind: EmbedKind
    blocks_path: str
    block_layout: BlockLayout
    block_output: Literal["tensor", "tuple0"]
    input_layout: InputLayout
    pipeline_latents: InputLayout
    latent_channels_key: str = "out_channels"
    frame_rule: str = ""
    extra_block_paths: tuple[str, ...] = field(default_factory=tuple)

    # -- per-instance metadata -------------------------------------------------------------------------
    def patch_size(self, transformer: Any) -> tuple[int, int, int]:
        """``(pt, ph, pw)``: latent cells per token along time, rows, cols."""
        p = _cfg(transformer, "patch_size", 1)
        if isinstance(p, (tuple, list)):
            if len(p) == 3:
                return int(p[0]), int(p[1]), int(p[2])
            if len(p) == 2:
                return 1, int(p[0]), int(p[1])
            raise ValueError(f"{self.name}: unexpected patch_size {p!r}")
        pt = _cfg(transformer, "patch_size_t", 1)
        return int(pt or 1), int(p), int(p)

    def latent_channels(self, transformer: Any) -> int:
        c = _cfg(transformer, self.latent_channels_key) or _cfg(transformer, "in_channels")
        if not c:
            raise ValueError(f"{self.name}: cannot read the latent channel count from config.{self.latent_channels_key}")
        return int(c)

    def embed_module(self, transformer: torch.nn.Module) -> torch.nn.Module:
        try:
            return _resolve(transformer, self.embed_path)
        except AttributeError:
            raise ValueError(
                f"{type(transformer).__name__}: patch embedding '{self.embed_path}' not found; the registry entry "
                f"for {self.name} does not match this model (diffusers version?)"
            ) from None

    def block_list(self, transformer: torch.nn.Module) -> torch.nn.ModuleList:
        try:
            blocks = _resolve(transformer, self.blocks_path)
        except AttributeError:
            blocks = None
        if not isinstance(blocks, torch.nn.ModuleList) or len(blocks) == 0:
            raise ValueError(
                f"{type(transformer).__name__}: transformer blocks '{self.blocks_path}' not found or empty; the "
                f"registry entry for {self.name} does not match this model"
            )
        return blocks

    def hidden_dim(self, transformer: torch.nn.Module) -> int:
        mod = self.embed_module(transformer)
        if isinstance(mod, torch.nn.Linear):
            return mod.out_features
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Conv3d)):
            return mod.out_channels
        raise ValueError(f"{self.name}: patch embedding '{self.embed_path}' is a {type(mod).__name__}, expected Linear/Conv")

    def token_grid(self, transformer: Any, latent_fhw: tuple[int, int, int]) -> tuple[int, int, int]:
        """Tokens ``(F', R, C)`` for a latent grid ``(F, h, w)`` (CogVideoX-1.5 rounds F up to pt)."""
        pt, ph, pw = self.patch_size(transformer)
        f, h, w = latent_fhw
        if h % ph or w % pw:
            raise ValueError(
                f"{self.name}: latent size {h}x{w} must be a multiple of the patch size {ph}x{pw}; "
                f"use frames whose size is a multiple of {self.vae.spatial * ph}x{self.vae.spatial * pw} pixels"
            )
        return (f + pt - 1) // pt, h // ph, w // pw

    def input_grid(self, bound: dict) -> tuple[int, tuple[int, int, int] | None, int | None]:
        """Read ``(batch, latent (F, h, w) or None, token count or None)`` from a forward call's bound arguments."""
        hs = bound.get("hidden_states")
        if not isinstance(hs, torch.Tensor):
            raise ValueError(f"{self.name}: could not find the hidden_states tensor in the forward call")
        if self.input_layout == "bcfhw":
            b, _, f, h, w = hs.shape
            return b, (f, h, w), None
        if self.input_layout == "bfchw":
            b, f, _, h, w = hs.shape
            return b, (f, h, w), None
        # packed tokens (LTX): the grid comes from the num_frames/height/width arguments when given
        b, n = hs.shape[:2]
        f, h, w = bound.get("num_frames"), bound.get("height"), bound.get("width")
        grid = (int(f), int(h), int(w)) if None not in (f, h, w) else None
        return b, grid, int(n)


_REGISTRY: dict[str, ArchSpec] = {}


def register_architecture(spec: ArchSpec, *, overwrite: bool = False) -> None:
    """Add ``spec`` for the class named ``spec.name`` (and its subclasses)."""
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"architecture {spec.name} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[spec.name] = spec


def supported_architectures() -> list[str]:
    """Names of the registered transformer classes."""
    return sorted(_REGISTRY)


def get_spec(transformer_or_class: Any) -> ArchSpec:
    """The :class:`ArchSpec` of a transformer instance or class; subclasses resolve to their registered parent.

    >>> get_spec("WanTransformer3DModel").vae.temporal
    4
    >>> get_spec(int)
    Traceback (most recent call last):
    ...
    ValueError: unsupported transformer class int; supported: CogVideoXTransformer3DModel, HunyuanVideoTransformer3DModel, LTXVideoTransformer3DModel, LatteTransformer3DModel, WanTransformer3DModel (add one with motionguide.registry.register_architecture)
    """
    if isinstance(transformer_or_class, str):
        if transformer_or_class in _REGISTRY:
            return _REGISTRY[transformer_or_class]
        name = transformer_or_class
    else:
        cls = transformer_or_class if isinstance(transformer_or_class, type) else type(transformer_or_class)
        for base in cls.__mro__:
            if base.__name__ in _REGISTRY:
                return _REGISTRY[base.__name__]
        name = cls.__name__
    raise ValueError(
        f"unsupported transformer class {name}; supported: {', '.join(supported_architectures())} "
        "(add one with motionguide.registry.register_architecture)"
    )


def vae_from_pipeline(pipe: Any, spec: ArchSpec | None = None) -> VAECompression:
    """The compression a diffusers pipeline object actually uses (its own ``vae_scale_factor*`` attributes).

    Falls back to the registry default of its transformer for what the pipeline does not expose.
    """
    spec = spec or get_spec(pipe.transformer)
    s = getattr(pipe, "vae_scale_factor_spatial", None) or getattr(pipe, "vae_spatial_compression_ratio", None)
    t = getattr(pipe, "vae_scale_factor_temporal", None) or getattr(pipe, "vae_temporal_compression_ratio", None)
    if s is None and spec.vae.temporal == 1:  # image VAE pipelines (Latte) expose vae_scale_factor
        s = getattr(pipe, "vae_scale_factor", None)
    return VAECompression(
        spatial=int(s) if s else spec.vae.spatial,
        temporal=int(t) if t else spec.vae.temporal,
        first_frame_alone=spec.vae.first_frame_alone,
    )


# -- the five supported classes (read from diffusers 0.42 sources) -----------------------------------------
register_architecture(ArchSpec(
    name="WanTransformer3DModel",
    vae=VAECompression(8, 4, True),  # Wan 2.1 VAE; Wan 2.2 TI2V-5B uses 16x, read it from the pipeline
    embed_path="patch_embedding", embed_kind="conv3d",
    blocks_path="blocks", block_layout="b(fhw)d", block_output="tensor",
    input_layout="bcfhw", pipeline_latents="bcfhw", latent_channels_key="out_channels",
    frame_rule="4k+1 frames",
))
register_architecture(ArchSpec(
    name="CogVideoXTransformer3DModel",
    vae=VAECompression(8, 4, True),
    embed_path="patch_embed.proj", embed_kind="conv2d_frames",  # 1.5 (patch_size_t) uses linear_patches
    blocks_path="transformer_blocks", block_layout="b(fhw)d", block_output="tuple0",
    input_layout="bfchw", pipeline_latents="bfchw", latent_channels_key="out_channels",
    frame_rule="4k+1 frames",
))
register_architecture(ArchSpec(
    name="LTXVideoTransformer3DModel",
    vae=VAECompression(32, 8, True),
    embed_path="proj_in", embed_kind="linear_tokens",
    blocks_path="transformer_blocks", block_layout="b(fhw)d", block_output="tensor",
    input_layout="tokens", pipeline_latents="tokens", latent_channels_key="out_channels",
    frame_rule="8k+1 frames",
))
register_architecture(ArchSpec(
    name="HunyuanVideoTransformer3DModel",
    vae=VAECompression(8, 4, True),
    embed_path="x_embedder.proj", embed_kind="conv3d",
    # the double-stream blocks keep video tokens apart from text; they are the "first blocks"
    blocks_path="transformer_blocks", block_layout="b(fhw)d", block_output="tuple0",
    input_layout="bcfhw", pipeline_latents="bcfhw", latent_channels_key="out_channels",
    frame_rule="4k+1 frames",
))
register_architecture(ArchSpec(
    name="LatteTransformer3DModel",
    vae=VAECompression(8, 1, False),  # an image VAE applied frame by frame
    embed_path="pos_embed.proj", embed_kind="conv2d_frames",
    blocks_path="transformer_blocks", block_layout="(bf)(hw)d", block_output="tensor",
    input_layout="bcfhw", pipeline_latents="bcfhw", latent_channels_key="in_channels",
    frame_rule="any number of frames",
))


def embed_kind_for(spec: ArchSpec, transformer: Any) -> EmbedKind:
    """CogVideoX 1.5 (``patch_size_t`` set) embeds with a Linear over patches instead of a Conv2d."""
    if spec.name == "CogVideoXTransformer3DModel" and _cfg(transformer, "patch_size_t"):
        return "linear_patches"
    return spec.embed_kind
