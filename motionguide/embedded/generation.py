"""Guided generation on the embedded model: the plugin's latent guidance on pixels, the reference clip
moved toward the warp by the learned gates, and the sampler.

How a guided call works (modes ``latent`` / ``both``):

1. the **warp**, given (the :class:`~motionguide.warping.Synthesis` warp: each target frame the weighted blend
   of its warped sources, made once by the caller, e.g. at the input's resolution and downscaled);
2. the **gates** (:func:`gate_maps`): per pixel, the reference gate and the correction gate of its trust
   level (:func:`~motionguide.embedded.adapters.trust_levels`);
3. the **reference** the network corrects moves from the static frame toward the warp,
   ``ref = static + strength * g * (warp - static)``, and the network's correction is scaled by
   ``1 - strength * c`` (:func:`guided_reference_and_scale`);
4. sampling starts from that reference noised to a low time (SDEdit-style, ``start``) with the plugin's
   latent and feature guidance set on the transformer (mode ``both``; ``latent`` sets the latent level only).

Strength 0 is exactly the unguided sampler. Shapes: clips ``(B, 3, T, H, W)`` float in [0, 1].
"""
from __future__ import annotations

from typing import Callable

import torch

from ..adapter import get_motion_guidance, has_motion_guidance, set_guidance
from ..compositing import confidence
from ..guidance import check_strength
from ..latent import LatentGuidance, latent_guidance
from ..warping import known_of
from .adapters import GATE_SCALE, pixel_vae, trust_levels
from .network import EmbeddedVideoModel

__all__ = ["MODES", "GUIDED_START", "latent_guidance_of", "with_warp", "gate_maps", "guided_reference_and_scale",
           "generate_guided"]

MODES = ("unguided", "latent", "feature", "both", "training_free", "flow_only")
#: where guided sampling starts at strength 1 (1.0 = from pure noise); the adapters train from there
GUIDED_START = 0.1


def latent_guidance_of(guidance, *, strength: float | None = None, latent: bool = True,
                       feature: bool = True) -> LatentGuidance:
    """The plugin's :class:`~motionguide.latent.LatentGuidance` for the embedded model (latents = pixels in
    [-1, 1]); ``latent=False`` zeroes the latent level, ``feature=False`` drops the flows."""
    lg = latent_guidance(guidance.with_latents(guidance.frames * 2 - 1), vae=pixel_vae(), strength=strength)
    if not latent:
        lg = LatentGuidance(torch.zeros_like(lg.latents), torch.zeros_like(lg.mask), lg.sources, lg.flows,
                            lg.weights, lg.strength)
    if not feature:
        lg = LatentGuidance(lg.latents, lg.mask, strength=lg.strength)
    return lg


def with_warp(lg: LatentGuidance, warp: torch.Tensor) -> LatentGuidance:
    """``lg`` with its latent level taken from ``warp`` ``(B, 3, T, H, W)`` in [0, 1] (a synthesis made at a
    higher resolution and downscaled): the sources' weighted warp, as ``LatentGuidance.from_sources`` makes it
    (the mask times the blend, in [-1, 1] pixels)."""
    return LatentGuidance(lg.mask * (warp.to(lg.mask) * 2 - 1), lg.mask, lg.sources, lg.flows, lg.weights, lg.strength)


def gate_maps(gates, lg: LatentGuidance) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reference gate, correction gate)``, each ``(B, 1, T, H, W)``, in units of ``GATE_SCALE * gate``
    before the strength: the :class:`~motionguide.embedded.adapters.GuidanceGates`' per-trust-level values
    looked up per pixel by :func:`~motionguide.embedded.adapters.trust_levels`."""
    mask = lg.mask
    levels = trust_levels(lg).to(mask.device)
    return GATE_SCALE * gates.reference_gate.to(mask)[levels], GATE_SCALE * gates.correction_gate.to(mask)[levels]


def guided_reference_and_scale(model: EmbeddedVideoModel, guidance, lg: LatentGuidance, static: torch.Tensor,
                               strength: float, warp: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(reference, correction scale, warp)`` of one guided call, as generation and adapter training both
    need them.

    reference ``(B, 3, T, H, W)`` in [-1, 1]: ``static + strength * g * (warp - static)``; correction scale
    ``(B, 1, T, H, W)``: ``1 - strength * c``, the factor on the network's correction (its 4x4-patch noise
    costs more than it gains where the flow is right, so training learns how much to damp it there);
    warp: ``(B, 3, T, H, W)`` in [0, 1], the guidance's flow-based synthesis (:func:`flow_only` of it, or the
    same synthesis made at a higher resolution and downscaled), returned as given. ``g``, ``c``:
    :func:`gate_maps`. static: the static reference in [-1, 1].
    """
    gates = model.gates
    if gates is None:
        raise ValueError("guided generation with the latent level needs trained adapters on the model "
                         "(attach_adapters or load_adapters)")
    with torch.no_grad():
        warp11 = (warp * 2 - 1).to(static)
    g, c = gate_maps(gates, lg)
    s = float(strength)
    return static + g * s * (warp11 - static), 1.0 - s * c, warp


