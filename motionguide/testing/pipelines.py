"""Complete tiny image-to-video pipelines (transformer, VAE, scheduler, T5 encoder, tokenizer built in code),
saved and reloaded offline with the pipeline class's own ``from_pretrained``."""
from __future__ import annotations

import torch


__all__ = ['tiny_call', 'tiny_tokenizer', 'tiny_pipeline', 'save_tiny_pipeline', 'PIPELINES']


# -- complete pipelines, saved and reloaded offline ------------------------------------------------------
PIPELINES = {
    "wan": "WanImageToVideoPipeline",
    "wan-t2v": "WanPipeline",
    "cogvideox": "CogVideoXImageToVideoPipeline",
    "ltx": "LTXConditionPipeline",
}
_T5_DIM = 32  # d_model of the tiny T5 encoders = the transformers' text width
_TINY_CALL = {  # a size and frame count each tiny pipeline takes (VAE space x patch divides the size)
    "wan": dict(height=32, width=32, num_frames=9),        # VAE 8x space, 4x time; patch 2 -> 2x2 tokens/frame
    "wan-t2v": dict(height=32, width=32, num_frames=9),
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


def tiny_pipeline(arch: str, *, seed: int = 0, image_encoder: bool = False, last_image: bool = False,
                  fixed_size: bool = False):
    """A complete video pipeline of class ``PIPELINES[arch]`` with tiny random-init components that carry the
    real checkpoints' conditioning features.

    * ``wan``: ``WanImageToVideoPipeline``. Transformer 2 layers x 2 heads x 16, 36 input channels (16 noisy +
      4 mask + 16 image latents, the Wan I2V layout), 16 out; ``AutoencoderKLWan`` of base width 3 (8x space,
      4x time, as the real one); UMT5 encoder and T5 tokenizer (512 tokens, the pipeline's default). With
      ``image_encoder``: also a 2-layer ``CLIPVisionModel`` + ``CLIPImageProcessor`` and a transformer with
      image cross-attention (the Wan 2.1 I2V layout); without it, the Wan 2.2 I2V layout (no CLIP). With
      ``last_image`` too: the Wan 2.1 FLF2V layout (the image embedding's positional embedding spans the CLIP
      tokens of a first and a last image, ``pos_embed_seq_len``, so its call needs ``last_image``).
    * ``wan-t2v``: ``WanPipeline`` (text-to-video, the Wan 2.1 T2V 1.3B layout): 16 input channels, no image.
    * ``cogvideox``: ``CogVideoXImageToVideoPipeline``. Transformer 2 x 2 x 16 with 3-D RoPE, 8 input channels
      (4 noisy + 4 image latents), 226 text tokens (the pipeline's default); ``AutoencoderKLCogVideoX`` 8x space,
      4x time, 4 latent channels; ``CogVideoXDDIMScheduler`` with v-prediction and zero-SNR betas, as
      CogVideoX-5B-I2V's scheduler; T5 encoder. With ``fixed_size``: learned positional embeddings as
      CogVideoX-5B-I2V has, so the transformer takes only its sample size and frame count (here 32x48, 9 frames).
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
    if arch in ("wan", "wan-t2v"):
        if arch == "wan-t2v" and (image_encoder or last_image):
            raise ValueError("wan-t2v: a text-to-video pipeline takes no image encoder or last image")
        if last_image and not image_encoder:
            raise ValueError("last_image: the FLF2V layout needs image_encoder=True (its CLIP embeds both images)")
        extra, parts = {}, {}
        if image_encoder:
            from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

            parts["image_encoder"] = CLIPVisionModel(CLIPVisionConfig(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                patch_size=8, projection_dim=32)).eval()
            parts["image_processor"] = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
            extra = dict(image_dim=32, added_kv_proj_dim=32)
            if last_image:  # CLIP tokens of two images: 2 x (16 patches + class token)
                extra["pos_embed_seq_len"] = 2 * ((32 // 8) ** 2 + 1)
        vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                         temperal_downsample=[False, True, True]).eval()
        transformer = diffusers.WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16,
            in_channels=16 if arch == "wan-t2v" else 36, out_channels=16, text_dim=_T5_DIM, freq_dim=32, ffn_dim=64,
            num_layers=2, rope_max_seq_len=64, **extra).eval()
        cls = diffusers.WanPipeline if arch == "wan-t2v" else diffusers.WanImageToVideoPipeline
        pipe = cls(tokenizer=tok, text_encoder=_t5(len(tok), umt5=True), vae=vae, transformer=transformer,
                   scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), **parts)
    elif arch == "cogvideox":
        vae = diffusers.AutoencoderKLCogVideoX(
            in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
            layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4).eval()
        c = dict(_TINY_CALL["cogvideox"], **({"width": 48} if fixed_size else {}))
        transformer = diffusers.CogVideoXTransformer3DModel(
            num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4, time_embed_dim=32,
            text_embed_dim=_T5_DIM, num_layers=2, sample_width=c["width"] // 8, sample_height=c["height"] // 8,
            sample_frames=c["num_frames"], patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226,
            use_rotary_positional_embeddings=True, use_learned_positional_embeddings=fixed_size).eval()
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


def save_tiny_pipeline(arch: str, folder, *, seed: int = 0, image_encoder: bool = False, last_image: bool = False,
                       fixed_size: bool = False, overwrite: bool = False):
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
    pipe = tiny_pipeline(arch, seed=seed, image_encoder=image_encoder, last_image=last_image, fixed_size=fixed_size)
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
