"""Read model weights from a file, safely: the one state-dict reader of the flow package (RIFE and RAFT).

* Pickled checkpoints (``.pkl``, ``.pth``, ``.pt``: torch's zip format or its older plain-pickle format) are
  read with ``torch.load(..., weights_only=True)``: a pickle that would build arbitrary objects or call
  functions (a pickle can run code when loaded) is refused before anything runs.
* ``.safetensors`` files are read with safetensors.
* The file's first bytes decide which reader runs, so a PNG, a text file or random bytes given as weights are
  told they are not a checkpoint, instead of a pickle error from deep inside torch.
* A ``{"state_dict": ...}`` (or ``"model"``, ``"model_state_dict"``) wrapper and the ``module.`` prefix of
  DataParallel checkpoints are removed.

Every failure is a :class:`CheckpointFileError` (a ValueError) with one message that says what was expected,
what came and how to fix it; torch's warnings while reading are not shown. Three entry points share these
checks: :func:`read_state_dict` (weights: a flat dict of tensors, wrappers removed), :func:`read_tensors` (a
``.safetensors`` file as it is: checkpoints and adapters the project writes) and :func:`read_object` (a
``torch.save`` pickle of tensors, dicts, lists and numbers, such as an optimizer's state, as it is).
"""
from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
from pathlib import Path

import torch

from .sniff import describe_file

__all__ = ["CheckpointFileError", "read_object", "read_state_dict", "read_tensors"]

_WRAPPERS = ("state_dict", "model", "model_state_dict")  # common training-script wrappers
_EXPECTED = "a state dict saved with torch.save (.pkl/.pth/.pt) or a .safetensors file"

class CheckpointFileError(ValueError):
    """A weights file that cannot be used: not a checkpoint, truncated, unsafe, or not a dict of tensors."""


def _is_safetensors(head: bytes, size: int) -> bool:
    # An 8-byte little-endian header length, then the JSON header itself.
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _sniff(head: bytes, size: int) -> str:
    """'zip' (torch's format), 'pickle' (torch's older format, or a plain pickle), 'safetensors' or 'other'."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if _is_safetensors(head, size):
        return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return "other"


def _fail(what: str, path: Path, got: str, fix: str) -> CheckpointFileError:
    return CheckpointFileError(f"{what} {path}: expected {_EXPECTED}, got {got}. {fix}")


def read_state_dict(path: str | os.PathLike, *, what: str = "checkpoint", fix: str = "Pass a checkpoint file.") -> dict[str, torch.Tensor]:
    """Read ``path`` as a flat ``{name: tensor}`` dict on the CPU, safely.

    Args:
        path: a ``.pkl``/``.pth``/``.pt`` pickle written by ``torch.save``, or a ``.safetensors`` file.
        what: what the file is for, starting the message (``"RIFE weights"``, ``"raft_small weights"``).
        fix: one or more whole sentences telling the user which file to pass instead.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        PermissionError: ``path`` cannot be read.
        CheckpointFileError: a folder, not a checkpoint, truncated or corrupt, a pickle holding more than
            tensors (it could run code), or not a dict of tensors.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.pth"
    >>> torch.save({"module.conv.weight": torch.zeros(2)}, p)
    >>> list(read_state_dict(p))
    ['conv.weight']
    >>> _ = p.write_text("hello")
    >>> read_state_dict(p, what="RIFE weights", fix="Pass a flownet.pkl.")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flow.checkpoint.CheckpointFileError: RIFE weights ...w.pth: expected a state dict saved with torch.save (.pkl/.pth/.pt) or a .safetensors file, got a text file, which is not a checkpoint. Pass a flownet.pkl.
    """
    p, kind = _open_checked(path, what, fix)
    sd = _read_safetensors(p, what) if kind == "safetensors" else _read_pickle(p, kind, what, fix)
    return _flatten(sd, p, what, fix)


def read_tensors(path: str | os.PathLike, *, what: str = "checkpoint",
                 fix: str = "Pass a .safetensors file.") -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file as its ``{name: tensor}`` dict (names kept as they are), on the CPU.

    Anything else (a pickle, an image, a cut-off file) raises :class:`CheckpointFileError` naming what the
    file is, so a folder whose manifest checksum matches a wrong file is still refused in one line.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "g.safetensors"
    >>> _ = p.write_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
    >>> read_tensors(p, what="adapter gates", fix="Save them again.")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flow.checkpoint.CheckpointFileError: adapter gates ...g.safetensors: expected a .safetensors file, got a PNG image. Save them again.
    """
    p, kind = _open_checked(path, what, fix, need="safetensors")
    return _read_safetensors(p, what, fix)


