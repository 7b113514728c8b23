"""MoG adapters on the embedded model: the plugin's latent channels and feature gates on frozen base
blocks, and the gates that move the reference clip toward the warp, looked up per pixel by trust level
(:func:`trust_levels`).

The gates have one owner, :class:`GuidanceGates` (``model.gates``), with one save format: the plugin's
``motion_guidance.{safetensors,json}`` (:func:`motionguide.save_motion_guidance`), ``gates.safetensors``
(the per-trust-level gates, by their parameter names) and a ``manifest.json`` of checksums. The embedded
model carries no LoRA and no per-pixel gate head: on real footage neither lifted a job
(``benchmarks/ablation.py``, scored inside the pixels the model supplies where the jobs composite its output
into the warp by a confidence map), so a folder that carries one is refused.
Loading validates everything before the transformer is touched, so a refused folder leaves the model as
it was (peft's validate-then-mutate).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

from flow.atomic import atomic_path
from flow.checkpoint import CheckpointFileError, read_tensors

from ..adapter import MotionGuidanceConfig, apply_motion_guidance, has_motion_guidance
from ..adapter_weights import load_motion_guidance, save_motion_guidance
from ..errors import CheckpointError, MotionGuidanceError
from ..registry import VAECompression
from .checkpoint import DEFAULT_ASSETS, verify_manifest, write_manifest
from .network import EmbeddedVideoModel

__all__ = ["GATE_SCALE", "GATES_FILE", "TRUST_LEVELS", "GuidanceGates", "trust_levels", "pixel_vae",
           "attach_adapters", "save_adapters", "load_adapters"]

#: a gate is ``GATE_SCALE * p`` with ``p`` initialised to 0, so Adam moves it at a useful rate
GATE_SCALE = 25.0
#: the per-pixel trust levels the gates are looked up by (see :func:`trust_levels`)
TRUST_LEVELS = 3
GATES_FILE = "gates.safetensors"
_PLUGIN_FILES = ("motion_guidance.safetensors", "motion_guidance.json")
_FIX = "train them with `motionguide train adapters --out DIR` and pass --adapters DIR/adapters"
#: the parameters of a per-pixel gate head, which this version's gates do not have
_GATE_HEAD = "gate_head."


def pixel_vae() -> VAECompression:
    """The embedded model works on pixels: its "VAE" is the identity."""
    return VAECompression(spatial=1, temporal=1, first_frame_alone=False)


def trust_levels(lg) -> torch.Tensor:
    """``(B, 1, F, h, w)`` long: how many sources guide each cell of a LatentGuidance ``lg`` with a real
    weight (> 0.05), capped at 2: 0 = none (disoccluded, out of frame: the model invents), 1 = one source
    (transfer, extension), 2 = two or more blended (in-betweens). Without per-source weights (the latent
    level alone) it falls back to the mask: 1 where it is above 0.5."""
    if lg.weights is None:
        return (lg.mask > 0.5).long()
    n = (lg.weights > 0.05).sum(2)  # (B, F, 1, h, w)
    return n.permute(0, 2, 1, 3, 4).clamp(max=TRUST_LEVELS - 1).long()


class GuidanceGates(nn.Module):
    """The gates of guided generation (:mod:`motionguide.embedded.generation`), one value per trust level
    (:func:`trust_levels`: no source sees the pixel, one does, two agree; each level's effect on real footage
    is a row of ``benchmarks/ablation.py``, ``one_gate``):

    * ``reference_gate`` ``(TRUST_LEVELS,)``: how far the reference clip moves from the static frame toward
      the warp;
    * ``correction_gate`` ``(TRUST_LEVELS,)``: how much of the network's correction is damped.

    Both start at zero: fresh gates leave the base model's output unchanged.
    """

    def __init__(self):
        super().__init__()
        self.reference_gate = nn.Parameter(torch.zeros(TRUST_LEVELS))
        self.correction_gate = nn.Parameter(torch.zeros(TRUST_LEVELS))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], where: str) -> "GuidanceGates":
        """Gates loaded strictly from ``state``; a state of another shape, or with parts this version does not
        have (a per-pixel gate head among them), raises :class:`CheckpointError` naming ``where``."""
        head = sorted(k for k in state if k.startswith(_GATE_HEAD))
        if head:
            raise CheckpointError(
                f"the gates in {where} carry a per-pixel gate head ({len(head)} {_GATE_HEAD}* tensors, e.g. "
                f"{head[0]}); this version's GuidanceGates hold only reference_gate and correction_gate (the gate "
                f"head is not part of the embedded model: it lifted no job on real footage, benchmarks/ablation.py); "
                f"{_FIX}, or "
                f"keep their per-trust-level gates alone: rewrite {GATES_FILE} without its {_GATE_HEAD}* tensors "
                f"and update its checksum in manifest.json") from None
        try:
            gates = cls()
            gates.load_state_dict(state, strict=True)
        except (RuntimeError, IndexError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"the gates in {where} do not match this version's GuidanceGates ({first}); "
                                  f"{_FIX}") from None
        return gates.requires_grad_(False)


def attach_adapters(model: EmbeddedVideoModel, *, mode: str = "trained") -> None:
    """Apply the guidance plugin to ``model.transformer`` (latent + feature levels) and, in trained mode,
    fresh :class:`GuidanceGates` (``model.gates``).

    Everything new starts at zero (latent adapter, gates), so the attached model still computes exactly the
    base model until trained.
    """
    cfg = MotionGuidanceConfig(mode=mode, latent=True, feature=True, vae=pixel_vae())
    apply_motion_guidance(model.transformer, cfg)
    if mode == "trained":
        model.gates = GuidanceGates()


def save_adapters(model: EmbeddedVideoModel, folder: str | os.PathLike, *, metrics: dict | None = None) -> Path:
    """Save the plugin adapter, the gates and a manifest of checksums into ``folder``."""
    if model.gates is None:
        raise MotionGuidanceError("the model carries no trained adapters to save; attach_adapters or "
                                  "load_adapters first")
    folder = Path(folder)
    save_motion_guidance(model.transformer, folder)
    with atomic_path(folder / GATES_FILE) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.gates.state_dict().items()}, str(tmp))
    write_manifest(folder, _PLUGIN_FILES + (GATES_FILE,), metrics=metrics or {})
    return folder


def load_adapters(model: EmbeddedVideoModel, folder: str | os.PathLike | None = None, *, verify: bool = True) -> None:
    """Load adapters saved by :func:`save_adapters` onto ``model`` (default: the shipped ones).

    Raises :class:`CheckpointError` with the model untouched when a file is missing, corrupt or of another
    shape, and :class:`MotionGuidanceError` when the model already carries adapters.
    """
    folder = Path(folder) if folder is not None else DEFAULT_ASSETS / "adapters"
    if has_motion_guidance(model.transformer):
        raise MotionGuidanceError("the model already carries motion-guidance adapters; load onto a fresh "
                                  "load_embedded() model")
    missing = [n for n in _PLUGIN_FILES + (GATES_FILE,) if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(f"motion-guidance adapters in {folder} are missing {missing}; {_FIX}")
    if verify:
        verify_manifest(folder, "adapter", _FIX)
    try:
        meta = json.loads((folder / "motion_guidance.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"adapters in {folder}: motion_guidance.json could not be read ({e}); {_FIX}") from None
    if meta.get("lora"):
        raise CheckpointError(f"adapters in {folder} carry a LoRA, which the embedded model does not use (it "
                              f"lifted no job on real footage, benchmarks/ablation.py); {_FIX}")
    try:  # both weight files through the one safe reader before the model is touched: a file whose checksum
        # matches the manifest may still be no safetensors file at all
        state = read_tensors(folder / GATES_FILE, what="adapter file", fix=f"Pass a folder of adapters: {_FIX}.")
        read_tensors(folder / _PLUGIN_FILES[0], what="adapter file", fix=f"Pass a folder of adapters: {_FIX}.")
    except CheckpointFileError as e:
        raise CheckpointError(str(e)) from None
    gates = GuidanceGates.from_state_dict(state, str(folder / GATES_FILE))
    try:
        load_motion_guidance(model.transformer, folder)
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"adapters in {folder} could not be read ({type(e).__name__}: {e}); {_FIX}") from e
    model.gates = gates
