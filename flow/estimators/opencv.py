"""The OpenCV flow estimators: Dense Inverse Search (``dis``) and Farneback (``farneback``).

Both run per pair of the batch on grey uint8 images in numpy (OpenCV parallelises inside each pair) and
return flows on the input's device.

DIS presets (``preset=``):

======================  =====================================================================  ==========
preset                  what it runs                                                            cost
======================  =====================================================================  ==========
``ultrafast``           OpenCV ``DISOPTICAL_FLOW_PRESET_ULTRAFAST`` unchanged                   0.1x
``fast``                OpenCV ``PRESET_FAST`` unchanged                                        0.2x
``medium``              OpenCV ``PRESET_MEDIUM`` unchanged                                      1x
``swift``               ULTRAFAST pass, then FAST with 4x4 patches started from it              0.4x
``balanced`` (default)  ULTRAFAST pass, then MEDIUM with 4x4 patches (stride 2) started from it  1.6x
``quality``             ``balanced`` down to full resolution, then variational refinement       9x
======================  =====================================================================  ==========

Why two passes: DIS's coarse-to-fine pyramid bottoms out at about 1/32 of the image, and MEDIUM's per-level
variational refinement smooths large motions away. DIS accepts an initial flow, which it resamples to its
coarsest level: a cheap ULTRAFAST pass makes that start; the second pass with smaller patches then recovers
detail. ``python benchmarks/flow.py`` prints the endpoint errors of every preset on the Sintel pairs with
ground truth (``balanced`` beats raw MEDIUM on all of them).

Farneback options: ``levels``, ``winsize``, ``iterations``, ``poly_n``, ``poly_sigma``, ``pyr_scale``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checks import check_finite, check_flow, check_frames, check_same_size, to_float_frames
from .base import FlowEstimator

__all__ = ["DEFAULT_DIS_PRESET", "DIS_PRESETS", "DISEstimator", "FarnebackEstimator"]


def _grey_u8(frames: torch.Tensor, name: str) -> list[np.ndarray]:
    """(B, C, H, W) frames -> B grey (H, W) uint8 arrays, as OpenCV's flow functions want them.

    Float input is scaled by 255, clipped and rounded to nearest, so frames read with
    :func:`flow.io.read_image` give exactly the grey images of ``cv2.imread`` + ``cvtColor``: our ``medium``
    preset is bit-identical to OpenCV's own on the same files. Done per channel with OpenCV's SIMD
    kernels: 1 ms per 1024x436 frame, where torch's threaded element-wise ops took 100 ms on a busy
    2-core machine and numpy 25 ms.
    """
    import cv2

    x = frames.detach()
    if x.dtype not in (torch.uint8, torch.float32):
        x = to_float_frames(x, name).float()  # other integer widths, half and double: shared conversion
    arr = x.cpu().numpy()
    if arr.dtype != np.uint8 and not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise ValueError(
            f"{name}: expected finite values in [0, 1], got {n_bad} NaN/inf entries of {arr.size}; "
            "replace them (e.g. torch.nan_to_num) first"
        )
    out = []
    for im in arr:  # (C, H, W)
        if arr.dtype == np.uint8:
            chans = [np.ascontiguousarray(c) for c in im[:3]]
        else:
            # max(.., 0) first: convertScaleAbs takes |x| and would turn -0.1 into 0.1
            chans = [cv2.convertScaleAbs(cv2.max(np.ascontiguousarray(c), 0.0), alpha=255.0) for c in im[:3]]
        out.append(chans[0] if len(chans) == 1 else cv2.cvtColor(cv2.merge(chans), cv2.COLOR_RGB2GRAY))
    return out


class _OpenCVEstimator(FlowEstimator):
    """Runs an OpenCV grey-image flow per pair of the batch (OpenCV parallelises inside each pair)."""

    def _calc(self, g0: np.ndarray, g1: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _estimate(self, frame0, frame1):
        flows = [self._calc(a, b) for a, b in zip(_grey_u8(frame0, "frame0"), _grey_u8(frame1, "frame1"))]
        # (B, H, W, 2) -> (B, 2, H, W) in numpy (one copy), then a zero-copy tensor
        return torch.from_numpy(np.ascontiguousarray(np.stack(flows).transpose(0, 3, 1, 2)))


# ------------------------------------------------------------------------------------------------- DIS


@dataclass(frozen=True)
class _DisStage:
    preset: str  # "ULTRAFAST" | "FAST" | "MEDIUM" (OpenCV preset the stage starts from)
    overrides: dict = field(default_factory=dict)  # setter name (without "set") -> value


@dataclass(frozen=True)
class _DisRecipe:
    stages: tuple
    variational_refinement: bool = False  # one cv2.VariationalRefinement pass at full resolution
    doc: str = ""


_SMALL_PATCH = {"PatchSize": 4, "PatchStride": 2}

DIS_PRESETS: dict[str, _DisRecipe] = {
    "ultrafast": _DisRecipe((_DisStage("ULTRAFAST"),), doc="OpenCV PRESET_ULTRAFAST"),
    "fast": _DisRecipe((_DisStage("FAST"),), doc="OpenCV PRESET_FAST"),
    "medium": _DisRecipe((_DisStage("MEDIUM"),), doc="OpenCV PRESET_MEDIUM"),
    "swift": _DisRecipe(
        (_DisStage("ULTRAFAST"), _DisStage("FAST", _SMALL_PATCH)),
        doc="ULTRAFAST, then FAST with 4x4 patches from it",
    ),
    "balanced": _DisRecipe(
        (_DisStage("ULTRAFAST"), _DisStage("MEDIUM", _SMALL_PATCH)),
        doc="ULTRAFAST, then MEDIUM with 4x4 patches from it",
    ),
    "quality": _DisRecipe(
        (_DisStage("ULTRAFAST"), _DisStage("MEDIUM", {**_SMALL_PATCH, "FinestScale": 0})),
        variational_refinement=True,
        doc="balanced to full resolution, then variational refinement",
    ),
}
DEFAULT_DIS_PRESET = "balanced"

# User-facing option name -> OpenCV setter suffix; applied to the last stage of the recipe.
_DIS_OPTIONS = {
    "finest_scale": "FinestScale",
    "patch_size": "PatchSize",
    "patch_stride": "PatchStride",
    "gradient_descent_iterations": "GradientDescentIterations",
    "variational_refinement_iterations": "VariationalRefinementIterations",
    "use_mean_normalization": "UseMeanNormalization",
    "use_spatial_propagation": "UseSpatialPropagation",
}


def _dis_coarsest(h: int, w: int, patch: int) -> int:
    """The coarsest pyramid level OpenCV's DIS picks for an ``h x w`` frame and ``patch`` (its ``calc``)."""
    return min(int(math.log(max(h, w) / (4.0 * patch)) / math.log(2) + 0.5), int(math.log(min(h, w) / patch) / math.log(2)))


