"""Each family's conditioning path, against the pipeline's own: the same frame fed through the pipeline's
documented input (a PIL image) and through the plugin reaches the image encoders identically.

Tiny replicas carry the real features: Wan 2.1 I2V's CLIP image encoder, FLF2V's second image (a positional
embedding over two images' CLIP tokens), Wan T2V (no image), CogVideoX-5B-I2V's learned positional embeddings
(one size and frame count), LTX's condition frames.
"""
from __future__ import annotations

import pytest
import torch

import motionguide as mg
from motionguide.families import get_family, read_model_index, to_pil
from motionguide.pipeline import conditioning_kwargs, encode_frames
from motionguide.testing.pipelines import save_tiny_pipeline, tiny_call, tiny_pipeline

torch.set_flush_denormal(True)


def eight_bit(*shape, seed=0):
    """Random frames on the 8-bit grid, so a PIL round trip is exact."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float() / 255


def guidance(frames, positions, num_frames, shift=1.0):
    """Known ``frames (1, 3, N, H, W)`` at ``positions``; every other frame from known frame 0 shifted right."""
    _, _, n, h, w = frames.shape
    sources = torch.zeros(num_frames, 1, dtype=torch.long)
    flows = torch.zeros(1, num_frames, 1, 2, h, w)
    for t in range(num_frames):
        if t in positions:
            sources[t, 0] = positions.index(t)
        else:
            flows[:, t, 0, 0] = -shift * t
    return mg.Guidance(frames, tuple(positions), num_frames, sources, flows, torch.ones(1, num_frames, 1, 1, h, w))


class Recorder:
    """Records the inputs of a module's forward calls (pixel values of CLIP, the clips the VAE encodes)."""

    def __init__(self, module, method="forward"):
        self.calls, self.module, self.method = [], module, method
        self.orig = getattr(module, method)

        def wrapped(*a, **k):
            self.calls.append([x.detach().clone() for x in list(a) + list(k.values()) if isinstance(x, torch.Tensor)])
            return self.orig(*a, **k)

        setattr(module, method, wrapped)

    def close(self):
        delattr(self.module, self.method)


def run(pipe, fn):
    clip, vae = Recorder(pipe.image_encoder) if getattr(pipe, "image_encoder", None) is not None else None, Recorder(pipe.vae, "encode")
    try:
        fn()
    finally:
        vae.close()
        if clip is not None:
            clip.close()
    return (clip.calls if clip else None), vae.calls


CALL = dict(prompt="a cat", num_inference_steps=1, output_type="latent", guidance_scale=1.0)


def test_wan_i2v_clip_receives_the_pil_image_not_a_rescaled_tensor():
    pipe = tiny_pipeline("wan", image_encoder=True)
    c = tiny_call("wan")
    frames = eight_bit(1, 3, 1, c["height"], c["width"])
    g = guidance(frames, [0], c["num_frames"])
    ref_clip, ref_vae = run(pipe, lambda: pipe(image=to_pil(frames[0, :, 0]), **c, **CALL,
                                               generator=torch.Generator().manual_seed(0)))
    our_clip, our_vae = run(pipe, lambda: mg.generate_with_guidance(pipe, g, **CALL,
                                                                    generator=torch.Generator().manual_seed(0)))
    assert len(ref_clip) == len(our_clip) == 1
    px = our_clip[0][0]
    assert torch.equal(px, ref_clip[0][0])
    # CLIP's normalised pixel values span its full range (a [0, 1] tensor rescaled again would not)
    assert float(px.max()) > 1.0 and float(px.min()) < -1.0
    # the conditioning clip the pipeline's VAE encodes (its last encode call) is the same too
    assert torch.equal(our_vae[-1][0], ref_vae[-1][0])


def test_wan_flf2v_gets_the_last_known_frame_as_last_image():
    pipe = tiny_pipeline("wan", image_encoder=True, last_image=True)
    c = tiny_call("wan")
    n = c["num_frames"]
    frames = eight_bit(1, 3, 2, c["height"], c["width"], seed=1)
    g = guidance(frames, [0, n - 1], n)
    kw = conditioning_kwargs(pipe, g)
    assert set(kw) == {"image", "last_image"}
    ref_clip, ref_vae = run(pipe, lambda: pipe(image=to_pil(frames[0, :, 0]), last_image=to_pil(frames[0, :, 1]), **c,
                                               **CALL, generator=torch.Generator().manual_seed(0)))
    our_clip, our_vae = run(pipe, lambda: mg.generate_with_guidance(pipe, g, **CALL,
                                                                    generator=torch.Generator().manual_seed(0)))
    assert our_clip[0][0].shape[0] == 2 and torch.equal(our_clip[0][0], ref_clip[0][0])
    assert torch.equal(our_vae[-1][0], ref_vae[-1][0])


