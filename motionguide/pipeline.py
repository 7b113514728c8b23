"""One call that runs a diffusers video pipeline under motion guidance.

``generate_with_guidance(pipe, guidance, **call_kwargs)``:

1. checks the guidance against the call (frame size = output size, a frame count the model can take);
2. encodes the known frames with the pipeline's own VAE (:func:`encode_frames`), maps the guidance onto the
   latent grid with the pipeline's real compression factors;
3. applies motion guidance to ``pipe.transformer`` for the duration of the call (training-free by default,
   or a saved trained adapter), adds the training-free latent pull to ``callback_on_step_end``;
4. runs the pipeline and removes everything it added afterwards, also when the call fails.

A transformer that already carries motion guidance (e.g. a trained adapter the user loaded) is used as is
and left applied; only the call's guidance is cleared afterwards.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import torch

from .adapter import (
    MotionGuidanceConfig,
    apply_motion_guidance,
    get_motion_guidance,
    has_motion_guidance,
    remove_motion_guidance,
    set_guidance,
)
from .adapter_weights import load_motion_guidance
from .devices import execution_device
from .guidance import Guidance, check_strength
from .latent import LatentPull, latent_guidance
from .families import get_family, to_pil
from .registry import get_spec, vae_from_pipeline

__all__ = ["encode_frames", "conditioning_kwargs", "generate_with_guidance"]


def _latent_dist_mode(enc: Any) -> torch.Tensor:
    dist = getattr(enc, "latent_dist", None)
    if dist is not None:
        return dist.mode()  # deterministic (the mean), as Wan's pipelines do with sample_mode="argmax"
    if hasattr(enc, "latents"):
        return enc.latents
    raise ValueError(f"cannot read latents from the VAE output {type(enc).__name__}")


@torch.no_grad()
def encode_frames(pipe: Any, frames: torch.Tensor, *, chunk: int = 8, as_clip: bool = False, normalize: bool = True,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Encode frames with ``pipe.vae``, normalised as the pipeline normalises its latents
    (:meth:`motionguide.families.ModelFamily.normalize`): the one encoder of the plugin, the jobs and the trainer.

    By default each frame is encoded as a one-frame clip (video VAEs) or an image (Latte's image VAE): for the
    causal video VAEs of Wan, CogVideoX, LTX and HunyuanVideo that is exactly how a clip's first frame is
    encoded, and it gives one latent frame per known frame. ``as_clip``: the frames are one clip, encoded
    together (the trainer's targets), ``N`` pixel frames giving the VAE's latent frame count. ``normalize``:
    False gives the VAE's raw latents (CogVideoX scales its image latents by a factor of their own).

    Args:
        frames: ``(B, 3, N, H, W)`` float in [0, 1].
        device: where to encode (default the pipeline's execution device).

    Returns:
        ``(B, C, N, h, w)`` latents (``as_clip``: ``(B, C, F, h, w)``) on the pipeline's execution device
        (``pipe._execution_device``: under model or sequential offload the VAE's weights rest elsewhere and its
        hooks bring them there), float32.
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[1] != 3:
        raise ValueError(f"frames: expected (B, 3, N, H, W) float in [0, 1], got {getattr(frames, 'shape', type(frames))}")
    vae = getattr(pipe, "vae", None)
    if vae is None:
        raise ValueError("the pipeline has no vae; pass the known frames' latents in Guidance.latents instead")
    family = get_family(pipe.transformer)
    b, _, n, h, w = frames.shape
    device, dtype = execution_device(pipe) if device is None else device, next(vae.parameters()).dtype
    norm = (lambda z: family.normalize(vae, z)) if normalize else (lambda z: z.float())  # noqa: E731
    # pipelines feed [-1, 1], mapped in float32 before the cast to the VAE's dtype, as their processors do
    x = (frames.float() * 2 - 1).to(device, dtype)
    if as_clip:
        return norm(_latent_dist_mode(vae.encode(x)))
    x = x.transpose(1, 2).reshape(b * n, 3, h, w)
    outs = []
    for i in range(0, b * n, chunk):
        xi = x[i:i + chunk]
        if family.arch.vae.temporal > 1:
            xi = xi[:, :, None]  # (b, 3, 1, H, W): a one-frame clip
        z = _latent_dist_mode(vae.encode(xi))
        if z.ndim == 5:
            z = z[:, :, 0]
        outs.append(z.float())
    z = norm(torch.cat(outs))  # (B*N, C, h, w)
    c, hh, ww = z.shape[1:]
    return z.view(b, n, c, hh, ww).transpose(1, 2).contiguous()


def conditioning_kwargs(pipe: Any, guidance: Guidance, params: set[str] | None = None) -> dict[str, Any]:
    """The call arguments through which ``pipe`` itself receives the guidance's known frames, as its family
    takes them (:class:`motionguide.families.PipelineEntry`), each as the PIL image the pipeline documents:

    * ``image``: the known frame at position 0 (image-to-video pipelines; required there);
    * ``last_image``: the known frame at the last position, for Wan I2V/FLF2V when the guidance has one
      (an FLF2V transformer requires it: a guidance without a known last frame is refused);
    * ``conditions``: every known frame at its frame index (``LTXConditionPipeline``);
    * nothing for text-to-video pipelines (the guidance alone carries the known frames).
    """
    params = _call_params(pipe) if params is None else params
    family, name = get_family(pipe.transformer), type(pipe).__name__
    try:
        entry = family.entry(name)
    except ValueError:
        entry = None  # a pipeline class outside the table: the image argument as its signature names it
    known = {p: i for i, p in enumerate(guidance.positions) if p is not None}
    frame = lambda p: to_pil(guidance.frames[0, :, known[p]])  # noqa: E731 (batch 1: one call's images)
    out: dict[str, Any] = {}
    kind = entry.image if entry is not None else ("image" if "image" in params else "none")
    if kind == "none":
        return out
    if 0 not in known:
        raise ValueError(f"{name} is an image-to-video pipeline: the guidance's first frame must be known (an input "
                         f"frame at position 0), got known positions {sorted(known)}")
    last = guidance.num_frames - 1
    if kind == "conditions":
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        # frame 0 replaces the first latent frame in place; a condition at a later index adds a latent frame of
        # tokens before the video's, which the hooks leave alone (GuidanceState.prefix)
        out["conditions"] = [LTXVideoCondition(image=frame(p), frame_index=p) for p in sorted(known)]
        return out
    out["image"] = frame(0)
    # Wan 2.1 I2V's CLIP branch takes one image unless the transformer is FLF2V (two images' positions); without
    # CLIP (Wan 2.2) the last image enters through the VAE condition alone
    two = family.needs_last_image(pipe.transformer) or getattr(pipe, "image_encoder", None) is None
    if entry is not None and entry.last_image and two and last in known and last != 0 and "last_image" in params:
        out["last_image"] = frame(last)
    elif family.needs_last_image(pipe.transformer):
        raise ValueError(f"this {name} has a Wan FLF2V transformer, which is conditioned on a first and a last frame; "
                         f"the guidance's last frame (position {last}) is not known (a speed change knows it; use an "
                         f"I2V checkpoint for transfer and extend)")
    return out


def _call_params(pipe: Any) -> set[str]:
    try:
        return set(inspect.signature(pipe.__call__).parameters)
    except (TypeError, ValueError):
        return set()


def generate_with_guidance(
    pipe: Any,
    guidance: Guidance,
    *,
    config: MotionGuidanceConfig | None = None,
    adapter: str | Path | None = None,
    strength: float | None = None,
    **call_kwargs: Any,
) -> Any:
    """Run ``pipe(**call_kwargs)`` with motion guidance; returns what the pipeline returns.

    Args:
        pipe: a diffusers pipeline whose ``transformer`` is a supported class (e.g. ``WanImageToVideoPipeline``,
            ``CogVideoXImageToVideoPipeline``, ``LTXConditionPipeline``, ``HunyuanVideoPipeline``, ``LattePipeline``).
        guidance: a :class:`~motionguide.guidance.Guidance` at the output size; ``guidance.latents`` is filled
            with :func:`encode_frames` when missing.
        config: how to inject when the transformer carries no guidance yet; default training-free
            (``MotionGuidanceConfig(mode="training_free")``).
        adapter: folder of a trained adapter (:func:`~motionguide.save_motion_guidance`) to load instead.
        strength: overrides ``guidance.strength`` (0..1).
        call_kwargs: passed to the pipeline. ``height``, ``width``, ``num_frames`` default to the guidance's;
            the known frames enter through the pipeline's own conditioning arguments
            (:func:`conditioning_kwargs`) unless the call gives ``image``/``last_image``/``conditions`` itself.
    """
    if not isinstance(guidance, Guidance):
        raise TypeError(f"guidance: expected a motionguide.Guidance, got {type(guidance).__name__}")
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        raise ValueError(f"{type(pipe).__name__} has no transformer; motion guidance targets diffusers video transformers")
    spec = get_spec(transformer)
    if strength is not None:
        guidance = guidance.with_strength(check_strength(strength))
    if config is not None and adapter is not None:
        raise ValueError("pass either config (fresh injection) or adapter (a saved trained adapter), not both")
    params = _call_params(pipe)
    # ---- 1. the call and the guidance must describe the same clip ----
    gh, gw = guidance.size
    height, width = call_kwargs.setdefault("height", gh), call_kwargs.setdefault("width", gw)
    if (height, width) != (gh, gw):
        raise ValueError(
            f"guidance frames are {gh}x{gw} but the pipeline is asked for {height}x{width}; build the guidance at the "
            "output size (resize the input frames) or drop height/width from the call"
        )
    if "num_frames" in params or "num_frames" in call_kwargs:
        nf = call_kwargs.setdefault("num_frames", guidance.num_frames)
        if nf != guidance.num_frames:
            raise ValueError(
                f"guidance has {guidance.num_frames} frames but the pipeline is asked for {nf}; they must be equal"
            )
    elif "video_length" in params:  # Latte
        nf = call_kwargs.setdefault("video_length", guidance.num_frames)
        if nf != guidance.num_frames:
            raise ValueError(f"guidance has {guidance.num_frames} frames but video_length is {nf}")
    vae_c = vae_from_pipeline(pipe, spec)
    vae_c.check_num_frames(guidance.num_frames)
    vae_c.latent_size(gh, gw, multiple=spec.patch_size(transformer)[1])
    native = _native(pipe)
    if native is not None and native.fixed and ((gh, gw) != (native.height, native.width)
                                                 or guidance.num_frames != native.frames):
        raise ValueError(
            f"{type(pipe).__name__}'s transformer has learned positional embeddings: it makes only "
            f"{native.width}x{native.height} (WxH) and {native.frames} frames, got {gw}x{gh} and {guidance.num_frames}; "
            "fit the guidance to that size and frame count (the jobs do)")
    given = {k for k in ("image", "last_image", "conditions", "video") if call_kwargs.get(k) is not None}
    if not given:  # the pipeline's own conditioning path receives the known frames
        call_kwargs.update(conditioning_kwargs(pipe, guidance, params))
    # ---- 2. encode the known frames and map onto the latent grid ----
    latents = guidance.latents if guidance.latents is not None else encode_frames(pipe, guidance.frames)
    lg = latent_guidance(guidance, latents, vae=vae_c)
    # ---- 3. apply for the call ----
    owned = not has_motion_guidance(transformer)
    if owned:
        if adapter is not None:
            load_motion_guidance(transformer, adapter)
        else:
            apply_motion_guidance(transformer, config or MotionGuidanceConfig(mode="training_free"))
    elif config is not None or adapter is not None:
        raise ValueError("the transformer already carries motion guidance; remove it or drop config/adapter")
    try:
        ad = get_motion_guidance(transformer)
        set_guidance(transformer, lg, device=execution_device(pipe))
        if ad.config.mode == "training_free" and ad.config.latent:
            if "callback_on_step_end" not in params:
                raise ValueError(f"{type(pipe).__name__} has no callback_on_step_end; use mode='trained' or latent=False")
            pull = LatentPull(lg, layout=spec.pipeline_latents, patch=ad.patch, steps=ad.config.pull_steps,
                              generator=_generator(call_kwargs.get("generator")))
            user_cb: Callable | None = call_kwargs.get("callback_on_step_end")

            def callback(p, i, t, kw):
                kw = pull(p, i, t, kw)
                return user_cb(p, i, t, kw) if user_cb is not None else kw

            call_kwargs["callback_on_step_end"] = callback
            inputs = list(call_kwargs.get("callback_on_step_end_tensor_inputs") or ["latents"])
            if "latents" not in inputs:
                inputs.append("latents")
            call_kwargs["callback_on_step_end_tensor_inputs"] = inputs
        return pipe(**call_kwargs)
    finally:
        if owned:
            remove_motion_guidance(transformer)
        else:
            set_guidance(transformer, None)


def _native(pipe: Any):
    try:
        return get_family(pipe.transformer).native(pipe)
    except ValueError:
        return None


def _generator(gen: Any) -> torch.Generator | None:
    """A CPU generator derived from the call's generator so the pull's noise is reproducible too."""
    if isinstance(gen, list):
        gen = gen[0] if gen else None
    if isinstance(gen, torch.Generator):
        return torch.Generator().manual_seed(int(gen.initial_seed()) + 1)
    return None
