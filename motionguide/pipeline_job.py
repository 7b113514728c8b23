"""A job's guidance through a diffusers pipeline on the user's hardware: loading, fitting, windows.

* :func:`find_pipeline` reads what a pipeline folder (or a hub id in the local cache) says before any weight
  loads: its class (:func:`~motionguide.families.read_model_index` refuses an unsupported one) and, for a
  transformer with learned positional embeddings (CogVideoX-5B-I2V), the one size and frame count it takes;
  :func:`check_request` checks a job's settings against it.
* :func:`load_pipeline` loads it from disk only, in the dtype asked for (the components the family keeps in
  float32 stay there, :attr:`~motionguide.families.ModelFamily.full_precision`), on a device or under one
  of diffusers' offload modes (:data:`OFFLOADS`), with VAE tiling if asked.
* :func:`pipeline_size` and :func:`window_frames` fit the job to the pipeline: the input's aspect inside
  the native size (or exactly the native size and frame count of a fixed-size model), at most the native
  frame count per call.
* :func:`run_pipeline` makes every frame of a guidance in overlapping windows: each window starts ``context``
  frames before the first frame still to make, so its first frames are known (input frames or the frames the
  previous window made; frame 0 of a window is always known, as image-to-video pipelines need), and the
  transformer never sees more frames than one window's. ``extend`` thus hands the pipeline its last
  ``context`` input frames, not the whole input.

Shapes: clips ``(T, 3, H, W)`` float in [0, 1] (one clip, no batch) at this API.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .families import ModelFamily, NativeShape, get_family, read_model_index
from .guidance import Guidance
from .pipeline import generate_with_guidance
from .registry import get_spec, vae_from_pipeline

__all__ = ["OFFLOADS", "COMPOSITES", "DTYPES", "PipelineSource", "find_pipeline", "resolve_device",
           "resolve_dtype", "check_request", "load_pipeline", "native_shape", "pipeline_grid", "pipeline_size", "fit_frames",
           "window_frames", "window_context", "run_pipeline"]

#: how the pipeline's weights meet the device: all on it, or diffusers' model, group (block-level) or
#: sequential (leaf-level) CPU offload, from most memory and fastest to least memory and slowest
OFFLOADS = ("none", "model", "group", "sequential")
#: what a job gives with a pipeline: the warp where the flow is trusted and the pipeline elsewhere
#: (``confidence``), or the pipeline's own clip (``off``)
COMPOSITES = ("confidence", "off")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
_MEMORY_FIX = ("offload='model' (or group, or sequential: less memory, slower), a smaller `size`, fewer `frames` per "
               "call, vae_tiling=True")


def _notice(msg: str) -> None:
    print(f"notice: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ the folder
@dataclass(frozen=True)
class PipelineSource:
    """What a pipeline folder says before any weight loads.

    name: as the user gave it; folder: where it is on disk; class_name: its pipeline class; family: its
    :class:`~motionguide.families.ModelFamily`; fixed: the only size and frame count its transformer takes
    (learned positional embeddings), None when it takes others; index: its ``model_index.json``;
    transformer_config: its ``transformer/config.json`` ({} when absent).
    """

    name: str
    folder: Path
    class_name: str
    family: ModelFamily
    fixed: NativeShape | None = None
    index: dict = field(default_factory=dict)
    transformer_config: dict = field(default_factory=dict)


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def find_pipeline(name: str | Path) -> PipelineSource:
    """The folder of ``name`` (a local folder, or a hub id already in the local Hugging Face cache; nothing is
    downloaded), checked to hold a supported pipeline class, and what it says about its shape."""
    name = str(name)
    p = Path(name).expanduser()
    looks_local = p.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local:
        if not (p / "model_index.json").is_file():
            what = "does not exist" if not p.exists() else "has no model_index.json"
            raise UserError(f"name={name!r}: the folder {what}; pass a folder written by a pipeline's "
                            f"save_pretrained (python examples/tiny_pipeline.py --arch wan -o DIR makes a tiny one)")
        folder = p
    else:
        from huggingface_hub import constants, snapshot_download

        try:
            folder = Path(snapshot_download(name, local_files_only=True))
        except Exception as e:  # not cached (LocalEntryNotFoundError), or not a valid repo id
            raise UserError(f"name={name!r}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}; "
                            f"{type(e).__name__}); download it where there is network (hf download {name}, or "
                            f"huggingface-cli download {name}) or pass a local folder") from None
    try:
        index = read_model_index(folder)
    except FileNotFoundError as e:
        raise UserError(f"name={name!r}: {e}") from None
    cls = index["_class_name"]
    family = get_family(cls)
    tcfg = _read_json(folder / "transformer" / "config.json")
    fixed = None
    if tcfg.get("use_learned_positional_embeddings") and tcfg.get("sample_height") and tcfg.get("sample_width"):
        s = 2 ** (len(_read_json(folder / "vae" / "config.json").get("block_out_channels", [0] * 4)) - 1)
        fixed = NativeShape(int(tcfg["sample_height"]) * s, int(tcfg["sample_width"]) * s,
                            int(tcfg.get("sample_frames") or family.native_frames), True)
    return PipelineSource(name, folder, cls, family, fixed, index, tcfg)


# ------------------------------------------------------------------------------------------ device, dtype
def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` checked (cpu, cuda, cuda:N), or cuda when available, else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected cpu, cuda or cuda:N, got {device!r}") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device={str(device)!r}: no CUDA device is available here (torch {torch.__version__}, "
                            f"built for CUDA {torch.version.cuda or 'none'}); use device='cpu', or run where torch "
                            f"sees an NVIDIA GPU")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise UserError(f"device={str(device)!r}: there are {torch.cuda.device_count()} CUDA devices (cuda:0 .. "
                            f"cuda:{torch.cuda.device_count() - 1}); pick one of them")
    elif d.type != "cpu":
        raise ValueError(f"device: expected cpu, cuda or cuda:N, got {device!r}")
    return d


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The dtype the pipeline loads in: ``dtype`` checked against the device, or bfloat16 on CUDA (float16
    where the GPU has no bfloat16) and float32 on the CPU."""
    if dtype is None:
        if device.type != "cuda" or torch.cuda.is_bf16_supported():
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        _notice(f"{torch.cuda.get_device_name(device)} has no bfloat16; the pipeline runs in float16")
        return torch.float16
    name = str(dtype).removeprefix("torch.")
    name = _ALIASES.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {str(dtype)!r}")
    if device.type == "cuda" and name == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"dtype='bfloat16': {torch.cuda.get_device_name(device)} does not support bfloat16 "
                        f"(torch.cuda.is_bf16_supported() is False); use dtype='float16' (or float32)")
    return DTYPES[name]