def _auto_select_fails(h: int, w: int, pyramids: list[tuple[int, int]]) -> bool:
    """Whether OpenCV's DIS crashes on an ``h x w`` frame for one of ``pyramids`` ``[(patch size, finest
    scale)]``.

    Why by hand: when the coarsest level a frame allows lies above the finest scale, DIS picks a new patch
    size and scales from the frame's width alone (``autoSelectPatchSizeAndScales``); on a wide, short frame
    (16x92, 24x128) that pyramid is shorter than a patch and DIS reads out of bounds (a segmentation fault,
    not an exception), so it has to be predicted. The rule is OpenCV 4.x/5.0's, checked against it on a grid
    of sizes (tests/flow/test_estimators.py)."""
    for patch, finest in pyramids:
        if _dis_coarsest(h, w, patch) >= finest:
            continue
        auto_patch = 12 if finest in (3, 4) else 8
        c = max(0, math.floor(math.log2(2.0 * w / (5.0 * auto_patch))))
        if h / 2**c < auto_patch or w / 2**c < auto_patch:
            return True
    return False


def _keeps_parameters_scale(h: int, w: int, patch: int, finest: int) -> float:
    """The upsampling factor of an ``h x w`` frame at which DIS keeps its configured ``patch`` and ``finest``
    scale (its coarsest level reaches the finest), with one pixel to spare."""
    need_min, need_max = patch * 2**finest + 1, 4 * patch * 2 ** (finest - 0.5) + 1
    return max(1.0, need_min / min(h, w), need_max / max(h, w))


