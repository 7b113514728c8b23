"""Apply, drive, save and remove MoG-style motion guidance on a diffusers video transformer.

Plugin shape after ``diffusers.hooks`` (``apply_first_block_cache``): a validated config dataclass, an
``apply_motion_guidance(transformer, config)`` that checks everything first and only then registers named
hooks (peft ``inject_adapter`` order), and a ``remove_motion_guidance(transformer)`` that restores the model
exactly (hooks gone, no ``_diffusers_hook`` or ``forward`` attribute left behind that we added, adapter
submodule deleted). The pretrained class is never subclassed and its modules are never replaced.

What is registered (hook names; the root and latent hooks and their exact (un)registration live in
:mod:`motionguide.hooks`):

* ``motionguide_root`` on the transformer: records each call's batch, latent grid and timestep in the
  shared :class:`~motionguide.latent.GuidanceState` and checks them against the guidance;
* ``motionguide_latent`` on the patch embedding (trained mode): adds the zero-initialised
  :class:`~motionguide.latent.LatentAdapter` projection of ``[warped latents, mask]``;
* ``motionguide_feature`` on each guided block: :class:`~motionguide.feature.FeatureGuidanceHook`.

Applying twice raises (remove first): silently re-applying would either stack a second set of adapters or
drop trained weights, both worse than an error.
"""
from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable, Iterator, Literal

import torch

from .devices import compute_dtype, context_parallel_enabled, execution_device, resting_device
from .errors import MotionGuidanceError
from .feature import FEATURE_HOOK, FeatureGuidanceHook, token_pairs
from .guidance import Guidance, check_strength
from .hooks import (CP_MESSAGE, LATENT_HOOK, ROOT_HOOK, HookRecord, LatentHook, RootHook, invalidate,
                    register, unregister)
from .latent import GuidanceState, LatentAdapter, LatentGuidance, latent_guidance
from .registry import ArchSpec, VAECompression, embed_kind_for, get_spec

__all__ = [
    "MotionGuidanceConfig",
    "MotionGuidanceAdapter",
    "MotionGuidanceError",
    "apply_motion_guidance",
    "remove_motion_guidance",
    "get_motion_guidance",
    "has_motion_guidance",
    "set_guidance",
    "guidance_context",
]

ADAPTER_ATTR = "motion_guidance"
WEIGHTS_NAME = "motion_guidance.safetensors"
CONFIG_NAME = "motion_guidance.json"
FORMAT = "motionguide-adapter"
FORMAT_VERSION = 1


