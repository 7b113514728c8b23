"""The three jobs: motion transfer, speed change and extension.

Each job builds one :class:`~motionguide.guidance.Guidance` for the whole output with the plugin's builders,
at the input's resolution (speed takes its in-betweens' motion from the best installed interpolator, as MoG
takes it from a flow-based interpolation model). Then, by ``output_size``:

* ``"input"`` (default): the flow-based synthesis at the input's resolution (:mod:`motionguide.warping`),
  with a per-pixel confidence (:mod:`motionguide.compositing`); the pixels it does not trust are filled by
  ``fill``: the warp itself (default), or the embedded model's output: the bands its 32x32 grid resolves,
  the warp's detail above them, blended in across scales;
* ``"model"``: the same at the embedded model's 32x32 size: the model generates in windows of its length
  (:mod:`motionguide.embedded.windows`) and supplies the same pixels, composited into the warp and the
  confidence area-downscaled to its size (its trusted pixels would otherwise carry the sampler's small
  errors); the unguided model's output is used as it is.

Either way the model is guided by the warp made at the input's resolution and area-downscaled to its size
(sharper and better placed than a warp at the 32 px grid).

Frames that are real input frames are kept exactly. An image whose size differs from the reference
(``transfer``) is resized to the reference's size with a notice. A diffusers pipeline (``--pipeline``) takes
the embedded model's place: :func:`pipeline_job` runs the guidance through it at :func:`pipeline_size` and
composes its output with the warp the same way.

Shapes: clips ``(T, 3, H, W)`` float in [0, 1] (one clip, no batch) at this API.
"""
from __future__ import annotations

import inspect
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from flow.estimators import get_estimator
from flow.interpolate import get_interpolator
from flow.viz import save_strip

from .embedded.adapters import attach_adapters, load_adapters
from .embedded.checkpoint import load_embedded
from .embedded.data import make_clip
from .embedded.generation import MODES
from .embedded.network import EmbeddedVideoModel
from .embedded.windows import generate_windows, resize_clip, resize_guidance, window
from .compositing import composite, confidence, upsample
from .errors import UserError
from .guidance import extension as extension_guidance
from .guidance import reference_motion
from .guidance import speed as speed_guidance
from .pipeline import generate_with_guidance
from .registry import get_spec, vae_from_pipeline
from .warping import flow_only, known_of

__all__ = [
    "JobResult",
    "load_models",
    "transfer",
    "speed",
    "extend",
    "demo_inputs",
    "save_compare",
    "SPEED_RANGE",
    "OUTPUT_SIZES",
    "MAX_EXTEND",
    "load_pipeline",
    "run_pipeline",
    "pipeline_size",
    "pipeline_job",
]

#: speed factors the job accepts (0.25 = 4x slow motion, 4 = 4x faster)
SPEED_RANGE = (0.25, 4.0)
#: most frames ``extend`` adds: windows chain, but constant-velocity guidance from the last known frame
#: leaves the picture after a few dozen frames at the motions the model was trained on
MAX_EXTEND = 64


def _notice(msg: str) -> None:
    print(f"notice: {msg}", file=sys.stderr)


#: where a job's output is made: at the input's resolution (the warp, with the model where the flow fails)
#: or at the model's own size (the same composite, the warp and the confidence downscaled to it)
OUTPUT_SIZES = ("input", "model")
#: what fills the pixels the confidence does not trust, at the input's resolution: the warp itself (the
#: default: inside those pixels on real footage the embedded 32x32 model ties with it, and costs time,
#: `benchmarks/real_footage.py`), or the model's output
FILLS = ("warp", "model")


@dataclass
class JobResult:
    """What a job made, all at the output's size ``(h, w)``, one clip (no batch).

    frames: ``(T, 3, h, w)`` the output; guidance: the pixel Guidance on that grid (batch 1); warped:
    ``(T, 3, h, w)`` the flow-only synthesis of the guidance; inputs: ``(N, 3, h, w)`` the inputs on that
    grid; confidence: ``(T, 1, h, w)`` where the warp is trusted (1) and where the model supplied the pixel
    (0), None when the model's output is used as it is (unguided); model_share: the fraction of the output's
    pixels (known frames included) the model supplied (0 for warping alone, 1 when the model's output is used
    as it is).
    """

    frames: torch.Tensor
    guidance: object
    warped: torch.Tensor
    inputs: torch.Tensor
    confidence: torch.Tensor | None = None
    model_share: float = 0.0


