"""The hooks motion guidance registers besides the feature hooks, and their exact registration and removal.

* :class:`RootHook` (``motionguide_root``, on the transformer): records each call's batch, latent grid and
  timestep in the shared :class:`~motionguide.latent.GuidanceState` and checks them against the guidance;
* :class:`LatentHook` (``motionguide_latent``, on the patch embedding, trained mode): adds the
  zero-initialised :class:`~motionguide.latent.LatentAdapter` projection of ``[warped latents, mask]``.

:func:`register` records what a registration added (a ``HookRegistry``, a ``forward`` instance attribute)
so that :func:`unregister` takes exactly that away again, more completely than diffusers' own
``remove_hook``. :mod:`motionguide.adapter` owns the adapter these hooks read and calls these functions.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from diffusers.hooks import HookRegistry, ModelHook

from .errors import MotionGuidanceError
from .latent import repeat_batch

if TYPE_CHECKING:
    from .adapter import MotionGuidanceAdapter

__all__ = ["ROOT_HOOK", "LATENT_HOOK", "CP_MESSAGE", "HookRecord", "RootHook", "LatentHook", "register",
           "unregister", "invalidate"]

ROOT_HOOK = "motionguide_root"
LATENT_HOOK = "motionguide_latent"
# diffusers' context parallelism (_cp_plan) splits hidden_states across ranks before block 0
CP_MESSAGE = (
    "motion guidance: feature-level guidance needs every token of a frame in one process, and diffusers' context "
    "parallelism (enable_parallelism with a ContextParallelConfig) splits the tokens across ranks; use latent-only "
    "guidance (MotionGuidanceConfig(feature=False)) with context parallelism, or run without it"
)


@dataclass
class HookRecord:
    """How to undo one hook registration exactly."""

    module: torch.nn.Module
    name: str
    had_registry: bool
    had_forward_attr: bool


class RootHook(ModelHook):
    """Records batch, latent grid and timestep of each call; checks them against the guidance.

    Everything here reads shapes and Python arguments only; the timestep gate stays a tensor
    (:meth:`GuidanceState.scale`), so a compiled forward has no host synchronisation.
    """

    def __init__(self, adapter: MotionGuidanceAdapter, signature: inspect.Signature) -> None:
        super().__init__()
        self.adapter = adapter
        # positional parameter names, to read hidden_states/timestep/... from args without inspect at call time
        self.names = [n for n, prm in signature.parameters.items()
                      if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD)]

    def pre_forward(self, module, *args, **kwargs):
        st, spec, cfg = self.adapter.state, self.adapter.spec, self.adapter.config
        bound = dict(zip(self.names, args))
        bound.update(kwargs)
        if cfg.feature and getattr(getattr(module, "_parallel_config", None), "context_parallel_config", None) is not None:
            raise MotionGuidanceError(CP_MESSAGE)  # enabled after apply: refuse before any block runs
        batch, grid, ntok = spec.input_grid(bound)
        g = st.guidance
        if g is not None:
            if grid is None:  # packed tokens without explicit sizes: trust the guidance grid if the count fits
                grid = g.grid
                pt, ph, pw = self.adapter.patch
                want = math.ceil(grid[0] / pt) * (grid[1] // ph) * (grid[2] // pw)
                # tokens before the video's are condition tokens (LTXConditionPipeline prepends those of its
                # conditions past frame 0); the video's are the last `want`
                if ntok < want or (ntok - want) % max(1, (grid[1] // ph) * (grid[2] // pw)):
                    raise ValueError(f"motion guidance: the model got {ntok} tokens but the guidance grid {grid} makes "
                                     f"{want} (plus whole frames of condition tokens before them)")
            if tuple(grid) != tuple(g.grid):
                raise ValueError(
                    f"motion guidance: the model input has latent grid (F, h, w) = {tuple(grid)} but the guidance has "
                    f"{tuple(g.grid)}; build the guidance for the same num_frames, height and width as the call"
                )
            if batch % g.latents.shape[0]:
                raise ValueError(f"motion guidance: model batch {batch} is not a multiple of the guidance batch {g.latents.shape[0]}")
        st.batch, st.grid = batch, grid
        st.token_grid = spec.token_grid(module, grid) if grid is not None else None
        st.prefix = ntok - math.prod(st.token_grid) if ntok is not None and st.token_grid is not None else 0
        t = bound.get("timestep")
        if isinstance(t, torch.Tensor) and t.numel():
            st.timestep = t.detach().float().max()  # 0-d tensor: read on the host only by a caller who asks
        elif isinstance(t, (int, float)):
            st.timestep = float(t)
        else:
            st.timestep = None
        lo, hi = cfg.timestep_range
        if st.timestep is None or (lo, hi) == (0.0, 1.0):
            st.active = True
        else:  # a 0-d bool tensor for tensor timesteps, applied by multiplication in the hooks
            s = st.timestep / cfg.timestep_scale
            st.active = (s >= lo) & (s <= hi) if isinstance(s, torch.Tensor) else lo <= s <= hi
        return args, kwargs


class LatentHook(ModelHook):
    """Adds ``strength * LatentAdapter([warped latents, mask])`` to the patch embedding's output."""

    def __init__(self, adapter: MotionGuidanceAdapter) -> None:
        super().__init__()
        self.adapter = adapter

    def post_forward(self, module, output):
        st = self.adapter.state
        x = st.latent_input
        if x is None or st.strength == 0 or st.active is False:
            return output
        if x.device != output.device:  # guidance set for another device: follow the activations once
            x = st.latent_input = x.to(output.device)
        add = self.adapter.latent(repeat_batch(x, st.batch))
        if st.prefix and add.ndim == 3:  # condition tokens before the video's get nothing
            add = torch.nn.functional.pad(add, (0, 0, st.prefix, 0))
        if add.shape != output.shape:
            raise ValueError(
                f"motion guidance: the latent adapter made {tuple(add.shape)} but the patch embedding made "
                f"{tuple(output.shape)}; the guidance grid does not match the model input"
            )
        return output + (st.scale(output) * add).to(output.dtype)


def register(module: torch.nn.Module, hook: ModelHook, name: str) -> HookRecord:
    rec = HookRecord(module, name, hasattr(module, "_diffusers_hook"), "forward" in module.__dict__)
    HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, name)
    return rec


def unregister(rec: HookRecord) -> None:
    reg = getattr(rec.module, "_diffusers_hook", None)
    if reg is None:
        return
    reg.remove_hook(rec.name, recurse=False)
    if not reg.hooks:
        if not rec.had_registry:
            del rec.module._diffusers_hook
        # HookRegistry leaves the original bound method as an instance attribute, also in a registry that
        # existed before (e.g. the one a pipeline's cache_context adds); drop it so the class forward is
        # looked up again, exactly as before apply
        if not rec.had_forward_attr and "forward" in rec.module.__dict__:
            del rec.module.__dict__["forward"]


def invalidate(module: torch.nn.Module) -> None:
    reg = getattr(module, "_diffusers_hook", None)
    if reg is not None and hasattr(reg, "invalidate_child_registries_cache"):
        reg.invalidate_child_registries_cache()
