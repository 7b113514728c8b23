"""Motion guidance under every offload mode, through accelerate's and diffusers' own hooks, on the CPU.

Values: the execution device is the CPU (accelerate's sequential offload still puts every parameter on
``meta`` and loads it from a CPU weights map for each forward), and the guided output equals the guided
output without offloading. Devices: with ``meta`` as the execution device a forward is shapes only, and any
tensor of the plugin left on the CPU (guidance, adapter weights, gates) would raise a device mismatch.
"""
from __future__ import annotations

import copy

import pytest
import torch
from accelerate import cpu_offload, cpu_offload_with_hook
from diffusers.hooks import apply_group_offloading

import motionguide as mg
from motionguide import testing
from motionguide.adapter_weights import train_blocks
from motionguide.devices import execution_device, offloaded_value, resting_device

GRID = (3, 8, 8)
CPU = torch.device("cpu")
OFFLOAD = {
    "sequential": lambda m, dev=CPU: cpu_offload(m, execution_device=dev),
    "model": lambda m, dev=CPU: cpu_offload_with_hook(m, execution_device=dev),
    "group_block": lambda m, dev=CPU: apply_group_offloading(m, onload_device=dev, offload_device=CPU,
                                                             offload_type="block_level", num_blocks_per_group=1),
    "group_leaf": lambda m, dev=CPU: apply_group_offloading(m, onload_device=dev, offload_device=CPU,
                                                            offload_type="leaf_level"),
}


