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
the embedded model's place: :func:`pipeline_job` runs the guidance through it at :func:`pipeline_size`, in
windows of its frame count (:mod:`motionguide.pipeline_job`), and composes its output with the warp the same
way, or returns its own clip (``composite="off"``).

Shapes: clips ``(T, 3, H, W)`` float in [0, 1] (one clip, no batch) at this API.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from flow.estimators import get_estimator
from flow.interpolate import get_interpolator

from .embedded.adapters import attach_adapters, load_adapters
from .embedded.checkpoint import load_embedded
from .embedded.generation import MODES
from .embedded.network import EmbeddedVideoModel
from .embedded.windows import generate_windows
from .compositing import composite, upsample
from .demo import demo_inputs, save_compare
from .guidance import extension as extension_guidance
from .guidance import reference_motion
from .guidance import speed as speed_guidance
from .job_options import FILLS, MAX_EXTEND, OUTPUT_SIZES, SPEED_RANGE, JobOptions, job_arguments
from .pipeline_job import (COMPOSITES, OFFLOADS, fit_frames, load_pipeline, native_shape, pipeline_grid,
                           pipeline_size, run_pipeline)
from .warping import EXTEND_FILL, UNSEEN_FILL, Synthesis, known_of, synthesize
from .windows import resize_clip

composite_clips = composite  # pipeline_job's ``composite`` argument names the choice
#: the names the pipeline section had here (:mod:`motionguide.pipeline_job` holds them)
_pipeline_grid, _pipeline_frames = pipeline_grid, fit_frames

__all__ = [
    "JobResult",
    "JobOptions",
    "Synthesis",
    "load_models",
    "transfer",
    "speed",
    "extend",
    "demo_inputs",
    "save_compare",
    "SPEED_RANGE",
    "OUTPUT_SIZES",
    "FILLS",
    "MAX_EXTEND",
    "load_pipeline",
    "run_pipeline",
    "pipeline_size",
    "pipeline_job",
    "COMPOSITES",
    "OFFLOADS",
]

# SPEED_RANGE (speed's factor), MAX_EXTEND (most frames extend adds), OUTPUT_SIZES and FILLS live in
# motionguide.job_options with the options the jobs share (light, so the command line checks with them)


def _notice(msg: str) -> None:
    print(f"notice: {msg}", file=sys.stderr)


@dataclass
class JobResult:
    """What a job made, all at the output's size ``(h, w)``, one clip (no batch).

    frames: ``(T, 3, h, w)`` the output; guidance: the pixel Guidance on that grid (batch 1); warped:
    ``(T, 3, h, w)`` the flow-only synthesis of the guidance; inputs: ``(N, 3, h, w)`` the inputs on that
    grid; confidence: ``(T, 1, h, w)`` where the warp is trusted (1) and where the model supplied the pixel
    (0), None when the model's output is used as it is (unguided); model_share: the fraction of the output's
    pixels (known frames included) the model supplied (0 for warping alone, 1 when the model's output is used
    as it is); synthesis: the guidance's :class:`~motionguide.warping.Synthesis` at the input's size (batch 1),
    made once per job (None where the job needs no warp at the input's size).
    """

    frames: torch.Tensor
    guidance: object
    warped: torch.Tensor
    inputs: torch.Tensor
    confidence: torch.Tensor | None = None
    model_share: float = 0.0
    synthesis: Synthesis | None = None


