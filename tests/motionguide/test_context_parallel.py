"""Context parallelism: feature guidance refuses on apply (and before any block runs), latent-only works.

diffusers marks a context-parallel model by the ``ParallelConfig`` that ``enable_parallelism`` records as
``_parallel_config`` and by the ``cp_input---``/``cp_output---`` hooks it registers from the model's ``_cp_plan``
(which splits ``hidden_states`` before block 0). A real context-parallel run needs several processes with a
device mesh, so the tests set the attribute (or register a hook of that name) on one CPU process: what the
plugin reads is exactly that.
"""
from __future__ import annotations

import pytest
import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig

import motionguide as mg
from motionguide import testing
from motionguide.devices import context_parallel_enabled

GRID = (3, 8, 8)


def guidance():
    f, h, w = GRID
    flows = torch.zeros(1, f, 1, 2, h, w)
    flows[:, 1:, 0, 0] = -1.0
    return mg.LatentGuidance.from_sources(torch.randn(1, 4, 1, h, w, generator=torch.Generator().manual_seed(0)),
                                          torch.zeros(f, 1, dtype=torch.long), flows, torch.ones(1, f, 1, 1, h, w),
                                          clip_index=[0])


def test_feature_guidance_refused_on_a_context_parallel_model_latent_only_works():
    m = testing.build("WanTransformer3DModel")
    kw = testing.inputs(m, 2, GRID)
    with torch.no_grad():
        base = m(**kw)[0]
    m._parallel_config = ParallelConfig(context_parallel_config=ContextParallelConfig(ulysses_degree=2))
    assert context_parallel_enabled(m)
    with pytest.raises(mg.MotionGuidanceError, match=r"context parallelism.*feature=False"):
        mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="training_free"))
    assert not hasattr(m, "motion_guidance") and not hasattr(m, "_diffusers_hook")  # untouched
    ad = mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="trained", feature=False))
    with torch.no_grad():
        for p in ad.parameters():
            p.normal_(0, 0.05)
    mg.set_guidance(m, guidance())
    with torch.no_grad():
        assert (m(**kw)[0] - base).abs().max() > 1e-3  # latent-level guidance acts
    mg.remove_motion_guidance(m)


def test_context_parallel_enabled_after_apply_is_refused_before_any_block_runs():
    m = testing.build("WanTransformer3DModel")
    kw = testing.inputs(m, 2, GRID)
    mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="training_free"))
    mg.set_guidance(m, guidance())
    m._parallel_config = ParallelConfig(context_parallel_config=ContextParallelConfig(ring_degree=2))
    ran = []
    m.blocks[0].register_forward_pre_hook(lambda *a: ran.append(1))
    with pytest.raises(mg.MotionGuidanceError, match="context parallelism"):
        m(**kw)
    assert not ran
    mg.remove_motion_guidance(m)


def test_context_parallel_hooks_are_detected():
    m = testing.build("WanTransformer3DModel")
    assert not context_parallel_enabled(m)
    HookRegistry.check_if_exists_or_initialize(m.blocks[0]).register_hook(ModelHook(), "cp_input---blocks.0")
    assert context_parallel_enabled(m)
    with pytest.raises(mg.MotionGuidanceError, match="context parallelism"):
        mg.apply_motion_guidance(m)
