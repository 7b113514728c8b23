"""The options the three jobs share (:func:`motionguide.jobs.transfer`, ``speed``, ``extend``), and the checks of
their own arguments (``factor``, ``frames``), in one place.

:class:`JobOptions` is a dataclass validated in ``__post_init__`` (the diffusers hook-config and kornia
style): a bad value raises ``ValueError`` naming the Python parameter (``strength: expected 0 .. 1 ...``),
before any frame is touched. The module imports only the standard library, so the command line builds the
same options and runs the same checks before torch loads (its errors then name flags, translated once in
``motionguide.commands._words``).

The ranges of guidance (``MOTION_SCALE_RANGE``, ``STRENGTH_RANGE``, :mod:`motionguide.guidance`) and the
modes (:data:`motionguide.embedded.generation.MODES`) are restated here from the modules that own them,
which import torch; ``tests/motionguide/test_job_options.py`` checks each equals its owner's value.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

__all__ = ["JobOptions", "job_arguments", "check_factor", "check_new_frames", "check_damping", "SPEED_RANGE", "MAX_EXTEND", "MAX_STEPS",
           "OUTPUT_SIZES", "FILLS", "MODES", "MOTION_SCALE_RANGE", "STRENGTH_RANGE"]

#: speed factors the job accepts (0.25 = 4x slow motion, 4 = 4x faster)
SPEED_RANGE = (0.25, 4.0)
#: most frames ``extend`` adds: windows chain, but constant-velocity guidance from the last known frame
#: leaves the picture after a few dozen frames at the motions the model was trained on
MAX_EXTEND = 64
#: most sampling steps per window (a flow-matching sampler converges in tens; more is a typo)
MAX_STEPS = 1000
#: where a job's output is made: at the input's resolution (the warp, with the model where the flow fails)
#: or at the model's own size (the same composite, the warp and the confidence downscaled to it)
OUTPUT_SIZES = ("input", "model")
#: what fills the pixels the confidence does not trust, at the input's resolution: the warp itself (the
#: default: inside those pixels on real footage the embedded 32x32 model ties with it, and costs time,
#: `benchmarks/real_footage.py`), or the model's output
FILLS = ("warp", "model")
#: motionguide.embedded.generation.MODES
MODES = ("unguided", "latent", "feature", "both", "training_free", "flow_only")
#: motionguide.guidance.MOTION_SCALE_RANGE, STRENGTH_RANGE
MOTION_SCALE_RANGE = (0.0, 4.0)
STRENGTH_RANGE = (0.0, 1.0)


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


@dataclass
class JobOptions:
    """What the three jobs share; every field is checked on construction.

    motion_scale: multiplies the guiding motion, 0 .. 4 (0 freezes, 1 keeps); strength: how hard the model is
    held to the guidance, 0 .. 1 (0 = unguided); steps: sampling steps per window, 1 .. :data:`MAX_STEPS`
    (None: the model's); seed: the noise seed; mode: one of :data:`MODES`; flow: the flow estimator's name
    (``flow.estimators.get_estimator`` checks it) or an estimator; progress: called with each sampler step, or
    None; output_size: one of :data:`OUTPUT_SIZES`; fill: one of :data:`FILLS`.

    >>> JobOptions(strength=0.5).strength
    0.5
    >>> JobOptions(strength=2)
    Traceback (most recent call last):
    ...
    ValueError: strength: expected 0 .. 1 (0 = unguided, 1 = fully guided), got 2
    """

    motion_scale: float = 1.0
    strength: float = 1.0
    steps: int | None = None
    seed: int = 0
    mode: str = "both"
    flow: Any = "dis"
    progress: Callable[[int], None] | None = None
    output_size: str = "input"
    fill: str = "warp"

    def __post_init__(self) -> None:
        lo, hi = MOTION_SCALE_RANGE
        if not (_real(self.motion_scale) and lo <= self.motion_scale <= hi):
            raise ValueError(f"motion_scale: expected {lo:g} .. {hi:g} (1 keeps the motion), got {self.motion_scale}")
        lo, hi = STRENGTH_RANGE
        if not (_real(self.strength) and lo <= self.strength <= hi):
            raise ValueError(f"strength: expected {lo:g} .. {hi:g} (0 = unguided, 1 = fully guided), got {self.strength}")
        if self.steps is not None and not (_int(self.steps) and 1 <= self.steps <= MAX_STEPS):
            raise ValueError(f"steps: expected 1 .. {MAX_STEPS} sampling steps per window, got {self.steps}")
        if not _int(self.seed):
            raise ValueError(f"seed: expected an int, got {self.seed!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.progress is not None and not callable(self.progress):
            raise ValueError(f"progress: expected a callable taking the step number, or None, got "
                             f"{type(self.progress).__name__}")
        if self.output_size not in OUTPUT_SIZES:
            raise ValueError(f"output_size: expected one of {OUTPUT_SIZES}, got {self.output_size!r}")
        if self.fill not in FILLS:
            raise ValueError(f"fill: expected one of {FILLS}, got {self.fill!r}")

    @classmethod
    def build(cls, options: "JobOptions | None" = None, **given: Any) -> "JobOptions":
        """``options``, or new options from the keyword arguments ``given`` (the jobs' keyword form); both at
        once is refused, so a value is never silently overridden."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise TypeError(f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                            f"the jobs' options are {', '.join(names)}")
        if options is None:
            return cls(**given)
        if not isinstance(options, cls):
            raise ValueError(f"options: expected a JobOptions, got {type(options).__name__}")
        defaults = {f.name: f.default for f in fields(cls)}
        both = [k for k, v in given.items() if not (v is defaults[k] or v == defaults[k])]
        if both:
            raise ValueError(f"options: given together with {', '.join(both)}; set "
                             f"{'them' if len(both) > 1 else 'it'} in the JobOptions instead")
        return options

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "JobOptions":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"options: unknown fields {unknown}; expected some of {[f.name for f in fields(cls)]}")
        return cls(**d)


def check_factor(factor: Any) -> float:
    """``speed``'s factor checked: a number in :data:`SPEED_RANGE`."""
    if not (_real(factor) and factor > 0):
        raise ValueError(f"factor: expected a positive number (0.5 = 2x slow motion, 2 = 2x faster), got {factor}")
    lo, hi = SPEED_RANGE
    if not lo <= factor <= hi:
        raise ValueError(f"factor: expected {lo:g} .. {hi:g} (0.25 = 4x slow motion, 4 = 4x faster), got {factor}")
    return float(factor)


def check_new_frames(frames: Any) -> int:
    """``extend``'s frames checked: an int in 1 .. :data:`MAX_EXTEND`."""
    if not (_int(frames) and 1 <= frames <= MAX_EXTEND):
        raise ValueError(f"frames: expected 1 .. {MAX_EXTEND} new frames, got {frames}; the guidance continues the "
                         f"last motion from the last frame and leaves the picture after a few dozen frames, so "
                         f"extend in several runs of at most {MAX_EXTEND}")
    return int(frames)


def check_damping(damping: Any) -> float:
    """``extend``'s damping checked: 0 <= damping < 1 (the continued motion's slow-down per frame)."""
    if not (_real(damping) and 0 <= damping < 1):
        raise ValueError(f"damping: expected 0 .. <1 (0 keeps the motion), got {damping}")
    return damping


#: the jobs' own arguments by kind, and their checks
_OWN = {"factor": check_factor, "new_frames": check_new_frames, "damping": check_damping}


def job_arguments(options: JobOptions | None, given: dict, **own: Any) -> tuple[JobOptions, dict]:
    """A job's options and its own arguments, checked in one call (a job enters this module once).

    options, given: as :meth:`JobOptions.build` (``given``: the job's keyword form); own: the job's own
    arguments by kind, ``factor`` (:func:`check_factor`), ``new_frames`` (:func:`check_new_frames`),
    ``damping`` (:func:`check_damping`). Returns the options and ``own`` as checked.

    >>> o, own = job_arguments(None, {"strength": 0.5}, factor=2)
    >>> o.strength, own
    (0.5, {'factor': 2.0})
    """
    checked = {k: _OWN[k](v) for k, v in own.items()}  # the job's own arguments first, as the jobs always did
    return JobOptions.build(options, **given), checked