class DISEstimator(_OpenCVEstimator):
    """OpenCV Dense Inverse Search, optionally in two passes (see the module docstring for presets).

    Args:
        preset: one of :data:`DIS_PRESETS` (default ``"balanced"``).
        variational_refinement: force the final full-resolution variational refinement on or off.
        finest_scale, patch_size, patch_stride, gradient_descent_iterations,
        variational_refinement_iterations, use_mean_normalization, use_spatial_propagation: override
            OpenCV's parameter of the same name in the last pass.
    """

    name = "dis"

    def __init__(self, preset: str = DEFAULT_DIS_PRESET, *, variational_refinement: bool | None = None, **overrides):
        super().__init__("cpu")
        key = str(preset).lower()
        if key not in DIS_PRESETS:
            raise ValueError(f"dis: unknown preset {preset!r}; expected one of {sorted(DIS_PRESETS)}")
        unknown = sorted(set(overrides) - set(_DIS_OPTIONS))
        if unknown:
            raise TypeError(
                f"dis: unknown option(s) {unknown}; expected preset, variational_refinement or {sorted(_DIS_OPTIONS)}"
            )
        self.preset = key
        recipe = DIS_PRESETS[key]
        self._vr = recipe.variational_refinement if variational_refinement is None else bool(variational_refinement)
        last = {_DIS_OPTIONS[k]: v for k, v in overrides.items()}
        self._stages = [
            (s.preset, {**s.overrides, **(last if i == len(recipe.stages) - 1 else {})})
            for i, s in enumerate(recipe.stages)
        ]
        self._dis = None  # built lazily: cv2 objects are not picklable, and import stays light
        self._dis_size = None  # the frame size the objects last ran on (see _objects)
        self._refiner = None

    def _build(self):
        import cv2

        presets = {
            "ULTRAFAST": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "FAST": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "MEDIUM": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }
        objs = []
        for p, over in self._stages:
            d = cv2.DISOpticalFlow_create(presets[p])
            for k, v in over.items():
                getattr(d, "set" + k)(type(getattr(d, "get" + k)())(v))
            objs.append(d)
        self._dis = objs
        self._pyramids = [(d.getPatchSize(), d.getFinestScale()) for d in objs]  # as configured, before any calc
        if self._vr:
            # OpenCV's defaults (alpha 20, delta 5, gamma 10, 5 fixed-point iterations) are DIS's own.
            self._refiner = cv2.VariationalRefinement_create()

    def _objects(self, size: tuple[int, int]) -> list:
        """The DIS objects for frames of ``size``, built afresh when the size changes.

        Why: OpenCV's DIS rewrites its own patch size and finest scale (``autoSelectPatchSizeAndScales``)
        when a frame is too small for them, and keeps them for every later call, so one small pair would
        change the flow of all larger pairs after it. Fresh objects per size keep the flow a function of
        the frames alone; building them costs microseconds."""
        if self._dis is None or self._dis_size != tuple(size):
            self._build()
            self._dis_size = tuple(size)
        return self._dis

    def _calc(self, g0, g1):
        import cv2

        h, w = g0.shape
        # DIS asserts on tiny images (its pyramid needs a side of 8+ px at the coarsest level: 10x10 fails).
        # Upsample those for the search and bring the flow back, as RAFT does under its 128 px minimum.
        s = max(1.0, 16 / min(h, w), 32 / max(h, w))
        if self._dis is None:
            self._build()
        if _auto_select_fails(math.ceil(h * s), math.ceil(w * s), self._pyramids):
            s = max([s] + [_keeps_parameters_scale(h, w, p, f) for p, f in self._pyramids])
        if s > 1.0:
            hs, ws = math.ceil(h * s), math.ceil(w * s)
            up0, up1 = (cv2.resize(g, (ws, hs), interpolation=cv2.INTER_LINEAR) for g in (g0, g1))
            flow = cv2.resize(self._calc(up0, up1), (w, h), interpolation=cv2.INTER_LINEAR)
            return np.ascontiguousarray(flow * np.array([w / ws, h / hs], np.float32))
        flow = None
        for d in self._objects((h, w)):
            # DIS treats a given same-size float32 (H, W, 2) array as its initial flow (resampled to its
            # coarsest level) and overwrites it with the result.
            flow = d.calc(g0, g1, flow)
        if self._refiner is not None:
            self._refiner.calc(g0, g1, flow)
        return flow

    def refine(self, frame0: torch.Tensor, frame1: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Flow from ``frame0`` to ``frame1`` searched from a given start ``flow`` ``(B, 2, H, W)``: the
        recipe's last stage (and its variational refinement) runs from it instead of from the earlier stages.

        Why: a flow composed along a chain of frames (frame k -> k-1 -> ... -> 0) accumulates each link's
        error, while one search from frame k to 0 misses large motion; searching from the chained flow
        keeps the chain's reach and removes its drift (the motion meter of ``benchmarks/motion.py``: on
        held-out 32 px clips the error on the true frames drops from 1.1-1.5 px to 0.7-0.9 px).

        Returns ``(B, 2, H, W)`` float32 like :meth:`__call__`.
        """
        for name, f in (("frame0", frame0), ("frame1", frame1)):
            check_frames(f, name)
        check_same_size(frame0, frame1)
        check_flow(flow, "flow")
        if flow.shape[0] != frame0.shape[0] or flow.shape[-2:] != frame0.shape[-2:]:
            raise ValueError(f"flow: expected (B, 2, H, W) = {(frame0.shape[0], 2, *frame0.shape[-2:])} matching the "
                             f"frames, got {tuple(flow.shape)}")
        check_finite(flow, "flow")
        starts = flow.detach().cpu().float().permute(0, 2, 3, 1).numpy()
        out = []
        for g0, g1, f0 in zip(_grey_u8(frame0, "frame0"), _grey_u8(frame1, "frame1"), starts):
            if self._dis is None:
                self._build()
            if min(g0.shape) < 16 or _auto_select_fails(*g0.shape, self._pyramids[-1:]):
                raise ValueError(f"refine needs frames that DIS's pyramid fits (at least 16x16, and at least 32 "
                                 f"high when over 90 wide), got {g0.shape[1]}x{g0.shape[0]} (WxH); upsample "
                                 f"them and scale the flow")
            f = np.ascontiguousarray(f0)
            f = self._objects(g0.shape)[-1].calc(g0, g1, f)
            if self._refiner is not None:
                self._refiner.calc(g0, g1, f)
            out.append(f)
        res = torch.from_numpy(np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2)))
        return res.to(device=frame0.device, dtype=torch.float32)

    def __getstate__(self):
        s = self.__dict__.copy()
        s["_dis"] = s["_refiner"] = s["_dis_size"] = None
        return s

    @property
    def description(self) -> str:
        return f"DIS (preset {self.preset})"

    def __repr__(self) -> str:
        return f"DISEstimator(preset={self.preset!r}, stages={self._stages}, variational_refinement={self._vr})"


# ------------------------------------------------------------------------------------------- Farneback


class FarnebackEstimator(_OpenCVEstimator):
    """OpenCV Farneback flow (polynomial expansion).

    Defaults (5 levels, 15 px window, 3 iterations, poly_n 5, poly_sigma 1.2) are OpenCV's documented
    example values with two extra pyramid levels for motions of tens of pixels.
    """

    name = "farneback"

    def __init__(
        self,
        *,
        pyr_scale: float = 0.5,
        levels: int = 5,
        winsize: int = 15,
        iterations: int = 3,
        poly_n: int = 5,
        poly_sigma: float = 1.2,
        gaussian_window: bool = False,
    ):
        super().__init__("cpu")
        if not 0 < pyr_scale < 1:
            raise ValueError(f"farneback: pyr_scale must be in (0, 1), got {pyr_scale}")
        if poly_n not in (5, 7):
            raise ValueError(f"farneback: poly_n must be 5 or 7, got {poly_n}")
        self.params = dict(
            pyr_scale=float(pyr_scale),
            levels=int(levels),
            winsize=int(winsize),
            iterations=int(iterations),
            poly_n=int(poly_n),
            poly_sigma=float(poly_sigma),
            gaussian_window=bool(gaussian_window),
        )

    def _calc(self, g0, g1):
        import cv2

        p = self.params
        flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if p["gaussian_window"] else 0
        return cv2.calcOpticalFlowFarneback(
            g0, g1, None, p["pyr_scale"], p["levels"], p["winsize"], p["iterations"], p["poly_n"], p["poly_sigma"], flags
        )
