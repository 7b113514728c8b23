"""Optical-flow estimators behind one small interface.

Every estimator is a :class:`FlowEstimator`: call it with two batches of frames and get a flow back::

    est = get_estimator("dis")                      # or "farneback", "raft_small", "raft_large"
    flow = est(frame0, frame1)
    # frame0, frame1: (B, 3, H, W) float in [0, 1] (uint8/uint16 are converted; 1- and 4-channel accepted)
    # flow:           (B, 2, H, W) float32, pixels, channel 0 = dx (right), channel 1 = dy (down),
    #                 backward convention: frame0 at x matches frame1 at x + flow(x) (see flow.warp)

Estimators:

* ``dis``: OpenCV's Dense Inverse Search. Presets (``preset=``):

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

  Why two passes: DIS's coarse-to-fine pyramid bottoms out at about 1/32 of the image, and MEDIUM's
  per-level variational refinement smooths large motions away (on Sintel market_5, 32 px mean motion,
  MEDIUM scores 23 px EPE, ULTRAFAST 17 px). DIS accepts an initial flow, which it resamples to its
  coarsest level: a cheap ULTRAFAST pass makes that start; the second pass with smaller patches then
  recovers detail. Measured on the three Sintel pairs with ground truth (``benchmarks/flow.py``),
  ``balanced`` beats raw MEDIUM on all of them (see docs/README_flow.md for the table).

* ``farneback``: OpenCV Farneback (polynomial expansion); options ``levels``, ``winsize``,
  ``iterations``, ``poly_n``, ``poly_sigma``, ``pyr_scale``.
* ``raft_small`` / ``raft_large``: RAFT from ``torchvision.models.optical_flow``. ``weights``:
  ``None``/``"default"`` = torchvision's default weights from the torch hub cache (downloaded there by
  torchvision when the machine is online), a weight-enum member name such as ``"C_T_V2"``, a local
  checkpoint path (``.pth``/``.pt`` loaded with ``torch.load(weights_only=True)``, or ``.safetensors``), or
  ``"random"`` (tests). Options: ``num_flow_updates`` (default 12), ``download`` (default True; set
  ``MOTIONGUIDE_OFFLINE=1`` to never try). Inputs are padded to a multiple of 8 (replicate) and unpadded,
  and scaled to [-1, 1] as torchvision's RAFT transforms do. Frames under 128 px on a side (RAFT's
  minimum) are upsampled for the network and the flow is resized back.

Nothing is downloaded at import.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_finite, check_flow, check_frames, check_same_size, to_float_frames
from .warp import resize_flow

__all__ = [
    "FlowEstimator",
    "DISEstimator",
    "FarnebackEstimator",
    "RAFTEstimator",
    "WeightsNotFoundError",
    "DIS_PRESETS",
    "get_estimator",
    "available_estimators",
    "find_raft_weights",
    "bidirectional_flow",
    "clip_flows",
]


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not on this machine and could not be fetched."""


# ------------------------------------------------------------------------------------------------ base


