"""What the pipeline's VAE and text encoder compute, computed once and kept on disk (``OUT/cache`` or
``--cache DIR``).

Each entry is one safetensors file named after the hash of its key, the key itself in the file's metadata:

* ``text-<hash>``: one prompt's embeddings; keyed by the pipeline class, the text encoder's and tokenizer's
  files (name, size, time), the prompt and the sequence length;
* ``clip-<hash>``: one clip's latents, conditions and per-layout guidance on the latent grid; keyed by the
  video (path, size, time), the frame indices, the clip size, the pipeline class, the VAE's config and
  files, the layouts, the flow estimator and interpolator;
* ``frames-<hash>``: a held-out clip's frames (uint8), for validation calls.

``cache.json`` names the pipeline the folder was built for (class, path, the VAE's files): a run of another
pipeline refuses the folder (:meth:`Cache.claim`) instead of mixing entries. Entries of other settings of the
same pipeline (size, frames, layouts, flow) sit beside each other under their own keys, and a run reads only its
own. An entry counts only when its file opens and its metadata holds its key (:meth:`Cache.valid`): a partial
cache is completed, a damaged entry is rebuilt. Files are written atomically, so an interrupted write leaves
none; several processes write disjoint entries, and the main one writes ``manifest.json`` (every entry of
the run with its key) once all have finished.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from flow.atomic import atomic_path

from ..errors import UserError

__all__ = ["Cache", "key_hash"]

FORMAT = "motionguide-pipeline-cache"


def key_hash(key: dict) -> str:
    """16 hex digits of the SHA-256 of the key's canonical JSON."""
    return hashlib.sha256(_canon(key).encode()).hexdigest()[:16]


def _canon(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


class Cache:
    """The cache folder: ``valid(kind, key)``, ``get(kind, key)`` / ``put(kind, key, tensors)``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def claim(self, owner: dict) -> None:
        """Refuse the folder when ``cache.json`` names another pipeline than ``owner``; record ``owner`` in a new
        folder (call on the main process before any entry is written)."""
        path = self.folder / "cache.json"
        try:
            have = json.loads(path.read_text())
        except FileNotFoundError:
            have = None
        except (OSError, ValueError):
            have = {}
        if have is not None and (have.get("format") != FORMAT or have.get("owner") != json.loads(_canon(owner))):
            was = have.get("owner", {}) if isinstance(have, dict) else {}
            diff = [k for k in owner if json.loads(_canon(owner)).get(k) != (was or {}).get(k)]
            raise UserError(f"the cache {self.folder} was built for another pipeline ({', '.join(diff) or 'format'} "
                            f"differ: {was.get('pipeline_class', '?')} at {was.get('pipeline', '?')}); its entries "
                            f"cannot serve this run: pass another --cache DIR, or delete {self.folder}")
        if have is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                Path(tmp).write_text(json.dumps({"format": FORMAT, "version": 1, "owner": owner}, indent=1, default=str))

    def path(self, kind: str, key: dict) -> Path:
        return self.folder / f"{kind}-{key_hash(key)}.safetensors"

    def valid(self, kind: str, key: dict) -> bool:
        """The entry's file opens as safetensors and its metadata holds ``key`` (a truncated, foreign or
        damaged file does not count)."""
        p = self.path(kind, key)
        if not p.is_file():
            return False
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                names = list(f.keys())
        except Exception:  # noqa: BLE001 - any unreadable header: the entry is rebuilt
            return False
        return meta.get("key") == _canon(key) and bool(names)

    has = valid

    def get(self, kind: str, key: dict) -> dict[str, torch.Tensor] | None:
        if not self.valid(kind, key):
            return None
        try:
            return load_file(str(self.path(kind, key)))
        except (OSError, ValueError, RuntimeError):  # a damaged entry is recomputed
            return None

    def load(self, path: str | Path) -> dict[str, torch.Tensor]:
        return load_file(str(path))

    def put(self, kind: str, key: dict, tensors: dict[str, torch.Tensor]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        p = self.path(kind, key)
        with atomic_path(p) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                      metadata={"key": _canon(key), "kind": kind})
        return p

    def write_manifest(self, entries: list[tuple[str, dict]]) -> None:
        """``manifest.json``: the run's entries ``[(kind, key)]`` by file name (the main process, at the end)."""
        manifest = {"format": FORMAT, "version": 2,
                    "entries": {self.path(k, key).name: {"kind": k, "key": key} for k, key in entries}}
        with atomic_path(self.folder / "manifest.json") as tmp:
            Path(tmp).write_text(json.dumps(manifest, indent=1, default=str))
