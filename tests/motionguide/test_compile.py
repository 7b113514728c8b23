"""The guided forward compiles: no host synchronisation, no graph break, the eager output.

``torch.compile(transformer, fullgraph=True)`` and ``transformer.compile_repeated_blocks(fullgraph=True)`` on a
guided tiny Wan transformer (latent adapter, feature hooks with two sources per frame, a timestep gate, a CFG
batch of 2 on guidance of batch 1). The default tests use the ``aot_eager`` backend (dynamo and AOT autograd
tracing, no code generation) on the trained mode; training-free, a compiled training step and inductor are
marked slow (dynamo tracing costs 5-20 s a test on a shared CPU).
"""
from __future__ import annotations

import pytest
import torch

import motionguide as mg
from motionguide import testing

GRID = (4, 8, 8)


def two_end_guidance(c=4):
    f, h, w = GRID
    g = torch.Generator().manual_seed(0)
    src = torch.randn(1, c, 2, h, w, generator=g)
    sources = torch.tensor([[0, -1]] + [[0, 1]] * (f - 2) + [[1, -1]])
    flows = torch.randn(1, f, 2, 2, h, w, generator=g)
    weights = torch.full((1, f, 2, 1, h, w), 0.5)
    return mg.LatentGuidance.from_sources(src, sources, flows, weights, clip_index=[0, f - 1])


def guided_model(mode, timestep_range=(0.2, 0.9)):
    m = testing.build("WanTransformer3DModel")
    ad = mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode=mode, timestep_range=timestep_range, strength=0.7))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ad.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    mg.set_guidance(m, two_end_guidance())
    return m, testing.inputs(m, 2, GRID)


def forward(m, kw):
    with torch.no_grad():
        return m(**kw)[0]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("mode", ["trained", pytest.param("training_free", marks=pytest.mark.slow)])
def test_guided_forward_has_no_graph_break(mode):
    m, kw = guided_model(mode)
    plain = testing.build("WanTransformer3DModel")
    with torch.no_grad():
        unhooked = torch._dynamo.explain(plain)(**kw)
        ex = torch._dynamo.explain(m)(**kw)
    assert unhooked.graph_break_count == 0
    assert ex.graph_break_count == 0 and ex.graph_count == 1, [r.reason for r in ex.break_reasons]


@pytest.mark.parametrize("mode", ["trained", pytest.param("training_free", marks=pytest.mark.slow)])
def test_compile_fullgraph_equals_eager(mode):
    m, kw = guided_model(mode)
    eager = forward(m, kw)
    assert (eager - forward(testing.build("WanTransformer3DModel"), kw)).abs().max() > 1e-3  # guidance acts
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    assert (forward(compiled, kw) - eager).abs().max() <= 1e-4
    # inside and outside the timestep range: the gate is a tensor, the compiled graph serves both steps
    late = dict(kw, timestep=torch.full((2,), 950.0))
    assert (forward(compiled, late) - forward(m, late)).abs().max() <= 1e-4
    mg.set_guidance(m, None)  # cleared: the base model (a recompile, not a wrong graph)
    assert (forward(compiled, kw) - forward(testing.build("WanTransformer3DModel"), kw)).abs().max() <= 1e-4


def test_compile_repeated_blocks_equals_eager():
    m, kw = guided_model("trained")
    eager = forward(m, kw)
    m.compile_repeated_blocks(fullgraph=True, backend="aot_eager")
    assert (forward(m, kw) - eager).abs().max() <= 1e-4
    mg.remove_motion_guidance(m)


@pytest.mark.slow
def test_compiled_training_step_gets_gradients():
    m, kw = guided_model("trained", timestep_range=(0.0, 1.0))
    params = mg.trainable_parameters(m)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    compiled(**kw)[0].square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.slow
def test_inductor_compile_equals_eager():
    m, kw = guided_model("trained")
    eager = forward(m, kw)
    compiled = torch.compile(m, fullgraph=True)
    assert (forward(compiled, kw) - eager).abs().max() <= 1e-4