class FlowEstimator:
    """Base class: two batches of frames in, one batch of flows out.

    Subclasses implement :meth:`_estimate` on shape-checked input (``(B, C, H, W)``, C in 1/3/4, equal
    sizes, any image dtype) and convert it themselves (:meth:`_prepare` for torch models; the OpenCV
    estimators go straight to grey uint8 in numpy, which is 10x cheaper than torch ops on a busy CPU);
    it returns ``(B, 2, H, W)`` float.

    Attributes:
        name: the registry name (``"dis"``, ``"raft_small"``, ...).
        device: where the computation runs (OpenCV estimators: always CPU; the output goes back to the
            input's device).
        batched: ``True`` when one call on a batch is cheaper than one call per pair (network
            estimators); :func:`bidirectional_flow` and :func:`clip_flows` use it.
    """

    name: str = "flow"
    batched: bool = False

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def __call__(self, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:
        """Flow from ``frame0`` to ``frame1``.

        Args:
            frame0: ``(B, 3, H, W)`` float in [0, 1]; uint8/uint16 converted, 1 or 4 channels accepted.
            frame1: same shape as ``frame0``.

        Returns:
            ``(B, 2, H, W)`` float32 on ``frame0``'s device, pixels, channel 0 = dx, channel 1 = dy.
        """
        for name, f in (("frame0", frame0), ("frame1", frame1)):
            check_frames(f, name)
            if f.shape[1] not in (1, 3, 4):
                raise ValueError(
                    f"{name}: expected 1 (grey), 3 (RGB) or 4 (RGBA) channels in dim 1, got {f.shape[1]} "
                    f"(shape {tuple(f.shape)})"
                )
        check_same_size(frame0, frame1)
        if frame0.shape[-2] < 2 or frame0.shape[-1] < 2:
            raise ValueError(f"frames must be at least 2x2 pixels, got {tuple(frame0.shape[-2:])}")
        # no_grad rather than inference_mode: inference tensors cannot be saved for backward, and callers
        # use flows as fixed inputs of trained modules.
        with torch.no_grad():
            flow = self._estimate(frame0, frame1)
        return flow.to(device=frame0.device, dtype=torch.float32)

    @staticmethod
    def _prepare(frames: torch.Tensor, name: str) -> torch.Tensor:
        """(B, C, H, W) any supported dtype -> (B, 3, H, W) float in [0, 1], finite (for torch estimators)."""
        f = to_float_frames(frames, name)
        check_finite(f, name)
        return f

    def _estimate(self, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


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
        if self._vr:
            # OpenCV's defaults (alpha 20, delta 5, gamma 10, 5 fixed-point iterations) are DIS's own.
            self._refiner = cv2.VariationalRefinement_create()

    def _calc(self, g0, g1):
        import cv2

        if self._dis is None:
            self._build()
        h, w = g0.shape
        # DIS asserts on tiny images (its pyramid needs a side of 8+ px at the coarsest level: 10x10 fails).
        # Upsample those for the search and bring the flow back, as RAFT does under its 128 px minimum.
        s = max(1.0, 16 / min(h, w), 32 / max(h, w))
        if s > 1.0:
            hs, ws = math.ceil(h * s), math.ceil(w * s)
            up0, up1 = (cv2.resize(g, (ws, hs), interpolation=cv2.INTER_LINEAR) for g in (g0, g1))
            flow = cv2.resize(self._calc(up0, up1), (w, h), interpolation=cv2.INTER_LINEAR)
            return np.ascontiguousarray(flow * np.array([w / ws, h / hs], np.float32))
        flow = None
        for d in self._dis:
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
        if self._dis is None:
            self._build()
        starts = flow.detach().cpu().float().permute(0, 2, 3, 1).numpy()
        out = []
        for g0, g1, f0 in zip(_grey_u8(frame0, "frame0"), _grey_u8(frame1, "frame1"), starts):
            if min(g0.shape) < 16:
                raise ValueError(f"refine needs frames of at least 16x16 pixels (DIS's pyramid), got {g0.shape}")
            f = np.ascontiguousarray(f0)
            f = self._dis[-1].calc(g0, g1, f)
            if self._refiner is not None:
                self._refiner.calc(g0, g1, f)
            out.append(f)
        res = torch.from_numpy(np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2)))
        return res.to(device=frame0.device, dtype=torch.float32)

    def __getstate__(self):
        s = self.__dict__.copy()
        s["_dis"] = s["_refiner"] = None
        return s

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


# ------------------------------------------------------------------------------------------------ RAFT


_RAFT_MIN_SIDE = 128


def _raft_enum(variant: str):
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    return Raft_Small_Weights if variant == "raft_small" else Raft_Large_Weights


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_raft_weights(variant: str, weights: str | None = None) -> Path | None:
    """Path of torchvision's cached RAFT checkpoint for ``variant`` if present on this machine, else ``None``.

    ``weights`` picks an enum member (``"C_T_V2"``, ...); default torchvision's ``DEFAULT``. Never downloads.
    """
    variant = _canonical(variant)
    if variant not in ("raft_small", "raft_large"):
        raise ValueError(f"find_raft_weights: expected 'raft_small' or 'raft_large', got {variant!r}")
    member = _resolve_enum(variant, weights)
    p = _hub_checkpoint_dir() / os.path.basename(member.url)
    return p if p.is_file() else None