# ------------------------------------------------------------------------------------------------- models
def load_models(
    model_dir: str | None = None, adapters_dir: str | None = None, *, mode: str = "both"
) -> EmbeddedVideoModel:
    """The embedded model (shipped assets by default) ready for ``mode``: trained adapters for
    latent/feature/both, a training-free adapter for ``training_free``, nothing for unguided/flow_only."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    model = load_embedded(model_dir)
    if mode in ("latent", "feature", "both"):
        load_adapters(model, adapters_dir)
    elif mode == "training_free":
        attach_adapters(model, mode="training_free")
    return model


def load_pipeline(name: str):
    """A diffusers pipeline from a local folder or a hub id already in the local cache (never downloads)."""
    from diffusers import DiffusionPipeline

    looks_local = Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not (Path(name).expanduser() / "model_index.json").is_file():
        what = "does not exist" if not Path(name).expanduser().exists() else "has no model_index.json"
        raise UserError(f"--pipeline {name}: the folder {what}; pass a folder written by a pipeline's "
                        f"save_pretrained (python examples/tiny_pipeline.py --arch wan -o DIR makes a tiny one)")
    try:
        return DiffusionPipeline.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fix = ("check that the folder is complete (every component save_pretrained wrote)" if looks_local else
               f"download it first where there is network (huggingface-cli download {name}) or pass a local folder")
        raise UserError(f"--pipeline {name!r} could not be loaded from disk ({first}); {fix}") from None


# ------------------------------------------------------------------------------------------------- jobs
def _check_clip(x: torch.Tensor, name: str, min_frames: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a clip (T, 3, H, W) float in [0, 1], got {got}")
    if x.shape[0] < min_frames:
        raise ValueError(f"{name}: expected at least {min_frames} frames, got {x.shape[0]}")
    return x.float()


def _clip(x: torch.Tensor) -> torch.Tensor:
    return x[0].transpose(0, 1)  # (1, C, T, H, W) -> (T, C, H, W)


def _run(model, g, size, *, mode, strength, steps, seed, progress, inputs, output_size="input",
         fill="warp") -> JobResult:
    """Generate Guidance ``g`` (built at the input's size). The model (at its size ``size``, guided by the
    input-resolution warp downscaled) supplies the pixels the confidence does not trust, composited into the
    warp (:func:`motionguide.compositing.composite`) at the input's size (``fill == "model"``; ``"warp"`` keeps
    the warp) or at the model's. The unguided model's output is used as it is (upsampled at the input's size)."""
    if output_size not in OUTPUT_SIZES:
        raise ValueError(f"output_size: expected one of {OUTPUT_SIZES}, got {output_size!r}")
    if fill not in FILLS:
        raise ValueError(f"fill: expected one of {FILLS}, got {fill!r}")
    warp, at_model = flow_only(g), output_size == "model" and model is not None
    resize = at_model and tuple(inputs.shape[-2:]) != tuple(size)
    inp = F.interpolate(inputs, size=size, mode="area") if resize else inputs
    if at_model and mode == "flow_only":  # the warp at the model's grid
        small_g = resize_guidance(g, size)
        frames = generate_windows(None, small_g, mode="flow_only")
        return JobResult(_clip(frames), small_g, _clip(frames), inp, None, 1.0)
    if model is None or mode == "flow_only" or (not at_model and fill == "warp" and mode != "unguided"):
        return JobResult(_clip(warp), g, _clip(warp), inputs, _clip(confidence(g)), 0.0)
    small_g, small_warp = resize_guidance(g, size), resize_clip(warp, size)
    small = generate_windows(model, small_g, mode=mode, strength=strength, steps=steps, seed=seed,
                             progress=progress, warp=small_warp)
    if mode == "unguided":  # nothing to composite with: the model's clip as it is
        up = small if at_model else upsample(small[0].transpose(0, 1), g.size).transpose(0, 1)[None]
        return JobResult(_clip(up), small_g if at_model else g, _clip(small_warp if at_model else warp), inp,
                         None, 1.0)
    out, conf, share = composite(warp, small, confidence(g), at_generated=at_model)
    kf, known = known_of(small_g if at_model else g)
    out[:, :, known[0]] = kf[:, :, known[0]]  # known frames exactly, not through the pyramid's rounding
    return JobResult(_clip(out), small_g if at_model else g, _clip(small_warp if at_model else warp), inp,
                     _clip(conf), share)


def _model_size(model) -> tuple[int, int]:
    return (model.config.height, model.config.width) if model is not None else None


def _note_resize(what: str, hw, size, output_size: str, fill: str) -> None:
    if size is None or tuple(hw) == tuple(size) or (output_size == "input" and fill == "warp"):
        return  # (with fill="warp" at the input's size the model supplies nothing: nothing to note)
    if output_size == "model":
        _notice(f"{what} is {hw[1]}x{hw[0]} (WxH); the embedded model works at {size[1]}x{size[0]}, so the output "
                f"is {size[1]}x{size[0]} (--output-size input keeps the input's size)")
    else:
        _notice(f"{what} is {hw[1]}x{hw[0]} (WxH); the output keeps that size: the warp where the flow is "
                f"trusted, the embedded model ({size[1]}x{size[0]}: the content it resolves, the warp's detail) "
                f"where it is not")


def transfer(
    reference: torch.Tensor,
    image: torch.Tensor,
    *,
    model: EmbeddedVideoModel | None,
    frames: int | None = None,
    motion_scale: float = 1.0,
    strength: float = 1.0,
    steps: int | None = None,
    seed: int = 0,
    mode: str = "both",
    flow: str = "dis",
    progress: Callable[[int], None] | None = None,
    output_size: str = "input",
    fill: str = "warp",
) -> JobResult:
    """Motion from ``reference (T, 3, H, W)``, appearance from ``image (3, H, W)``; ``frames`` output frames
    (default T). An image of another size is resized to the reference's size (with a notice)."""
    reference = _check_clip(reference, "reference", 2)
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image: expected (3, H, W) float in [0, 1], got {tuple(getattr(image, 'shape', ()))}")
    n = reference.shape[0] if frames is None else int(frames)
    if n < 2:
        raise ValueError(f"--frames: expected at least 2, got {n}")
    if n > reference.shape[0]:
        raise ValueError(f"the reference clip has {reference.shape[0]} frames, fewer than the {n} asked for; "
                         f"use --frames {reference.shape[0]} or a longer reference")
    reference = reference[:n]
    if tuple(image.shape[-2:]) != tuple(reference.shape[-2:]):
        _notice(f"the image is {image.shape[2]}x{image.shape[1]}, the reference {reference.shape[3]}x{reference.shape[2]} "
                "(WxH); resizing the image to the reference's size")
        image = F.interpolate(image[None], size=reference.shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp(0, 1)
    size = _model_size(model) or tuple(reference.shape[-2:])
    _note_resize("the reference", reference.shape[-2:], size, output_size, fill)
    g = reference_motion(image[None], reference.transpose(0, 1)[None], estimator=get_estimator(flow),
                            motion_scale=motion_scale, strength=strength)
    return _run(model, g, size, mode=mode, strength=strength, steps=steps, seed=seed, progress=progress,
                inputs=torch.cat([image[None], reference]), output_size=output_size, fill=fill)


def speed(
    clip: torch.Tensor,
    factor: float,
    *,
    model: EmbeddedVideoModel | None,
    motion_scale: float = 1.0,
    strength: float = 1.0,
    steps: int | None = None,
    seed: int = 0,
    mode: str = "both",
    flow: str = "dis",
    interpolator="auto",
    progress: Callable[[int], None] | None = None,
    output_size: str = "input",
    fill: str = "warp",
) -> JobResult:
    """Output frame ``j`` shows input time ``j * factor`` (0.25..4; < 1 = slow motion with generated
    in-between frames, > 1 = faster); real frames at integer times are kept.

    interpolator: where the in-betweens' motion comes from, as MoG takes it from a flow-based interpolation
    model: the intermediate flows and blend mask of ``flow.interpolate.get_interpolator(interpolator)``
    ("auto": IFNet when RIFE weights are installed, the DIS backend otherwise; or an Interpolator); None:
    flow reversal of the ``flow`` estimator's flows."""
    clip = _check_clip(clip, "input clip", 2)
    if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"--factor: expected a positive number (0.5 = 2x slow motion, 2 = 2x faster), got {factor}")
    lo, hi = SPEED_RANGE
    if not lo <= factor <= hi:
        raise ValueError(f"--factor: expected {lo} .. {hi} (0.25 = 4x slow motion, 4 = 4x faster), got {factor}")
    size = _model_size(model) or tuple(clip.shape[-2:])
    _note_resize("the input", clip.shape[-2:], size, output_size, fill)
    inter = get_interpolator(interpolator) if isinstance(interpolator, str) else interpolator
    g = speed_guidance(clip.transpose(0, 1)[None], float(factor), estimator=None if inter else get_estimator(flow),
                       intermediate=inter, motion_scale=motion_scale, strength=strength)
    return _run(model, g, size, mode=mode, strength=strength, steps=steps, seed=seed, progress=progress, inputs=clip,
                output_size=output_size, fill=fill)


def extend(
    clip: torch.Tensor,
    frames: int,
    *,
    model: EmbeddedVideoModel | None,
    motion_scale: float = 1.0,
    strength: float = 1.0,
    steps: int | None = None,
    seed: int = 0,
    mode: str = "both",
    flow: str = "dis",
    damping: float = 0.0,
    progress: Callable[[int], None] | None = None,
    output_size: str = "input",
    fill: str = "warp",
) -> JobResult:
    """Continue ``clip`` by ``frames`` new frames (at most :data:`MAX_EXTEND`), guided by its last motion
    continued at constant velocity (``damping`` slows it per frame; :func:`motionguide.guidance.extension`);
    the last frame is the only source, so what it does not see has weight 0 in the guidance."""
    clip = _check_clip(clip, "input clip", 2)
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"--frames: expected a positive number of new frames, got {frames}")
    if frames > MAX_EXTEND:
        raise ValueError(f"--frames {frames} is more than this job adds ({MAX_EXTEND}): the guidance continues the "
                         f"last motion from the last frame and leaves the picture; extend in several runs")
    size = _model_size(model) or tuple(clip.shape[-2:])
    _note_resize("the input", clip.shape[-2:], size, output_size, fill)
    g = extension_guidance(clip.transpose(0, 1)[None], frames, estimator=get_estimator(flow), damping=damping,
                           motion_scale=motion_scale, strength=strength)
    return _run(model, g, size, mode=mode, strength=strength, steps=steps, seed=seed, progress=progress, inputs=clip,
                output_size=output_size, fill=fill)


