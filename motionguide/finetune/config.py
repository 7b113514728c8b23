"""What a pipeline training run is asked to do: :class:`PipelineTrainConfig`, validated on construction.

Every value is checked here, before a pipeline loads or a video decodes; the checks that need the loaded
pipeline (the size against its VAE and patch, the frame count against its VAE) run right after loading,
before anything is written.

Defaults fit the hardware: on CUDA, bf16 autocast, the frozen transformer and text encoder in bfloat16
(the VAE in the dtype its family needs: :data:`VAE_DTYPES`) and gradient checkpointing; on the CPU, float32
without checkpointing. Each resolves on construction when not given (:meth:`PipelineTrainConfig.settings`
says what a run uses).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import torch

from ..errors import UserError
from ..families import FAMILIES
from .layouts import LAYOUTS

__all__ = ["PipelineTrainConfig", "parse_size", "parse_blocks", "parse_buckets", "DEFAULT_LR", "LORA_TARGETS",
           "VAE_DTYPES"]

#: peak learning rate when none is given (adapters start at zero; LoRA and unfrozen blocks share it)
DEFAULT_LR = 1e-4
#: ``--lora-targets`` presets: module names inside each block's attention and feed-forward layers. ``attn+ffn``
#: is DiffSynth-Studio's default (q, k, v, o, ffn.0, ffn.2); diffusers names the feed-forward's first and last
#: Linear ``ff(n).net.0.proj`` and ``ff(n).net.2`` in Wan, CogVideoX and LTX alike
LORA_TARGETS = {"attn": ("to_q", "to_k", "to_v", "to_out.0"),
                "attn+ffn": ("to_q", "to_k", "to_v", "to_out.0", "net.0.proj", "net.2")}
#: the VAE's dtype per model family when the frozen weights are bfloat16 (the family's ``full_precision``:
#: Wan's VAE and CLIP image encoder run in float32, as its model cards load them); others use the frozen weights'
VAE_DTYPES = {f.name: "float32" for f in FAMILIES.values() if "vae" in f.full_precision}


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"WxH"`` -> ``(H, W)`` (None stays None)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise UserError(f"--size {text}: expected WIDTHxHEIGHT in pixels, e.g. 832x480")
    return int(m.group(2)), int(m.group(1))


def parse_buckets(text: str | Sequence | None) -> tuple[tuple[int, int, int], ...] | None:
    """``"WxHxF,WxHxF"`` -> ``((H, W, F), ...)``: resolution and frame-count buckets (None stays None)."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        items = [tuple(int(v) for v in b) for b in text]
    else:
        items = []
        for part in str(text).split(","):
            m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*", part)
            if not m:
                raise UserError(f"--buckets {text}: expected WIDTHxHEIGHTxFRAMES,... e.g. 832x480x81,480x832x81")
            items.append((int(m.group(2)), int(m.group(1)), int(m.group(3))))
    if not items or any(len(b) != 3 or min(b[:2]) < 8 or b[2] < 3 for b in items):
        raise UserError(f"--buckets {text}: each bucket needs at least 8x8 pixels and 3 frames")
    return tuple(dict.fromkeys(items))


def parse_blocks(text: str | Sequence[int] | None) -> str | tuple[int, ...]:
    """``"guided"``, ``"all"`` or comma-separated block indices (``"0,1,-1"``)."""
    if text is None or text == "guided":
        return "guided"
    if text == "all":
        return "all"
    if isinstance(text, (list, tuple)):
        return tuple(int(i) for i in text)
    try:
        idx = tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        idx = ()
    if not idx:
        raise UserError(f"--lora-blocks {text}: expected 'guided', 'all' or block indices such as 0,1,2")
    return idx


