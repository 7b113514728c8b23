"""Captions of the training videos, as the peers' datasets give them.

* beside each video, a text file of the same name (``clip.mp4`` + ``clip.txt``): the whole file, stripped;
* or a manifest (``--videos list.csv`` / ``list.jsonl``) naming the videos with their captions: a CSV with a
  header holding ``video`` (alias ``file_name``, ``path``) and ``prompt`` (alias ``caption``, ``text``)
  columns, as DiffSynth-Studio's ``metadata.csv``; or one JSON object per line with the same keys. Paths are
  relative to the manifest's folder (or absolute). An empty caption means the run's ``--prompt``.

Every file is read as UTF-8; text that is not (a Windows code page, a binary) is a one-line
:class:`~motionguide.errors.UserError` naming the file and the byte, before anything loads. A manifest that
names a missing video names it with its line.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import UserError

__all__ = ["read_caption", "read_manifest", "is_manifest", "MANIFEST_SUFFIXES"]

MANIFEST_SUFFIXES = (".csv", ".jsonl")
_VIDEO_KEYS = ("video", "file_name", "path")
_CAPTION_KEYS = ("prompt", "caption", "text")


def is_manifest(path: Path) -> bool:
    return path.suffix.lower() in MANIFEST_SUFFIXES


def _utf8(path: Path, what: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it "
                        f"as UTF-8 (e.g. iconv -f cp1252 -t utf-8)") from None


def read_caption(path: Path) -> str | None:
    """The caption in ``path`` (stripped; None when empty)."""
    text = _utf8(path, "the caption file").strip()
    return text or None


def _pick(row: dict, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        if k in row and row[k] is not None:
            return str(row[k])
    return None


def read_manifest(path: Path) -> list[tuple[Path, str | None]]:
    """``[(video path, caption or None)]`` in the manifest's order; every video must exist."""
    text = _utf8(path, "the manifest")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        cols = [c.strip() for c in (reader.fieldnames or [])]
        if not any(k in cols for k in _VIDEO_KEYS):
            raise UserError(f"the manifest {path} has columns {cols or 'none'}; expected a header with a video column "
                            f"({' or '.join(_VIDEO_KEYS)}) and a caption column ({' or '.join(_CAPTION_KEYS)})")
        rows = [(i + 2, {(k or "").strip(): v for k, v in r.items()}) for i, r in enumerate(reader)]
    else:
        rows = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"the manifest {path}, line {i + 1}: not a JSON object ({e.msg}); write one object "
                                f"per line, e.g. {{\"video\": \"clip.mp4\", \"prompt\": \"a cat\"}}") from None
            if not isinstance(row, dict):
                raise UserError(f"the manifest {path}, line {i + 1}: expected a JSON object, got {type(row).__name__}")
            rows.append((i + 1, row))
    out: list[tuple[Path, str | None]] = []
    for line, row in rows:
        name = _pick(row, _VIDEO_KEYS)
        if not name or not name.strip():
            raise UserError(f"the manifest {path}, line {line}: no video named (keys {' or '.join(_VIDEO_KEYS)})")
        f = Path(name.strip()).expanduser()
        f = f if f.is_absolute() else path.parent / f
        if not f.is_file():
            raise UserError(f"the manifest {path}, line {line} names {name.strip()}, which does not exist ({f}); fix "
                            f"the path (relative to the manifest's folder) or remove the line")
        cap = (_pick(row, _CAPTION_KEYS) or "").strip()
        out.append((f, cap or None))
    if not out:
        raise UserError(f"the manifest {path} names no video; add lines such as 'clip.mp4,a cat walks'")
    return out