@dataclass
class MotionGuidanceConfig:
    """How motion guidance is injected.

    Args:
        mode: ``trained`` (MoG: zero-initialised latent adapter and per-channel feature gates, to be
            fine-tuned) or ``training_free`` (no new weights: feature gate = strength, and the latent level is
            a re-noised pull during sampling, :class:`~motionguide.latent.LatentPull`, wired by the pipeline
            helper).
        latent: use latent-level guidance.
        feature: use feature-level guidance.
        blocks: indices of the blocks that get feature hooks (negative indices count from the end);
            None = the first half (at least one), as MoG injects in the encoder half only.
        strength: default strength in [0, 1] when the guidance of a call carries none.
        timestep_range: ``(lo, hi)``: guidance acts when ``timestep / timestep_scale`` is in [lo, hi]
            (1 = pure noise). Default always.
        timestep_scale: the models' timestep range (1000 for all five supported classes).
        pull_steps: ``(start, end)`` fractions of the sampling steps for the training-free latent pull.
        vae: compression override (e.g. ``VAECompression(1, 1, False)`` for a model trained on pixels);
            None = the registry default of the class (the pipeline helper reads the pipeline's own).
    """

    mode: Literal["trained", "training_free"] = "trained"
    latent: bool = True
    feature: bool = True
    blocks: tuple[int, ...] | None = None
    strength: float = 1.0
    timestep_range: tuple[float, float] = (0.0, 1.0)
    timestep_scale: float = 1000.0
    pull_steps: tuple[float, float] = (0.0, 0.4)
    vae: VAECompression | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("trained", "training_free"):
            raise ValueError(f"mode: expected 'trained' or 'training_free', got {self.mode!r}")
        for name in ("latent", "feature"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if not (self.latent or self.feature):
            raise ValueError("latent and feature are both False: enable at least one guidance level")
        if self.blocks is not None:
            if isinstance(self.blocks, int) or not all(isinstance(i, int) and not isinstance(i, bool) for i in self.blocks):
                raise TypeError(f"blocks: expected a sequence of block indices or None, got {self.blocks!r}")
            self.blocks = tuple(self.blocks)
            if not self.blocks:
                raise ValueError("blocks: expected at least one index (or None for the first half)")
        self.strength = check_strength(self.strength)
        for name in ("timestep_range", "pull_steps"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 2 or not 0.0 <= v[0] <= v[1] <= 1.0:
                raise ValueError(f"{name}: expected (start, end) with 0 <= start <= end <= 1, got {getattr(self, name)!r}")
            setattr(self, name, v)
        if not (isinstance(self.timestep_scale, (int, float)) and math.isfinite(self.timestep_scale) and self.timestep_scale > 0):
            raise ValueError(f"timestep_scale: expected a positive number, got {self.timestep_scale!r}")
        if isinstance(self.vae, dict):
            self.vae = VAECompression(**self.vae)
        if self.vae is not None and not isinstance(self.vae, VAECompression):
            raise TypeError(f"vae: expected a motionguide.registry.VAECompression or None, got {type(self.vae).__name__}")

    def resolve_blocks(self, num_blocks: int) -> tuple[int, ...]:
        """Sorted non-negative block indices for a model with ``num_blocks`` blocks (checked)."""
        if self.blocks is None:
            return tuple(range(max(1, num_blocks // 2)))
        out = set()
        for i in self.blocks:
            j = i + num_blocks if i < 0 else i
            if not 0 <= j < num_blocks:
                raise ValueError(f"blocks: index {i} is out of range for a model with {num_blocks} blocks")
            out.add(j)
        return tuple(sorted(out))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = None if self.blocks is None else list(self.blocks)
        d["timestep_range"], d["pull_steps"] = list(self.timestep_range), list(self.pull_steps)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MotionGuidanceConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"MotionGuidanceConfig: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if d.get("blocks") is not None:
            d["blocks"] = tuple(d["blocks"])
        return cls(**d)


class MotionGuidanceAdapter(torch.nn.Module):
    """The new weights of motion guidance and its bookkeeping, attached as ``transformer.motion_guidance``.

    Attributes:
        latent: :class:`~motionguide.latent.LatentAdapter` (trained mode with ``latent=True``) or None.
        gates: ``ParameterDict`` block index -> ``(D,)`` gate, zero-initialised (trained mode with ``feature``).
        state: the shared :class:`~motionguide.latent.GuidanceState` the hooks read.
        trained_blocks: indices of pretrained blocks trained with the adapter
            (:func:`~motionguide.adapter_weights.train_blocks`); their original values are put back on removal.
        lora: the adapter's own LoRA (:func:`~motionguide.add_lora`) as ``{"name", "rank", "alpha", "blocks",
            "targets"}`` plus ``"merged": True`` when it was loaded merged into the base weights; None without one.
    """

    def __init__(self, config: MotionGuidanceConfig, spec: ArchSpec, *, latent: LatentAdapter | None,
                 blocks: tuple[int, ...], hidden_dim: int, latent_channels: int, patch: tuple[int, int, int],
                 embed_kind: str, num_blocks: int, device, dtype) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        self.latent = latent
        self.guided_blocks = blocks
        self.hidden_dim, self.latent_channels, self.patch = hidden_dim, latent_channels, patch
        self.embed_kind, self.num_blocks = embed_kind, num_blocks
        self.gates = torch.nn.ParameterDict()
        if config.mode == "trained" and config.feature:
            for i in blocks:
                self.gates[str(i)] = torch.nn.Parameter(torch.zeros(hidden_dim, device=device, dtype=dtype))
        self.state = GuidanceState(config.strength)
        self._records: list[HookRecord] = []
        # pretrained blocks trained with the adapter (adapter_weights.train_blocks): their indices and the
        # original values of their parameters, put back by remove_motion_guidance
        self.trained_blocks: tuple[int, ...] = ()
        self._block_originals: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        # the adapter's LoRA (add_lora), how removal undoes it (separate) and its values (merged: not in peft)
        self.lora: dict | None = None
        self._lora_undo: Callable[[], None] | None = None
        self._merged_lora: dict[str, torch.Tensor] | None = None
        self._root_forward: Callable | None = None  # transformer.forward as the root hook left it

    @property
    def vae(self) -> VAECompression:
        return self.config.vae or self.spec.vae

    def describe(self) -> dict:
        """What a saved adapter must match to load onto a model."""
        return {
            "architecture": self.spec.name,
            "hidden_dim": self.hidden_dim,
            "latent_channels": self.latent_channels,
            "patch_size": list(self.patch),
            "embed_kind": self.embed_kind,
            "num_blocks": self.num_blocks,
            "guided_blocks": list(self.guided_blocks),
        }


def get_motion_guidance(transformer: torch.nn.Module) -> MotionGuidanceAdapter:
    """The applied :class:`MotionGuidanceAdapter` (raises when none is applied)."""
    ad = getattr(transformer, ADAPTER_ATTR, None)
    if not isinstance(ad, MotionGuidanceAdapter):
        raise MotionGuidanceError(
            f"no motion guidance is applied to this {type(transformer).__name__}; call "
            "motionguide.apply_motion_guidance(transformer, config) first"
        )
    return ad


def has_motion_guidance(module: torch.nn.Module) -> bool:
    """Whether :func:`apply_motion_guidance` (or ``load_motion_guidance``) has attached an adapter to ``module``."""
    return isinstance(getattr(module, ADAPTER_ATTR, None), MotionGuidanceAdapter)


def apply_motion_guidance(transformer: torch.nn.Module, config: MotionGuidanceConfig | None = None) -> MotionGuidanceAdapter:
    """Attach motion guidance to ``transformer`` (validates everything before changing anything).

    Returns the :class:`MotionGuidanceAdapter` (also ``transformer.motion_guidance``). Its parameters rest
    where the patch embedding's weights rest (:func:`motionguide.devices.resting_device`: the CPU under
    sequential offload) in its compute dtype (never a float8 storage dtype). Raises
    :class:`MotionGuidanceError` when guidance is already applied or feature guidance meets context
    parallelism, ``ValueError`` for an unsupported class (the message lists the supported ones) or a model
    that does not match its registry entry.
    """
    config = MotionGuidanceConfig() if config is None else config
    if not isinstance(config, MotionGuidanceConfig):
        raise TypeError(f"config: expected a MotionGuidanceConfig, got {type(config).__name__}")
    if not isinstance(transformer, torch.nn.Module):
        raise TypeError(f"transformer: expected a diffusers transformer (torch.nn.Module), got {type(transformer).__name__}")
    if getattr(transformer, ADAPTER_ATTR, None) is not None:
        raise MotionGuidanceError(
            "motion guidance is already applied to this transformer; call motionguide.remove_motion_guidance(transformer) "
            "first (applying twice is an error, not a silent re-apply)"
        )
    # ---- 1. resolve and validate everything (nothing is changed until all checks pass) ----
    spec = get_spec(transformer)
    embed = spec.embed_module(transformer)
    kind = embed_kind_for(spec, transformer)
    want = {"conv3d": torch.nn.Conv3d, "conv2d_frames": torch.nn.Conv2d}.get(kind, torch.nn.Linear)
    if not isinstance(embed, want):
        raise ValueError(
            f"{spec.name}: patch embedding '{spec.embed_path}' is a {type(embed).__name__}, the registry expects "
            f"{want.__name__}; this diffusers version is not supported by the registry entry"
        )
    blocks = spec.block_list(transformer)
    guided = config.resolve_blocks(len(blocks)) if config.feature else ()
    hidden = spec.hidden_dim(transformer)
    channels = spec.latent_channels(transformer)
    patch = spec.patch_size(transformer)
    targets = [(transformer, ROOT_HOOK)]
    if config.latent and config.mode == "trained":
        targets.append((embed, LATENT_HOOK))
    targets += [(blocks[i], FEATURE_HOOK) for i in guided]
    for mod, name in targets:
        reg = getattr(mod, "_diffusers_hook", None)
        if reg is not None and name in reg.hooks:
            raise MotionGuidanceError(f"a hook named {name!r} is already registered on {type(mod).__name__}; remove it first")
    signature = inspect.signature(transformer.forward)
    if "hidden_states" not in signature.parameters:
        raise ValueError(f"{spec.name}: forward has no hidden_states argument; the registry entry does not match")
    if config.feature and context_parallel_enabled(transformer):
        raise MotionGuidanceError(CP_MESSAGE)
    # ---- 2. build the new weights (still nothing attached) ----
    # They rest where the model's weights rest (the CPU under sequential offload, whose parameters are on meta;
    # the offload device under group offload) and the hooks bring them to the activations' device on each call,
    # as the offload hooks do for every other weight: one rule for every offload mode, with no registration in
    # an offload scheme that a later enable_*_offload would rebuild without them. Model offload moves them with
    # the transformer, as a submodule. They are in the embedding's compute dtype, never a float8 storage dtype.
    device, dtype = resting_device(embed), compute_dtype(embed)
    latent = (LatentAdapter(embed, kind, channels, patch, device=device, dtype=dtype)
              if (config.latent and config.mode == "trained") else None)
    adapter = MotionGuidanceAdapter(config, spec, latent=latent, blocks=guided, hidden_dim=hidden,
                                    latent_channels=channels, patch=patch, embed_kind=kind, num_blocks=len(blocks),
                                    device=device, dtype=dtype)
    # ---- 3. attach; roll back on any failure so the model is never left half-modified ----
    try:
        adapter._records.append(register(transformer, RootHook(adapter, signature), ROOT_HOOK))
        adapter._root_forward = transformer.forward
        if latent is not None:
            adapter._records.append(register(embed, LatentHook(adapter), LATENT_HOOK))
        for i in guided:
            gate = adapter.gates[str(i)] if str(i) in adapter.gates else None
            hook = FeatureGuidanceHook(adapter.state, gate, spec.block_layout, spec.block_output == "tuple0", patch[0])
            adapter._records.append(register(blocks[i], hook, FEATURE_HOOK))
        transformer.add_module(ADAPTER_ATTR, adapter)
    except BaseException:
        for rec in reversed(adapter._records):
            unregister(rec)
        if ADAPTER_ATTR in transformer._modules:
            del transformer._modules[ADAPTER_ATTR]
        raise
    invalidate(transformer)
    return adapter


def remove_motion_guidance(transformer: torch.nn.Module) -> None:
    """Remove every hook and weight :func:`apply_motion_guidance` (and :func:`add_lora`) added, and put
    back the original values of pretrained blocks trained with the adapter (``adapter_weights.train_blocks``).

    The model is then as before: same modules, parameters, buffers and ``forward``.

    Raises :class:`MotionGuidanceError` when nothing is applied.
    """
    adapter = get_motion_guidance(transformer)
    for rec in reversed(adapter._records):
        unregister(rec)
    adapter._records.clear()
    adapter.state.reset()
    with torch.no_grad():  # trained pretrained blocks get their original values back (offload weights map included)
        for held, value in reversed(adapter._block_originals):  # a merged LoRA sits on trained blocks' values
            held.copy_(value)
    adapter._block_originals.clear()
    if adapter._lora_undo is not None:  # the adapter's own peft LoRA goes; the user's LoRAs get their state back
        adapter._lora_undo()
    del transformer._modules[ADAPTER_ATTR]
    invalidate(transformer)


def set_guidance(transformer: torch.nn.Module, guidance: LatentGuidance | Guidance | None, *,
                 latents: torch.Tensor | None = None, strength: float | None = None,
                 device: torch.device | str | None = None) -> LatentGuidance | None:
    """Set the guidance every following forward of ``transformer`` uses (until changed or cleared with None).

    Args:
        guidance: a :class:`~motionguide.latent.LatentGuidance` on the model's latent grid; or a pixel
            :class:`~motionguide.guidance.Guidance` whose known frames are encoded (``latents`` here or
            ``guidance.latents``), mapped with the adapter's VAE compression; or None to clear (the model
            then runs as the base model).
        strength: overrides the guidance's strength for these calls, in [0, 1].
        device: where the model computes (``pipe._execution_device`` for a pipeline's transformer); default
            :func:`motionguide.devices.execution_device` of the transformer, which reads accelerate's and
            diffusers' offload hooks (never the first parameter's device: ``meta`` under sequential offload).

    Returns the LatentGuidance now in use, on ``device`` in float32. Everything the hooks derive from it (the
    latent adapter's input, the feature hooks' token pairs) is built here once, so that the forwards of a
    sampling call do no host synchronisation. The same guidance serves the conditional and unconditional
    halves of a CFG batch (the model batch may be any multiple of the guidance batch).
    """
    adapter = get_motion_guidance(transformer)
    if guidance is None:
        adapter.state.set(None)
        return None
    _ensure_root_hook(transformer, adapter)
    if isinstance(guidance, Guidance):
        guidance = latent_guidance(guidance, latents, vae=adapter.vae)
    elif not isinstance(guidance, LatentGuidance):
        raise TypeError(f"guidance: expected a LatentGuidance, a Guidance or None, got {type(guidance).__name__}")
    if strength is not None:
        guidance = replace(guidance, strength=check_strength(strength))
    if guidance.channels != adapter.latent_channels:
        raise ValueError(
            f"guidance latents have {guidance.channels} channels, the model's latents have {adapter.latent_channels}; "
            "encode the known frames with the pipeline's VAE (motionguide.pipeline.encode_frames)"
        )
    if adapter.config.feature and not guidance.has_flows and adapter.config.mode == "training_free" and not adapter.config.latent:
        raise ValueError("this adapter is feature-level only, which needs sources/flows/weights in the guidance")
    device = execution_device(transformer) if device is None else torch.device(device)
    pairs = None  # from the guidance as given (its frame indices are read on the host once, here)
    if adapter.guided_blocks and guidance.has_flows:
        grid = adapter.spec.token_grid(transformer, guidance.grid)
        pairs = token_pairs(guidance, grid, adapter.patch[0], device=device)
    guidance = guidance.to(device=device, dtype=torch.float32)
    latent_input = torch.cat([guidance.latents, guidance.mask], dim=1) if adapter.latent is not None else None
    adapter.state.set(guidance, latent_input=latent_input, pairs=pairs)
    return guidance


def _ensure_root_hook(transformer: torch.nn.Module, adapter: MotionGuidanceAdapter) -> None:
    """Put the root hook back on top when something replaced ``transformer.forward`` after apply.

    accelerate's ``add_hook_to_module`` rebuilds ``forward`` from the class method: ``enable_model_cpu_offload``
    does so after every pipeline call (``maybe_free_model_hooks``), which would leave the next call without
    the root hook. Re-registering it wraps whatever ``forward`` is now (also harmless when a later diffusers
    hook only wrapped it further).
    """
    if transformer.__dict__.get("forward") is adapter._root_forward:
        return
    reg = transformer._diffusers_hook
    hook = reg.get_hook(ROOT_HOOK)
    reg.remove_hook(ROOT_HOOK, recurse=False)
    reg.register_hook(hook, ROOT_HOOK)
    adapter._root_forward = transformer.forward


@contextlib.contextmanager
def guidance_context(transformer: torch.nn.Module, guidance: LatentGuidance | Guidance | None, **kwargs) -> Iterator[LatentGuidance | None]:
    """``with guidance_context(model, g): model(...)`` sets the guidance and restores the previous one after."""
    adapter = get_motion_guidance(transformer)
    st = adapter.state
    previous = (st.guidance, st.latent_input, st.pairs)
    try:
        yield set_guidance(transformer, guidance, **kwargs)
    finally:
        st.set(previous[0], latent_input=previous[1], pairs=previous[2])
