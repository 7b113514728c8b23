"""RAFT (Teed and Deng, ECCV 2020) through ``torchvision.models.optical_flow``: ``raft_small``, ``raft_large``.

``weights``: ``None``/``"default"`` = torchvision's default weights from the torch hub cache (downloaded
there by torchvision when the machine is online), a weight-enum member name such as ``"C_T_V2"``, a local
checkpoint path (read by :func:`flow.checkpoint.read_state_dict`: ``.pth``/``.pt`` with
``weights_only=True``, or ``.safetensors``), or ``"random"`` (tests). Options: ``num_flow_updates`` (default
12), ``download`` (default True; set ``MOTIONGUIDE_OFFLINE=1`` to never try). Inputs are padded to a
multiple of 8 (replicate) and unpadded, and scaled to [-1, 1] as torchvision's RAFT transforms do. Frames
under 128 px on a side (RAFT's minimum) are upsampled for the network and the flow is resized back.

Nothing is downloaded at import.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import read_state_dict
from ..warp import resize_flow
from .base import FlowEstimator, WeightsNotFoundError, canonical_name

__all__ = ["RAFTEstimator", "find_raft_weights", "is_enum_name"]


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
    variant = canonical_name(variant)
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


def _read_weights(variant: str, path: Path, cached: bool = False) -> dict:
    fix = ("It is torchvision's cached file: delete it and run again to download it, or pass --weights PATH."
           if cached else
           f"Pass a torchvision {variant} checkpoint (.pth or .safetensors), 'default' (torchvision's cached "
           "weights) or 'random'.")
    return read_state_dict(path, what=f"{variant} weights", fix=fix)


def _check_fits(variant: str, model: torch.nn.Module, sd: dict, source: str) -> None:
    """Refuse a state dict of another network before load_state_dict (whose error is a page long)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or wrong):
        return
    other = "raft_large" if variant == "raft_small" else "raft_small"
    parts = []
    if missing:
        parts.append(f"{len(missing)} of its {len(expected)} tensors missing (e.g. {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors it does not have (e.g. {unexpected[0]!r})")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} of another shape (e.g. {k!r}: {tuple(sd[k].shape)}, "
                     f"expected {tuple(expected[k].shape)})")
    raise ValueError(
        f"{variant} weights {source}: expected a torchvision {variant} state dict, got one with "
        f"{', '.join(parts)}. Pass a {variant} checkpoint; a {other} checkpoint needs --method {other}."
    )


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

        self.name = canonical_name(variant)
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
        path = Path(weights) if weights is not None and not is_enum_name(self.name, weights) else None
        if path is not None:
            if not path.exists():
                raise FileNotFoundError(
                    f"{self.name} weights {str(weights)!r}: no such checkpoint file, and not one of torchvision's "
                    f"{list(_raft_enum(self.name).__members__)}; pass an existing .pth/.safetensors path, "
                    "'default' (torchvision's cache) or 'random'"
                )
            sd = _read_weights(self.name, path)
            source = str(path)
        else:
            member = _resolve_enum(self.name, weights)
            cached = _hub_checkpoint_dir() / os.path.basename(member.url)
            if cached.is_file():
                sd = _read_weights(self.name, cached, cached=True)
            else:
                offline = os.environ.get("MOTIONGUIDE_OFFLINE", "") not in ("", "0")
                if not download or offline:
                    raise WeightsNotFoundError(self._missing_message(member, cached, "downloading is disabled"))
                try:
                    sd = torch.hub.load_state_dict_from_url(member.url, progress=False, map_location="cpu")
                except Exception as e:  # no network, proxy, HTTP error: all mean "not here"
                    raise WeightsNotFoundError(self._missing_message(member, cached, f"{type(e).__name__}: {e}")) from e
            source = f"torchvision {type(member).__name__}.{member.name}"
        _check_fits(self.name, model, sd, source)
        model.load_state_dict(sd, strict=True)
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


def is_enum_name(variant: str, weights) -> bool:
    """True when ``weights`` names one of torchvision's weights (``"default"``, ``"C_T_V2"``), not a file."""
    if not isinstance(weights, str):
        return False
    if weights.lower() == "default":
        return True
    return weights.split(".")[-1].upper() in _raft_enum(variant).__members__ and not Path(weights).exists()