# ------------------------------------------------------------------------------------------ demo, compare
def demo_inputs(job: str, seed: int = 0) -> dict:
    """Built-in inputs from the held-out clip generator (no files, no downloads).

    transfer: motion of held-out clip ``seed``, first frame of held-out clip ``seed + 1`` (another scene);
    speed: held-out clip ``seed`` (8 frames, factor 0.5 by default); extend: its first 4 frames.
    """
    c = make_clip(seed, split="heldout", num_frames=8)
    if job == "transfer":
        other = make_clip(seed + 1, split="heldout", num_frames=8)
        return {"reference": c.frames, "image": other.frames[0], "fps": 8.0}
    if job == "speed":
        return {"clip": c.frames, "fps": 8.0}
    if job == "extend":
        return {"clip": c.frames[:4], "fps": 8.0}
    raise ValueError(f"unknown job {job!r}; expected transfer, speed or extend")


def _pick(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def save_compare(path: str | Path, result: JobResult, *, columns: int = 8, zoom: int | None = None, max_side=512) -> None:
    """A strip: inputs, guidance (flow-only warp), output, the guidance flows (colour wheel) and, when the
    output was composited, the confidence (white = the warp, black = the model). zoom: nearest-neighbour
    enlargement (default: up to 4x, so small outputs stay visible); frames over ``max_side`` px are downscaled to it."""
    g = result.guidance
    t_out, _, h, w = result.frames.shape
    zoom = zoom or (max_side / max(h, w) if max(h, w) > max_side else max(1, min(4, 128 // max(1, min(h, w)))))

    def up(x):  # area downscale keeps a 4K strip bounded (8 x 5 cells of 512 px, not 290 megapixels)
        return F.interpolate(x[None], scale_factor=zoom, mode="area" if zoom < 1 else "nearest")[0] if zoom != 1 else x

    # consecutive frames show the motion best; long outputs are sampled evenly
    cols = list(range(min(t_out, columns))) if t_out <= 2 * columns else _pick(t_out, columns)
    flows = []
    for t in cols:
        k0 = int(g.sources[t, 0])
        fl = g.flows[0, t, 0] if k0 >= 0 else torch.zeros(2, *g.size)
        flows.append(up(fl) * zoom)
    rows = [
        [up(result.inputs[i]) for i in _pick(result.inputs.shape[0], columns)],
        [up(result.warped[t]) for t in cols],
        [up(result.frames[t]) for t in cols],
        flows,
    ]
    if result.confidence is not None:
        rows.append([up(result.confidence[t].expand(3, -1, -1)) for t in cols])
    save_strip(path, rows)


# ------------------------------------------------------------------------------------- diffusers pipelines
def _pipeline_grid(pipe) -> tuple[int, int, int]:
    """``(multiple, VAE spatial factor, patch)``: a pipeline's frame sides are multiples of the first."""
    spec = get_spec(pipe.transformer)
    s, p = vae_from_pipeline(pipe, spec).spatial, spec.patch_size(pipe.transformer)[1]
    return s * p, s, p


def _call_size(pipe) -> tuple[int, int] | None:
    """``(h, w)`` the pipeline makes when its call names no size: its ``__call__``'s ``height``/``width``
    defaults, or (CogVideoX, whose defaults are None) its transformer's sample size times the VAE factor."""
    try:
        params = inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):
        params = {}
    h, w = (params[k].default if k in params else None for k in ("height", "width"))
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return h, w
    cfg, s = getattr(pipe.transformer, "config", None), _pipeline_grid(pipe)[1]
    sh, sw = getattr(cfg, "sample_height", None), getattr(cfg, "sample_width", None)
    return (int(sh) * s, int(sw) * s) if isinstance(sh, int) and isinstance(sw, int) else None


def pipeline_size(pipe, input_size: tuple[int, int], size: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(h, w)`` a job runs ``pipe`` at for an input of ``input_size = (H, W)``.

    size: the size asked for (``--pipeline-size``), checked: positive multiples of the pipeline's multiple
    (VAE spatial factor x patch, 16 for Wan). None: the input's aspect ratio fitted inside the pipeline's
    default call size (:func:`_call_size`, e.g. Wan's 832x480, turned to the input's orientation so a portrait
    input gets 480x832), never above the input's size, rounded down to the multiple; the input's size rounded
    down when the pipeline names no default.
    """
    m, s, p = _pipeline_grid(pipe)
    if size is not None:
        h, w = (int(v) for v in size)
        if h <= 0 or w <= 0:
            raise ValueError(f"--pipeline-size: expected a positive WxH in pixels (e.g. 832x480), got {w}x{h}")
        if h % m or w % m:
            fit = lambda v, up: max(m, (v // m + up) * m)  # noqa: E731
            raise ValueError(f"--pipeline-size {w}x{h}: {type(pipe).__name__} takes sides that are multiples of {m} "
                             f"(VAE {s}x times patch {p}); use {fit(w, 0)}x{fit(h, 0)} or {fit(w, 1)}x{fit(h, 1)}")
        return h, w
    hh, ww = (float(v) for v in input_size)
    box = _call_size(pipe)
    if box is not None:
        bh, bw = box if (box[0] > box[1]) == (hh > ww) else box[::-1]
        k = min(bh / hh, bw / ww, 1.0)
        hh, ww = hh * k, ww * k
    return max(m, int(hh + 1e-6) // m * m), max(m, int(ww + 1e-6) // m * m)


def _pipeline_frames(pipe, n: int) -> int:
    """The longest frame count up to ``n`` that the pipeline's VAE takes (e.g. 4k+1 for Wan)."""
    vae = vae_from_pipeline(pipe, get_spec(pipe.transformer))
    while n > 1:
        try:
            vae.check_num_frames(n)
            return n
        except ValueError:
            n -= 1
    return n


def run_pipeline(
    pipe,
    guidance,
    *,
    strength: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    adapter: str | None = None,
    **call_kwargs,
) -> torch.Tensor:
    """Run a job's guidance through a diffusers pipeline (``motionguide.pipeline.generate_with_guidance``).

    The guidance (batch 1) is fitted to what the pipeline takes: frames trimmed to the longest count its VAE
    accepts (e.g. 4k+1 for Wan) and the size rounded to a multiple of the VAE factor times the patch, each
    with a notice. Returns ``(T, 3, H, W)`` in [0, 1], the pipeline's output as it is.
    """
    n = _pipeline_frames(pipe, guidance.num_frames)
    if n != guidance.num_frames:
        _notice(f"{type(pipe).__name__} takes {n} of the {guidance.num_frames} frames (its VAE's frame counts)")
        guidance = window(guidance, 0, n, {})
    m = _pipeline_grid(pipe)[0]
    h, w = guidance.size
    size = (max(m, round(h / m) * m), max(m, round(w / m) * m))
    if size != (h, w):
        _notice(f"resizing the guidance from {w}x{h} to {size[1]}x{size[0]} (WxH, multiples of {m} for this pipeline)")
        guidance = resize_guidance(guidance, size)
    call_kwargs.setdefault("output_type", "pt")
    if steps is not None:
        call_kwargs.setdefault("num_inference_steps", int(steps))
    call_kwargs.setdefault("generator", torch.Generator().manual_seed(int(seed)))
    out = generate_with_guidance(pipe, guidance, adapter=adapter, strength=strength, **call_kwargs)
    frames = out.frames[0] if hasattr(out, "frames") else out[0][0]
    frames = torch.as_tensor(frames)
    if frames.ndim == 4 and frames.shape[-1] == 3 and frames.shape[1] != 3:  # (T, H, W, 3) numpy layout
        frames = frames.permute(0, 3, 1, 2)
    return frames.float().clamp(0, 1)


def pipeline_job(
    pipe,
    result: JobResult,
    *,
    size: tuple[int, int] | None = None,
    output_size: str = "input",
    **run_kwargs,
) -> JobResult:
    """A job's guidance through a diffusers pipeline at :func:`pipeline_size` (``size``: the ``(h, w)`` asked
    for, None: the default), composed at the input's size as the embedded model's output is.

    result: what a job made without a model (``transfer``/``speed``/``extend`` with ``model=None``): the
    guidance, the warp and the confidence at the input's size. output_size ``"input"``: the warp where the
    confidence trusts it, the pipeline's output (upsampled) where it does not, through
    :func:`motionguide.compositing.composite`; frames past the pipeline's frame count keep the warp, known
    frames are exact, ``model_share`` is the fraction of the output's pixels the pipeline supplied.
    ``"model"``: the same at the pipeline's size and frame count (the warp and the confidence area-downscaled
    to it). run_kwargs: :func:`run_pipeline`'s.
    """
    if output_size not in OUTPUT_SIZES:
        raise ValueError(f"output_size: expected one of {OUTPUT_SIZES}, got {output_size!r}")
    conf = result.confidence
    if conf is None or conf.shape[0] != result.warped.shape[0] or conf.shape[-2:] != result.warped.shape[-2:]:
        raise ValueError("result: expected what a job made with model=None (the warp and its confidence at the "
                         "input's size)")
    g, name = result.guidance, type(pipe).__name__
    (hh, ww), t = tuple(g.size), g.num_frames
    h, w = pipeline_size(pipe, (hh, ww), size)
    why = ("--pipeline-size" if size is not None else
           f"the input's aspect inside its default call size, multiples of {_pipeline_grid(pipe)[0]}; "
           f"--pipeline-size WxH sets it")
    if output_size == "model":
        _notice(f"{name} runs at {w}x{h} (WxH; {why}); the output is at that size: the warp where the flow is "
                f"trusted, the pipeline's frames where it is not (--output-size input keeps the input's {ww}x{hh})")
    else:
        _notice(f"{name} runs at {w}x{h} (WxH; {why}); the output keeps the input's {ww}x{hh}: the warp where the "
                f"flow is trusted, the pipeline's output{' upsampled' if h * w < hh * ww else ''} where it is not")
    n = _pipeline_frames(pipe, t)
    if n != t:
        rest = "the output has those frames only" if output_size == "model" else f"frames {n + 1}..{t} keep the warp"
        _notice(f"{name} takes {n} of the {t} frames (its VAE's frame counts); {rest}")
    small = resize_guidance(window(g, 0, n, {}) if n != t else g, (h, w))
    frames = run_pipeline(pipe, small, **run_kwargs)
    at_model = output_size == "model"
    warp, c = result.warped.transpose(0, 1)[None], conf.transpose(0, 1)[None]  # (1, C, T, H, W)
    out, c_out, _ = composite(warp[:, :, :n], frames.transpose(0, 1)[None].to(warp), c[:, :, :n], at_generated=at_model)
    if not at_model:
        out, c_out = torch.cat([out, warp[:, :, n:]], 2), c
    kf, known = known_of(small if at_model else g)
    out[:, :, known[0]] = kf[:, :, known[0]]  # known frames exactly, not through the pyramid's rounding
    share = float((1 - c_out[:, :, :n]).sum()) / c_out.numel()
    inp = F.interpolate(result.inputs, size=(h, w), mode="area") if at_model and (h, w) != (hh, ww) else result.inputs
    return JobResult(_clip(out), small if at_model else g, _clip(flow_only(small)) if at_model else result.warped,
                     inp, _clip(c_out) if at_model else conf, share)
