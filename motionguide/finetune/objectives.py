"""Each supported pipeline's own conditioning and training objective, read from its ``prepare_latents`` and
``__call__`` (diffusers 0.42) and from its scheduler.

An :class:`Objective` does two things:

* **encode, once** (the pipeline's VAE and text encoder; the results are cached): ``encode_text`` gives the
  prompt embeddings, ``encode_clip`` a clip's latents ``x0`` and, per conditioning (``first``, or ``ends``
  for Wan FLF2V), exactly the condition tensors the pipeline's ``prepare_latents`` builds;
* **one training loss**, from cached tensors only (:meth:`Objective.loss`):

  - Wan I2V/FLF2V (flow matching): ``x_t = (1 - s) x0 + s n`` at ``timestep = 1000 s``, the model's input is
    ``[x_t, mask (4 ch), condition latents]`` on channels; target ``n - x0`` on every latent frame;
  - CogVideoX I2V (DDPM, ``prediction_type`` of its scheduler, v-prediction for CogVideoX-5B-I2V):
    ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) n`` on ``alphas_cumprod``; the input ``[x_t, image latents]`` on
    channels (B, F, C, h, w); target ``v = sqrt(a_t) n - sqrt(1 - a_t) x0``;
  - LTX (flow matching on packed tokens): the first latent frame's tokens carry the clean condition latents
    at timestep 0 (``LTXConditionPipeline``: plus its ``image_cond_noise_scale`` noise times ``s^2``), the
    others ``x_t`` at ``1000 s``; target ``n - x0`` on the free tokens only.

  The flow-matching ``s`` is drawn uniformly and shifted as the scheduler shifts its sigmas (``shift`` or
  ``flow_shift``; dynamic shifting from the token count).

Shapes: clips ``(1, 3, N, H, W)`` float in [0, 1]; cached tensors carry a batch dimension of 1 and are
stacked to the step's batch by the recipe. Randomness comes from one generator per sample (``generators``),
so a sample's noise does not depend on the batch it is in: ``k`` micro-batches of ``B`` samples draw exactly
what one batch of ``k * B`` draws (gradient accumulation equals the larger batch).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..families import to_pil
from ..pipeline import encode_frames
from ..registry import vae_from_pipeline
from .folder import call_default

__all__ = ["Objective", "make_objective", "flow_sigmas"]


def _encode(pipe: Any, clip: torch.Tensor, device: Any, *, normalize: bool = True) -> torch.Tensor:
    """Latents of ``clip: (B, 3, N, H, W)`` in [0, 1] encoded as clips (the posterior's mode), normalised as
    the family's pipelines normalise them, through the plugin's one encoder
    (:func:`motionguide.pipeline.encode_frames`); float32 on the CPU (the cache keeps them there)."""
    return encode_frames(pipe, clip, as_clip=True, normalize=normalize, device=device).float().cpu()


def flow_sigmas(config: Any, u: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Flow-matching noise levels ``s`` in (0, 1) from uniform ``u``, shifted as the scheduler shifts its
    sigmas: static ``shift * u / (1 + (shift - 1) u)``, or dynamic (``mu`` from the token count)."""
    u = u.clamp(1e-3, 1 - 1e-3)
    if config.get("use_dynamic_shifting"):
        b0, b1 = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
        s0, s1 = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
        mu = s0 + (s1 - s0) * (seq_len - b0) / (b1 - b0)
        if config.get("time_shift_type", "exponential") == "linear":
            return mu / (mu + (1 / u - 1))
        return math.exp(mu) / (math.exp(mu) + (1 / u - 1))
    shift = float(config.get("shift", None) or config.get("flow_shift", None) or 1.0)
    return shift * u / (1 + (shift - 1) * u)


def _randn(shape: tuple, generators: list[torch.Generator]) -> torch.Tensor:
    """``(B, ...)`` standard normal noise, sample ``i`` drawn from ``generators[i]``."""
    return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generators])


def _rand(generators: list[torch.Generator]) -> torch.Tensor:
    return torch.cat([torch.rand(1, generator=g) for g in generators])


def _is_flow_matching(scheduler: Any) -> bool:
    cfg = scheduler.config
    return "FlowMatch" in type(scheduler).__name__ or cfg.get("prediction_type") == "flow_prediction" \
        or bool(cfg.get("use_flow_sigmas"))


