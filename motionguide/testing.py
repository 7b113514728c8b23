"""Random-init configs and pipelines of the supported classes, built in code (tests, benchmarks, examples).

Transformers alone: ``build(name, size)`` returns the model and ``inputs(model, batch, grid)`` the keyword
arguments of one forward call on a latent grid ``(F, h, w)``. ``tiny``: 2 layers, 2 heads, head dim 16
(seconds on a CPU); ``mid``: width 512 (8 heads x 64), 4 layers, for overhead measurements where attention
dominates as it does in real models.

Complete pipelines (transformer, VAE, scheduler, T5 text encoder and tokenizer, all random-init):
``tiny_pipeline(arch)`` for ``arch`` in :data:`PIPELINES` (``wan``, ``cogvideox``, ``ltx``) and
``save_tiny_pipeline(arch, folder)``, whose folder loads with the pipeline class's own ``from_pretrained``
offline; ``tiny_call(arch)`` gives a size and frame count each one takes. The tokenizer is a small Unigram
vocabulary (letters, digits, punctuation) built in code (:func:`tiny_tokenizer`).

Published transformer configs at real size (:data:`REAL_CONFIGS`, for ``meta``-device checks and the GPU
benchmark): ``real_config(name)`` builds one, ``real_grid(name)`` and ``real_inputs(name, model)`` give the
latent/token grid and forward arguments of its pipeline's default video, ``layout_guidance`` a guidance of
one of the jobs' layouts. :class:`SavedBytes` with :func:`flash_attention_saved` counts the activation memory
autograd saves in a forward on ``meta`` (shapes, no values), :func:`layout_pairs` gives the feature hook's
token pairs for such a count.

Nothing is downloaded.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "ARCHITECTURES", "build", "inputs", "wan_i2v_pipeline", "cogvideox_i2v_pipeline",
    "PIPELINES", "tiny_tokenizer", "tiny_pipeline", "save_tiny_pipeline", "tiny_call",
    "REAL_CONFIGS", "real_config", "real_grid", "real_inputs", "layout_guidance", "SavedBytes",
    "flash_attention_saved", "layout_pairs",
]

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


# -- complete pipelines, saved and reloaded offline ------------------------------------------------------
PIPELINES = {
    "wan": "WanImageToVideoPipeline",
    "cogvideox": "CogVideoXImageToVideoPipeline",
    "ltx": "LTXConditionPipeline",
}
_T5_DIM = 32  # d_model of the tiny T5 encoders = the transformers' text width
_TINY_CALL = {  # a size and frame count each tiny pipeline takes (VAE space x patch divides the size)
    "wan": dict(height=32, width=32, num_frames=9),        # VAE 8x space, 4x time; patch 2 -> 2x2 tokens/frame
    "cogvideox": dict(height=32, width=32, num_frames=9),  # VAE 8x, 4x; patch 2
    "ltx": dict(height=64, width=64, num_frames=9),        # VAE 8x space, 8x time (the real one: 32x, 8x); patch 1
}


def _check_arch(arch: str) -> str:
    if arch not in PIPELINES:
        raise ValueError(f"arch: expected one of {sorted(PIPELINES)}, got {arch!r}")
    return arch


def tiny_call(arch: str) -> dict[str, int]:
    """``height``, ``width``, ``num_frames`` that the tiny ``arch`` pipeline takes (a copy; pass to its call)."""
    return dict(_TINY_CALL[_check_arch(arch)])


def tiny_tokenizer(model_max_length: int = 512):
    """A T5 tokenizer over a small Unigram vocabulary built in code (no download, no sentencepiece file).

    Pieces: ``<pad>`` (0), ``</s>`` (1), ``<unk>`` (2), then word-initial and inner lower-case letters and
    digits and a little punctuation (82 in all); other characters (upper case, accents) map to ``<unk>``.
    ``save_pretrained`` writes it as ``tokenizer.json``, which ``from_pretrained`` reads back offline.
    """
    import string

    from transformers import T5TokenizerFast

    chars = string.ascii_lowercase + string.digits
    pieces = ["<pad>", "</s>", "<unk>", "\u2581"] + ["\u2581" + c for c in chars] + list(chars) + list(".,!?'-")
    # Unigram log-probabilities: word-initial pieces first, so "a cat" -> [\u2581a, \u2581c, a, t]
    vocab = [(p, 0.0) for p in pieces[:3]] + [(p, -1.0 - 0.01 * i) for i, p in enumerate(pieces[3:])]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def _t5(vocab_size: int, *, umt5: bool):
    """A 2-layer T5 (or UMT5, Wan's text encoder class) encoder of width ``_T5_DIM`` (random init)."""
    if umt5:
        from transformers import UMT5Config as Config, UMT5EncoderModel as Model
    else:
        from transformers import T5Config as Config, T5EncoderModel as Model
    cfg = Config(vocab_size=vocab_size, d_model=_T5_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                 relative_attention_num_buckets=8, relative_attention_max_distance=32, dropout_rate=0.0,
                 feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
                 pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return Model(cfg).eval()


def tiny_pipeline(arch: str, *, seed: int = 0, image_encoder: bool = False):
    """A complete image-to-video pipeline of class ``PIPELINES[arch]`` with tiny random-init components.

    * ``wan``: ``WanImageToVideoPipeline``. Transformer 2 layers x 2 heads x 16, 36 input channels (16 noisy +
      4 mask + 16 image latents, the Wan I2V layout), 16 out; ``AutoencoderKLWan`` of base width 3 (8x space,
      4x time, as the real one); UMT5 encoder and T5 tokenizer (512 tokens, the pipeline's default). With
      ``image_encoder``: also a 2-layer ``CLIPVisionModel`` + ``CLIPImageProcessor`` and a transformer with
      image cross-attention (the Wan 2.1 I2V layout); without it, the Wan 2.2 I2V layout (no CLIP).
    * ``cogvideox``: ``CogVideoXImageToVideoPipeline``. Transformer 2 x 2 x 16 with 3-D RoPE, 8 input channels
      (4 noisy + 4 image latents), 226 text tokens (the pipeline's default); ``AutoencoderKLCogVideoX`` 8x space,
      4x time, 4 latent channels; ``CogVideoXDDIMScheduler`` with v-prediction and zero-SNR betas, as
      CogVideoX-5B-I2V's scheduler; T5 encoder.
    * ``ltx``: ``LTXConditionPipeline``. Transformer 2 x 2 x 16 on 8 latent channels, patch 1;
      ``AutoencoderKLLTXVideo`` with 8x space and 8x time (8k+1 frames as the real one; its space is 32x);
      T5 encoder (256 tokens, the pipeline's default).

    Every pipeline has a flow-matching or DDPM scheduler of its own family, the progress bar off, and is in
    eval mode. The sizes in :func:`tiny_call` run a step in well under a second on a CPU.
    """
    import diffusers

    _check_arch(arch)
    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    if arch == "wan":
        extra, parts = {}, {}
        if image_encoder:
            from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

            parts["image_encoder"] = CLIPVisionModel(CLIPVisionConfig(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                patch_size=8, projection_dim=32)).eval()
            parts["image_processor"] = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
            extra = dict(image_dim=32, added_kv_proj_dim=32)
        vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                         temperal_downsample=[False, True, True]).eval()
        transformer = diffusers.WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=36, out_channels=16,
            text_dim=_T5_DIM, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=64, **extra).eval()
        pipe = diffusers.WanImageToVideoPipeline(
            tokenizer=tok, text_encoder=_t5(len(tok), umt5=True), vae=vae, transformer=transformer,
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), **parts)
    elif arch == "cogvideox":
        vae = diffusers.AutoencoderKLCogVideoX(
            in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
            layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4).eval()
        c = _TINY_CALL["cogvideox"]
        transformer = diffusers.CogVideoXTransformer3DModel(
            num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4, time_embed_dim=32,
            text_embed_dim=_T5_DIM, num_layers=2, sample_width=c["width"] // 8, sample_height=c["height"] // 8,
            sample_frames=c["num_frames"], patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226,
            use_rotary_positional_embeddings=True).eval()
        scheduler = diffusers.CogVideoXDDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="v_prediction",
            rescale_betas_zero_snr=True, timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=True)
        pipe = diffusers.CogVideoXImageToVideoPipeline(
            tokenizer=tok, text_encoder=_t5(len(tok), umt5=False), vae=vae, transformer=transformer,
            scheduler=scheduler)
    else:
        vae = diffusers.AutoencoderKLLTXVideo(
            in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, True, False),
            decoder_spatio_temporal_scaling=(True, True, True, False), decoder_inject_noise=(False,) * 5,
            upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=1,
            patch_size_t=1, encoder_causal=True, decoder_causal=False).eval()
        transformer = diffusers.LTXVideoTransformer3DModel(
            in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=16,
            cross_attention_dim=32, num_layers=2, caption_channels=_T5_DIM).eval()
        pipe = diffusers.LTXConditionPipeline(
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_t5(len(tok), umt5=False),
            tokenizer=tok, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_pipeline(arch: str, folder, *, seed: int = 0, image_encoder: bool = False, overwrite: bool = False):
    """Write :func:`tiny_pipeline` to ``folder`` with ``save_pretrained`` (safetensors); returns the folder path.

    The folder loads offline with ``PIPELINES[arch]``'s own ``from_pretrained(folder, local_files_only=True)``
    (or ``diffusers.DiffusionPipeline.from_pretrained``). An existing non-empty folder is refused unless
    ``overwrite``; the pipeline is written to a temporary sibling first and moved into place, so a failure
    leaves no partial folder.
    """
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder; pick a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} is not empty; pass overwrite=True (--overwrite) or pick an empty folder")
    pipe = tiny_pipeline(arch, seed=seed, image_encoder=image_encoder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# -- published transformer configs at real size ------------------------------------------------------------
# Each: the diffusers class, its config as published in the model's transformer/config.json on the Hugging Face
# hub (the keys a diffusers class takes; the others are the class defaults, which match), the pipeline class and
# the default video it generates (the pipeline's own call defaults), and where the numbers come from.
REAL_CONFIGS: dict[str, dict[str, Any]] = {
    "Wan2.1-T2V-1.3B": dict(
        cls="WanTransformer3DModel", pipeline="WanPipeline",
        source="https://huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers/blob/main/transformer/config.json",
        config=dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                    out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None,
                    rope_max_seq_len=1024),
        video=dict(height=480, width=832, num_frames=81), text_len=512),
    "Wan2.1-I2V-14B-480P": dict(
        cls="WanTransformer3DModel", pipeline="WanImageToVideoPipeline",
        source="https://huggingface.co/Wan-AI/Wan2.1-I2V-14B-480P-Diffusers/blob/main/transformer/config.json",
        config=dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36,
                    out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120,
                    rope_max_seq_len=1024),
        video=dict(height=480, width=832, num_frames=81), text_len=512, image_len=257),
    "CogVideoX-5B-I2V": dict(
        cls="CogVideoXTransformer3DModel", pipeline="CogVideoXImageToVideoPipeline",
        source="https://huggingface.co/THUDM/CogVideoX-5b-I2V/blob/main/transformer/config.json",
        config=dict(num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16,
                    flip_sin_to_cos=True, freq_shift=0, time_embed_dim=512, text_embed_dim=4096, num_layers=42,
                    dropout=0.0, attention_bias=True, sample_width=90, sample_height=60, sample_frames=49,
                    patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226,
                    activation_fn="gelu-approximate", timestep_activation_fn="silu", norm_elementwise_affine=True,
                    norm_eps=1e-5, spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0,
                    use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True),
        video=dict(height=480, width=720, num_frames=49), text_len=226),
    "LTX-Video-2B": dict(
        cls="LTXVideoTransformer3DModel", pipeline="LTXConditionPipeline",
        source="https://huggingface.co/Lightricks/LTX-Video/blob/main/transformer/config.json (0.9.0 / 0.9.1, 2B)",
        config=dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
                    attention_head_dim=64, cross_attention_dim=2048, num_layers=28, activation_fn="gelu-approximate",
                    qk_norm="rms_norm_across_heads", norm_elementwise_affine=False, norm_eps=1e-6,
                    caption_channels=4096, attention_bias=True, attention_out_bias=True),
        video=dict(height=512, width=704, num_frames=161), text_len=256),
}


