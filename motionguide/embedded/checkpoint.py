"""Weights are data: where the embedded model's checkpoints live, how they are written and verified.

A checkpoint folder holds its files and a ``manifest.json`` with their SHA-256 checksums; every folder is
written atomically (:func:`motionguide.training.replace_dir`) and verified on load, and every failure is a
:class:`~motionguide.errors.CheckpointError` naming the folder and the fix.

* base model: ``config.json`` + ``diffusion_pytorch_model.safetensors`` (diffusers ``save_pretrained``),
  ``embedded_config.json`` (:class:`~motionguide.embedded.network.EmbeddedConfig`);
* adapters (:mod:`motionguide.embedded.adapters`): the plugin's ``motion_guidance.{safetensors,json}`` and
  ``gates.safetensors``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel

from flow.atomic import atomic_path
from flow.checkpoint import CheckpointFileError, read_tensors

from ..errors import CheckpointError
from ..training import replace_dir
from .network import EmbeddedConfig, EmbeddedVideoModel

__all__ = ["DEFAULT_ASSETS", "MANIFEST", "sha256", "write_manifest", "verify_manifest", "save_embedded",
           "load_embedded", "cast_weights", "folder_bytes", "count_parameters"]

#: where the shipped weights live: ``assets/embedded`` of the checkout (``MOTIONGUIDE_ASSETS`` overrides)
DEFAULT_ASSETS = Path(os.environ.get("MOTIONGUIDE_ASSETS", Path(__file__).resolve().parents[2] / "assets" / "embedded"))
MANIFEST = "manifest.json"
_BASE_FILES = ("diffusion_pytorch_model.safetensors", "config.json", "embedded_config.json")
_BASE_FIX = ("reinstall motionguide from a full checkout (the weights are plain files in assets/embedded), or "
             "train one with `motionguide train base --out DIR` and pass it with --model DIR/model")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path, files: tuple[str, ...], **fields) -> None:
    """``folder/manifest.json``: the checksums of ``files`` (in ``folder``) and ``fields``."""
    manifest = {**fields, "files": {n: sha256(folder / n) for n in files}}
    with atomic_path(folder / MANIFEST) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=2))


def verify_manifest(folder: Path, what: str, fix: str) -> dict:
    """Check every file the manifest lists against its checksum; returns the manifest ({} when absent)."""
    if not (folder / MANIFEST).is_file():
        return {}
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what} in {folder} has an unreadable {MANIFEST} ({e}); {fix}") from None
    for n, digest in manifest.get("files", {}).items():
        if (folder / n).is_file() and sha256(folder / n) != digest:
            raise CheckpointError(f"{what} file {folder / n} is corrupt (checksum mismatch); {fix}")
    return manifest


def save_embedded(model: EmbeddedVideoModel, folder: str | os.PathLike, *, metrics: dict | None = None) -> Path:
    """Save the transformer (diffusers ``save_pretrained``), the model config and a manifest with checksums,
    input range and metrics, atomically."""
    folder = Path(folder)
    with replace_dir(folder) as tmp:
        model.transformer.save_pretrained(tmp, safe_serialization=True)
        (tmp / "embedded_config.json").write_text(json.dumps(model.config.to_dict(), indent=2))
        write_manifest(tmp, _BASE_FILES, **{"class": type(model.transformer).__name__,
                                            "input_range": "frames float [0, 1] at the API; [-1, 1] inside",
                                            "metrics": metrics or {}})
    return folder


def load_embedded(folder: str | os.PathLike | None = None, *, verify: bool = True) -> EmbeddedVideoModel:
    """Load the embedded model (default: the shipped ``assets/embedded/base``), checking its checksums."""
    folder = Path(folder) if folder is not None else DEFAULT_ASSETS / "base"
    missing = [n for n in _BASE_FILES if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(f"embedded model checkpoint in {folder} is missing {missing}; {_BASE_FIX}")
    if verify:
        verify_manifest(folder, "embedded model", _BASE_FIX)
    try:  # the one safe reader first: a file whose checksum matches may still be no safetensors file
        read_tensors(folder / _BASE_FILES[0], what="embedded model file", fix=f"Pass a model folder: {_BASE_FIX}.")
    except CheckpointFileError as e:
        raise CheckpointError(str(e)) from None
    try:
        cfg = EmbeddedConfig.from_dict(json.loads((folder / "embedded_config.json").read_text()))
        transformer = WanTransformer3DModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"embedded model checkpoint in {folder} could not be read ({type(e).__name__}: "
                              f"{first}); {_BASE_FIX}") from e
    model = EmbeddedVideoModel(cfg, transformer=transformer)
    model.eval()
    return model


def cast_weights(folder: str | os.PathLike, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Store the floating-point tensors of every ``.safetensors`` file a checkpoint folder's manifest lists
    (base model or adapters) in ``dtype``, refresh the checksums and record ``weights_dtype``, atomically.

    A larger model fits the assets' size budget in bfloat16; the loaders cast back to the model's float32
    parameters (``from_pretrained`` and ``load_state_dict`` copy into them)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    manifest = verify_manifest(folder, "checkpoint", "save it again")
    if not manifest:
        raise CheckpointError(f"{folder} has no {MANIFEST}; cast_weights works on folders written by save_embedded "
                              f"or save_adapters")
    files = tuple(manifest["files"])
    with replace_dir(folder) as tmp:
        for n in files:
            if n.endswith(".safetensors"):
                state = read_tensors(folder / n, what="checkpoint file", fix="Save the folder again.")
                save_file({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, str(tmp / n))
            else:
                shutil.copy2(folder / n, tmp / n)
        fields = {k: v for k, v in manifest.items() if k != "files"}
        write_manifest(tmp, files, **{**fields, "weights_dtype": str(dtype).removeprefix("torch.")})
    return folder


def folder_bytes(folder: str | os.PathLike) -> int:
    """Bytes of the files directly in ``folder`` (what a checkpoint costs in ``assets/``)."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
