"""What the pipeline's VAE and text encoder compute, computed once and kept on disk under ``OUT/cache``.

Each entry is one safetensors file named after the hash of its key, and ``manifest.json`` lists every
entry with its key in full:

* ``text-<hash>``: the prompt's embeddings; keyed by the pipeline class, the text encoder's and tokenizer's
  files (name, size, time), the prompt and the sequence length;
* ``clip-<hash>``: one clip's latents, conditions and per-layout guidance on the latent grid; keyed by the
  video (path, size, time), the frame indices, the clip size, the pipeline class, the VAE's config and
  files, the layouts, the flow estimator and interpolator.

A run whose keys are all present reuses the files (a resumed run loads no text encoder); a changed video,
size or pipeline gets new entries. Files are written atomically, so an interrupted write leaves none.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from flow.atomic import atomic_path

__all__ = ["Cache", "key_hash"]

FORMAT = "motionguide-pipeline-cache"


def key_hash(key: dict) -> str:
    """16 hex digits of the SHA-256 of the key's canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Cache:
    """The cache folder: ``get(kind, key)`` / ``put(kind, key, tensors)``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, kind: str, key: dict) -> Path:
        return self.folder / f"{kind}-{key_hash(key)}.safetensors"

    def has(self, kind: str, key: dict) -> bool:
        return self.path(kind, key).is_file()

    def get(self, kind: str, key: dict) -> dict[str, torch.Tensor] | None:
        p = self.path(kind, key)
        if not p.is_file():
            return None
        try:
            return load_file(str(p))
        except (OSError, ValueError, RuntimeError):  # a damaged entry is recomputed
            return None

    def load(self, path: str | Path) -> dict[str, torch.Tensor]:
        return load_file(str(path))

    def put(self, kind: str, key: dict, tensors: dict[str, torch.Tensor]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        p = self.path(kind, key)
        with atomic_path(p) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        self._record(p.name, kind, key)
        return p

    def _record(self, name: str, kind: str, key: dict) -> None:
        mpath = self.folder / "manifest.json"
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError):
            manifest = {}
        if manifest.get("format") != FORMAT:
            manifest = {"format": FORMAT, "version": 1, "entries": {}}
        manifest["entries"][name] = {"kind": kind, "key": key}
        with atomic_path(mpath) as tmp:
            Path(tmp).write_text(json.dumps(manifest, indent=1, default=str))