def _resolve_enum(variant: str, weights: str | None):
    enum = _raft_enum(variant)
    if weights is None or str(weights).lower() == "default":
        return enum.DEFAULT
    name = str(weights).split(".")[-1].upper()
    if name in enum.__members__:
        return enum[name]
    raise ValueError(
        f"{variant}: unknown weights {weights!r}; expected None/'default', one of {list(enum.__members__)}, "
        "a checkpoint path, or 'random'"
    )


def _load_checkpoint(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            # weights_only: a pickled checkpoint from a stranger can run code; tensors only.
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(
                f"{path}: could not load as a weights-only torch checkpoint ({type(e).__name__}: {e}); "
                "expected a state_dict saved with torch.save(model.state_dict(), path)"
            ) from e
    for key in ("state_dict", "model", "model_state_dict"):  # common training-script wrappers
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state_dict (dict of tensors), got {type(sd).__name__}")
    # Checkpoints saved from DataParallel/DDP prefix every key with "module.".
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


class RAFTEstimator(FlowEstimator):
    """RAFT (Teed and Deng, ECCV 2020) through ``torchvision.models.optical_flow``.

    Args:
        variant: ``"raft_small"`` or ``"raft_large"``.
        weights: ``None``/``"default"``, an enum member name, a checkpoint path, or ``"random"`` (see module doc).
        device: where the network runs.
        dtype: float32 (default), or float16/bfloat16 run through ``torch.autocast``; output is float32.
        num_flow_updates: refinement iterations (torchvision default 12; 24-32 for best accuracy).
        download: allow torchvision to download missing default weights into the hub cache.
    """

    batched = True

    def __init__(
        self,
        variant: str = "raft_small",
        *,
        weights: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        num_flow_updates: int = 12,
        download: bool = True,
    ):
        super().__init__(device)
        from torchvision.models import optical_flow as of

        self.name = _canonical(variant)
        if self.name not in ("raft_small", "raft_large"):
            raise ValueError(f"RAFTEstimator: expected 'raft_small' or 'raft_large', got {variant!r}")
        if int(num_flow_updates) < 1:
            raise ValueError(f"num_flow_updates: expected a positive integer, got {num_flow_updates}")
        self.num_flow_updates = int(num_flow_updates)
        self.dtype = dtype or torch.float32
        if self.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(
                f"{self.name}: dtype must be torch.float32, float16 or bfloat16, got {self.dtype} "
                "(torchvision's RAFT builds its coordinate grids in float32)"
            )
        build = of.raft_small if self.name == "raft_small" else of.raft_large
        model = build(weights=None, progress=False)
        self.weights_source = self._load_weights(model, weights, download)
        # Weights stay float32: torchvision's RAFT mixes float32 coordinate grids into grid_sample, so
        # half precision runs through autocast (matmuls and convolutions in half, the rest float32).
        self.model = model.eval().to(device=self.device)

    def _load_weights(self, model: torch.nn.Module, weights, download: bool) -> str:
        if isinstance(weights, str) and weights.lower() == "random":
            return "random"
        path = Path(weights) if weights is not None and not _looks_like_enum(self.name, weights) else None
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{self.name}: weights {str(weights)!r}: no such checkpoint file, and not one of torchvision's "
                    f"{list(_raft_enum(self.name).__members__)}; pass an existing .pth/.safetensors path, "
                    "'default' (torchvision's cache) or 'random'"
                )
            sd = _load_checkpoint(path)
            source = str(path)
        else:
            member = _resolve_enum(self.name, weights)
            cached = _hub_checkpoint_dir() / os.path.basename(member.url)
            if cached.is_file():
                sd = _load_checkpoint(cached)
            else:
                offline = os.environ.get("MOTIONGUIDE_OFFLINE", "") not in ("", "0")
                if not download or offline:
                    raise WeightsNotFoundError(self._missing_message(member, cached, "downloading is disabled"))
                try:
                    sd = torch.hub.load_state_dict_from_url(member.url, progress=False, map_location="cpu")
                except Exception as e:  # no network, proxy, HTTP error: all mean "not here"
                    raise WeightsNotFoundError(self._missing_message(member, cached, f"{type(e).__name__}: {e}")) from e
            source = f"torchvision {type(member).__name__}.{member.name}"
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ValueError(
                f"{self.name}: checkpoint {source} does not fit the {self.name} architecture "
                f"({str(e).splitlines()[0]}); a raft_large checkpoint needs --method raft_large and vice versa"
            ) from e
        return source

    def _missing_message(self, member, cached: Path, why: str) -> str:
        return (
            f"{self.name}: pretrained weights {type(member).__name__}.{member.name} are not on this machine: looked for "
            f"{cached} (torch hub cache; set TORCH_HOME to move it) and could not download {member.url} ({why}). "
            "To supply them: on a machine with internet run "
            f"`python -c \"import torchvision; torchvision.models.optical_flow.{self.name}(weights='DEFAULT')\"` and "
            f"copy {os.path.basename(member.url)} into {cached.parent}, or pass a local checkpoint with "
            "--weights PATH (weights=PATH), or use --method dis (no weights needed)"
        )

    def _estimate(self, frame0, frame1):
        frame0, frame1 = self._prepare(frame0, "frame0"), self._prepare(frame1, "frame1")
        b, _, h, w = frame0.shape
        x = torch.cat((frame0, frame1)).to(device=self.device, dtype=torch.float32)
        x = x * 2.0 - 1.0  # torchvision's OpticalFlow transform: Normalize(mean=0.5, std=0.5) -> [-1, 1]
        # RAFT's correlation pyramid needs feature maps of at least 16x16, i.e. images of at least 128x128.
        # Smaller images are upsampled (not padded: a 37 px frame padded to 128 would be mostly border) and
        # the flow is resized back with its magnitudes rescaled.
        s = max(1.0, _RAFT_MIN_SIDE / h, _RAFT_MIN_SIDE / w)
        hs, ws = (h, w) if s == 1.0 else (math.ceil(h * s), math.ceil(w * s))
        if (hs, ws) != (h, w):
            x = F.interpolate(x, size=(hs, ws), mode="bilinear", align_corners=False)
        # The encoders downsample by 8: pad to a multiple of 8, half on each side, replicating the border.
        ph, pw = (-hs) % 8, (-ws) % 8
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            preds = self.model(x[:b], x[b:], num_flow_updates=self.num_flow_updates)  # list, one per update
        flow = preds[-1][..., pad[2] : pad[2] + hs, pad[0] : pad[0] + ws].float()
        if (hs, ws) != (h, w):
            flow = resize_flow(flow, (h, w))
        return flow

    def __repr__(self) -> str:
        return (
            f"RAFTEstimator({self.name!r}, weights={self.weights_source!r}, device={str(self.device)!r}, "
            f"dtype={self.dtype}, num_flow_updates={self.num_flow_updates})"
        )


