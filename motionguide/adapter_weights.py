"""What trains and how it is stored: MoG selective fine-tuning and the adapter's save/load format.

* :func:`trainable_parameters`: the adapter's parameters plus chosen pretrained blocks (and LoRA), the rest
  frozen, as MoG fine-tunes the injected path while the base stays mostly frozen;
* :func:`add_lora`: a peft LoRA on the attention of chosen blocks, saved with the adapter;
* :func:`train_blocks`: pretrained blocks that train with the adapter (MoG's selective fine-tuning), their
  weights saved with it and their original values put back by ``remove_motion_guidance``;
* :func:`save_motion_guidance` / :func:`load_motion_guidance`: ``motion_guidance.safetensors`` (weights,
  LoRA under ``lora::``, trained blocks under ``block::``) and ``motion_guidance.json`` (format,
  architecture, sizes, config). Loading checks the architecture and sizes (and, in a folder the pipeline
  trainer wrote, the transformer config its ``pipeline.json`` names) before the model is touched, and rolls
  back if the weights do not fit.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal, Sequence

import torch
from accelerate import cpu_offload
from diffusers.hooks.group_offloading import _maybe_remove_and_reapply_group_offloading
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file

from flow.atomic import atomic_path

from .adapter import (
    CONFIG_NAME,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    MotionGuidanceAdapter,
    MotionGuidanceConfig,
    apply_motion_guidance,
    get_motion_guidance,
    remove_motion_guidance,
)
from .devices import compute_dtype, execution_device, offloaded_value
from .errors import MotionGuidanceError
from .registry import embed_kind_for, get_spec

__all__ = ["trainable_parameters", "add_lora", "train_blocks", "save_motion_guidance", "load_motion_guidance",
           "PIPELINE_MANIFEST"]

#: written beside the adapter by the pipeline trainer: the pipeline class and the transformer config it trained on
PIPELINE_MANIFEST = "pipeline.json"
#: the format version of a folder with trained blocks (readers of version 1 would drop them silently)
_BLOCKS_VERSION = 2


# ------------------------------------------------------------------------------------------------------
# training helpers
# ------------------------------------------------------------------------------------------------------
def trainable_parameters(transformer: torch.nn.Module, *, blocks: Sequence[int] | Literal["guided"] = (),
                         lora: bool = True, freeze: bool = True) -> list[torch.nn.Parameter]:
    """Parameters for MoG-style selective fine-tuning: the adapter's, plus chosen pretrained blocks.

    Args:
        blocks: indices of pretrained blocks to train too, or ``"guided"`` for the blocks that carry feature
            hooks (MoG fine-tunes the injected path).
        lora: include LoRA parameters added with :func:`add_lora`.
        freeze: set ``requires_grad`` False on everything else of the transformer and True on the result.
    """
    adapter = get_motion_guidance(transformer)
    block_list = adapter.spec.block_list(transformer)
    idx = adapter.guided_blocks if blocks == "guided" else MotionGuidanceConfig(blocks=tuple(blocks) or None).resolve_blocks(len(block_list)) if blocks else ()
    chosen: dict[int, torch.nn.Parameter] = {}
    for p in adapter.parameters():
        chosen[id(p)] = p
    for i in idx:
        for p in block_list[i].parameters():
            chosen[id(p)] = p
    own = adapter.lora
    if lora and own and not own.get("merged"):  # the adapter's own LoRA only, never a user's
        for n, p in transformer.named_parameters():
            if "lora_" in n and f".{own['name']}." in n:
                chosen[id(p)] = p
    if freeze:
        for p in transformer.parameters():
            p.requires_grad_(False)
        for p in chosen.values():
            p.requires_grad_(True)
    return list(chosen.values())


def add_lora(transformer: torch.nn.Module, *, rank: int = 8, alpha: float | None = None,
             blocks: Sequence[int] | Literal["guided", "all"] = "guided",
             targets: Sequence[str] = ("to_q", "to_k", "to_v", "to_out.0"),
             adapter_name: str = "motionguide_lora", _values: dict | None = None) -> str:
    """Add a peft LoRA to the attention projections of chosen blocks (apply guidance first).

    Returns the adapter name. LoRA weights are saved and loaded with the motion-guidance adapter. The user's
    LoRAs keep their state: the adapters active in each layer before stay active beside this one, with their
    weights, and ``remove_motion_guidance`` puts every layer's active set, scalings and ``requires_grad`` back.
    The LoRA weights are in the layer's compute dtype (never a float8 storage dtype of layerwise casting), and
    under sequential offload they are real on the CPU and loaded by accelerate hooks, as every other weight.
    """
    adapter = get_motion_guidance(transformer)
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank: expected a positive int, got {rank!r}")
    if adapter_name in (getattr(transformer, "peft_config", None) or {}):
        raise MotionGuidanceError(f"a LoRA named {adapter_name!r} is already loaded; pick another adapter_name")
    n = adapter.num_blocks
    idx = range(n) if blocks == "all" else adapter.guided_blocks if blocks == "guided" else MotionGuidanceConfig(blocks=tuple(blocks)).resolve_blocks(n)
    prefix = adapter.spec.blocks_path.replace(".", r"\.")
    alt = "|".join(str(i) for i in idx)
    tgt = "|".join(t.replace(".", r"\.") for t in targets)
    pattern = rf"^{prefix}\.({alt})\.[^.]+\.({tgt})$"
    if not any(re.match(pattern, name) for name, _ in transformer.named_modules()):
        raise ValueError(f"add_lora: no module matches {pattern!r}; choose targets among the blocks' Linear layers")
    cfg = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, target_modules=pattern, init_lora_weights=True)
    before = _peft_state(transformer)
    transformer.add_adapter(cfg, adapter_name=adapter_name)  # diffusers makes it the only active adapter ...
    adapter.lora = {"name": adapter_name, "rank": rank, "alpha": alpha if alpha is not None else rank,
                     "blocks": list(idx), "targets": list(targets)}
    wrapped = [n for n, m in transformer.named_modules() if isinstance(m, BaseTunerLayer) and m not in before]
    adapter._lora_undo = lambda: _remove_lora(transformer, adapter_name, before, wrapped)
    layers = [m for m in transformer.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:  # ... so every layer gets its previous active set back, plus ours where it has ours
        prev = before[layer][0] if layer in before else []
        ours = adapter_name in getattr(layer, "lora_A", {})
        layer.set_adapter([*prev, adapter_name] if ours else prev)
        for m in ([layer.lora_A[adapter_name], layer.lora_B[adapter_name]] if ours else []):
            base = layer.get_base_layer()
            real = m.weight.device.type == "meta"
            if real:  # the base weight is offloaded to meta: ours is made real on the CPU
                m.to_empty(device="cpu")
            m.to(dtype=compute_dtype(base))
            if real:
                layer.reset_lora_parameters(adapter_name, True)
    _restore_grads(before)
    if _values is not None:
        set_peft_model_state_dict(transformer, _values, adapter_name=adapter_name)
    # offloaded models: our LoRA layers join the offload scheme the rest of the model uses
    if any(getattr(h, "offload", False) for m in transformer.modules() for h in _accel_hooks(m)):
        dev = execution_device(transformer)
        for layer in layers:
            if adapter_name in getattr(layer, "lora_A", {}):
                for m in (layer.lora_A[adapter_name], layer.lora_B[adapter_name]):
                    cpu_offload(m, execution_device=dev)
    _maybe_remove_and_reapply_group_offloading(transformer)
    return adapter_name


def _accel_hooks(m):
    h = getattr(m, "_hf_hook", None)
    return [] if h is None else list(getattr(h, "hooks", None) or [h])


def _peft_state(transformer: torch.nn.Module) -> dict:
    """Per peft layer: (active adapters, scalings, adapters disabled, requires_grad of its adapter parameters)."""
    out = {}
    for m in transformer.modules():
        if isinstance(m, BaseTunerLayer):
            grads = {id(p): (p, p.requires_grad) for n, p in m.named_parameters() if "lora_" in n}
            out[m] = (list(m.active_adapters), dict(getattr(m, "scaling", {})), m.disable_adapters, grads)
    return out


def _restore_grads(state: dict) -> None:
    for *_, grads in state.values():
        for p, req in grads.values():
            p.requires_grad_(req)


def _remove_lora(transformer: torch.nn.Module, name: str, before: dict, wrapped: list[str]) -> None:
    """Delete the adapter's LoRA and put every user LoRA layer back as it was before ``add_lora``; the layers
    that only the adapter's LoRA wrapped get their original module back (as peft's unload does)."""
    others = set(getattr(transformer, "peft_config", {}) or {}) - {name}
    if others:
        transformer.delete_adapters(name)
        for path in wrapped:
            parent, _, child = path.rpartition(".")
            owner = transformer.get_submodule(parent)
            setattr(owner, child, getattr(owner, child).get_base_layer())
        for layer, (active, scaling, disabled, _) in before.items():
            layer.set_adapter(active)
            layer.scaling.update(scaling)
            layer.enable_adapters(not disabled)
        _restore_grads(before)
    else:  # unload_lora puts the original Linear layers back (delete_adapters keeps peft wrappers)
        transformer.unload_lora()
    _maybe_remove_and_reapply_group_offloading(transformer)


def _merge_lora(transformer: torch.nn.Module, adapter: MotionGuidanceAdapter, lora: dict, values: dict) -> None:
    """Add ``alpha / rank * B @ A`` of the saved LoRA into the base weights (kept to restore on removal)."""
    scale = lora["alpha"] / lora["rank"]
    pairs = sorted({k.rsplit(".lora_", 1)[0] for k in values})
    held = []
    for path in pairs:
        a, b = values[f"{path}.lora_A.weight"], values[f"{path}.lora_B.weight"]
        try:
            w = _value(transformer, f"{path}.weight")
        except AttributeError:
            raise MotionGuidanceError(f"the adapter's LoRA targets {path}, which this model lacks") from None
        if w.element_size() == 1:
            raise MotionGuidanceError(
                f"cannot merge the adapter's LoRA into {path}: its weight is stored as {w.dtype} (layerwise "
                "casting), which would round the LoRA away; load with lora='separate'")
        if w.shape != (b.shape[0], a.shape[1]):
            raise MotionGuidanceError(f"the adapter's LoRA for {path} makes {tuple(b.shape[:1] + a.shape[1:])}, "
                                      f"the weight is {tuple(w.shape)}")
        held.append((w, a, b))
    for w, a, b in held:  # all checked: now change the weights
        adapter._block_originals.append((w, w.detach().to("cpu", copy=True)))
        with torch.no_grad():
            w.copy_((w.float() + scale * (b.float() @ a.float()).to(w.device)).to(w.dtype))
    adapter.lora = dict(lora, merged=True)
    adapter._merged_lora = values


def train_blocks(transformer: torch.nn.Module, blocks: Sequence[int]) -> list[torch.nn.Parameter]:
    """Make pretrained blocks part of the adapter (apply guidance first, and :func:`add_lora` before this).

    Their parameters (LoRA layers excepted) are returned to train, saved by :func:`save_motion_guidance`
    and loaded by :func:`load_motion_guidance`; their current values are kept so that
    ``remove_motion_guidance`` puts them back.
    """
    adapter = get_motion_guidance(transformer)
    if adapter.trained_blocks:
        raise MotionGuidanceError(f"blocks {list(adapter.trained_blocks)} already train with this adapter; "
                                  f"remove the guidance first")
    idx = MotionGuidanceConfig(blocks=tuple(blocks)).resolve_blocks(adapter.num_blocks)
    named = _block_parameters(transformer, adapter, idx)
    adapter.trained_blocks = idx
    # the tensors that hold the values (under sequential offload: the offload weights map, not the meta parameter)
    adapter._block_originals = [(v, v.detach().to("cpu", copy=True)) for v in (_value(transformer, n) for n, _ in named)]
    return [p for _, p in named]


def _value(transformer: torch.nn.Module, name: str) -> torch.Tensor:
    """The tensor holding parameter ``name``'s value, writable in place (:func:`motionguide.devices.offloaded_value`)."""
    owner, _, leaf = name.rpartition(".")
    return offloaded_value(transformer.get_submodule(owner), leaf)