def check_request(src: PipelineSource, *, size: tuple[int, int] | None = None, frames: int | None = None,
                  offload: str = "none", vae_tiling: bool = False, device: torch.device | None = None,
                  adapter: str | Path | None = None) -> None:
    """Check a job's pipeline settings against what the folder says, before any weight loads.

    size: ``(h, w)`` asked for; frames: frames per call asked for; a fixed-size model takes only its own.
    offload: one of :data:`OFFLOADS`, which the pipeline class must offer; vae_tiling: its VAE class must have
    ``enable_tiling``; adapter: a folder written for this pipeline class and transformer.
    """
    import diffusers

    cls_name, f = src.class_name, src.fixed
    if f is not None and size is not None and tuple(size) != (f.height, f.width):
        raise ValueError(f"size {size[1]}x{size[0]}: {src.name} ({cls_name}) has learned positional embeddings and "
                         f"runs at {f.width}x{f.height} only; pass size=None (the input is fitted to "
                         f"{f.width}x{f.height} and the output resized back)")
    if f is not None and frames is not None and int(frames) != f.frames:
        raise ValueError(f"frames={frames}: {src.name} ({cls_name}) has learned positional embeddings and makes "
                         f"{f.frames} frames per call only; pass frames=None (longer outputs are made in windows of "
                         f"{f.frames})")
    if offload not in OFFLOADS:
        raise ValueError(f"offload: expected one of {', '.join(OFFLOADS)}, got {offload!r}")
    cls = getattr(diffusers, cls_name, None)
    method = {"model": "enable_model_cpu_offload", "group": "enable_group_offload",
              "sequential": "enable_sequential_cpu_offload"}.get(offload)
    if method and (cls is None or not hasattr(cls, method) or
                   (offload == "model" and getattr(cls, "model_cpu_offload_seq", None) is None)):
        raise UserError(f"offload={offload!r}: {cls_name} in diffusers {diffusers.__version__} does not support it "
                        f"(no {method}{' sequence' if offload == 'model' else ''}); use "
                        f"offload='{'group' if offload == 'model' else 'model'}' (or none)")
    if offload == "sequential" and device is not None and device.type == "cpu":
        raise UserError("offload='sequential' moves weights from the CPU to a GPU layer by layer, and on the CPU "
                        "alone accelerate's hooks fail; use offload='model' (or group, or none) with device='cpu'")
    if vae_tiling:
        vae_cls = (src.index.get("vae") or [None, None])[1]
        if not hasattr(getattr(diffusers, str(vae_cls), None), "enable_tiling"):
            raise UserError(f"vae_tiling: the VAE of {src.name} ({vae_cls}) has no tiled decoding; pass "
                            f"vae_tiling=False (a smaller `size` or fewer `frames` per call also saves memory)")
    if adapter is not None:
        _check_adapter(src, Path(adapter))