def _looks_like_enum(variant: str, weights) -> bool:
    if not isinstance(weights, str):
        return False
    if weights.lower() == "default":
        return True
    return weights.split(".")[-1].upper() in _raft_enum(variant).__members__ and not Path(weights).exists()


# -------------------------------------------------------------------------------------------- registry

_ALIASES = {"raft-small": "raft_small", "raft-large": "raft_large", "raftsmall": "raft_small", "raftlarge": "raft_large"}


def _canonical(name: str) -> str:
    n = str(name).strip().lower()
    return _ALIASES.get(n, n)


def _make_dis(weights, device, dtype, **options):
    return DISEstimator(**options)


def _make_farneback(weights, device, dtype, **options):
    return FarnebackEstimator(**options)


def _make_raft(variant: str) -> Callable[..., FlowEstimator]:
    def make(weights, device, dtype, **options):
        return RAFTEstimator(variant, weights=weights, device=device, dtype=dtype, **options)

    return make


_REGISTRY: dict[str, tuple[Callable[..., FlowEstimator], bool]] = {
    # name -> (factory, takes weights)
    "dis": (_make_dis, False),
    "farneback": (_make_farneback, False),
    "raft_small": (_make_raft("raft_small"), True),
    "raft_large": (_make_raft("raft_large"), True),
}