def _block_parameters(transformer, adapter, idx) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` of blocks ``idx``, LoRA layers excepted, names as in ``named_parameters``."""
    prefixes = tuple(f"{adapter.spec.blocks_path}.{i}." for i in idx)
    return [(n, p) for n, p in transformer.named_parameters() if n.startswith(prefixes) and "lora_" not in n]


# ------------------------------------------------------------------------------------------------------
# save / load
# ------------------------------------------------------------------------------------------------------
def save_motion_guidance(transformer: torch.nn.Module, folder: str | Path) -> Path:
    """Write the adapter weights (``motion_guidance.safetensors``) and config (``motion_guidance.json``).

    Both files are written atomically into ``folder`` (created if missing). Returns the folder.
    """
    adapter = get_motion_guidance(transformer)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder: {folder} exists and is not a folder; pick a folder path")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in adapter.state_dict().items()}
    lora = adapter.lora
    if lora:
        # the LoRA's values where they are (under sequential offload the parameters are meta, the values in
        # accelerate's weights map), named as the model's state dict names them for peft to pick out
        values = {n: _value(transformer, n) for n, _ in transformer.named_parameters() if "lora_" in n}
        state = (adapter._merged_lora if lora.get("merged")
                 else get_peft_model_state_dict(transformer, state_dict=values, adapter_name=lora["name"]))
        for k, v in state.items():
            tensors["lora::" + k] = v.detach().contiguous().cpu()
        lora = {k: v for k, v in lora.items() if k != "merged"}
    for n, p in _block_parameters(transformer, adapter, adapter.trained_blocks):
        tensors["block::" + n] = _value(transformer, n).detach().contiguous().cpu()
    meta = {"format": FORMAT, "version": _BLOCKS_VERSION if adapter.trained_blocks else 1, **adapter.describe(),
            "config": adapter.config.to_dict(), "lora": lora, "trained_blocks": list(adapter.trained_blocks)}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    with atomic_path(folder / CONFIG_NAME) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2))
    return folder


def load_motion_guidance(transformer: torch.nn.Module, folder: str | Path, *,
                         lora: Literal["separate", "merged"] = "separate") -> MotionGuidanceAdapter:
    """Apply motion guidance from a folder written by :func:`save_motion_guidance` onto ``transformer``.

    Checks the architecture and sizes (hidden width, latent channels, patch, number of blocks) before
    touching the model; a mismatch raises :class:`MotionGuidanceError` naming both sides.

    Args:
        lora: how the adapter's own LoRA (if it has one) enters: ``separate`` (a peft adapter named as saved,
            active beside the user's active LoRAs, which keep their state) or ``merged`` (added into the base
            weights: no LoRA layers and no LoRA cost per forward; refused for weights stored in float8).
            Either way ``remove_motion_guidance`` restores the model exactly.
    """
    if lora not in ("separate", "merged"):
        raise ValueError(f"lora: expected 'separate' or 'merged', got {lora!r}")
    folder = Path(folder)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found; expected a folder written by motionguide.save_motion_guidance")
    meta = json.loads(cfg_path.read_text())
    if meta.get("format") != FORMAT:
        raise MotionGuidanceError(f"{cfg_path} is not a motionguide adapter (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > max(FORMAT_VERSION, _BLOCKS_VERSION):
        raise MotionGuidanceError(f"{cfg_path} has format version {meta['version']}; this motionguide reads "
                                  f"<= {max(FORMAT_VERSION, _BLOCKS_VERSION)}")
    spec = get_spec(transformer)
    if meta["architecture"] != spec.name:
        raise MotionGuidanceError(
            f"adapter in {folder} was saved for {meta['architecture']}, this model is {spec.name}; load it onto a "
            f"{meta['architecture']} of the same size"
        )
    here = {
        "hidden_dim": spec.hidden_dim(transformer),
        "latent_channels": spec.latent_channels(transformer),
        "patch_size": list(spec.patch_size(transformer)),
        "embed_kind": embed_kind_for(spec, transformer),
        "num_blocks": len(spec.block_list(transformer)),
    }
    diff = {k: (meta.get(k), v) for k, v in here.items() if meta.get(k) != v}
    if diff:
        txt = ", ".join(f"{k}: saved {a} vs model {b}" for k, (a, b) in diff.items())
        raise MotionGuidanceError(f"adapter in {folder} was saved for another size of {spec.name} ({txt})")
    _check_pipeline_manifest(folder, transformer)
    config = MotionGuidanceConfig.from_dict(meta["config"])
    tensors = load_file(str(w_path))
    adapter = apply_motion_guidance(transformer, config)
    try:
        own = {k: v for k, v in tensors.items() if not k.startswith(("lora::", "block::"))}
        missing, unexpected = adapter.load_state_dict(own, strict=False)
        if missing or unexpected:
            raise MotionGuidanceError(f"adapter weights in {w_path} do not match: missing {missing}, unexpected {unexpected}")
        saved_lora = meta.get("lora")
        values = {k[6:]: v for k, v in tensors.items() if k.startswith("lora::")}
        if saved_lora and lora == "separate":
            add_lora(transformer, rank=saved_lora["rank"], alpha=saved_lora["alpha"], blocks=saved_lora["blocks"],
                     targets=saved_lora["targets"], adapter_name=saved_lora["name"], _values=values)
        if meta.get("trained_blocks"):
            train_blocks(transformer, meta["trained_blocks"])
            # names compared without peft's ".base_layer" (saved with the LoRA separate, loaded merged or back)
            saved = {k[7:].replace(".base_layer.", "."): v for k, v in tensors.items() if k.startswith("block::")}
            named = {n.replace(".base_layer.", "."): (n, p) for n, p in _block_parameters(transformer, adapter, adapter.trained_blocks)}
            if set(saved) != set(named) or any(saved[k].shape != p.shape for k, (_, p) in named.items()):
                raise MotionGuidanceError(f"trained block weights in {w_path} do not match this model's blocks "
                                          f"{list(adapter.trained_blocks)}")
            with torch.no_grad():
                for k, (n, _) in named.items():
                    _value(transformer, n).copy_(saved[k])
        if saved_lora and lora == "merged":  # on top of the trained blocks' values, as it was trained
            _merge_lora(transformer, adapter, saved_lora, values)
    except BaseException:
        remove_motion_guidance(transformer)
        raise
    return adapter


def _plain(v):
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _check_pipeline_manifest(folder: Path, transformer: torch.nn.Module) -> None:
    """A folder the pipeline trainer wrote names the transformer config it trained on; another config (e.g. a
    text-to-video transformer of the same width as the image-to-video one) is refused before anything changes."""
    path = folder / PIPELINE_MANIFEST
    if not path.is_file():
        return
    try:
        m = json.loads(path.read_text())
        want, pipe_cls = dict(m["transformer_config"]), str(m["pipeline_class"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MotionGuidanceError(f"{path} cannot be read ({e}); write the adapter again with motionguide train "
                                  f"pipeline") from None
    cfg = getattr(transformer, "config", {}) or {}
    diff = [f"{k}: trained {v!r} vs model {_plain(cfg.get(k))!r}" for k, v in want.items()
            if _plain(cfg.get(k)) != _plain(v)]
    if diff:
        raise MotionGuidanceError(
            f"adapter in {folder} was trained on a {pipe_cls} whose {m.get('transformer_class', 'transformer')} "
            f"differs from this one ({'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''}); load it onto a "
            f"pipeline of that class and size")
