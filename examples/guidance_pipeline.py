"""Motion guidance on a real diffusers pipeline class, offline, with tiny random-init components.

Shows the call sequence: build a Guidance from a clip (here: reference motion, a texture panning right
2 px/frame, applied to a new first frame), then run ``WanImageToVideoPipeline`` under training-free motion
guidance with ``motionguide.generate_with_guidance``; then the trained-adapter sequence (apply, save, load,
call). The model is random, so the video is noise-like: the point is the API, the shapes and that guidance
changes the result and is removed after the call.

Run: python examples/guidance_pipeline.py
"""
from __future__ import annotations

import tempfile

import torch

import motionguide as mg
from motionguide import testing


def pan_clip(num_frames: int, h: int, w: int, step: int = 2) -> torch.Tensor:
    """(1, 3, T, H, W) in [0, 1]: a smooth texture moving right by ``step`` px per frame."""
    g = torch.Generator().manual_seed(0)
    tex = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4, (w + step * num_frames) // 4, generator=g),
                                          size=(h, w + step * num_frames), mode="bicubic").clamp(0, 1)
    x0 = step * num_frames
    return torch.stack([tex[..., x0 - step * k: x0 - step * k + w] for k in range(num_frames)], dim=2)


def known_translation(step: float):
    """A stand-in flow estimator for the synthetic pan (use flow.estimators.get_estimator('dis') on real video)."""
    def est(f0, f1):
        out = torch.zeros(f0.shape[0], 2, *f0.shape[-2:])
        out[:, 0] = step
        return out
    return est


def main() -> None:
    torch.manual_seed(0)
    pipe, prompt_embeds = testing.wan_i2v_pipeline()
    T, H, W = 9, 32, 32                                      # Wan takes 4k+1 frames; 32 = 8 (VAE) x 2 (patch) x 2
    reference = pan_clip(T, H, W)
    new_first_frame = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(1))
    guidance = mg.reference_motion(new_first_frame, reference, estimator=known_translation(2.0), strength=0.8)
    print(f"guidance: frames {tuple(guidance.frames.shape)}, flows {tuple(guidance.flows.shape)}, "
          f"weights {tuple(guidance.weights.shape)}, motion_scale {guidance.motion_scale}, strength {guidance.strength}")

    call = dict(prompt_embeds=prompt_embeds, negative_prompt_embeds=torch.zeros_like(prompt_embeds),
                num_inference_steps=3, guidance_scale=2.0, output_type="latent")
    plain = pipe(image=new_first_frame, height=H, width=W, num_frames=T,
                 generator=torch.Generator().manual_seed(0), **call).frames
    # 1. training-free: feature gate = strength in the first half of the blocks + re-noised latent pull
    guided = mg.generate_with_guidance(pipe, guidance, generator=torch.Generator().manual_seed(0), **call).frames
    print(f"training-free: latents {tuple(guided.shape)}, max |guided - plain| = {(guided - plain).abs().max():.4f}")
    assert not mg.has_motion_guidance(pipe.transformer)  # removed after the call

    # 2. trained (MoG): zero-init adapters; here "trained" = random weights, saved and loaded back
    adapter = mg.apply_motion_guidance(pipe.transformer, mg.MotionGuidanceConfig(mode="trained"))
    print(f"trainable parameters: {sum(p.numel() for p in mg.trainable_parameters(pipe.transformer))}")
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.02)
    with tempfile.TemporaryDirectory() as d:
        mg.save_motion_guidance(pipe.transformer, d)
        mg.remove_motion_guidance(pipe.transformer)
        trained = mg.generate_with_guidance(pipe, guidance, adapter=d, generator=torch.Generator().manual_seed(0), **call).frames
    print(f"trained adapter: max |guided - plain| = {(trained - plain).abs().max():.4f}")
    for p in pipe.transformer.parameters():
        p.requires_grad_(True)


if __name__ == "__main__":
    main()
