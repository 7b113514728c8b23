"""Published transformer configs at real size, built on the ``meta`` device, their pipelines' default grids,
and the activation memory autograd saves in a forward (counted from shapes, without values)."""
from __future__ import annotations

from typing import Any

import torch

from ..feature import TokenPairs
from ..latent import LatentGuidance
from ..registry import get_spec

__all__ = ['real_config', 'real_grid', 'real_inputs', 'layout_guidance', 'SavedBytes', 'flash_attention_saved', 'layout_pairs', 'REAL_CONFIGS']


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
