"""The adapter's LoRA in the format diffusers reads: ``pytorch_lora_weights.safetensors`` in the adapter
folder, so that ``pipe.load_lora_weights(folder)`` loads it into a plain pipeline of the same class (without
motionguide, and without the motion guidance: the LoRA alone).

Written with the pipeline class's own ``save_lora_weights`` (keys ``transformer.<module>.lora_A/B.weight``, the
adapter's peft config in the file's metadata: rank, alpha and the exact modules, so the loaded LoRA scales and
targets exactly as it trained).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
from peft.utils import get_peft_model_state_dict

from ..adapter import get_motion_guidance

__all__ = ["export_diffusers_lora", "LORA_WEIGHTS"]

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


def export_diffusers_lora(transformer: Any, folder: str | Path, pipeline_class: str) -> Path | None:
    """Write the transformer's motionguide LoRA (added by :func:`motionguide.add_lora`) into ``folder`` as
    ``pytorch_lora_weights.safetensors``; returns its path (None when the transformer has no LoRA)."""
    lora = get_motion_guidance(transformer).lora
    if not lora:
        return None
    name = lora["name"]
    state = {k: v.detach().float().contiguous().cpu()
             for k, v in get_peft_model_state_dict(transformer, adapter_name=name).items()}
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in state})
    meta = {"r": int(lora["rank"]), "lora_alpha": float(lora["alpha"]), "target_modules": modules,
            "init_lora_weights": True, "use_dora": False, "lora_dropout": 0.0, "bias": "none"}
    getattr(diffusers, pipeline_class).save_lora_weights(Path(folder), transformer_lora_layers=state,
                                                         transformer_lora_adapter_metadata=meta,
                                                         safe_serialization=True, weight_name=LORA_WEIGHTS)
    return Path(folder) / LORA_WEIGHTS
