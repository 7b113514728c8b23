"""The pipeline helper on a real diffusers pipeline class (WanImageToVideoPipeline, tiny random components)."""
from __future__ import annotations

import pytest
import torch

import motionguide as mg
from motionguide import testing
from motionguide.pipeline import encode_frames

T, H, W = 9, 32, 32


@pytest.fixture(scope="module")
def setup():
    pipe, emb = testing.wan_i2v_pipeline()
    g = torch.Generator().manual_seed(0)
    # on the 8-bit grid: the plugin hands the pipeline its first frame as the PIL image the pipeline documents
    clip = torch.randint(0, 256, (1, 3, 1, H, W), generator=g).float() / 255
    flows = torch.zeros(1, T, 1, 2, H, W)
    for p in range(T):
        flows[:, p, 0, 0] = -2.0 * p
    guidance = mg.Guidance(clip, (0,), T, torch.zeros(T, 1, dtype=torch.long), flows, torch.ones(1, T, 1, 1, H, W),
                           strength=0.9)
    call = dict(prompt_embeds=emb, negative_prompt_embeds=torch.zeros_like(emb), num_inference_steps=2,
                guidance_scale=2.0, output_type="latent")
    plain = pipe(image=clip[:, :, 0], height=H, width=W, num_frames=T, generator=torch.Generator().manual_seed(0), **call).frames
    return pipe, guidance, call, plain


def snapshot(m):
    return ({k: v.clone() for k, v in m.state_dict().items()},
            [n for n, mod in m.named_modules() if hasattr(mod, "_diffusers_hook") or "forward" in mod.__dict__])


