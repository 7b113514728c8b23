"""Latent-level guidance: the per-forward guidance at latent resolution, its injection, and re-noised pulls.

* :class:`LatentGuidance` is what the transformer hooks read on every forward (the contract of
  ``set_guidance``): warped source latents and a validity mask at latent resolution, plus the latent-resolution
  flows the feature hooks warp tokens with.
* :func:`latent_guidance` maps a pixel :class:`~motionguide.guidance.Guidance` (with its known frames
  encoded) onto a model's latent grid through a :class:`~motionguide.registry.VAECompression`.
* Trained mode (MoG): :class:`LatentAdapter` is the zero-initialised input-channel extension of the patch
  embedding. ``embed([x, g]) = embed_W(x) + embed_Wg(g)`` for a conv or linear patch embedding, so we add a
  zero-initialised projection of ``g = [warped latents, mask]`` to the embedding's output through a hook
  instead of replacing the pretrained module: an untrained adapter leaves the output exactly unchanged and
  removal is exact.
* Training-free mode: :class:`LatentPull` is a ``callback_on_step_end`` that pulls the target frames' latents
  toward the re-noised warped latents inside the mask, with ``strength`` and a schedule over steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from flow.checks import check_finite
from flow.warp import backward_warp, resize_flow

from .guidance import Guidance, check_strength
from .registry import VAECompression

__all__ = ["LatentGuidance", "latent_guidance", "LatentAdapter", "LatentPull", "pack_guidance_input",
           "GuidanceState", "repeat_batch"]


def _shape(t: Any) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ")" if isinstance(t, torch.Tensor) else type(t).__name__


@dataclass
class LatentGuidance:
    """Guidance on the latent grid of one model call (what :func:`motionguide.set_guidance` takes).

    Shapes (B = batch of the guidance; it may be 1 or divide the model's batch, e.g. CFG doubles it):

    * ``latents: (B, C, F, h, w)`` warped source latents (C = the VAE's latent channels); known frames hold
      their own latents; zeros where ``mask`` is 0.
    * ``mask: (B, 1, F, h, w)`` in [0, 1]: how much each latent cell is guided (0 = the model is free).
    * ``sources: (F, K)`` long or None: latent frame index *within the clip* of each target's source(s);
      -1 = none (or a source that is not a frame of the clip). Needed by the feature hooks only.
    * ``flows: (B, F, K, 2, h, w)`` or None: backward flows target -> source at latent resolution, latent
      cells (``flow.warp`` convention).
    * ``weights: (B, F, K, 1, h, w)`` or None: blend/validity weights of the sources (sum over K <= 1).
    * ``strength``: 0..1 scale of this call's guidance (None: the adapter config's default).

    Without ``sources/flows/weights`` only the latent level acts.
    """

    latents: torch.Tensor
    mask: torch.Tensor
    sources: torch.Tensor | None = None
    flows: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    strength: float | None = None

    def __post_init__(self) -> None:
        lt, m = self.latents, self.mask
        if not isinstance(lt, torch.Tensor) or lt.ndim != 5 or not lt.is_floating_point():
            raise ValueError(f"latents: expected a float tensor (B, C, F, h, w), got {_shape(lt)}")
        b, _, f, h, w = lt.shape
        if not isinstance(m, torch.Tensor) or tuple(m.shape) != (b, 1, f, h, w):
            raise ValueError(f"mask: expected (B, 1, F, h, w) = {(b, 1, f, h, w)} matching latents, got {_shape(m)}")
        check_finite(lt, "latents")
        check_finite(m, "mask")
        if m.numel() and (float(m.min()) < -1e-6 or float(m.max()) > 1 + 1e-6):
            raise ValueError(f"mask: expected values in [0, 1], got [{float(m.min()):.3g}, {float(m.max()):.3g}]")
        given = [x is not None for x in (self.sources, self.flows, self.weights)]
        if any(given) and not all(given):
            raise ValueError("sources, flows and weights go together: pass all three (feature level) or none")
        if all(given):
            s = self.sources
            if not isinstance(s, torch.Tensor) or s.dtype != torch.long or s.ndim != 2 or s.shape[0] != f:
                raise ValueError(f"sources: expected a long tensor (F={f}, K), got {_shape(s)}")
            k = s.shape[1]
            if bool(((s < -1) | (s >= f)).any()):
                raise ValueError(f"sources: expected -1 or a latent frame index in [0, {f - 1}]")
            if tuple(self.flows.shape) != (b, f, k, 2, h, w):
                raise ValueError(f"flows: expected (B, F, K, 2, h, w) = {(b, f, k, 2, h, w)}, got {_shape(self.flows)}")
            if tuple(self.weights.shape) != (b, f, k, 1, h, w):
                raise ValueError(f"weights: expected (B, F, K, 1, h, w) = {(b, f, k, 1, h, w)}, got {_shape(self.weights)}")
            check_finite(self.flows, "flows")
            check_finite(self.weights, "weights")
        if self.strength is not None:
            self.strength = check_strength(self.strength)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Latent ``(F, h, w)``."""
        return tuple(self.latents.shape[2:])

    @property
    def channels(self) -> int:
        return self.latents.shape[1]

    @property
    def has_flows(self) -> bool:
        return self.flows is not None

    def to(self, device=None, dtype=None) -> "LatentGuidance":
        """A copy on ``device`` / in ``dtype`` (floats only). Not validated again: this one was, and reading its
        values back to the host would synchronise with the device (or fail on ``meta``)."""
        mv = lambda t: None if t is None else t.to(device=device, dtype=dtype if t.is_floating_point() else None)  # noqa: E731
        out = object.__new__(LatentGuidance)
        out.__dict__.update(latents=mv(self.latents), mask=mv(self.mask), flows=mv(self.flows), weights=mv(self.weights),
                            sources=None if self.sources is None else self.sources.to(device), strength=self.strength)
        return out

    @classmethod
    def from_sources(
        cls,
        source_latents: torch.Tensor,
        sources: torch.Tensor,
        flows: torch.Tensor,
        weights: torch.Tensor,
        *,
        clip_index: torch.Tensor | list,
        strength: float | None = None,
    ) -> "LatentGuidance":
        """Warp source latents into a LatentGuidance.

        Args:
            source_latents: ``(B, C, N, h, w)`` latents of the N source frames.
            sources: ``(F, K)`` long: which source (0..N-1, -1 = none) guides each latent frame.
            flows: ``(B, F, K, 2, h, w)`` backward flows target -> source, latent cells.
            weights: ``(B, F, K, 1, h, w)`` blend/validity weights (sum over K <= 1).
            clip_index: ``(N,)``: the latent frame each source *is* in the clip, or -1 when it is not one.
        """
        if not isinstance(source_latents, torch.Tensor) or source_latents.ndim != 5:
            raise ValueError(f"source_latents: expected (B, C, N, h, w), got {_shape(source_latents)}")
        b, c, n, h, w = source_latents.shape
        f, k = sources.shape
        if tuple(flows.shape) != (flows.shape[0], f, k, 2, h, w) or flows.shape[0] not in (1, b):
            raise ValueError(f"flows: expected (B, F, K, 2, h, w) = {(b, f, k, 2, h, w)}, got {_shape(flows)}")
        if tuple(weights.shape) != (flows.shape[0], f, k, 1, h, w):
            raise ValueError(f"weights: expected (B, F, K, 1, h, w) = {(b, f, k, 1, h, w)}, got {_shape(weights)}")
        if bool(((sources < -1) | (sources >= n)).any()):
            raise ValueError(f"sources: expected -1 or a source index in [0, {n - 1}]")
        clip_index = torch.as_tensor(clip_index, dtype=torch.long).cpu()
        if clip_index.shape != (n,):
            raise ValueError(f"clip_index: expected one entry per source ({n}), got {tuple(clip_index.shape)}")
        flows = flows.expand(b, -1, -1, -1, -1, -1).to(source_latents.dtype)
        weights = weights.expand(b, -1, -1, -1, -1, -1).to(source_latents.dtype)
        warped = source_latents.new_zeros(b, c, f, h, w)
        mask = source_latents.new_zeros(b, 1, f, h, w)
        sources_cpu = sources.cpu()
        for t in range(f):
            for j in range(k):
                s = int(sources_cpu[t, j])
                if s < 0:
                    continue
                src, fl, wt = source_latents[:, :, s], flows[:, t, j], weights[:, t, j]
                # a zero flow is the identity: skip the resampling so known frames stay bit-exact
                val = src if not bool(fl.any()) else backward_warp(src, fl)
                warped[:, :, t] += wt * val
                mask[:, :, t] += wt
        mask = mask.clamp_(0, 1)
        clip_src = torch.where(sources_cpu >= 0, clip_index[sources_cpu.clamp(min=0)], torch.full_like(sources_cpu, -1))
        return cls(warped, mask, clip_src, flows, weights, strength)


def latent_guidance(
    guidance: Guidance,
    latents: torch.Tensor | None = None,
    *,
    vae: VAECompression,
    temporal: Literal["last", "mean"] = "last",
    strength: float | None = None,
) -> LatentGuidance:
    """Map a pixel :class:`Guidance` onto the latent grid of a VAE.

    Space: flows are resized to the latent size with magnitudes rescaled (:func:`flow.warp.resize_flow`),
    weights are area-averaged. Time: latent frame ``j`` covers the pixel frames ``vae.pixel_frames_of(j)``;
    ``last`` takes the guidance of the last of them (so known frames at ``temporal*k`` map exactly; with a
    first frame alone, pixel frame 0 is latent frame 0), ``mean`` averages flows and weights over the covered
    frames that share the last frame's sources.

    Args:
        guidance: pixel guidance; ``guidance.num_frames`` must suit the VAE (e.g. 4k+1).
        latents: ``(B, C, N, h, w)``, one latent frame per known frame (default ``guidance.latents``).
        vae: the compression (``registry.get_spec(model).vae``, ``registry.vae_from_pipeline(pipe)``, or
            ``VAECompression(1, 1, False)`` for a model working on pixels).

    Returns:
        A :class:`LatentGuidance` with ``F = vae.latent_frames(num_frames)`` frames.
    """
    if not isinstance(guidance, Guidance):
        raise TypeError(f"guidance: expected a motionguide.Guidance, got {type(guidance).__name__}")
    latents = guidance.latents if latents is None else latents
    if latents is None:
        raise ValueError(
            "latents: the known frames are not encoded; pass latents (B, C, N, h, w) or use "
            "motionguide.pipeline.encode_frames(pipe, guidance.frames)"
        )
    if temporal not in ("last", "mean"):
        raise ValueError(f"temporal: expected 'last' or 'mean', got {temporal!r}")
    b, _, n, hh, ww = guidance.frames.shape
    if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[0] != b or latents.shape[2] != n:
        raise ValueError(f"latents: expected (B={b}, C, N={n}, h, w), one latent frame per known frame, got {_shape(latents)}")
    h, w = vae.latent_size(hh, ww)
    if tuple(latents.shape[-2:]) != (h, w):
        raise ValueError(
            f"latents: spatial size {tuple(latents.shape[-2:])} does not match frames {hh}x{ww} / VAE {vae.spatial}x "
            f"= {(h, w)}; encode the guidance frames with the same VAE"
        )
    f = vae.latent_frames(guidance.num_frames)
    k = guidance.sources.shape[1]
    # the clip latent frame each known frame *is*: only when it is the representative (last) pixel frame
    clip_index = []
    for p in guidance.positions:
        j = -1 if p is None else vae.latent_index_of(p)
        clip_index.append(j if j >= 0 and min(vae.pixel_frames_of(j)[-1], guidance.num_frames - 1) == p else -1)
    sources = torch.full((f, k), -1, dtype=torch.long)
    flows = guidance.flows.new_zeros(b, f, k, 2, h, w)
    weights = guidance.flows.new_zeros(b, f, k, 1, h, w)
    for j in range(f):
        covered = [p for p in vae.pixel_frames_of(j) if p < guidance.num_frames]
        rep = covered[-1]
        group = [rep]
        if temporal == "mean":
            group = [p for p in covered if torch.equal(guidance.sources[p], guidance.sources[rep])]
        sources[j] = guidance.sources[rep]
        for kk in range(k):
            if int(sources[j, kk]) < 0:
                continue
            fl = torch.stack([guidance.flows[:, p, kk] for p in group]).mean(0)
            wt = torch.stack([guidance.weights[:, p, kk] for p in group]).mean(0)
            flows[:, j, kk] = resize_flow(fl, (h, w))
            weights[:, j, kk] = F.interpolate(wt, size=(h, w), mode="area") if (h, w) != (hh, ww) else wt
    strength = guidance.strength if strength is None else strength
    return LatentGuidance.from_sources(
        latents.to(flows.dtype), sources, flows, weights, clip_index=clip_index, strength=strength
    )


# ------------------------------------------------------------------------------------------------------
# trained mode: zero-initialised channel extension of the patch embedding
# ------------------------------------------------------------------------------------------------------
def pack_guidance_input(x: torch.Tensor, kind: str, patch: tuple[int, int, int]) -> torch.Tensor:
    """Lay ``x: (B, C', F, h, w)`` out the way the patch embedding ``kind`` sees its input.

    ``conv3d`` -> ``(B, C', F, h, w)``; ``conv2d_frames`` -> ``(B*F, C', h, w)``; ``linear_patches``
    (CogVideoX 1.5) and ``linear_tokens`` (LTX) -> ``(B, F/pt * h/p * w/p, C' * pt * p * p)``.
    """
    b, c, f, h, w = x.shape
    pt, ph, pw = patch
    if kind == "conv3d":
        return x
    if kind == "conv2d_frames":
        return x.transpose(1, 2).reshape(b * f, c, h, w)
    if f % pt or h % ph or w % pw:
        raise ValueError(f"guidance grid {(f, h, w)} does not divide into patches {patch}")
    if kind == "linear_patches":  # CogVideoXPatchEmbed order: (F/pt, h/p, w/p) tokens, (C, pt, p, p) features
        y = x.permute(0, 2, 3, 4, 1).reshape(b, f // pt, pt, h // ph, ph, w // pw, pw, c)
        return y.permute(0, 1, 3, 5, 7, 2, 4, 6).flatten(4, 7).flatten(1, 3)
    if kind == "linear_tokens":  # LTX pipelines' _pack_latents order
        y = x.reshape(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
        return y.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4, 7).flatten(1, 3)
    raise ValueError(f"unknown patch embedding kind {kind!r}")


class _Projection(torch.nn.Module):
    """The adapter's bias-free conv or linear projection, its weight used through ``torch.nn.functional``.

    Not a ``Conv3d``/``Conv2d``/``Linear``: diffusers' layerwise casting (``enable_layerwise_casting``) casts
    those to its float8 storage dtype, and the adapter's few weights stay in their compute dtype.
    """

    def __init__(self, op: str, weight: torch.Tensor, stride=None, padding=None) -> None:
        super().__init__()
        self.op, self.stride, self.padding = op, stride, padding
        self.weight = torch.nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the weight rests where the model rests (the CPU under sequential or group offload) and comes to the
        # activations' device for the call, as the offload hooks bring every other weight (a no-op when resident)
        w = self.weight.to(x.device)
        if self.op == "linear":
            return F.linear(x, w)
        conv = F.conv3d if self.op == "conv3d" else F.conv2d
        return conv(x, w, None, self.stride, self.padding)


class LatentAdapter(torch.nn.Module):
    """Zero-initialised projection of ``[warped latents, mask]`` (C + 1 channels) to the embedding width.

    Built to mirror the pretrained patch embedding (same kernel/stride for convs, same patch packing for
    linears) so that adding its output equals concatenating the guidance to the model input on channels.
    ``device``/``dtype``: where the weight rests and the dtype it computes in (default: the embedding's).
    """

    def __init__(self, embed: torch.nn.Module, kind: str, latent_channels: int, patch: tuple[int, int, int], *,
                 device=None, dtype=None):
        super().__init__()
        self.kind, self.patch, self.in_channels = kind, tuple(patch), latent_channels + 1
        w = embed.weight
        device, dtype = device or w.device, dtype or w.dtype
        if kind in ("conv3d", "conv2d_frames"):
            shape = (embed.out_channels, self.in_channels, *embed.kernel_size)
            weight = torch.zeros(shape, device=device, dtype=dtype)
            self.proj = _Projection("conv3d" if kind == "conv3d" else "conv2d", weight, embed.stride, embed.padding)
        else:
            pt, ph, pw = patch
            weight = torch.zeros(embed.out_features, self.in_channels * pt * ph * pw, device=device, dtype=dtype)
            self.proj = _Projection("linear", weight)

    def forward(self, guidance_input: torch.Tensor) -> torch.Tensor:
        """``guidance_input: (B, C+1, F, h, w)`` -> the embedding-shaped contribution."""
        x = pack_guidance_input(guidance_input.to(self.proj.weight.dtype), self.kind, self.patch)
        return self.proj(x)


# ------------------------------------------------------------------------------------------------------
# training-free mode: pull the sampler's latents toward the re-noised warped latents
# ------------------------------------------------------------------------------------------------------
@dataclass
class LatentPull:
    """A ``callback_on_step_end`` that pulls target-frame latents toward the re-noised guidance.

    After denoising step ``i`` the pipeline's latents ``x`` sit at the next noise level; inside the mask
    they become ``x + strength * mask * (renoise(warped, next level) - x)`` while ``step_index`` is in
    ``steps`` (fractions of the run; early steps only by default, so late steps refine details freely).
    Re-noising uses the scheduler: flow matching (``sigmas``): ``(1 - s) x0 + s n``; DDPM-family
    (``alphas_cumprod``): ``scheduler.add_noise``. The noise is drawn once so every step pulls toward the
    same trajectory.

    Args:
        guidance: the :class:`LatentGuidance` of the call (batch 1 or the pipeline's batch).
        layout: the pipeline's latent layout (``ArchSpec.pipeline_latents``).
        patch: token patch of the transformer (only for ``tokens`` layout).
        strength: 0..1 (None: ``guidance.strength`` or 1).
        steps: ``(start, end)`` fractions of the steps where the pull acts.
    """

    guidance: LatentGuidance
    layout: str = "bcfhw"
    patch: tuple[int, int, int] = (1, 1, 1)
    strength: float | None = None
    steps: tuple[float, float] = (0.0, 0.4)
    generator: torch.Generator | None = None
    _noise: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        s = self.strength if self.strength is not None else (self.guidance.strength if self.guidance.strength is not None else 1.0)
        self.strength = check_strength(s)
        lo, hi = self.steps
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"steps: expected fractions 0 <= start <= end <= 1, got {self.steps}")

    def _to_layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "bcfhw":
            return x
        if self.layout == "bfchw":
            return x.transpose(1, 2)
        return pack_guidance_input(x, "linear_tokens", self.patch)

    def _next_level(self, scheduler: Any, step_index: int, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        sig = getattr(scheduler, "sigmas", None)
        if sig is not None and "FlowMatch" in type(scheduler).__name__:
            s = float(sig[min(step_index + 1, len(sig) - 1)])
            return (1 - s) * x0 + s * noise
        if hasattr(scheduler, "alphas_cumprod") and hasattr(scheduler, "add_noise"):
            ts = scheduler.timesteps
            if step_index + 1 >= len(ts):
                return x0
            t = ts[step_index + 1].reshape(1).to(x0.device)
            return scheduler.add_noise(x0, noise, t)
        raise ValueError(
            f"LatentPull: cannot re-noise with scheduler {type(scheduler).__name__}; supported: flow matching "
            "schedulers (FlowMatch*, with sigmas) and DDPM-family schedulers (alphas_cumprod + add_noise)"
        )

    def __call__(self, pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict) -> dict:
        latents = callback_kwargs.get("latents")
        if latents is None:
            raise ValueError("LatentPull needs 'latents' in callback_on_step_end_tensor_inputs")
        n = int(getattr(pipe, "num_timesteps", 0) or getattr(pipe, "_num_timesteps", 0) or len(pipe.scheduler.timesteps))
        frac = step_index / max(n, 1)
        if self.strength == 0 or not (self.steps[0] <= frac < self.steps[1] or (self.steps[1] >= 1.0 and frac >= self.steps[0])):
            return callback_kwargs
        g = self.guidance
        target = self._to_layout(g.latents.to(latents.device, latents.dtype))
        # the mask goes through the same layout as the latents (expanded to C channels so packed tokens match)
        mask = self._to_layout(g.mask.to(latents.device, latents.dtype).expand_as(g.latents))
        if self._noise is None:
            # drawn in the canonical (B, C, F, h, w) layout so the pull does not depend on the pipeline's layout
            self._noise = torch.randn(g.latents.shape, generator=self.generator, dtype=torch.float32)
        noise = self._to_layout(self._noise.to(latents.device, latents.dtype))
        renoised = self._next_level(pipe.scheduler, step_index, target, noise)
        if latents.shape[0] != renoised.shape[0]:
            if latents.shape[0] % renoised.shape[0]:
                raise ValueError(f"LatentPull: pipeline batch {latents.shape[0]} is not a multiple of the guidance batch {renoised.shape[0]}")
            reps = latents.shape[0] // renoised.shape[0]
            renoised = renoised.repeat(reps, *[1] * (renoised.ndim - 1))
            mask = mask.repeat(reps, *[1] * (mask.ndim - 1))
        # packed tokens may carry condition tokens before the video's (LTXConditionPipeline): pull the video's
        prefix = latents.shape[1] - renoised.shape[1] if self.layout == "tokens" and latents.ndim == 3 else 0
        video = latents[:, prefix:] if prefix > 0 else latents
        if renoised.shape != video.shape:
            raise ValueError(
                f"LatentPull: guidance latents {tuple(renoised.shape)} do not match the pipeline latents "
                f"{tuple(latents.shape)}; build the guidance for the same num_frames/height/width as the call"
            )
        pulled = video + self.strength * mask * (renoised - video)
        callback_kwargs["latents"] = torch.cat([latents[:, :prefix], pulled], 1) if prefix > 0 else pulled
        return callback_kwargs


# ------------------------------------------------------------------------------------------------------
# per-forward state shared by the hooks of one transformer
# ------------------------------------------------------------------------------------------------------
class GuidanceState:
    """What every motionguide hook of one transformer reads (one instance per applied transformer).

    ``set_guidance`` fills ``guidance`` and everything derived from it that the hooks need (the latent adapter's
    input, the feature hooks' token pairs), on the execution device, so that a forward does no host
    synchronisation and no Python work that depends on tensor values (``torch.compile(fullgraph=True)``
    traces it). The root hook records, for each forward, the model batch, latent grid and timestep, and
    ``active``: True, or a 0-d bool tensor when the config's timestep range gates the guidance (applied by
    multiplication, :meth:`scale`, never by a Python branch on a tensor).
    """

    def __init__(self, default_strength: float = 1.0) -> None:
        self.default_strength = default_strength
        self.guidance: LatentGuidance | None = None
        self.latent_input: torch.Tensor | None = None  # (B_g, C+1, F, h, w): [warped latents, mask]
        self.pairs: Any = None  # feature.TokenPairs of the guidance on the model's token grid, or None
        self.batch: int | None = None
        self.grid: tuple[int, int, int] | None = None
        self.token_grid: tuple[int, int, int] | None = None
        # packed-token models (LTX): tokens before the video's, e.g. LTXConditionPipeline's condition frames
        # past frame 0, which it prepends to the sequence; the hooks act on the trailing video tokens only
        self.prefix: int = 0
        self.timestep: torch.Tensor | float | None = None
        self.active: bool | torch.Tensor = True

    @property
    def strength(self) -> float:
        g = self.guidance
        return self.default_strength if g is None or g.strength is None else g.strength

    def scale(self, like: torch.Tensor | None = None) -> float | torch.Tensor:
        """``strength``, times 0 or 1 from the timestep gate when one is active (a tensor on ``like``'s device)."""
        if self.active is True:
            return self.strength
        gate = self.active.to(like.device if like is not None else self.active.device, torch.float32)
        return self.strength * gate

    def set(self, guidance: LatentGuidance | None, *, latent_input: torch.Tensor | None = None, pairs: Any = None) -> None:
        self.guidance, self.latent_input, self.pairs = guidance, latent_input, pairs

    def reset(self) -> None:
        """Forget the guidance and the per-forward record (the model then runs as the base model)."""
        self.set(None)
        self.batch = self.grid = self.token_grid = self.timestep = None
        self.prefix = 0
        self.active = True


def repeat_batch(t: torch.Tensor, batch: int, dim: int = 0) -> torch.Tensor:
    """``t`` repeated along ``dim`` to the model batch (guidance batch 1 or a divisor, e.g. CFG x2)."""
    gb = t.shape[dim]
    if batch == gb:
        return t
    if batch % gb:
        raise ValueError(
            f"guidance batch {gb} does not divide the model batch {batch}; pass guidance with batch 1, "
            f"{batch}, or a divisor of it (classifier-free guidance doubles the batch)"
        )
    reps = [1] * t.ndim
    reps[dim] = batch // gb
    return t.repeat(*reps)