def _check_adapter(src: PipelineSource, folder: Path) -> None:
    """An adapter folder's architecture, size and (when the pipeline trainer wrote it) pipeline class and
    transformer config, against the pipeline's, from the JSON files alone."""
    meta = _read_json(folder / "motion_guidance.json")
    if not meta:
        raise UserError(f"adapter={str(folder)!r}: no readable motion_guidance.json; pass a folder written by motionguide "
                        f"train pipeline (or motionguide.save_motion_guidance)")
    want = src.family.transformer
    if meta.get("architecture") != want:
        raise UserError(f"adapter={str(folder)!r}: trained for a {meta.get('architecture')}, but {src.name} has a {want}; "
                        f"pass an adapter trained on this pipeline")
    t = src.transformer_config
    here = {"num_blocks": t.get("num_layers"), "hidden_dim": t.get("num_attention_heads", 0) * t.get("attention_head_dim", 0)}
    diff = [f"{k}: adapter {meta[k]} vs pipeline {v}" for k, v in here.items() if v and meta.get(k) not in (None, v)]
    if diff:
        raise UserError(f"adapter={str(folder)!r}: trained for another size of {want} ({'; '.join(diff)}); pass an "
                        f"adapter trained on this pipeline")
    m = _read_json(folder / "pipeline.json")
    if m.get("pipeline_class") and m["pipeline_class"] != src.class_name:
        raise UserError(f"adapter={str(folder)!r}: trained on a {m['pipeline_class']}, but {src.name} is a "
                        f"{src.class_name}; pass an adapter trained on this pipeline class")
    cfg = m.get("transformer_config") or {}
    odd = [k for k, v in cfg.items() if k in t and t[k] != v]
    if odd:
        raise UserError(f"adapter={str(folder)!r}: trained on a transformer whose {', '.join(odd[:4])} differ from "
                        f"{src.name}'s; pass an adapter trained on this pipeline")


# ----------------------------------------------------------------------------------------------- loading
def load_pipeline(name: str | Path, *, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                  offload: str = "none", vae_tiling: bool = False):
    """A diffusers pipeline from a local folder or a hub id already in the local cache (never downloads).

    device: cpu, cuda or cuda:N (default cuda when available); dtype: bfloat16, float16 or float32 (default
    bfloat16 on CUDA, float32 on the CPU; the family's :attr:`~motionguide.families.ModelFamily.full_precision`
    components stay float32); offload: one of :data:`OFFLOADS` (diffusers' ``enable_model_cpu_offload``,
    ``enable_group_offload`` at block level, ``enable_sequential_cpu_offload``, each onto ``device``);
    vae_tiling: ``pipe.vae.enable_tiling()``. Everything is checked before a weight loads.
    """
    import diffusers
    from diffusers.pipelines import pipeline_utils

    src = find_pipeline(name)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    check_request(src, offload=offload, vae_tiling=vae_tiling, device=dev)
    keep = [c for c in src.family.full_precision if c in src.index]
    dtypes = {"default": dt, **{c: torch.float32 for c in keep}} if dt != torch.float32 and keep else dt
    key = "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"  # torch_dtype: diffusers < 0.36
    try:
        pipe = getattr(diffusers, src.class_name).from_pretrained(src.folder, local_files_only=True, **{key: dtypes})
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"name={name!r} could not be loaded from {src.folder} ({first}); check that the folder "
                        f"is complete (every component save_pretrained wrote)") from None
    try:
        if offload == "none":
            pipe.to(dev)
        elif offload == "model":
            pipe.enable_model_cpu_offload(device=dev)
        elif offload == "group":
            pipe.enable_group_offload(onload_device=dev, offload_device=torch.device("cpu"),
                                      offload_type="block_level", num_blocks_per_group=1)
        else:
            pipe.enable_sequential_cpu_offload(device=dev)
    except torch.OutOfMemoryError:
        raise UserError(f"{src.class_name} does not fit in the memory of {dev} in {str(dt).removeprefix('torch.')}; "
                        f"use offload='model' (or group, or sequential)") from None
    if vae_tiling:
        pipe.vae.enable_tiling()
    return pipe