class Objective:
    """The conditioning and loss of one pipeline (see the module docstring); built on the loaded pipeline."""

    family = ""

    def __init__(self, pipe: Any, *, height: int, width: int, num_frames: int):
        self.pipe, self.height, self.width, self.num_frames = pipe, height, width, num_frames
        self.vae_c = vae_from_pipeline(pipe)
        self.latent_frames = self.vae_c.latent_frames(num_frames)
        self.latent_hw = (height // self.vae_c.spatial, width // self.vae_c.spatial)
        self.scheduler_config = dict(pipe.scheduler.config)
        self.max_sequence_length = call_default(type(pipe).__name__, "max_sequence_length")
        self.static: dict[str, Any] = {}

    # -- once, with the pipeline's own encoders ----------------------------------------------------------
    def encode_text(self, prompt: str, device: torch.device) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode_clip(self, clip: torch.Tensor, variants: set[str], device: torch.device) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def setup(self, device: torch.device) -> None:
        """Tensors every step shares that depend on the transformer only (rotary embeddings, coordinates)."""

    def check_conditioning(self, layouts: tuple[str, ...], last_frame: bool) -> None:
        """Raise when the pipeline cannot be conditioned as the layouts ask (``--last-frame``: also on the last)."""
        if last_frame:
            raise UserError(f"--last-frame conditions Wan FLF2V on the last frame; {type(self.pipe).__name__} is "
                            f"conditioned on the first frame only")

    # -- every step ------------------------------------------------------------------------------------
    def loss(self, model: Any, batch: dict[str, torch.Tensor], text: dict[str, torch.Tensor],
             generators: list[torch.Generator]) -> torch.Tensor:
        """The batch's mean loss; ``generators``: one per sample (its noise and noise level)."""
        raise NotImplementedError

    def call_kwargs(self, text: dict[str, torch.Tensor], negative: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """What a validation call of the pipeline takes instead of its freed encoders: the prompt's embeddings
        and, for the pipeline's own classifier-free guidance (its default ``guidance_scale``), the negative
        prompt's; without ``negative``, no CFG."""
        if negative is None:
            return {"prompt_embeds": text["prompt_embeds"], "guidance_scale": 1.0}
        return {"prompt_embeds": text["prompt_embeds"], "negative_prompt_embeds": negative["prompt_embeds"]}

    def describe(self) -> dict:
        return {"family": self.family, "scheduler": type(self.pipe.scheduler).__name__}

    def _tokens(self) -> int:
        pt, ph, pw = _patch(self.pipe.transformer)
        return math.ceil(self.latent_frames / pt) * (self.latent_hw[0] // ph) * (self.latent_hw[1] // pw)

    def _flow_noise(self, x0: torch.Tensor, generators: list[torch.Generator]):
        noise = _randn(tuple(x0.shape), generators).to(x0)
        s = flow_sigmas(self.scheduler_config, _rand(generators), self._tokens()).to(x0)
        return noise, s


def _patch(transformer: Any) -> tuple[int, int, int]:
    p = transformer.config.patch_size
    if isinstance(p, (list, tuple)):
        return tuple(int(x) for x in p) if len(p) == 3 else (1, int(p[0]), int(p[1]))
    return int(transformer.config.get("patch_size_t", None) or 1), int(p), int(p)


def _view(s: torch.Tensor, ndim: int) -> torch.Tensor:
    return s.view(-1, *([1] * (ndim - 1)))


class WanObjective(Objective):
    """``WanImageToVideoPipeline``: condition channels (mask + latents of the first, or first and last, frame).
    ``WanPipeline`` (text-to-video): no condition; the model's input is ``x_t`` alone, and the known frames reach
    it through the motion guidance only."""

    family = "wan"

    def __init__(self, pipe, **kw):
        super().__init__(pipe, **kw)
        if not _is_flow_matching(pipe.scheduler):
            raise UserError(f"{type(pipe).__name__} has a {type(pipe.scheduler).__name__} scheduler, not a flow-matching "
                            f"one; the trainer trains Wan with its flow-matching objective")
        self.image_dim = pipe.transformer.config.get("image_dim", None)
        self.t2v = type(pipe).__name__ == "WanPipeline"

    def check_conditioning(self, layouts, last_frame):
        """With CLIP features the transformer fixes how many images condition it: one (I2V) or, with
        ``pos_embed_seq_len``, the first and the last (FLF2V), as its pipeline's call requires."""
        if self.t2v and last_frame:
            raise UserError("--last-frame conditions Wan FLF2V on the last frame; a WanPipeline (text-to-video) takes "
                            "no image: drop --last-frame (the guidance still brings the known frames)")
        if self.image_dim is None:
            return
        flf2v = bool(self.pipe.transformer.config.get("pos_embed_seq_len", None))
        if last_frame and not flf2v:
            raise UserError("--last-frame: this Wan transformer embeds one image's CLIP features (an I2V model, no "
                            "pos_embed_seq_len); conditioning on the first and last frames needs a Wan FLF2V model")
        if flf2v and (not last_frame or tuple(layouts) != ("between",)):
            raise UserError("this Wan transformer is an FLF2V model (CLIP features of a first and a last frame): "
                            "train it with --last-frame --layouts between")

    def encode_text(self, prompt, device):
        pe, _ = self.pipe.encode_prompt(prompt=prompt, do_classifier_free_guidance=False,
                                        max_sequence_length=self.max_sequence_length, device=device)
        return {"prompt_embeds": pe.float().cpu()}

    def _mask(self, ends: bool) -> torch.Tensor:
        n, r = self.num_frames, self.vae_c.temporal
        h, w = self.latent_hw
        m = torch.ones(1, 1, n, h, w)
        m[:, :, 1:n - 1 if ends else n] = 0
        m = torch.cat([m[:, :, :1].repeat_interleave(r, dim=2), m[:, :, 1:]], dim=2)  # as prepare_latents
        return m.view(1, -1, r, h, w).transpose(1, 2)

    def encode_clip(self, clip, variants, device):
        """The clip and its condition clips (the first frame, or the first and last, the rest zeros, as
        ``prepare_latents`` builds them) go through the VAE as one batch: one call, and CPU convolutions take
        their faster path for batches of several clips."""
        n = clip.shape[2]
        names = sorted(variants) if not self.t2v else []
        conds = []
        for v in names:  # mid-grey is the zero of the pipeline's [-1, 1]
            ends = v == "ends"
            parts = [clip[:, :, :1], clip.new_full((1, 3, n - (2 if ends else 1), *clip.shape[-2:]), 0.5)]
            conds.append(torch.cat(parts + ([clip[:, :, -1:]] if ends else []), dim=2))
        lat = _encode(self.pipe, torch.cat([clip, *conds]), device)
        out = {"x0": lat[:1]}
        for j, v in enumerate(names):
            out[f"cond.{v}"] = torch.cat([self._mask(v == "ends"), lat[j + 1:j + 2]], dim=1)
            if self.image_dim is not None:  # Wan 2.1 I2V: CLIP features of the frame(s), given as the PIL images
                # the pipeline's call takes (its CLIP processor rescales by 1/255)
                img = [to_pil(clip[0, :, 0])] + ([to_pil(clip[0, :, -1])] if v == "ends" else [])
                out[f"image.{v}"] = self.pipe.encode_image(img if v == "ends" else img[0], device).float().cpu()
        return out

    def loss(self, model, batch, text, generators):
        x0 = batch["x0"]
        noise, s = self._flow_noise(x0, generators)
        xt = (1 - _view(s, 5)) * x0 + _view(s, 5) * noise
        kw = dict(hidden_states=torch.cat([xt, batch["cond"]], dim=1) if "cond" in batch else xt, timestep=s * self.scheduler_config["num_train_timesteps"],
                  encoder_hidden_states=text["prompt_embeds"].expand(x0.shape[0], -1, -1), return_dict=False)
        if "image" in batch:
            kw["encoder_hidden_states_image"] = batch["image"]
        pred = model(**kw)[0]
        return F.mse_loss(pred.float(), (noise - x0).float())


class CogVideoXObjective(Objective):
    """``CogVideoXImageToVideoPipeline``: the first frame's latents, zero-padded in time, on channels."""

    family = "cogvideox"

    def __init__(self, pipe, **kw):
        super().__init__(pipe, **kw)
        sched = pipe.scheduler
        self.prediction = self.scheduler_config.get("prediction_type", "epsilon")
        if getattr(sched, "alphas_cumprod", None) is None or self.prediction not in ("v_prediction", "epsilon", "sample"):
            raise UserError(f"{type(pipe).__name__}'s {type(sched).__name__} has no DDPM alphas_cumprod or predicts "
                            f"{self.prediction!r}; the trainer trains CogVideoX with its DDPM objective")
        self.alphas = sched.alphas_cumprod.float().cpu()
        pt = pipe.transformer.config.get("patch_size_t", None)
        if pt and self.latent_frames % pt:
            raise UserError(f"this CogVideoX takes latent frames in groups of {pt}; {self.num_frames} frames make "
                            f"{self.latent_frames}: use --frames {self.num_frames + self.vae_c.temporal}")

    def encode_text(self, prompt, device):
        pe, _ = self.pipe.encode_prompt(prompt=prompt, do_classifier_free_guidance=False,
                                        max_sequence_length=self.max_sequence_length, device=device)
        return {"prompt_embeds": pe.float().cpu()}

    def encode_clip(self, clip, variants, device):
        vae = self.pipe.vae
        x0 = _encode(self.pipe, clip, device)
        scale = float(self.pipe.vae_scaling_factor_image)  # the image latents' own factor (1.5 inverts it)
        img = _encode(self.pipe, clip[:, :, :1], device, normalize=False)
        img = img / scale if vae.config.get("invert_scale_latents", False) else img * scale
        img = img.permute(0, 2, 1, 3, 4)  # (1, 1, C, h, w)
        pad = img.new_zeros(1, x0.shape[2] - 1, *img.shape[2:])
        return {"x0": x0.permute(0, 2, 1, 3, 4).contiguous(), "cond.first": torch.cat([img, pad], dim=1)}

    def setup(self, device):
        tr = self.pipe.transformer
        rot = None
        if tr.config.use_rotary_positional_embeddings:
            rot = self.pipe._prepare_rotary_positional_embeddings(self.height, self.width, self.latent_frames, device)
        ofs = None if tr.config.get("ofs_embed_dim", None) is None else torch.full((1,), 2.0, device=device)
        self.static = {"image_rotary_emb": rot, "ofs": ofs}

    def loss(self, model, batch, text, generators):
        x0, cond = batch["x0"], batch["cond"]
        b = x0.shape[0]
        noise = _randn(tuple(x0.shape), generators).to(x0)
        hi = int(self.scheduler_config["num_train_timesteps"])
        t = torch.cat([torch.randint(0, hi, (1,), generator=g) for g in generators])
        a = _view(self.alphas[t], 5).to(x0)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = model(hidden_states=torch.cat([xt, cond], dim=2), encoder_hidden_states=text["prompt_embeds"].expand(b, -1, -1),
                     timestep=t.to(x0.device), ofs=self.static.get("ofs"),
                     image_rotary_emb=self.static.get("image_rotary_emb"), return_dict=False)[0]
        target = {"v_prediction": a.sqrt() * noise - (1 - a).sqrt() * x0, "epsilon": noise, "sample": x0}[self.prediction]
        return F.mse_loss(pred.float(), target.float())

    def describe(self):
        return {**super().describe(), "prediction_type": self.prediction}


class LTXObjective(Objective):
    """``LTXConditionPipeline`` / ``LTXImageToVideoPipeline``: the first latent frame's tokens are the clean
    condition latents at timestep 0; tokens are packed as the pipeline packs them."""

    family = "ltx"

    def __init__(self, pipe, **kw):
        super().__init__(pipe, **kw)
        if not _is_flow_matching(pipe.scheduler):
            raise UserError(f"{type(pipe).__name__} has a {type(pipe.scheduler).__name__} scheduler, not a flow-matching "
                            f"one; the trainer trains LTX with its flow-matching objective")
        self.condition = type(pipe).__name__ == "LTXConditionPipeline"
        self.frame_rate = float(call_default(type(pipe).__name__, "frame_rate") or 25)
        self.noise_scale = float(call_default(type(pipe).__name__, "image_cond_noise_scale") or 0.0) if self.condition else 0.0

    def encode_text(self, prompt, device):
        pe, pm, _, _ = self.pipe.encode_prompt(prompt=prompt, do_classifier_free_guidance=False,
                                               max_sequence_length=self.max_sequence_length, device=device)
        return {"prompt_embeds": pe.float().cpu(), "prompt_attention_mask": pm.cpu()}

    def encode_clip(self, clip, variants, device):
        return {"x0": _encode(self.pipe, clip, device), "cond.first": _encode(self.pipe, clip[:, :, :1], device)}

    def setup(self, device):
        cls = type(self.pipe)
        pt, p = self.pipe.transformer_temporal_patch_size, self.pipe.transformer_spatial_patch_size
        f, (h, w) = self.latent_frames, self.latent_hw
        first = torch.zeros(1, 1, f, h, w, device=device)
        first[:, :, 0] = 1.0
        st = {"mask": cls._pack_latents(first, p, pt).squeeze(-1)}  # (1, N): 1 on the condition tokens
        if self.condition:
            ids = cls._prepare_video_ids(1, f, h, w, patch_size=p, patch_size_t=pt, device=device)
            ids = cls._scale_video_ids(ids, scale_factor=self.vae_c.spatial, scale_factor_t=self.vae_c.temporal,
                                       frame_index=0, device=device).float()
            ids[:, 0] = ids[:, 0] * (1.0 / self.frame_rate)
            st["video_coords"] = ids
        else:
            st["rope_interpolation_scale"] = (self.vae_c.temporal / self.frame_rate, self.vae_c.spatial, self.vae_c.spatial)
        self.static = st

    def loss(self, model, batch, text, generators):
        cls = type(self.pipe)
        pt, p = self.pipe.transformer_temporal_patch_size, self.pipe.transformer_spatial_patch_size
        x0, cond = batch["x0"], batch["cond"]
        b = x0.shape[0]
        noise, s = self._flow_noise(x0, generators)
        xt = (1 - _view(s, 5)) * x0 + _view(s, 5) * noise
        if self.noise_scale:  # the pipeline's noise on the hard-conditioning latents, times t^2
            cond = cond + self.noise_scale * _randn(tuple(cond.shape), generators).to(cond) * _view(s, 5) ** 2
        tokens = cls._pack_latents(torch.cat([cond, xt[:, :, 1:]], dim=2), p, pt)
        mask = self.static["mask"].to(x0)
        t = (s * 1000.0)[:, None]
        ts = torch.min(t, (1 - mask) * 1000.0) if self.condition else t * (1 - mask)
        kw = dict(hidden_states=tokens, encoder_hidden_states=text["prompt_embeds"].expand(b, -1, -1), timestep=ts,
                  encoder_attention_mask=text["prompt_attention_mask"].expand(b, -1), return_dict=False)
        if self.condition:
            kw["video_coords"] = self.static["video_coords"].expand(b, -1, -1)
        else:
            f, (h, w) = self.latent_frames, self.latent_hw
            kw.update(num_frames=f, height=h, width=w, rope_interpolation_scale=self.static["rope_interpolation_scale"])
        pred = model(**kw)[0]
        target = cls._pack_latents(noise - x0, p, pt)
        err = ((pred.float() - target.float()) ** 2).mean(-1)  # (B, N)
        free = 1 - mask
        return (err * free).sum() / (free.sum() * b)

    def call_kwargs(self, text, negative=None):
        kw = {**super().call_kwargs(text, negative), "prompt_attention_mask": text["prompt_attention_mask"]}
        if negative is not None:
            kw["negative_prompt_attention_mask"] = negative["prompt_attention_mask"]
        return kw


_OBJECTIVES = {"wan": WanObjective, "cogvideox": CogVideoXObjective, "ltx": LTXObjective}


def make_objective(pipe: Any, family: str, *, height: int, width: int, num_frames: int) -> Objective:
    """The objective of a loaded pipeline of ``family`` (``wan``, ``cogvideox``, ``ltx``) at one clip size."""
    return _OBJECTIVES[family](pipe, height=height, width=width, num_frames=num_frames)