# ------------------------------------------------------------------------------------------------- models
def load_models(
    model_dir: str | None = None, adapters_dir: str | None = None, *, mode: str = "both"
) -> EmbeddedVideoModel:
    """The embedded model (shipped assets by default) ready for ``mode``: trained adapters for
    latent/feature/both, a training-free adapter for ``training_free``, nothing for unguided/flow_only."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    model = load_embedded(model_dir)
    if mode in ("latent", "feature", "both"):
        load_adapters(model, adapters_dir)
    elif mode == "training_free":
        attach_adapters(model, mode="training_free")
    return model


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


def _run(model, g, size, o: JobOptions, *, inputs, unseen: str = UNSEEN_FILL) -> JobResult:
    """Generate Guidance ``g`` (built at the input's size). The model (at its size ``size``, guided by the
    input-resolution warp downscaled) supplies the pixels the confidence does not trust, composited into the
    warp (:func:`motionguide.compositing.composite`) at the input's size (``fill == "model"``; ``"warp"`` keeps
    the warp) or at the model's. The unguided model's output is used as it is (upsampled at the input's size).
    ``o``: the job's options, checked (:class:`~motionguide.job_options.JobOptions`); unseen: the warp's fill
    where no source sees a pixel (:mod:`motionguide.warping`, chosen per job)."""
    mode, fill = o.mode, o.fill
    at_model = o.output_size == "model" and model is not None
    resize = at_model and tuple(inputs.shape[-2:]) != tuple(size)
    inp = F.interpolate(inputs, size=size, mode="area") if resize else inputs
    if at_model and mode == "flow_only":  # the warp at the model's grid
        small_g = g.resized(size)
        frames = generate_windows(None, small_g, mode="flow_only")
        return JobResult(_clip(frames), small_g, _clip(frames), inp, None, 1.0)
    # the one warp at the input's size
    syn = synthesize(g, unseen=unseen, with_confidence=model is None or mode != "unguided")
    warp = syn.warp
    if model is None or mode == "flow_only" or (not at_model and fill == "warp" and mode != "unguided"):
        return JobResult(_clip(warp), g, _clip(warp), inputs, _clip(syn.confidence), 0.0, syn)
    small_g, small_warp = g.resized(size), resize_clip(warp, size)
    small = generate_windows(model, small_g, mode=mode, strength=o.strength, steps=o.steps, seed=o.seed,
                             progress=o.progress, warp=small_warp)
    if mode == "unguided":  # nothing to composite with: the model's clip as it is
        up = small if at_model else upsample(small[0].transpose(0, 1), g.size).transpose(0, 1)[None]
        return JobResult(_clip(up), small_g if at_model else g, _clip(small_warp if at_model else warp), inp,
                         None, 1.0, syn)
    out, conf, share = composite(warp, small, syn.confidence, at_generated=at_model)
    kf, known = known_of(small_g) if at_model else (syn.known_frames, syn.known)
    out[:, :, known[0]] = kf[:, :, known[0]]  # known frames exactly, not through the pyramid's rounding
    return JobResult(_clip(out), small_g if at_model else g, _clip(small_warp if at_model else warp), inp,
                     _clip(conf), share, syn)


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
    options: JobOptions | None = None,
    **option_fields: Any,
) -> JobResult:
    """Motion from ``reference (T, 3, H, W)``, appearance from ``image (3, H, W)``; ``frames`` output frames
    (default T). An image of another size is resized to the reference's size (with a notice).

    options: the :class:`~motionguide.job_options.JobOptions` the jobs share (``motion_scale``, ``strength``,
    ``steps``, ``seed``, ``mode``, ``flow``, ``progress``, ``output_size``, ``fill``); or give its fields as
    keywords, which build it (not both)."""
    reference = _check_clip(reference, "reference", 2)
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image: expected (3, H, W) float in [0, 1], got {tuple(getattr(image, 'shape', ()))}")
    o = JobOptions.build(options, **option_fields)
    n = reference.shape[0] if frames is None else int(frames)
    if n < 2:
        raise ValueError(f"frames: expected at least 2, got {n}")
    if n > reference.shape[0]:
        raise ValueError(f"frames: the reference clip has {reference.shape[0]} frames, fewer than the {n} asked for; "
                         f"use frames={reference.shape[0]} or a longer reference")
    reference = reference[:n]
    if tuple(image.shape[-2:]) != tuple(reference.shape[-2:]):
        _notice(f"the image is {image.shape[2]}x{image.shape[1]}, the reference {reference.shape[3]}x{reference.shape[2]} "
                "(WxH); resizing the image to the reference's size")
        image = F.interpolate(image[None], size=reference.shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp(0, 1)
    size = _model_size(model) or tuple(reference.shape[-2:])
    _note_resize("the reference", reference.shape[-2:], size, o.output_size, o.fill)
    g = reference_motion(image[None], reference.transpose(0, 1)[None], estimator=get_estimator(o.flow),
                         motion_scale=o.motion_scale, strength=o.strength)
    return _run(model, g, size, o, inputs=torch.cat([image[None], reference]))


def speed(
    clip: torch.Tensor,
    factor: float,
    *,
    model: EmbeddedVideoModel | None,
    interpolator="auto",
    options: JobOptions | None = None,
    **option_fields: Any,
) -> JobResult:
    """Output frame ``j`` shows input time ``j * factor`` (0.25..4; < 1 = slow motion with generated
    in-between frames, > 1 = faster); real frames at integer times are kept.

    interpolator: where the in-betweens' motion comes from, as MoG takes it from a flow-based interpolation
    model: the intermediate flows and blend mask of ``flow.interpolate.get_interpolator(interpolator)``
    ("auto": IFNet when RIFE weights are installed, the DIS backend otherwise; or an Interpolator); None:
    flow reversal of the ``flow`` estimator's flows. options: as :func:`transfer`'s."""
    clip = _check_clip(clip, "input clip", 2)
    o, own = job_arguments(options, option_fields, factor=factor)
    factor = own["factor"]
    size = _model_size(model) or tuple(clip.shape[-2:])
    _note_resize("the input", clip.shape[-2:], size, o.output_size, o.fill)
    inter = get_interpolator(interpolator) if isinstance(interpolator, str) else interpolator
    g = speed_guidance(clip.transpose(0, 1)[None], factor, estimator=None if inter else get_estimator(o.flow),
                       intermediate=inter, motion_scale=o.motion_scale, strength=o.strength)
    return _run(model, g, size, o, inputs=clip)


def extend(
    clip: torch.Tensor,
    frames: int,
    *,
    model: EmbeddedVideoModel | None,
    damping: float = 0.0,
    options: JobOptions | None = None,
    **option_fields: Any,
) -> JobResult:
    """Continue ``clip`` by ``frames`` new frames (at most :data:`MAX_EXTEND`), guided by its last motion
    continued at constant velocity (``damping`` slows it per frame; :func:`motionguide.guidance.extension`);
    the last frame is the only source, so what it does not see has weight 0 in the guidance, and the warp fills
    it with :data:`~motionguide.warping.EXTEND_FILL` (the median of three guesses). options: as
    :func:`transfer`'s."""
    clip = _check_clip(clip, "input clip", 2)
    o, own = job_arguments(options, option_fields, new_frames=frames, damping=damping)
    frames, damping = own["new_frames"], own["damping"]
    size = _model_size(model) or tuple(clip.shape[-2:])
    _note_resize("the input", clip.shape[-2:], size, o.output_size, o.fill)
    g = extension_guidance(clip.transpose(0, 1)[None], frames, estimator=get_estimator(o.flow), damping=damping,
                           motion_scale=o.motion_scale, strength=o.strength)
    return _run(model, g, size, o, inputs=clip, unseen=EXTEND_FILL)


# ------------------------------------------------------------------------------------------ demo, compare
# demo_inputs and save_compare live in motionguide.demo (imported above); jobs re-exports them


# ------------------------------------------------------------------------------------- diffusers pipelines
def pipeline_job(
    pipe,
    result: JobResult,
    *,
    size: tuple[int, int] | None = None,
    output_size: str = "input",
    composite: str = "confidence",
    frames: int | None = None,
    **run_kwargs,
) -> JobResult:
    """A job's guidance through a diffusers pipeline at :func:`pipeline_size` (``size``: the ``(h, w)`` asked
    for, None: the default; a fixed-size model runs at its own), every output frame made in windows of at most
    ``frames`` (:func:`motionguide.pipeline_job.run_pipeline`).

    result: what a job made without a model (``transfer``/``speed``/``extend`` with ``model=None``): the
    guidance and its :class:`~motionguide.warping.Synthesis` (the warp, the confidence, the known frames) at
    the input's size, taken as given.

    composite ``"confidence"``: output_size ``"input"``: the warp where the confidence trusts it, the
    pipeline's output (resized) where it does not, through :func:`motionguide.compositing.composite`; known
    frames are exact; ``model_share`` is the fraction of the output's pixels the pipeline supplied.
    ``"model"``: the same at the pipeline's size (the warp and the confidence area-downscaled to it).
    composite ``"off"``: the pipeline's own clip, known frames as it made them, at the input's size (resized)
    or at its own; ``confidence`` None, ``model_share`` 1. run_kwargs: ``run_pipeline``'s.
    """
    if output_size not in OUTPUT_SIZES:
        raise ValueError(f"output_size: expected one of {OUTPUT_SIZES}, got {output_size!r}")
    if composite not in COMPOSITES:
        raise ValueError(f"composite: expected one of {COMPOSITES}, got {composite!r}")
    conf, syn = result.confidence, result.synthesis
    if (conf is None or syn is None or conf.shape[0] != result.warped.shape[0]
            or conf.shape[-2:] != result.warped.shape[-2:]):
        raise ValueError("result: expected what a job made with model=None (the warp and its confidence at the "
                         "input's size)")
    g, name = result.guidance, type(pipe).__name__
    hh, ww = tuple(g.size)
    h, w = pipeline_size(pipe, (hh, ww), size)
    at_model = output_size == "model"
    why = ("--pipeline-size" if size is not None else "its learned positional embeddings take no other size; the "
           "input is resized to it" if native_shape(pipe).fixed else f"the input's aspect inside its native size, multiples of "
           f"{pipeline_grid(pipe)[0]}; --pipeline-size WxH sets it")
    if composite == "off":
        what = ("the output is its own clip at that size" if at_model else
                f"the output is its own clip, resized back to the input's {ww}x{hh}")
    elif at_model:
        what = (f"the output is at that size: the warp where the flow is trusted, the pipeline's frames where it is "
                f"not (--output-size input keeps the input's {ww}x{hh})")
    else:
        what = (f"the output keeps the input's {ww}x{hh}: the warp where the flow is trusted, the pipeline's "
                f"output{' upsampled' if h * w < hh * ww else ''} where it is not")
    _notice(f"{name} runs at {w}x{h} (WxH; {why}); {what}")
    small = g.resized((h, w))
    made = run_pipeline(pipe, small, frames=frames, **run_kwargs).transpose(0, 1)[None]  # (1, 3, T, h, w)
    warp, c = result.warped.transpose(0, 1)[None], conf.transpose(0, 1)[None]  # (1, C, T, H, W)
    inp = F.interpolate(result.inputs, size=(h, w), mode="area") if at_model and (h, w) != (hh, ww) else result.inputs
    # at the pipeline's size: its own grid's warp and known frames (one pass, no confidence); else the job's
    at = synthesize(small, with_confidence=False) if at_model else syn
    small_warp = _clip(at.warp) if at_model else result.warped
    if composite == "off":
        out = made if at_model else resize_clip(made, (hh, ww))
        return JobResult(_clip(out), small if at_model else g, small_warp, inp, None, 1.0, syn)
    out, c_out, share = composite_clips(warp, made.to(warp), c, at_generated=at_model)
    out[:, :, at.known[0]] = at.known_frames[:, :, at.known[0]]  # known frames exactly, not through the pyramid
    return JobResult(_clip(out), small if at_model else g, small_warp, inp, _clip(c_out) if at_model else conf, share,
                     syn)
