"""Where a model computes, where its weights rest, and how to read or write a weight that an offloading
scheme keeps elsewhere: one place for the rules of accelerate's and diffusers' offload hooks.

A pipeline's transformer may be

* resident on one device (no offloading);
* model-offloaded (``enable_model_cpu_offload``: accelerate ``cpu_offload_with_hook``, a ``CpuOffload`` hook on
  the whole model moves it to the execution device before its forward);
* sequentially offloaded (``enable_sequential_cpu_offload``: accelerate ``cpu_offload``; every parameter is on
  ``meta``, and an ``AlignDevicesHook`` per leaf module loads its values from a CPU ``weights_map`` for its forward);
* group-offloaded (``enable_group_offload``: diffusers ``apply_group_offloading``; parameters rest on the offload
  device and a ``group_offloading`` hook onloads each group).

The execution device is therefore not "the device of the first parameter" (``meta`` under sequential offload,
the CPU under model and group offload): :func:`execution_device` reads it from the hooks, as diffusers'
``DiffusionPipeline._execution_device`` does.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["execution_device", "resting_device", "compute_dtype", "offloaded_value", "context_parallel_enabled"]

_GROUP_OFFLOADING = "group_offloading"  # diffusers.hooks.group_offloading._GROUP_OFFLOADING
_LAYERWISE_CASTING = "layerwise_casting"  # diffusers.hooks.layerwise_casting._LAYERWISE_CASTING_HOOK
_CP_HOOK_PREFIXES = ("cp_input---", "cp_output---")  # diffusers.hooks.context_parallel hook names


def _accelerate_hooks(module: torch.nn.Module) -> list:
    """The accelerate hooks on ``module`` (a ``SequentialHook`` unpacked)."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])


def _group_offload_hook(module: torch.nn.Module):
    for m in module.modules():
        reg = getattr(m, "_diffusers_hook", None)
        hook = reg.get_hook(_GROUP_OFFLOADING) if reg is not None else None
        if hook is not None:
            return hook
    return None


def execution_device(obj: Any) -> torch.device:
    """The device ``obj`` (a diffusers pipeline or a module) runs its computation on.

    A pipeline: its ``_execution_device``. A module: the onload device of diffusers' group offloading, else the
    ``execution_device`` of an accelerate hook on it or a submodule (model or sequential offload), else the
    device of its first parameter that is not on ``meta``, else the CPU.

    >>> execution_device(torch.nn.Linear(2, 2))
    device(type='cpu')
    """
    if not isinstance(obj, torch.nn.Module):
        dev = getattr(obj, "_execution_device", None)
        if dev is None:
            raise TypeError(f"expected a diffusers pipeline or a torch.nn.Module, got {type(obj).__name__}")
        return torch.device(dev)
    hook = _group_offload_hook(obj)
    if hook is not None:
        return torch.device(hook.config.onload_device)
    for m in obj.modules():
        for h in _accelerate_hooks(m):
            dev = getattr(h, "execution_device", None)
            if dev is not None:
                return torch.device(dev) if not isinstance(dev, int) else torch.device("cuda", dev)
    return resting_device(obj)


def resting_device(module: torch.nn.Module) -> torch.device:
    """Where ``module``'s real weights are between forwards: its first non-``meta`` parameter's device (the
    offload device under model or group offload); when every parameter is on ``meta``, the CPU if an
    accelerate hook offloads them (sequential offload keeps the values in a CPU weights map), else ``meta``
    (a model built on ``meta`` for shapes only)."""
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    offloaded = any(getattr(h, "offload", False) for m in module.modules() for h in _accelerate_hooks(m))
    return torch.device("cpu") if offloaded else torch.device("meta")


def compute_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype ``module`` computes in: a layerwise-casting hook's ``compute_dtype`` when one is registered,
    else its weight's dtype (float32 for a weight stored in 1 byte, e.g. float8, that no hook upcasts)."""
    reg = getattr(module, "_diffusers_hook", None)
    hook = reg.get_hook(_LAYERWISE_CASTING) if reg is not None else None
    if hook is not None:
        return hook.compute_dtype
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.element_size() == 1:
        return torch.float32
    return w.dtype


def offloaded_value(module: torch.nn.Module, name: str) -> torch.Tensor:
    """The tensor that holds the real value of ``module``'s direct parameter ``name`` (writable in place).

    Under sequential offload the parameter is on ``meta`` and its value lives in the ``weights_map`` of the
    module's accelerate ``AlignDevicesHook`` (loaded from there for every forward, so writing into it changes
    the model); otherwise it is the parameter itself.
    """
    p = getattr(module, name)
    if p.device.type != "meta":
        return p
    for h in _accelerate_hooks(module):
        wm = getattr(h, "weights_map", None)
        if getattr(h, "offload", False) and wm is not None and name in wm:
            return wm[name]
    raise ValueError(f"{type(module).__name__}.{name} is on the meta device and no offload hook holds its value; "
                     "load the model's weights (or enable offloading through accelerate/diffusers) first")


def context_parallel_enabled(module: torch.nn.Module) -> bool:
    """Whether diffusers' context parallelism shards ``module``'s sequence (``enable_parallelism`` with a
    ``ContextParallelConfig``: the config recorded as ``_parallel_config`` and ``cp_input---``/``cp_output---``
    hooks registered from the model's ``_cp_plan``)."""
    cfg = getattr(module, "_parallel_config", None)
    if cfg is not None and getattr(cfg, "context_parallel_config", None) is not None:
        return True
    for m in module.modules():
        reg = getattr(m, "_diffusers_hook", None)
        if reg is not None and any(str(n).startswith(_CP_HOOK_PREFIXES) for n in reg.hooks):
            return True
    return False