def generate_guided(
    model: EmbeddedVideoModel,
    guidance,
    *,
    warp: torch.Tensor,
    mode: str = "both",
    strength: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    start: float = GUIDED_START,
    latent_from_warp: bool = True,
) -> torch.Tensor:
    """Generate the clip a :class:`~motionguide.guidance.Guidance` describes ``(B, 3, T, H, W)`` in [0, 1].

    mode: ``unguided`` (the base model), ``latent`` / ``feature`` / ``both`` (trained adapters with one or
    both levels; needs :func:`~motionguide.embedded.adapters.attach_adapters` or ``load_adapters``),
    ``training_free`` (needs a model with a ``training_free`` adapter: the plugin's feature level at
    ``strength``, sampling from the re-noised warp with the latents held to it where
    :func:`~motionguide.compositing.confidence` trusts it), ``flow_only`` (``warp`` as given).
    strength: defaults to the guidance's. start: with the latent level on, sampling starts from the guided
    reference (the warp, for ``training_free``) noised to ``t = 1 - strength * (1 - start)`` (1 = from pure
    noise; strength 0 gives exactly
    the unguided sampler). The guidance must match the model's frames and size (the jobs window and resize).
    warp: ``(B, 3, T, H, W)`` in [0, 1], the guidance's flow-based synthesis, made once by the caller: the jobs
    make it at the input's resolution and area-downscale it to the model's (sharper and better placed than
    :func:`flow_only` at the model's grid, which blurs and misplaces what a 32 px warp cannot resolve); the
    reference and the training-free target are this warp. latent_from_warp: the latent level is ``warp``
    (:func:`with_warp`; True) or the guidance's own blend of warped sources (False: for a ``warp`` that is
    :func:`flow_only` of ``guidance`` itself at its grid).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    s = check_strength(guidance.strength if strength is None else strength)
    cfg = model.config
    if (guidance.num_frames, *guidance.size) != (cfg.num_frames, cfg.height, cfg.width):
        raise ValueError(
            f"guidance is {guidance.num_frames} frames of {guidance.size[1]}x{guidance.size[0]} (WxH), the model "
            f"makes {cfg.num_frames} frames of {cfg.width}x{cfg.height}; the jobs window and resize for you"
        )
    want_warp = (guidance.frames.shape[0], 3, guidance.num_frames, *guidance.size)
    if not isinstance(warp, torch.Tensor) or tuple(warp.shape) != want_warp:
        raise ValueError(f"warp: expected {want_warp} (B, 3, T, H, W) at the model's size, got "
                         f"{tuple(warp.shape) if isinstance(warp, torch.Tensor) else type(warp).__name__}")
    if mode == "flow_only":
        return warp
    kf, known = known_of(guidance)
    adapter = get_motion_guidance(model.transformer) if has_motion_guidance(model.transformer) else None
    if mode == "unguided":
        if adapter is not None:
            set_guidance(model.transformer, None)
        return model.generate(kf, known, steps=steps, seed=seed, progress=progress)
    if adapter is None:
        raise ValueError(f"mode {mode!r} needs motion-guidance adapters on the model (attach_adapters/load_adapters)")
    want = "training_free" if mode == "training_free" else "trained"
    if adapter.config.mode != want:
        raise ValueError(f"mode {mode!r} needs a {want} adapter, the model carries a {adapter.config.mode} one")
    lg = latent_guidance_of(guidance, strength=s, latent=mode in ("latent", "both"),
                            feature=mode in ("feature", "both", "training_free"))
    p = next(model.transformer.parameters())
    lg = lg.to(p.device, p.dtype)
    warp = warp.to(p.device, p.dtype)
    if latent_from_warp and mode in ("latent", "both"):
        lg = with_warp(lg, warp)
    callback = None
    ref = None
    out_scale = None
    init = None
    if mode == "training_free":
        # No trained parts: the sampler starts from the warp re-noised to the guided start (not from pure
        # noise), and after every step the latents are held to the re-noised warp where the confidence trusts
        # it (to the warp itself after the last), so the model works only where the flow fails.
        g = torch.Generator().manual_seed(int(seed) + 1)
        noise = torch.randn(lg.latents.shape, generator=g).to(p)
        target = (warp * 2 - 1).to(p)
        hold = confidence(guidance, agreement=False).to(p)
        init = target

        def callback(i, t_next, x):  # the plugin's LatentPull rule on this model's own Euler sampler
            if s == 0:
                return None
            renoised = (1 - t_next) * target + t_next * noise if t_next > 0 else target
            return x + s * hold * (renoised - x)
    elif mode in ("latent", "both"):
        kn = known.to(p.device)
        static = EmbeddedVideoModel.reference((kf.to(p) * 2 - 1) * kn[:, None, :, None, None], kn)  # as generate's
        ref, out_scale, _ = guided_reference_and_scale(model, guidance, lg, static, s, warp)
    t_start = 1.0 - s * (1.0 - float(start)) if mode in ("latent", "both", "training_free") else 1.0
    try:
        set_guidance(model.transformer, lg)
        return model.generate(kf, known, steps=steps, seed=seed, ref=ref, out_scale=out_scale, callback=callback,
                              progress=progress, t_start=t_start, init=init)
    finally:
        set_guidance(model.transformer, None)