def guidance(c=4, seed=0):
    f, h, w = GRID
    src = torch.randn(1, c, 1, h, w, generator=torch.Generator().manual_seed(seed))
    flows = torch.zeros(1, f, 1, 2, h, w)
    for t in range(1, f):
        flows[:, t, 0, 0] = -1.5 * t
    return mg.LatentGuidance.from_sources(src, torch.zeros(f, 1, dtype=torch.long), flows,
                                          torch.ones(1, f, 1, 1, h, w), clip_index=[0])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained adapter folder with non-zero weights: latent adapter, gates, a LoRA and trained block 1."""
    m = testing.build("WanTransformer3DModel")
    ad = mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="trained", blocks=(0,)))
    mg.add_lora(m, rank=2, blocks=(0, 1))
    train_blocks(m, [1])
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in mg.trainable_parameters(m, blocks=[1]):
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    folder = mg.save_motion_guidance(m, tmp_path_factory.mktemp("adapter") / "ad")
    mg.remove_motion_guidance(m)
    return folder


def guided(m, mode, folder, kw):
    if mode == "trained":
        mg.load_motion_guidance(m, folder)
    else:
        mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="training_free", strength=0.8))
    mg.set_guidance(m, guidance())
    with torch.no_grad():
        out = m(**kw)[0]
    mg.remove_motion_guidance(m)
    with torch.no_grad():
        after = m(**kw)[0]
    return out, after


@pytest.mark.parametrize("offload", sorted(OFFLOAD))
@pytest.mark.parametrize("mode", ["trained", "training_free"])
def test_guided_output_under_offload_equals_resident(offload, mode, saved):
    base = testing.build("WanTransformer3DModel")
    kw = testing.inputs(base, 2, GRID)
    with torch.no_grad():
        plain = base(**kw)[0]
    want, _ = guided(copy.deepcopy(base), mode, saved, kw)
    assert (want - plain).abs().max() > 1e-3  # the guidance (and the loaded weights) act
    m = copy.deepcopy(base)
    OFFLOAD[offload](m)
    if offload == "sequential":
        assert next(m.parameters()).device.type == "meta" and execution_device(m) == CPU
    out, after = guided(m, mode, saved, kw)
    assert (out - want).abs().max() <= 1e-5, offload
    assert torch.equal(after, plain)  # removal puts trained block 1 back, also in the offload weights map


@pytest.mark.gpu
@pytest.mark.parametrize("offload", sorted(OFFLOAD))
def test_guided_output_under_offload_on_cuda(offload, saved):
    """The same with CUDA as the execution device and the weights resting on the CPU."""
    cuda = torch.device("cuda")
    base = testing.build("WanTransformer3DModel")
    kw = {k: v.to(cuda) if isinstance(v, torch.Tensor) else v for k, v in testing.inputs(base, 2, GRID).items()}
    want, _ = guided(copy.deepcopy(base).to(cuda), "trained", saved, kw)
    m = copy.deepcopy(base)
    OFFLOAD[offload](m, cuda)
    assert execution_device(m) == cuda
    out, _ = guided(m, "trained", saved, kw)
    assert out.device.type == "cuda" and (out - want).abs().max() <= 1e-5


@pytest.mark.parametrize("offload", ["sequential", "model"])
def test_everything_follows_the_execution_device(offload, saved):
    """``meta`` as the execution device: the forward is shapes only, and a plugin tensor left on the CPU raises.

    (diffusers' group offloading refuses ``meta`` as its onload device: it looks up a ``torch.meta`` module.)"""
    m = testing.build("WanTransformer3DModel")
    kw = testing.inputs(m, 2, GRID)
    OFFLOAD[offload](m, torch.device("meta"))
    assert execution_device(m).type == "meta"
    ad = mg.load_motion_guidance(m, saved)
    assert ad.latent.proj.weight.device == CPU and ad.gates["0"].device == CPU  # real, resting on the CPU
    q = m.blocks[0].attn1.to_q
    if offload == "sequential":  # the adapter's LoRA is offloaded like the rest: values in a CPU weights map
        assert q.lora_A["motionguide_lora"].weight.device.type == "meta"
        assert offloaded_value(q.lora_B["motionguide_lora"], "weight").abs().sum() > 0
    lg = mg.set_guidance(m, guidance())
    assert lg.latents.device.type == "meta" and ad.state.pairs.flow.device.type == "meta"
    with torch.no_grad():
        out = m(**{k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in kw.items()})[0]
    assert out.shape == kw["hidden_states"].shape and out.device.type == "meta"


def test_devices_helpers():
    m = testing.build("WanTransformer3DModel")
    q = m.blocks[0].attn1.to_q
    value = q.weight.detach().clone()
    cpu_offload(m, execution_device=CPU)
    assert q.weight.device.type == "meta" and resting_device(m) == CPU
    assert torch.equal(offloaded_value(q, "weight"), value)
    assert execution_device(torch.nn.Linear(2, 2)) == CPU
    with pytest.raises(ValueError, match="meta device and no offload hook"):
        offloaded_value(torch.nn.Linear(2, 2, device="meta"), "weight")
    with pytest.raises(TypeError, match="pipeline or a torch.nn.Module"):
        execution_device(object())


# ---- the pipeline helper with the pipeline's own enable_*_offload (device='cpu') ----------------------------
T, H, W = 9, 32, 32


def _pipe_offload(pipe, name):
    if name == "model":
        pipe.enable_model_cpu_offload(device="cpu")
    elif name == "sequential":
        # what enable_sequential_cpu_offload does, with the CPU as the execution device: diffusers would pass
        # torch.device("cpu:0"), on which accelerate fails to rebuild the tiny model's parameters (also without
        # guidance), so accelerate's cpu_offload is called here directly on each component, as diffusers calls it
        for comp in pipe.components.values():
            if isinstance(comp, torch.nn.Module):
                cpu_offload(comp, CPU, offload_buffers=len(comp._parameters) > 0)
        assert next(pipe.transformer.parameters()).device.type == "meta" and pipe._execution_device == CPU
    elif name == "group":
        pipe.enable_group_offload(onload_device=CPU, offload_device=CPU, offload_type="block_level",
                                  num_blocks_per_group=1)


@pytest.fixture(scope="module")
def pipe_adapter(tmp_path_factory):
    """A trained adapter with non-zero weights for the tiny Wan I2V pipeline's transformer."""
    pipe, _ = testing.wan_i2v_pipeline()
    ad = mg.apply_motion_guidance(pipe.transformer, mg.MotionGuidanceConfig(mode="trained"))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in ad.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return mg.save_motion_guidance(pipe.transformer, tmp_path_factory.mktemp("pipe_adapter") / "ad")


@pytest.mark.parametrize("offload", ["model", "sequential", "group"])
def test_generate_with_guidance_under_pipeline_offload(offload, pipe_adapter):
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(1, 3, 1, H, W, generator=g)
    flows = torch.zeros(1, T, 1, 2, H, W)
    flows[:, :, 0, 0] = -2.0 * torch.arange(T).view(1, T, 1, 1)
    gd = mg.Guidance(clip, (0,), T, torch.zeros(T, 1, dtype=torch.long), flows, torch.ones(1, T, 1, 1, H, W),
                     strength=0.9)

    def run(name, **extra):
        pipe, emb = testing.wan_i2v_pipeline()
        _pipe_offload(pipe, name)
        call = dict(prompt_embeds=emb, negative_prompt_embeds=torch.zeros_like(emb), num_inference_steps=2,
                    guidance_scale=2.0, output_type="latent", generator=torch.Generator().manual_seed(0))
        if not extra:
            return pipe(image=clip[:, :, 0], height=H, width=W, num_frames=T, **call).frames
        return mg.generate_with_guidance(pipe, gd, **call, **extra).frames

    plain = run(None)
    for extra in ({"config": mg.MotionGuidanceConfig(mode="training_free")}, {"adapter": pipe_adapter}):
        want = run(None, **extra)
        assert (want - plain).abs().max() > 1e-3
        assert (run(offload, **extra) - want).abs().max() <= 1e-5, (offload, extra)


def test_guidance_applied_once_survives_model_offload_rehooking(pipe_adapter):
    """enable_model_cpu_offload rebuilds the transformer's forward after every call (maybe_free_model_hooks);
    guidance applied once keeps guiding the next calls, as it does without offloading."""
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(1, 3, 1, H, W, generator=g)
    flows = torch.zeros(1, T, 1, 2, H, W)
    flows[:, :, 0, 0] = -2.0 * torch.arange(T).view(1, T, 1, 1)
    gd = mg.Guidance(clip, (0,), T, torch.zeros(T, 1, dtype=torch.long), flows, torch.ones(1, T, 1, 1, H, W))
    outs = {}
    for name in (None, "model"):
        pipe, emb = testing.wan_i2v_pipeline()
        _pipe_offload(pipe, name)
        mg.load_motion_guidance(pipe.transformer, pipe_adapter)
        call = dict(prompt_embeds=emb, negative_prompt_embeds=torch.zeros_like(emb), num_inference_steps=2,
                    guidance_scale=2.0, output_type="latent")
        outs[name] = []
        for _ in range(2):
            state = pipe.transformer.motion_guidance.state
            state.reset()  # forget the last call's record: the root hook must record this call's
            outs[name].append(mg.generate_with_guidance(pipe, gd, generator=torch.Generator().manual_seed(0),
                                                        **call).frames)
            assert state.batch == 1 and state.guidance is None  # recorded (cond and uncond run apart); guidance cleared
    assert torch.equal(outs[None][0], outs[None][1])
    for out in outs["model"]:
        assert (out - outs[None][0]).abs().max() <= 1e-5


def test_encode_frames_encodes_on_the_execution_device_under_model_offload():
    """Model offload: the VAE rests on the CPU and its hook moves it to the execution device for ``encode``; the
    frames go there too (``meta`` here, so a CPU input would raise a device mismatch)."""
    from motionguide.pipeline import encode_frames

    pipe, _ = testing.wan_i2v_pipeline()
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            cpu_offload_with_hook(comp, execution_device=torch.device("meta"))
    assert next(pipe.vae.parameters()).device == CPU and pipe._execution_device.type == "meta"
    z = encode_frames(pipe, torch.rand(1, 3, 2, H, W))
    assert z.shape == (1, 16, 2, H // 8, W // 8) and z.device.type == "meta"


@pytest.mark.parametrize("offload", ["sequential", "model", "group_leaf"])
def test_an_adapter_saved_under_offload_holds_its_values(offload, saved, tmp_path):
    """Saving reads each tensor where its value is (under sequential offload the LoRA and trained-block
    parameters are ``meta``, their values in accelerate's weights map): the file equals the one loaded."""
    from safetensors.torch import load_file

    m = testing.build("WanTransformer3DModel")
    OFFLOAD[offload](m)
    mg.load_motion_guidance(m, saved)
    again = mg.save_motion_guidance(m, tmp_path / "again")
    a, b = load_file(str(saved / "motion_guidance.safetensors")), load_file(str(again / "motion_guidance.safetensors"))
    assert set(a) == set(b) and any(k.startswith("lora::") for k in a) and any(k.startswith("block::") for k in a)
    assert all(b[k].device.type == "cpu" and torch.equal(a[k], b[k]) for k in a)