@dataclass
class PipelineTrainConfig:
    """One ``motionguide train pipeline`` run (fields as the command's options; sizes are ``(H, W)``)."""

    pipeline: str
    videos: str
    steps: int
    out: str
    frames: int | None = None  # default: the pipeline's own default frame count
    size: tuple[int, int] | None = None  # (H, W); default: the pipeline's own default size
    layouts: tuple[str, ...] = LAYOUTS
    clips: int = 8
    stride: int = 1
    batch_size: int = 1
    flow: str = "dis"
    interpolator: str = "auto"
    prompt: str = ""
    last_frame: bool = False  # Wan: in-betweening conditions on the last frame too (FLF2V, last_image)
    lora_rank: int = 0
    lora_blocks: str | tuple[int, ...] = "guided"
    lora_targets: str = "attn"
    grad_accum: int = 1
    buckets: tuple[tuple[int, int, int], ...] | None = None  # (H, W, frames) each; None = one: size x frames
    validation_clips: int | None = None  # held out of training; default 1 with --validate-every, else 0
    cache: str | None = None  # default OUT/cache
    cache_only: bool = False
    nccl_timeout: float = 60.0  # minutes a process waits for the others (cache barrier, validation)
    train_blocks: int = 0
    feature_blocks: tuple[int, ...] | None = None  # blocks with feature hooks; None = the first half
    lr: float = DEFAULT_LR
    warmup: int | None = None
    ema: float = 0.99
    seed: int = 0
    checkpoint_every: int = 100
    validate_every: int = 0
    validate_steps: int = 20
    mixed_precision: Literal["no", "bf16"] | None = None  # default: bf16 on CUDA, no on the CPU
    dtype: Literal["float32", "bfloat16"] | None = None  # default: bfloat16 with bf16 mixed precision
    gradient_checkpointing: bool | None = None  # default: on with CUDA
    resume: bool = True
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UserError(msg)

        cuda = torch.cuda.is_available()
        if self.mixed_precision is None:
            self.mixed_precision = "bf16" if cuda else "no"
        if self.dtype is None:
            self.dtype = "bfloat16" if cuda and self.mixed_precision == "bf16" else "float32"
        if self.gradient_checkpointing is None:
            self.gradient_checkpointing = cuda
        need(isinstance(self.steps, int) and self.steps >= 1, f"--steps must be a positive integer, got {self.steps}")
        need(self.frames is None or (isinstance(self.frames, int) and self.frames >= 3),
             f"--frames must be at least 3 (a first, a last and a frame between), got {self.frames}")
        if self.size is not None:
            self.size = tuple(int(x) for x in self.size)
            need(len(self.size) == 2 and min(self.size) >= 8, f"--size must be at least 8x8 pixels, got {self.size}")
        self.layouts = tuple(dict.fromkeys(self.layouts))
        need(bool(self.layouts) and all(x in LAYOUTS for x in self.layouts),
             f"--layouts: expected one or more of {', '.join(LAYOUTS)}, got {', '.join(self.layouts) or 'none'}")
        for name, lo in (("clips", 1), ("stride", 1), ("batch_size", 1), ("checkpoint_every", 1),
                         ("validate_steps", 1), ("lora_rank", 0), ("train_blocks", 0), ("validate_every", 0),
                         ("grad_accum", 1)):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= lo,
                 f"--{name.replace('_', '-')} must be an integer >= {lo}, got {v!r}")
        need(self.batch_size <= self.clips, f"--batch-size {self.batch_size} is more than --clips {self.clips}; a "
                                            f"batch takes distinct clips")
        need(isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
             f"--lr must be a positive number, got {self.lr}")
        need(0 <= self.ema < 1, f"--ema must be in [0, 1), got {self.ema}")
        need(self.mixed_precision in ("no", "bf16"), f"--mixed-precision: expected no or bf16, got {self.mixed_precision!r}")
        need(self.dtype in ("float32", "bfloat16"), f"--dtype: expected float32 or bfloat16, got {self.dtype!r}")
        need(self.dtype == "float32" or self.mixed_precision == "bf16",
             "--dtype bfloat16 keeps the frozen weights in bf16 and needs --mixed-precision bf16 (the adapter trains "
             "in float32 under autocast)")
        need(self.threads is None or self.threads >= 1, f"--threads must be >= 1, got {self.threads}")
        need(self.lora_targets in LORA_TARGETS, f"--lora-targets: expected {' or '.join(LORA_TARGETS)}, got "
                                                f"{self.lora_targets!r}")
        need(self.lora_targets == "attn" or self.lora_rank > 0, "--lora-targets needs --lora-rank R (the LoRA's rank)")
        need(isinstance(self.nccl_timeout, (int, float)) and self.nccl_timeout > 0,
             f"--nccl-timeout must be a positive number of minutes, got {self.nccl_timeout!r}")
        if self.validation_clips is None:
            self.validation_clips = 1 if self.validate_every else 0
        need(isinstance(self.validation_clips, int) and self.validation_clips >= 0,
             f"--validation-clips must be an integer >= 0, got {self.validation_clips!r}")
        need(not self.validate_every or self.validation_clips >= 1,
             "--validate-every needs at least one held-out clip (--validation-clips 1 or more)")
        self.buckets = parse_buckets(self.buckets)
        need(self.buckets is None or (self.size is None and self.frames is None),
             "--buckets gives each bucket's size and frame count: drop --size and --frames")
        self.lora_blocks = parse_blocks(self.lora_blocks)
        if self.lora_blocks != "guided" and not self.lora_rank:
            raise UserError("--lora-blocks needs --lora-rank R (the LoRA's rank)")
        if self.feature_blocks is not None:
            self.feature_blocks = tuple(int(i) for i in self.feature_blocks)
            need(bool(self.feature_blocks), "--feature-blocks: expected at least one block index")
        need(self.warmup is None or self.warmup >= 1, f"--warmup must be >= 1, got {self.warmup}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layouts"] = list(self.layouts)
        return d

    def vae_dtype(self, family: str) -> str:
        """The VAE's (and Wan's CLIP image encoder's) dtype for a model family."""
        return VAE_DTYPES.get(family, self.dtype) if self.dtype != "float32" else "float32"

    def settings(self, family: str, processes: int = 1) -> str:
        """One line of what this run uses (printed at its start)."""
        device = "cuda" if torch.cuda.is_available() else "cpu"
        per_step = self.batch_size * self.grad_accum * processes
        lora = f"LoRA rank {self.lora_rank} on {self.lora_targets}" if self.lora_rank else "no LoRA"
        return (f"settings: {device}, {processes} process(es); mixed precision {self.mixed_precision}; frozen "
                f"weights {self.dtype}, VAE {self.vae_dtype(family)}; gradient checkpointing "
                f"{'on' if self.gradient_checkpointing else 'off'}; {self.batch_size} clip(s) x {self.grad_accum} "
                f"micro-batch(es) x {processes} process(es) = {per_step} clips per step; {lora}")
