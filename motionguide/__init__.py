"""motionguide: MoG-style motion guidance for diffusers video transformers.

Importing ``motionguide`` is cheap: the names below resolve on first use, and only the ones that need
diffusers hooks (``apply_motion_guidance`` and friends, the pipeline helper) import diffusers.
See ``docs/README_guidance.md`` for the API with shapes.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # guidance.py: the data type and its builders (no diffusers)
    "Guidance": "guidance",
    "reference_motion": "guidance",
    "speed": "guidance",
    "extension": "guidance",
    "keyframes": "guidance",
    # registry.py (no diffusers)
    "VAECompression": "registry",
    "ArchSpec": "registry",
    "get_spec": "registry",
    "register_architecture": "registry",
    "supported_architectures": "registry",
    # latent.py (no diffusers)
    "LatentGuidance": "latent",
    "latent_guidance": "latent",
    "LatentPull": "latent",
    # adapter.py (imports diffusers.hooks)
    "MotionGuidanceConfig": "adapter",
    "MotionGuidanceError": "errors",
    "apply_motion_guidance": "adapter",
    "remove_motion_guidance": "adapter",
    "get_motion_guidance": "adapter",
    "has_motion_guidance": "adapter",
    "set_guidance": "adapter",
    "guidance_context": "adapter",
    # adapter_weights.py: what trains and how it is stored
    "save_motion_guidance": "adapter_weights",
    "load_motion_guidance": "adapter_weights",
    "trainable_parameters": "adapter_weights",
    "add_lora": "adapter_weights",
    # pipeline.py
    "generate_with_guidance": "pipeline",
    "encode_frames": "pipeline",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'motionguide' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