def test_wan_flf2v_without_a_known_last_frame_is_refused_before_the_call():
    pipe = tiny_pipeline("wan", image_encoder=True, last_image=True)
    c = tiny_call("wan")
    g = guidance(eight_bit(1, 3, 1, c["height"], c["width"]), [0], c["num_frames"])
    with pytest.raises(ValueError, match="FLF2V transformer.*last frame"):
        mg.generate_with_guidance(pipe, g, **CALL)
    assert not hasattr(pipe.transformer, "motion_guidance")


def test_wan_i2v_without_clip_gets_last_image_when_known():
    pipe = tiny_pipeline("wan")
    c = tiny_call("wan")
    n = c["num_frames"]
    g = guidance(eight_bit(1, 3, 2, c["height"], c["width"]), [0, n - 1], n)
    assert set(conditioning_kwargs(pipe, g)) == {"image", "last_image"}
    g1 = guidance(eight_bit(1, 3, 1, c["height"], c["width"]), [0], n)
    assert set(conditioning_kwargs(pipe, g1)) == {"image"}


def test_wan_t2v_takes_no_image_and_guidance_steers_it():
    pipe = tiny_pipeline("wan-t2v")
    c = tiny_call("wan-t2v")
    g = guidance(eight_bit(1, 3, 1, c["height"], c["width"]), [0], c["num_frames"], shift=2.0)
    assert conditioning_kwargs(pipe, g) == {}
    call = dict(CALL, num_inference_steps=2)
    plain = pipe(**c, **call, generator=torch.Generator().manual_seed(0)).frames
    out = mg.generate_with_guidance(pipe, g, **call, generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == plain.shape and float((out - plain).abs().max()) > 1e-3
    assert get_family(pipe).entry("WanPipeline").task == "t2v"


def test_cogvideox_5b_i2v_runs_at_its_fixed_size_and_refuses_another():
    pipe = tiny_pipeline("cogvideox", fixed_size=True)
    native = get_family(pipe).native(pipe)
    assert (native.height, native.width, native.frames, native.fixed) == (32, 48, 9, True)
    frames = eight_bit(1, 3, 1, 32, 48)
    ref_clip, ref_vae = run(pipe, lambda: pipe(image=to_pil(frames[0, :, 0]), height=32, width=48, num_frames=9,
                                               **CALL, generator=torch.Generator().manual_seed(0)))
    _, our_vae = run(pipe, lambda: mg.generate_with_guidance(pipe, guidance(frames, [0], 9), **CALL,
                                                             generator=torch.Generator().manual_seed(0)))
    assert torch.equal(our_vae[-1][0], ref_vae[-1][0])
    with pytest.raises(ValueError, match="learned positional embeddings.*48x32"):
        mg.generate_with_guidance(pipe, guidance(eight_bit(1, 3, 1, 32, 32), [0], 9), **CALL)
    with pytest.raises(ValueError, match="9 frames"):
        mg.generate_with_guidance(pipe, guidance(eight_bit(1, 3, 1, 32, 48), [0], 5), **CALL)
    assert not hasattr(pipe.transformer, "motion_guidance")


def test_ltx_condition_frame_zero_matches_the_pipeline_image_input():
    pipe = tiny_pipeline("ltx")
    c = tiny_call("ltx")
    frames = eight_bit(1, 3, 1, c["height"], c["width"])
    kw = conditioning_kwargs(pipe, guidance(frames, [0], c["num_frames"]))
    assert [cond.frame_index for cond in kw["conditions"]] == [0]
    _, ref_vae = run(pipe, lambda: pipe(image=to_pil(frames[0, :, 0]), **c, **CALL,
                                        generator=torch.Generator().manual_seed(0)))
    _, our_vae = run(pipe, lambda: mg.generate_with_guidance(pipe, guidance(frames, [0], c["num_frames"]), **CALL,
                                                             generator=torch.Generator().manual_seed(0)))
    assert torch.equal(our_vae[-1][0], ref_vae[-1][0])


def test_encode_frames_as_clip_is_the_normalised_clip_latents():
    pipe = tiny_pipeline("wan")
    c = tiny_call("wan")
    clip = eight_bit(1, 3, c["num_frames"], c["height"], c["width"])
    z = encode_frames(pipe, clip, as_clip=True)
    raw = pipe.vae.encode(clip * 2 - 1).latent_dist.mode()
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert z.shape == (1, 16, 3, c["height"] // 8, c["width"] // 8)
    assert torch.allclose(z, (raw - mean) / std, atol=1e-6)


def test_model_index_names_the_supported_classes_before_any_weight_loads(tmp_path):
    folder = save_tiny_pipeline("wan-t2v", tmp_path / "t2v")
    assert read_model_index(folder)["_class_name"] == "WanPipeline"
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ValueError, match="holds a StableDiffusionPipeline; motionguide runs WanPipeline"):
        read_model_index(tmp_path / "sd")
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        read_model_index(tmp_path)


@pytest.mark.parametrize("mode", ["training_free", "trained"])
def test_ltx_condition_frames_at_their_positions_add_tokens_the_hooks_leave_alone(mode):
    """LTXConditionPipeline prepends a latent frame of tokens for each condition past frame 0: the hooks and the
    latent pull act on the trailing video tokens; strength 0 is the plain call with the same conditions."""
    pipe = tiny_pipeline("ltx")
    c = tiny_call("ltx")
    n = c["num_frames"]
    frames = eight_bit(1, 3, 3, c["height"], c["width"], seed=2)
    g = guidance(frames, [0, 4, 8], n, shift=2.0)
    kw = conditioning_kwargs(pipe, g)
    assert [cond.frame_index for cond in kw["conditions"]] == [0, 4, 8]
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(lambda m, a, k: seen.append(k["hidden_states"].shape[1]),
                                                        with_kwargs=True)
    call = dict(CALL, num_inference_steps=2)
    plain = pipe(**kw, **c, **call, generator=torch.Generator().manual_seed(0)).frames
    config = mg.MotionGuidanceConfig(mode=mode)
    if mode == "trained":  # non-zero adapter weights, so the latent and feature levels act
        ad = mg.apply_motion_guidance(pipe.transformer, config)
        with torch.no_grad():
            for p in ad.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.05)
        config = None
    try:
        out = mg.generate_with_guidance(pipe, g, config=config, **call, generator=torch.Generator().manual_seed(0)).frames
        zero = mg.generate_with_guidance(pipe, g, config=config, strength=0.0, **call,
                                         generator=torch.Generator().manual_seed(0)).frames
    finally:
        handle.remove()
        if mode == "trained":
            mg.remove_motion_guidance(pipe.transformer)
    per_frame = (c["height"] // 8) * (c["width"] // 8)  # the tiny VAE: 8x space, 8x time (9 frames -> 2)
    assert set(seen) == {2 * per_frame + 2 * per_frame}  # the video's 2 latent frames + one per condition past 0
    assert out.shape == plain.shape and float((out - plain).abs().max()) > 1e-3
    assert float((zero - plain).abs().max()) <= 1e-5


def test_the_trainer_encodes_as_the_jobs_do_and_caches_clip_features_of_the_pil_image():
    """One encoder for inference and training: the trainer's clip latents are encode_frames(as_clip=True), and the
    CLIP features it caches are those of the PIL image the pipeline's own call gives CLIP."""
    from motionguide.finetune.objectives import make_objective

    pipe = tiny_pipeline("wan", image_encoder=True)
    c = tiny_call("wan")
    clip = eight_bit(1, 3, c["num_frames"], c["height"], c["width"], seed=4)
    obj = make_objective(pipe, "wan", height=c["height"], width=c["width"], num_frames=c["num_frames"])
    out = obj.encode_clip(clip, {"first"}, torch.device("cpu"))
    assert torch.allclose(out["x0"], encode_frames(pipe, clip, as_clip=True), atol=1e-5)
    want = pipe.encode_image(to_pil(clip[0, :, 0]), torch.device("cpu")).float()
    assert torch.equal(out["image.first"], want)
