"""Tiny random-init transformers of the five supported classes, and two tiny pipelines built in memory."""
from __future__ import annotations

from typing import Any

import torch

__all__ = ['build', 'inputs', 'wan_i2v_pipeline', 'cogvideox_i2v_pipeline', 'ARCHITECTURES']

ARCHITECTURES = (
    "WanTransformer3DModel",
    "CogVideoXTransformer3DModel",
    "LTXVideoTransformer3DModel",
    "HunyuanVideoTransformer3DModel",
    "LatteTransformer3DModel",
)
_TEXT_DIM, _TEXT_LEN = 16, 8


def build(name: str, size: str = "tiny", *, channels: int = 4, frames: int = 3, seed: int = 0) -> torch.nn.Module:
    """A random-init ``name`` transformer (eval mode). ``frames`` = latent frames (Latte's temporal embedding)."""
    import diffusers

    if size not in ("tiny", "mid"):
        raise ValueError(f"size: expected 'tiny' or 'mid', got {size!r}")
    heads, hd, layers = (2, 16, 2) if size == "tiny" else (8, 64, 4)
    dim = heads * hd
    torch.manual_seed(seed)
    if name == "WanTransformer3DModel":
        m = diffusers.WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=hd, in_channels=channels,
            out_channels=channels, text_dim=_TEXT_DIM, freq_dim=32, ffn_dim=2 * dim if size == "tiny" else 4 * dim,
            num_layers=layers, rope_max_seq_len=64)
    elif name == "CogVideoXTransformer3DModel":
        m = diffusers.CogVideoXTransformer3DModel(
            num_attention_heads=heads, attention_head_dim=hd, in_channels=channels, out_channels=channels,
            time_embed_dim=32, text_embed_dim=_TEXT_DIM, num_layers=layers, sample_width=16, sample_height=16,
            sample_frames=(frames - 1) * 4 + 1, patch_size=2, temporal_compression_ratio=4,
            max_text_seq_length=_TEXT_LEN)
    elif name == "LTXVideoTransformer3DModel":
        m = diffusers.LTXVideoTransformer3DModel(
            in_channels=channels, out_channels=channels, patch_size=1, patch_size_t=1, num_attention_heads=heads,
            attention_head_dim=hd, cross_attention_dim=dim, num_layers=layers, caption_channels=_TEXT_DIM)
    elif name == "HunyuanVideoTransformer3DModel":
        rope = (hd - 2 * (hd * 3 // 8), hd * 3 // 8, hd * 3 // 8)
        m = diffusers.HunyuanVideoTransformer3DModel(
            in_channels=channels, out_channels=channels, num_attention_heads=heads, attention_head_dim=hd,
            num_layers=layers, num_single_layers=1, num_refiner_layers=1, patch_size=2, patch_size_t=1,
            text_embed_dim=_TEXT_DIM, pooled_projection_dim=8, guidance_embeds=False, rope_axes_dim=rope)
    elif name == "LatteTransformer3DModel":
        m = diffusers.LatteTransformer3DModel(
            num_attention_heads=heads, attention_head_dim=hd, in_channels=channels, out_channels=2 * channels,
            num_layers=layers, sample_size=16, patch_size=2, norm_type="ada_norm_single", caption_channels=_TEXT_DIM,
            cross_attention_dim=dim, video_length=frames, activation_fn="gelu-approximate")
    else:
        raise ValueError(f"unknown architecture {name!r}; choose from {ARCHITECTURES}")
    return m.eval()


def inputs(model: torch.nn.Module, batch: int, grid: tuple[int, int, int], *, seed: int = 1,
           timestep: float = 500.0) -> dict[str, Any]:
    """Keyword arguments of one forward of ``model`` on latent grid ``(F, h, w)`` (random, seeded)."""
    g = torch.Generator().manual_seed(seed)
    f, h, w = grid
    name = type(model).__name__
    c = model.config.in_channels
    t = torch.full((batch,), float(timestep))
    text = torch.randn(batch, _TEXT_LEN, _TEXT_DIM, generator=g)
    x = torch.randn(batch, c, f, h, w, generator=g)
    if name == "WanTransformer3DModel":
        return dict(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)
    if name == "CogVideoXTransformer3DModel":
        return dict(hidden_states=x.transpose(1, 2).contiguous(), timestep=t.long(), encoder_hidden_states=text,
                    return_dict=False)
    if name == "LTXVideoTransformer3DModel":
        tokens = x.permute(0, 2, 3, 4, 1).reshape(batch, f * h * w, c)  # _pack_latents with patch 1
        return dict(hidden_states=tokens, timestep=t, encoder_hidden_states=text,
                    encoder_attention_mask=torch.ones(batch, _TEXT_LEN), num_frames=f, height=h, width=w,
                    return_dict=False)
    if name == "HunyuanVideoTransformer3DModel":
        return dict(hidden_states=x, timestep=t, encoder_hidden_states=text,
                    encoder_attention_mask=torch.ones(batch, _TEXT_LEN), pooled_projections=torch.randn(batch, 8, generator=g),
                    return_dict=False)
    if name == "LatteTransformer3DModel":
        return dict(hidden_states=x, timestep=t.long(), encoder_hidden_states=text, return_dict=False)
    raise ValueError(f"unknown architecture {name!r}")


def wan_i2v_pipeline(seed: int = 0):
    """A ``WanImageToVideoPipeline`` with tiny random-init components (no text encoder: pass prompt embeds).

    Transformer: 2 layers, 2 heads x 16, 36 input channels (16 noisy + 4 mask + 16 image latents, the Wan I2V
    layout), 16 output channels; VAE: ``AutoencoderKLWan`` with base width 3 (8x space, 4x time, as the real
    one). Returns ``(pipe, prompt_embeds (1, 8, 16))``.
    """
    import diffusers

    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                     temperal_downsample=[False, True, True]).eval()
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=36, out_channels=16,
        text_dim=_TEXT_DIM, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=64).eval()
    pipe = diffusers.WanImageToVideoPipeline(
        tokenizer=None, text_encoder=None, vae=vae, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
        transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    prompt_embeds = torch.randn(1, _TEXT_LEN, _TEXT_DIM, generator=torch.Generator().manual_seed(seed))
    return pipe, prompt_embeds


def cogvideox_i2v_pipeline(seed: int = 0):
    """A ``CogVideoXImageToVideoPipeline`` with tiny random-init components (pass prompt embeds).

    Its transformer takes ``(B, F, C, H, W)`` with the image latents concatenated on channels (8 = 4 + 4) and
    the pipeline doubles the batch for classifier-free guidance. Returns ``(pipe, prompt_embeds (1, 8, 16))``.
    """
    import diffusers

    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4).eval()
    transformer = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4, time_embed_dim=32,
        text_embed_dim=_TEXT_DIM, num_layers=2, sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=_TEXT_LEN).eval()
    pipe = diffusers.CogVideoXImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
                                                   scheduler=diffusers.CogVideoXDDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe, torch.randn(1, _TEXT_LEN, _TEXT_DIM, generator=torch.Generator().manual_seed(seed))