# ----------------------------------------------------------------------------------------------- fitting
def _family(pipe) -> ModelFamily:
    try:
        return get_family(pipe)
    except ValueError:  # a pipeline class of its own around a supported transformer
        return get_family(pipe.transformer)


def native_shape(pipe) -> NativeShape:
    """The size and frame count ``pipe`` was trained at, and whether it takes only those."""
    return _family(pipe).native(pipe)


def pipeline_grid(pipe) -> tuple[int, int, int]:
    """``(multiple, VAE spatial factor, patch)``: a pipeline's frame sides are multiples of the first."""
    spec = get_spec(pipe.transformer)
    s, p = vae_from_pipeline(pipe, spec).spatial, spec.patch_size(pipe.transformer)[1]
    return s * p, s, p


def pipeline_size(pipe, input_size: tuple[int, int], size: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(h, w)`` a job runs ``pipe`` at for an input of ``input_size = (H, W)``.

    A fixed-size model (learned positional embeddings) runs at its native size, whatever the input's; a
    ``size`` other than it is refused. Otherwise size: the size asked for (``--pipeline-size``), checked:
    positive multiples of the pipeline's multiple (VAE spatial factor x patch, 16 for Wan). None: the input's
    aspect ratio fitted inside the native size (:meth:`~motionguide.families.ModelFamily.native`, e.g. Wan's
    832x480, turned to the input's orientation so a portrait input gets 480x832), never above the input's
    size, rounded down to the multiple.
    """
    nat = _family(pipe).native(pipe)
    if nat.fixed:
        if size is not None and tuple(int(v) for v in size) != (nat.height, nat.width):
            raise ValueError(f"size {size[1]}x{size[0]}: this {type(pipe).__name__} has learned positional "
                             f"embeddings and runs at {nat.width}x{nat.height} only; pass size=None")
        return nat.height, nat.width
    m, s, p = pipeline_grid(pipe)
    if size is not None:
        h, w = (int(v) for v in size)
        if h <= 0 or w <= 0:
            raise ValueError(f"size: expected a positive (h, w) in pixels (e.g. (480, 832)), got {(h, w)}")
        if h % m or w % m:
            fit = lambda v, up: max(m, (v // m + up) * m)  # noqa: E731
            raise ValueError(f"size {w}x{h}: {type(pipe).__name__} takes sides that are multiples of {m} "
                             f"(VAE {s}x times patch {p}); use {fit(w, 0)}x{fit(h, 0)} or {fit(w, 1)}x{fit(h, 1)}")
        return h, w
    hh, ww = (float(v) for v in input_size)
    bh, bw = (nat.height, nat.width) if (nat.height > nat.width) == (hh > ww) else (nat.width, nat.height)
    k = min(bh / hh, bw / ww, 1.0)
    return max(m, int(hh * k + 1e-6) // m * m), max(m, int(ww * k + 1e-6) // m * m)


def _valid_frames(pipe, up_to: int) -> list[int]:
    """The frame counts from 2 to ``up_to`` the pipeline's VAE takes (4k+1 for Wan), ascending."""
    vae = vae_from_pipeline(pipe, get_spec(pipe.transformer))
    out = []
    for n in range(2, max(up_to, 2) + 1):
        try:
            vae.check_num_frames(n)
            out.append(n)
        except ValueError:
            pass
    return out


def fit_frames(pipe, n: int) -> int:
    """The longest frame count up to ``n`` that the pipeline's VAE takes (e.g. 4k+1 for Wan), at least 1."""
    ok = _valid_frames(pipe, n)
    return ok[-1] if ok else 1


def window_frames(pipe, frames: int | None = None) -> int:
    """The most frames ``pipe`` makes in one call: ``frames`` (checked against the VAE's frame rule), or the
    native frame count (81 for Wan, 49 for CogVideoX, 161 for LTX); a fixed-size model takes only its own."""
    nat, name = _family(pipe).native(pipe), type(pipe).__name__
    if nat.fixed:
        if frames is not None and int(frames) != nat.frames:
            raise ValueError(f"frames={frames}: this {name} has learned positional embeddings and makes "
                             f"{nat.frames} frames per call only; pass frames=None")
        return nat.frames
    if frames is None:
        return max(fit_frames(pipe, nat.frames), 2)
    n = int(frames)
    ok = _valid_frames(pipe, max(n, nat.frames) + 64)
    if n not in ok:
        lo, hi = [v for v in ok if v < n][-1:], [v for v in ok if v > n][:1]
        rule = get_spec(pipe.transformer).frame_rule or "its VAE's frame counts"
        raise ValueError(f"frames={n}: {name} takes {rule} per call (its VAE), at least {ok[0]}; use "
                         f"{' or '.join(str(v) for v in lo + hi)}")
    return n


def window_context(pipe, frames: int) -> int:
    """Known frames each window after the first starts with: the conditioning frame and one latent frame's
    worth (VAE temporal factor) of the previous window's output, fewer in short windows so each makes at least
    one latent frame."""
    t = vae_from_pipeline(pipe, get_spec(pipe.transformer)).temporal
    return max(1, min(t + 1, frames - t))


# ----------------------------------------------------------------------------------------------- windows
def _plan(ok: list[int], t_out: int, first: int, context: int, ends: set[int] | None) -> tuple[int, int]:
    """``(start, frames)`` of the window that makes frame ``first`` (the first still to make; every frame before
    it is known or made), from the frame counts ``ok`` the pipeline takes.

    It starts ``context`` frames before ``first`` and is the shortest count that reaches the output's end, else
    the longest. With ``ends`` (a first-last-frame model: the frames that can be its last image), it ends on
    one of them past ``first`` where one is in reach: the longest count, ending on the latest such frame,
    starting at least one frame before ``first``.

    >>> _plan([5, 9, 13], 11, 1, 5, None), _plan([5, 9, 13], 40, 9, 5, None)
    ((0, 13), (4, 13))
    >>> _plan([5, 9, 13], 11, 1, 5, {0, 2, 4, 6, 8, 10}), _plan([5, 9, 13], 11, 9, 5, {0, 2, 4, 6, 8, 10})
    ((0, 9), (2, 9))
    """
    w0 = max(0, first - context)
    fit = [n for n in ok if n >= t_out - w0]
    n = fit[0] if fit else ok[-1]
    if ends:
        for m in reversed(ok):
            last = [e for e in ends if first < e < t_out and 0 <= e - m + 1 < first]
            if last:
                return max(last) - m + 1, m
    return w0, n


def _frames_of(out: Any) -> torch.Tensor:
    frames = out.frames[0] if hasattr(out, "frames") else out[0][0]
    frames = torch.as_tensor(frames)
    if frames.ndim == 4 and frames.shape[-1] == 3 and frames.shape[1] != 3:  # (T, H, W, 3) numpy layout
        frames = frames.permute(0, 3, 1, 2)
    return frames.float().cpu().clamp(0, 1)


def run_pipeline(
    pipe,
    guidance: Guidance,
    *,
    frames: int | None = None,
    context: int | None = None,
    strength: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    adapter: str | None = None,
    **call_kwargs,
) -> torch.Tensor:
    """Make every frame of a guidance (batch 1) with a diffusers pipeline, window by window
    (:func:`motionguide.pipeline.generate_with_guidance` for each): ``(T, 3, H, W)`` in [0, 1].

    frames: the most frames per call (:func:`window_frames`); a window is the shortest frame count the VAE
    takes that reaches the output's end (padded with free frames, cut back), else that many. context: known
    frames a window starts with (:func:`window_context`). The guidance's size is fitted to the pipeline (a
    fixed-size model's native size; else sides rounded to multiples of the VAE factor times the patch), with a
    notice. Each output frame is the pipeline's from the first window that makes it; frames no window covers
    (an input's frames before ``extend``'s context) are the guidance's known frames. Windows after the first
    are seeded ``seed + 1000 * i``. CUDA out of memory is raised as a :class:`~motionguide.errors.UserError`
    naming the options that fit.
    """
    name, fam = type(pipe).__name__, _family(pipe)
    nat = fam.native(pipe)
    win = window_frames(pipe, frames)
    h, w = guidance.size
    if nat.fixed:
        size = (nat.height, nat.width)
        why = f"its learned positional embeddings take {nat.width}x{nat.height} only"
    else:
        m = pipeline_grid(pipe)[0]
        size, why = (max(m, round(h / m) * m), max(m, round(w / m) * m)), f"multiples of {m} for this pipeline"
    if size != (h, w):
        _notice(f"resizing the guidance from {w}x{h} to {size[1]}x{size[0]} (WxH, {why})")
        guidance = guidance.resized(size)
    t_out, ctx_n = guidance.num_frames, context or window_context(pipe, win)
    if not 1 <= ctx_n < win:
        raise ValueError(f"context: expected 1 .. {win - 1} known frames per window, got {ctx_n}")
    known = {p for p in guidance.positions if p is not None}
    image = fam.entry(name).image if any(e.class_name == name for e in fam.pipelines) else "image"
    if image == "image" and 0 not in known:
        raise ValueError(f"{name} starts every call from a known first frame, but the guidance's frame 0 is not known")
    ok = [win] if nat.fixed else _valid_frames(pipe, win)
    ends = known if fam.needs_last_image(pipe.transformer) else None
    todo = [t for t in range(t_out) if t not in known] or list(range(t_out))
    made: dict[int, torch.Tensor] = {}
    generated: dict[int, torch.Tensor] = {}  # frames the pipeline made that later windows take as known
    calls = []
    call_kwargs.setdefault("output_type", "pt")
    if steps is not None:
        call_kwargs.setdefault("num_inference_steps", int(steps))
    while True:
        rest = [t for t in todo if t not in made]
        if not rest:
            break
        w0, n = _plan(ok, t_out, rest[0], ctx_n, ends)
        wg = guidance.window(w0, n, {t: f for t, f in generated.items() if w0 <= t < w0 + n}).compacted()
        kw = dict(call_kwargs, generator=torch.Generator().manual_seed(int(seed) + 1000 * len(calls)))
        try:
            out = _frames_of(generate_with_guidance(pipe, wg, adapter=adapter, strength=strength, **kw))
        except torch.OutOfMemoryError as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else "out of memory"
            raise UserError(f"{name} ran out of memory at {size[1]}x{size[0]}, {n} frames per call ({first_line[:120]}); "
                            f"to fit: {_MEMORY_FIX}") from None
        for j in range(min(n, t_out - w0)):
            t = w0 + j
            if t not in made:
                made[t] = out[j]
                if t not in known:
                    generated[t] = out[j][None].to(guidance.frames)
        calls.append((w0, n))
    if len(calls) > 1 or calls and calls[0] != (0, t_out):
        spans = ", ".join(f"{a}..{min(a + b, t_out) - 1}" for a, b in calls[:4]) + (", ..." if len(calls) > 4 else "")
        pad = calls[-1][0] + calls[-1][1] - t_out
        _notice(f"{name} made the {t_out} output frames in {len(calls)} call{'s' if len(calls) > 1 else ''} of at most "
                f"{win} frames (frames {spans}"
                + (f"; each call after the first starts from {ctx_n} frames known or made before it" if len(calls) > 1 else "")
                + (f"; the last call runs {pad} free frame{'s' if pad > 1 else ''} past the end, cut back" if pad > 0
                   else "") + ")")
    clip = torch.zeros(t_out, 3, *size)
    for i, p in enumerate(guidance.positions):
        if p is not None:
            clip[p] = guidance.frames[0, :, i].float().cpu()
    clip[list(made)] = torch.stack(list(made.values()))
    return clip