def available_estimators() -> list[str]:
    """Names accepted by :func:`get_estimator`.

    >>> available_estimators()
    ['dis', 'farneback', 'raft_small', 'raft_large']
    """
    return list(_REGISTRY)


def get_estimator(
    name: str = "dis",
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    **options: Any,
) -> FlowEstimator:
    """Build a flow estimator by name.

    Args:
        name: one of :func:`available_estimators` (case-insensitive; ``raft-small`` works too).
        weights: RAFT only: ``None``/``"default"``, an enum member name, a checkpoint path, or ``"random"``.
        device: RAFT only (OpenCV estimators run on the CPU and return flows on the input's device).
        dtype: RAFT only: the network's float type.
        **options: estimator options (``preset=`` for dis, ``num_flow_updates=`` for RAFT, ...).

    >>> get_estimator("dis", preset="medium")
    DISEstimator(preset='medium', stages=[('MEDIUM', {})], variational_refinement=False)
    >>> get_estimator("lucas")
    Traceback (most recent call last):
    ...
    ValueError: unknown flow method 'lucas'; expected one of ['dis', 'farneback', 'raft_small', 'raft_large']
    """
    key = _canonical(name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown flow method {name!r}; expected one of {available_estimators()}")
    factory, takes_weights = _REGISTRY[key]
    if not takes_weights:
        if weights is not None:
            raise ValueError(f"{key} has no weights (got weights={str(weights)!r}); drop --weights or use a raft_* method")
        if dtype is not None and dtype != torch.float32:
            raise ValueError(f"{key} runs in OpenCV on uint8 images; dtype={dtype} is not supported")
        if torch.device(device).type != "cpu":
            raise ValueError(f"{key} runs in OpenCV on the CPU; device={device!r} is not supported (use raft_*)")
    return factory(weights, device, dtype, **options)


# ------------------------------------------------------------------------------------ pairs and clips


def bidirectional_flow(estimator: FlowEstimator, frame0: torch.Tensor, frame1: torch.Tensor):
    """Forward and backward flow of a pair, in one batched call where the estimator batches.

    Args:
        frame0, frame1: ``(B, 3, H, W)`` float in [0, 1].

    Returns:
        ``(flow01, flow10)``, each ``(B, 2, H, W)`` float32.
    """
    if estimator.batched:
        f0 = to_float_frames(frame0, "frame0")
        f1 = to_float_frames(frame1, "frame1")
        check_same_size(f0, f1)
        both = estimator(torch.cat((f0, f1)), torch.cat((f1, f0)))
        return both[: f0.shape[0]], both[f0.shape[0] :]
    return estimator(frame0, frame1), estimator(frame1, frame0)


def clip_flows(
    estimator: FlowEstimator,
    frames: torch.Tensor,
    *,
    bidirectional: bool = False,
    batch_size: int = 8,
    progress: bool = False,
):
    """Flows between consecutive frames of a clip.

    Args:
        frames: ``(T, 3, H, W)`` float in [0, 1] (or uint8), T >= 2.
        bidirectional: also return the backward flows.
        batch_size: pairs per estimator call (memory vs speed for RAFT).
        progress: show a tqdm bar over pairs.

    Returns:
        ``flows`` ``(T-1, 2, H, W)`` with ``flows[i]`` = frame i -> i+1; with ``bidirectional``
        ``(fwd, bwd)`` where ``bwd[i]`` = frame i+1 -> i.
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames: expected a clip of shape (T, 3, H, W), got {got}")
    if frames.shape[0] < 2:
        raise ValueError(f"frames: expected at least 2 frames (T >= 2) to get a flow, got T = {frames.shape[0]}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    n = frames.shape[0] - 1
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="pair", desc=f"flow ({estimator.name})")
    fwd, bwd = [], []
    try:
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            a, b = frames[i:j], frames[i + 1 : j + 1]
            if bidirectional:
                f, g = bidirectional_flow(estimator, a, b)
                fwd.append(f)
                bwd.append(g)
            else:
                fwd.append(estimator(a, b))
            if bar is not None:
                bar.update(j - i)
    finally:
        if bar is not None:
            bar.close()
    if bidirectional:
        return torch.cat(fwd), torch.cat(bwd)
    return torch.cat(fwd)