def _entry(name: str) -> dict[str, Any]:
    if name not in REAL_CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose from {sorted(REAL_CONFIGS)}")
    return REAL_CONFIGS[name]


def real_config(name: str, *, device: str | torch.device = "meta", dtype: torch.dtype = torch.bfloat16,
                num_layers: int | None = None, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """Build the published transformer ``name`` (a key of :data:`REAL_CONFIGS`) at real width and channels.

    ``device="meta"`` (default) allocates nothing: shapes, parameter counts and hooks, no values.
    ``dtype`` casts the floating parameters as ``from_pretrained(torch_dtype=...)`` does, keeping the class's
    ``_keep_in_fp32_modules`` in float32. ``num_layers`` overrides the depth (e.g. 2 blocks for a CPU forward
    at real width); ``overrides`` replace other config keys (a scaled-down model of the same layout). On a
    real device the weights are random (seeded), so outputs mean nothing.
    """
    import diffusers

    entry = _entry(name)
    cfg = dict(entry["config"], **overrides)
    if num_layers is not None:
        cfg["num_layers"] = int(num_layers)
    torch.manual_seed(seed)
    with torch.device(device):
        model = getattr(diffusers, entry["cls"])(**cfg)
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    for mod_name, mod in model.named_modules():  # (ModelMixin.to would warn about the float32 modules)
        want = torch.float32 if any(k in mod_name.split(".") for k in keep) else dtype
        for t in [*mod.parameters(recurse=False), *mod.buffers(recurse=False)]:
            if t.is_floating_point():
                t.data = t.data.to(want)
    return model.eval()


def real_grid(name: str, *, height: int | None = None, width: int | None = None,
              num_frames: int | None = None) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(latent (F, h, w), tokens (F', R, C))`` of a video for ``name`` (default: its pipeline's default video).

    Through the registry's own rules: e.g. Wan at 480 x 832, 81 frames: 81 -> (81 - 1) / 4 + 1 = 21 latent
    frames, 480 x 832 / 8 (VAE) = 60 x 104 latents, / 2 (patch) = 30 x 52 tokens.
    """
    from .registry import get_spec

    entry = _entry(name)
    spec = get_spec(entry["cls"])
    v = dict(entry["video"])
    v.update({k: x for k, x in dict(height=height, width=width, num_frames=num_frames).items() if x is not None})
    holder = type("Config", (), {"config": entry["config"]})
    patch = spec.patch_size(holder)
    latent = (spec.vae.latent_frames(v["num_frames"]),
              *spec.vae.latent_size(v["height"], v["width"], multiple=patch[1]))
    return latent, spec.token_grid(holder, latent)


def real_inputs(name: str, model: torch.nn.Module, latent_grid: tuple[int, int, int] | None = None, *,
                batch: int = 1, device: str | torch.device = "meta", dtype: torch.dtype = torch.bfloat16,
                seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of one forward of ``model`` (built by :func:`real_config`) as its pipeline calls it.

    ``latent_grid`` ``(F, h, w)`` defaults to the pipeline's default video (:func:`real_grid`). On ``meta``
    the tensors are empty; elsewhere random (seeded). Text: ``REAL_CONFIGS[name]["text_len"]`` tokens of the
    model's text width; CogVideoX also gets its pipeline's 3-D RoPE tables (shapes only matter here).
    """
    entry, c = _entry(name), model.config
    f, h, w = latent_grid or real_grid(name)[0]
    meta = torch.device(device).type == "meta"
    g = None if meta else torch.Generator(device=device).manual_seed(seed)

    def t(*shape, dt=dtype):
        return torch.empty(*shape, device=device, dtype=dt) if meta else torch.randn(*shape, generator=g, device=device, dtype=dt)

    text = t(batch, entry["text_len"], c.get("text_dim") or c.get("text_embed_dim") or c.get("caption_channels"))
    step = torch.full((batch,), 500.0, device=device) if not meta else torch.empty(batch, device=device)
    if entry["cls"] == "WanTransformer3DModel":
        kw = dict(hidden_states=t(batch, c.in_channels, f, h, w), timestep=step, encoder_hidden_states=text)
        if c.image_dim:
            kw["encoder_hidden_states_image"] = t(batch, entry["image_len"], c.image_dim)
    elif entry["cls"] == "CogVideoXTransformer3DModel":
        p = c.patch_size
        n = f * (h // p) * (w // p)
        rope = tuple(t(n, c.attention_head_dim, dt=torch.float32) for _ in range(2))
        kw = dict(hidden_states=t(batch, f, c.in_channels, h, w), timestep=step.long(), encoder_hidden_states=text,
                  image_rotary_emb=rope)
    else:
        kw = dict(hidden_states=t(batch, f * h * w, c.in_channels), timestep=step, encoder_hidden_states=text,
                  encoder_attention_mask=torch.ones(batch, entry["text_len"], device=device), num_frames=f,
                  height=h, width=w)
    return dict(kw, return_dict=False)


def layout_guidance(layout: str, latent_grid: tuple[int, int, int], channels: int, *, batch: int = 1,
                    device: str | torch.device = "cpu", seed: int = 0, shift: float = 1.0):
    """A :class:`~motionguide.latent.LatentGuidance` of one of the jobs' layouts on a latent grid (random).

    ``ref``: every latent frame guided by frame 0 (reference motion, continuation; K = 1). ``inb``:
    in-betweening from the first and last frames (K = 2, time-linear weights). Source latents are random;
    the flow is a uniform shift of ``shift`` cells per frame (backward, so content moves right).
    """
    from .latent import LatentGuidance

    f, h, w = latent_grid
    g = torch.Generator().manual_seed(seed)
    if layout == "ref":
        src = torch.randn(batch, channels, 1, h, w, generator=g)
        sources = torch.zeros(f, 1, dtype=torch.long)
        flows = torch.zeros(batch, f, 1, 2, h, w)
        flows[:, :, 0, 0] = -shift * torch.arange(f, dtype=torch.float32).view(1, f, 1, 1)
        weights, clip = torch.ones(batch, f, 1, 1, h, w), [0]
    elif layout == "inb":
        src = torch.randn(batch, channels, 2, h, w, generator=g)
        sources = torch.tensor([[0, 1]] * f)
        sources[0], sources[-1] = torch.tensor([0, -1]), torch.tensor([1, -1])  # the two known frames: themselves
        flows = torch.zeros(batch, f, 2, 2, h, w)
        weights = torch.zeros(batch, f, 2, 1, h, w)
        weights[:, 0, 0] = weights[:, -1, 0] = 1.0
        for j in range(1, f - 1):
            tj = j / (f - 1)
            flows[:, j, 0, 0], flows[:, j, 1, 0] = -shift * j, shift * (f - 1 - j)
            weights[:, j, 0], weights[:, j, 1] = 1.0 - tj, tj
        clip = [0, f - 1]
    else:
        raise ValueError(f"layout: expected 'ref' or 'inb', got {layout!r}")
    return LatentGuidance.from_sources(src, sources, flows, weights, clip_index=clip).to(device=device)


# -- counting the activation memory autograd saves, without values (meta device) -------------------------
class SavedBytes:
    """``with SavedBytes(exclude=params) as s: ...``: bytes of the distinct storages autograd saves inside.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``; storages are told apart by identity (views of
    one storage count once); ``exclude`` (parameters, buffers) are not activations. Works on ``meta`` tensors,
    which have shapes but no values, so a real-size forward costs no memory.
    """

    def __init__(self, exclude=()) -> None:
        self.exclude = {t.untyped_storage()._cdata for t in exclude}
        self.sizes: dict[int, int] = {}
        self._keep: list[torch.Tensor] = []  # holding the tensors keeps storage ids unique during the count

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st._cdata not in self.exclude and st._cdata not in self.sizes:
            self.sizes[st._cdata] = st.nbytes()
            self._keep.append(t)
        return t

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def __enter__(self) -> "SavedBytes":
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


class _FlashSaved(torch.autograd.Function):
    """Scaled dot-product attention as the flash / memory-efficient kernels are for autograd (shapes only)."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = q.new_empty(q.shape[:-1] + (v.shape[-1],))
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1], dtype=torch.float32))  # + logsumexp
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - for counting forwards only
        raise NotImplementedError("flash_attention_saved() counts forwards; it has no backward")


def flash_attention_saved():
    """Context: ``F.scaled_dot_product_attention`` saves (q, k, v, out, float32 logsumexp), as the GPU kernels do.

    On ``meta`` SDPA takes the math path, which would save the N x N attention matrix; use this around a
    :class:`SavedBytes` count. It returns uninitialised outputs: for counting only.
    """
    import contextlib

    import torch.nn.functional as F

    @contextlib.contextmanager
    def ctx():
        orig = F.scaled_dot_product_attention

        def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
            return _FlashSaved.apply(query, key, value)

        F.scaled_dot_product_attention = sdpa
        try:
            yield
        finally:
            F.scaled_dot_product_attention = orig

    return ctx()


def layout_pairs(token_grid: tuple[int, int, int], layout: str, *, batch: int = 1, device="meta"):
    """The feature hook's :class:`~motionguide.feature.TokenPairs` for ``layout`` on a token grid ``(F', R, C)``.

    ``ref``: targets 1..F'-1 from frame 0 (P = F' - 1); ``inb``: targets 1..F'-2 from frames 0 and F'-1
    (P = 2 (F' - 2)). Indices stay on the CPU; flows and weights are empty tensors on ``device`` (shapes for
    :func:`motionguide.feature.blend_tokens` on ``meta``).
    """
    from .feature import TokenPairs

    fp, r, c = token_grid
    if layout == "ref":
        tgt, src = torch.arange(1, fp), torch.zeros(fp - 1, dtype=torch.long)
    elif layout == "inb":
        tgt, src = torch.arange(1, fp - 1).repeat_interleave(2), torch.tensor([0, fp - 1]).repeat(fp - 2)
    else:
        raise ValueError(f"layout: expected 'ref' or 'inb', got {layout!r}")
    p = tgt.numel()
    return TokenPairs(tgt=tgt, src=src, flow=torch.empty(batch * p, 2, r, c, device=device),
                      weight=torch.empty(batch, p, r, c, 1, device=device))