def test_encode_frames_matches_pipeline_encoding(setup):
    pipe, guidance, _, _ = setup
    z = encode_frames(pipe, guidance.frames)
    assert z.shape == (1, 16, 1, H // 8, W // 8)
    image = pipe.video_processor.preprocess(guidance.frames[:, :, 0], height=H, width=W).float()
    _, condition = pipe.prepare_latents(image, 1, 16, H, W, T, torch.float32, torch.device("cpu"), None, None, None)
    # the causal VAE encodes a clip's first frame alone: our per-frame encoding is the pipeline's latent frame 0
    assert torch.allclose(z[:, :, 0], condition[:, 4:, 0], atol=1e-5)


def test_guided_call_changes_output_and_cleans_up(setup):
    pipe, guidance, call, plain = setup
    before = snapshot(pipe.transformer)
    seen = {}

    def spy(p, i, t, kw):
        ad = p.transformer.motion_guidance
        seen[i] = (ad.state.guidance is not None, ad.state.grid, ad.state.active)
        return kw

    out = mg.generate_with_guidance(pipe, guidance, generator=torch.Generator().manual_seed(0),
                                    callback_on_step_end=spy, **call).frames
    assert out.shape == plain.shape and (out - plain).abs().max() > 1e-2
    assert seen == {0: (True, (3, 4, 4), True), 1: (True, (3, 4, 4), True)}
    after = snapshot(pipe.transformer)
    assert not hasattr(pipe.transformer, "motion_guidance") and after[1] == before[1]
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    again = pipe(image=guidance.frames[:, :, 0], height=H, width=W, num_frames=T,
                 generator=torch.Generator().manual_seed(0), **call).frames
    assert torch.equal(again, plain)
    zero = mg.generate_with_guidance(pipe, guidance, strength=0.0, generator=torch.Generator().manual_seed(0), **call).frames
    assert (zero - plain).abs().max() <= 1e-5


def test_removed_even_on_error(setup):
    pipe, guidance, call, _ = setup
    before = snapshot(pipe.transformer)  # the pipeline's own cache_context adds a hook registry; ours must go

    def boom(p, i, t, kw):
        raise RuntimeError("user callback failed")

    with pytest.raises(RuntimeError, match="user callback failed"):
        mg.generate_with_guidance(pipe, guidance, callback_on_step_end=boom, **call)
    assert not hasattr(pipe.transformer, "motion_guidance") and snapshot(pipe.transformer)[1] == before[1]
    assert not pipe.transformer._diffusers_hook.hooks


def test_existing_adapter_is_kept(setup, tmp_path):
    pipe, guidance, call, plain = setup
    ad = mg.apply_motion_guidance(pipe.transformer)
    try:
        with torch.no_grad():
            for p in ad.parameters():
                p.normal_(0, 0.05)
        out = mg.generate_with_guidance(pipe, guidance, generator=torch.Generator().manual_seed(0), **call).frames
        assert (out - plain).abs().max() > 1e-3
        assert pipe.transformer.motion_guidance is ad and ad.state.guidance is None  # kept, call's guidance cleared
        with pytest.raises(ValueError, match="already carries motion guidance"):
            mg.generate_with_guidance(pipe, guidance, config=mg.MotionGuidanceConfig(), **call)
        mg.save_motion_guidance(pipe.transformer, tmp_path / "ad")
    finally:
        mg.remove_motion_guidance(pipe.transformer)
    loaded = mg.generate_with_guidance(pipe, guidance, adapter=tmp_path / "ad",
                                       generator=torch.Generator().manual_seed(0), **call).frames
    assert torch.allclose(loaded, out, atol=1e-5)
    assert not hasattr(pipe.transformer, "motion_guidance")


def test_bad_inputs(setup):
    pipe, guidance, call, _ = setup
    with pytest.raises(ValueError, match="guidance frames are 32x32 but the pipeline is asked for 64x32"):
        mg.generate_with_guidance(pipe, guidance, height=64, **call)
    with pytest.raises(ValueError, match="guidance has 9 frames but the pipeline is asked for 13"):
        mg.generate_with_guidance(pipe, guidance, num_frames=13, **call)
    g10 = mg.Guidance(guidance.frames, (0,), 10, torch.zeros(10, 1, dtype=torch.long),
                      torch.zeros(1, 10, 1, 2, H, W), torch.ones(1, 10, 1, 1, H, W))
    with pytest.raises(ValueError, match=r"4k\+1 frames .* got 10; use 9 or 13"):
        mg.generate_with_guidance(pipe, g10, **call)
    g_odd = mg.Guidance(torch.rand(1, 3, 1, 24, 24), (0,), T, torch.zeros(T, 1, dtype=torch.long),
                        torch.zeros(1, T, 1, 2, 24, 24), torch.ones(1, T, 1, 1, 24, 24))
    with pytest.raises(ValueError, match="multiples of 16"):
        mg.generate_with_guidance(pipe, g_odd, **call)
    with pytest.raises(ValueError, match="strength"):
        mg.generate_with_guidance(pipe, guidance, strength=2.0, **call)
    with pytest.raises(TypeError, match="Guidance"):
        mg.generate_with_guidance(pipe, "not guidance", **call)
    assert not hasattr(pipe.transformer, "motion_guidance")


def test_cogvideox_i2v_pipeline_cfg_batch(setup):
    """A second pipeline class: (B, F, C, H, W) latents, DDIM re-noising, CFG batch doubled inside."""
    _, guidance, _, _ = setup
    pipe, emb = testing.cogvideox_i2v_pipeline()
    call = dict(prompt_embeds=emb, negative_prompt_embeds=torch.zeros_like(emb), num_inference_steps=2,
                guidance_scale=2.0, output_type="latent", max_sequence_length=8)
    plain = pipe(image=guidance.frames[:, :, 0], height=H, width=W, num_frames=T,
                 generator=torch.Generator().manual_seed(0), **call).frames
    seen = []
    out = mg.generate_with_guidance(pipe, guidance, generator=torch.Generator().manual_seed(0),
                                    callback_on_step_end=lambda p, i, t, kw: seen.append(p.transformer.motion_guidance.state.batch) or kw,
                                    **call).frames
    assert seen == [2, 2]  # the transformer saw the doubled batch; the batch-1 guidance served both halves
    assert out.shape == plain.shape == (1, 3, 4, 4, 4) and (out - plain).abs().max() > 1e-2
    assert not hasattr(pipe.transformer, "motion_guidance")
    z = encode_frames(pipe, guidance.frames)
    assert z.shape == (1, 4, 1, 4, 4)