def read_object(path: str | os.PathLike, *, what: str = "checkpoint", fix: str = "Pass a checkpoint file.",
                unsafe_fix: str | None = None):
    """Read a ``torch.save`` pickle as the object it holds (tensors, dicts, lists, numbers, strings), safely:
    ``torch.load(..., weights_only=True)`` refuses any other object before it is built, so a planted payload
    never runs, and the message never suggests loading it unsafely.

    Args:
        unsafe_fix: the sentence(s) for a pickle that holds other objects (default: re-save it as a state
            dict, as :func:`read_state_dict` says).
    """
    p, kind = _open_checked(path, what, fix, need="pickle")
    return _read_pickle(p, kind, what, fix, unsafe_fix=unsafe_fix)


def _open_checked(path, what: str, fix: str, need: str | None = None) -> tuple[Path, str]:
    """The existing, readable file ``path`` and its kind ('zip', 'pickle', 'safetensors'); ``need``: 'pickle'
    (zip or plain pickle) or 'safetensors' refuses the other kinds."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} {p}: no such file. {fix}")
    if p.is_dir():
        raise _fail(what, p, "a folder, not a file", fix)
    try:
        with open(p, "rb") as fh:
            head = fh.read(64)
    except PermissionError:
        raise PermissionError(f"{what} {p}: the file cannot be read (permission denied); fix its permissions "
                              "or copy it somewhere readable") from None
    size = p.stat().st_size
    kind = _sniff(head, size)
    if need == "safetensors" and kind != "safetensors":
        got = describe_file(head, size) if kind == "other" else f"a torch {kind} checkpoint"
        if kind == "other" and len(head) >= 9 and head[8:9] == b"{":
            got = f"a safetensors file whose end is missing ({size} bytes)"
        raise CheckpointFileError(f"{what} {p}: expected a .safetensors file, got {got}. {fix}")
    if need == "pickle" and kind not in ("zip", "pickle"):
        got = describe_file(head, size) if kind == "other" else "a .safetensors file"
        raise CheckpointFileError(f"{what} {p}: expected a checkpoint written by torch.save, got {got}. {fix}")
    if kind == "other" or (p.suffix.lower() == ".safetensors" and kind != "safetensors"):
        got = describe_file(head, size)
        if p.suffix.lower() == ".safetensors" and kind != "other":
            got = f"a {kind} checkpoint named .safetensors"
        raise _fail(what, p, f"{got}, which is not a checkpoint", fix)
    return p, kind


def _read_safetensors(p: Path, what: str, fix: str | None = None):
    """``fix``: for :func:`read_tensors` (a file the project wrote), what to do instead; else the weights reader's
    message (download or copy it again)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except Exception as e:  # safetensors raises its own error types
        if fix is not None:
            raise CheckpointFileError(f"{what} {p}: expected a .safetensors file, got a damaged one ({_first_line(e)}): "
                                      f"it is truncated or corrupt. {fix}") from None
        raise _fail(what, p, f"a damaged safetensors file ({_first_line(e)})",
                    "It is truncated or corrupt; download or copy it again.") from None


def _read_pickle(p: Path, kind: str, what: str, fix: str, unsafe_fix: str | None = None):
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols and storage details while reading: not the user's concern.
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler fails in many ways on foreign or damaged data
        text = str(e)
        unsafe = re.search(r"GLOBAL ([\w.]+)", text)
        if unsafe:
            raise CheckpointFileError(
                f"{what} {p}: refused to load it: the pickle holds Python objects besides tensors (it names "
                f"{unsafe.group(1)}), and loading those can run code, so only tensors and plain containers are "
                "read. " + (unsafe_fix or "If you trust the file, load it yourself and re-save its state dict "
                            "with torch.save(model.state_dict(), PATH), or convert it to .safetensors.")
            ) from None
        if kind == "pickle" and ("magic number" in text or isinstance(e, pickle.UnpicklingError)):
            raise _fail(what, p, "a Python pickle that torch.save did not write (such pickles can run code when "
                                 "loaded, so they are not read)", fix) from None
        raise _fail(what, p, f"a damaged {'zip' if kind == 'zip' else 'pickle'} checkpoint "
                             f"({type(e).__name__}{': ' + _first_line(e) if text else ''})",
                    "It is truncated or corrupt; download or copy it again.") from None


def _first_line(e: BaseException, limit: int = 120) -> str:
    line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    line = line.split(". ")[0].rstrip(".")  # the first sentence, whole
    return line if len(line) <= limit else line[: limit - 3].rsplit(" ", 1)[0] + "..."


def _flatten(sd, p: Path, what: str, fix: str) -> dict[str, torch.Tensor]:
    for key in _WRAPPERS:
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict):
        raise _fail(what, p, f"a {type(sd).__name__}, not a dict of named tensors", fix)
    bad = [(k, v) for k, v in sd.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        k, v = bad[0]
        entries = "1 entry that is not a named tensor" if len(bad) == 1 else f"{len(bad)} entries that are not named tensors"
        raise _fail(what, p, f"a dict with {entries} (e.g. {k!r}: {type(v).__name__})", fix)
    if not sd:
        raise _fail(what, p, "an empty dict", fix)
    # Checkpoints saved from DataParallel/DDP prefix every key with "module.".
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
