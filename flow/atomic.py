"""Output paths: checked before any work, written atomically, and never left half-written.

* :func:`check_outputs` validates every path a command will write (``-o``, ``--viz``, ``--compare``, ...)
  before a model loads or a frame decodes: not an input, not another output, its folder exists and is
  writable, and its type (an image, a video, a new folder, ...) fits.
* :func:`atomic_path` and :func:`atomic_dir` write to a hidden temporary name in the target folder
  (``.NAME.XXXX.part.ext``) and rename it into place on success, so no half-written output is ever left under
  the name the user asked for.
* :func:`atomic_group` writes several outputs as one unit (a video and its ``--compare`` image): both appear,
  or neither.
* An output checked with ``overwrite=False`` is *guarded* (inside :func:`guarded_outputs`): its final rename
  refuses to replace a file that appeared after the check (:func:`rename_noreplace`, in :mod:`flow.noreplace`),
  so two runs writing the same path never silently replace each other's output.
* :mod:`flow.locks` keeps a folder locked while a long run writes into it; :mod:`flow.diskfull` recognises
  a full disk in any library's error.
* Every live temporary path is registered here; :func:`install_signal_cleanup` makes SIGTERM remove them (an
  exception or Ctrl-C removes them through the context managers themselves).
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from .noreplace import rename_noreplace

__all__ = [
    "FOLDER",
    "OUTPUT_KINDS",
    "OutputExistsError",
    "atomic_dir",
    "atomic_group",
    "atomic_path",
    "check_output_path",
    "check_outputs",
    "guarded_outputs",
    "install_signal_cleanup",
    "live_partials",
    "rename_noreplace",
]

FOLDER = "folder"
"""The kind of an output that is a new (or empty) folder, for :func:`check_outputs`."""

OUTPUT_KINDS: dict[str, tuple[str, ...]] = {
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"),
    "png": (".png",),
    "video": (".mp4", ".mkv", ".mov", ".m4v"),  # what flow.video.VideoWriter encodes (H.264)
    "flow": (".flo", ".npy"),
    "json": (".json",),
}
"""Named output kinds for :func:`check_outputs`: the file-name endings each accepts."""

# Temporary paths being written now (path -> True for a folder). SIGTERM removes them.
_LIVE: dict[Path, bool] = {}
_LIVE_LOCK = threading.Lock()


def live_partials() -> list[Path]:
    """The temporary files and folders being written right now (what SIGTERM would remove)."""
    with _LIVE_LOCK:
        return list(_LIVE)


def _register(path: Path, is_dir: bool) -> None:
    with _LIVE_LOCK:
        _LIVE[path] = is_dir


def _unregister(path: Path) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(path, None)


def _remove(path: Path, is_dir: bool) -> None:
    if is_dir:
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_live_partials() -> None:
    # No lock here: a signal handler runs between bytecodes of the main thread, which may hold it.
    for path, is_dir in list(_LIVE.items()):
        _remove(path, is_dir)
        _LIVE.pop(path, None)


def _on_sigterm(signum, frame) -> None:
    _remove_live_partials()
    # SystemExit unwinds the stack, so every ``finally`` and context manager runs; 128 + 15 is the status
    # a shell reports for a process ended by SIGTERM.
    raise SystemExit(128 + signal.SIGTERM)


def install_signal_cleanup() -> bool:
    """Make SIGTERM remove every partial output and exit with status 143.

    Returns False (and changes nothing) when called outside the main thread, where Python cannot install
    signal handlers, or when another handler is already installed for SIGTERM. Calling it twice is harmless.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm:
        return True
    if current not in (signal.SIG_DFL, None):
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


class OutputExistsError(FileExistsError, ValueError):
    """An output that exists already, refused without ``--overwrite``."""


# Outputs checked with overwrite=False: their final rename must not replace a file that appeared meanwhile.
_GUARDED: set[str] = set()


def _key(path: Path) -> str:
    return os.path.realpath(os.path.abspath(path))


def _guard(path: Path) -> None:
    with _LIVE_LOCK:
        _GUARDED.add(_key(path))


def _is_guarded(path: Path) -> bool:
    with _LIVE_LOCK:
        return _key(path) in _GUARDED


@contextlib.contextmanager
def guarded_outputs() -> Iterator[None]:
    """Scope of the guards :func:`check_outputs` sets with ``overwrite=False``: the paths guarded inside the
    block stop being guarded at its end (one command run)."""
    with _LIVE_LOCK:
        before = set(_GUARDED)
    try:
        yield
    finally:
        with _LIVE_LOCK:
            _GUARDED.intersection_update(before)


# ------------------------------------------------------------------------------------------ checks


def _kind_suffixes(kind: str | Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """(description, accepted endings) of a kind given by name or as a sequence of endings."""
    if isinstance(kind, str):
        if kind in OUTPUT_KINDS:
            return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} file", OUTPUT_KINDS[kind]
        if kind.startswith("."):
            return f"a {kind} file", (kind.lower(),)
        raise ValueError(f"unknown output kind {kind!r}; expected one of {sorted(OUTPUT_KINDS)}, {FOLDER!r} or endings")
    suffixes = tuple(s.lower() if s.startswith(".") else "." + s.lower() for s in kind)
    return "a " + "/".join(suffixes) + " file", suffixes


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    if a.exists() and b.exists():
        with contextlib.suppress(OSError):
            return os.path.samefile(a, b)
    return False


def _inside(child: Path, folder: Path) -> bool:
    try:
        return Path(os.path.realpath(child)).is_relative_to(os.path.realpath(folder))
    except ValueError:
        return False


def check_outputs(
    outputs: Mapping[str, str | os.PathLike | None],
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    kinds: Mapping[str, str | Sequence[str]] | None = None,
    overwrite: bool | None = None,
) -> dict[str, Path]:
    """Validate every path a command writes, before any work; return them as ``{option: Path}``.

    ``outputs`` maps option names (``"-o"``, ``"--viz"``) to paths; None values are skipped. ``kinds`` says
    what each option must be: a name from :data:`OUTPUT_KINDS` (``"video"``: .mp4/.mkv/.mov/.m4v,
    ``"image"``, ``"png"``, ``"flow"``, ``"json"``), a sequence of endings (``(".png",)``), or :data:`FOLDER`
    (a new or empty folder). An option not in ``kinds`` is any file. Each path must not be an input (resolved
    paths, and ``os.path.samefile`` when both exist), nor inside an input folder when it is a folder, nor
    another output; its folder must exist and be writable; a file must not be an existing folder.

    ``overwrite`` is what the command line's ``--overwrite`` (``-y``) says: False refuses an existing output
    file (:class:`OutputExistsError`) and guards the path, so that its final rename refuses a file that
    appears meanwhile (see :func:`guarded_outputs`); True lets it be replaced; None (the default, for library
    callers) replaces it without a guard. A folder output is always new or empty, whatever ``overwrite`` says;
    an output that is an input is always refused.

    Raises ValueError (wrong kind, clash with an input or another output, OutputExistsError),
    FileNotFoundError (missing folder) or PermissionError (folder not writable); each message names the
    option, what was expected, what came and how to fix it.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> sorted(check_outputs({"-o": d / "a.mp4", "--compare": None}, kinds={"-o": "video"}))
    ['-o']
    >>> check_outputs({"-o": d / "a.txt"}, kinds={"-o": "video"})
    Traceback (most recent call last):
    ...
    ValueError: -o a.txt: expected a video file (.mp4, .mkv, .mov, .m4v), got '.txt'; name the output e.g. a.mp4
    """
    kinds = dict(kinds or {})
    unknown = set(kinds) - set(outputs)
    if unknown:
        raise KeyError(f"kinds names options that are not in outputs: {sorted(unknown)}")
    ins = [Path(i) for i in inputs if i is not None]
    checked: dict[str, Path] = {}
    for opt, value in outputs.items():
        if value is None:
            continue
        p = Path(value)
        shown = f"{opt} {p.name or p}"
        kind = kinds.get(opt)
        if kind == FOLDER:
            if p.exists() and not p.is_dir():
                raise ValueError(f"{shown}: expected a new or empty folder, got an existing file; name a new folder")
            if p.is_dir() and any(p.iterdir()):
                raise ValueError(
                    f"{shown}: expected a new or empty folder, got a folder with files in it; "
                    "choose a new folder name or empty it first"
                )
        else:
            if p.is_dir():
                raise ValueError(f"{shown}: expected a file name, got an existing folder; name a file inside it")
            if kind is not None:
                what, suffixes = _kind_suffixes(kind)
                if p.suffix.lower() not in suffixes:
                    got = repr(p.suffix) if p.suffix else "no ending"
                    raise ValueError(
                        f"{shown}: expected {what} ({', '.join(suffixes)}), got {got}; "
                        f"name the output e.g. {p.stem or 'out'}{suffixes[0]}"
                    )
        for i in ins:
            if _same(p, i):
                raise ValueError(
                    f"{shown} is the same file as the input {i}; writing it would destroy the input, "
                    "so choose another output name"
                )
            if kind == FOLDER and i.is_dir() and _inside(p, i):
                raise ValueError(f"{shown} is inside the input folder {i}; choose a folder outside it")
        for other, q in checked.items():
            if _same(p, q):
                raise ValueError(f"{shown} and {other} name the same path {p}; give each output its own name")
        if overwrite is False and kind != FOLDER and (p.exists() or p.is_symlink()):
            raise OutputExistsError(f"{opt} {p} already exists; pass --overwrite (or -y) to replace it, or choose "
                                    "another name")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise FileNotFoundError(
                f"{shown}: the folder {parent} does not exist; create it first (mkdir -p {parent}) or choose "
                "another output path"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(f"{shown}: the folder {parent} is not writable; choose another output path")
        checked[opt] = p
    if overwrite is False:
        for p in checked.values():
            _guard(p)
    return checked


def check_output_path(path: str | os.PathLike, *, inputs: Iterable = ()) -> Path:
    """Validate one output file before any work: :func:`check_outputs` for a single, untyped output."""
    return check_outputs({"output": path}, inputs=inputs)["output"]


# ------------------------------------------------------------------------------------------ renames


def _commit(tmp: Path, dst: Path) -> None:
    """Move a finished temporary into place: never over a file that appeared meanwhile when ``dst`` is
    guarded (:func:`check_outputs` with ``overwrite=False``), else replacing it."""
    if _is_guarded(dst):
        rename_noreplace(tmp, dst)
    else:
        os.replace(tmp, dst)


# ------------------------------------------------------------------------------------------ writers


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); rename it to ``path`` when the block succeeds.

    The temporary file is ``.STEM.XXXX.part.SUFFIX`` in the target folder; an exception, Ctrl-C or (after
    :func:`install_signal_cleanup`) SIGTERM removes it.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "x.txt") as tmp:
    ...     _ = tmp.write_text("ok")
    >>> (d / "x.txt").read_text()
    'ok'
    """
    p = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=f".part{p.suffix}", dir=p.parent or ".")
    tmp_path = Path(tmp)
    _register(tmp_path, False)
    try:
        os.close(fd)
        # mkstemp creates 0600 files; give the output the permissions a plain open() would (umask applied).
        os.chmod(tmp_path, 0o666 & ~_umask())
        yield tmp_path
        _commit(tmp_path, p)
    except BaseException:
        _remove(tmp_path, False)
        raise
    finally:
        _unregister(tmp_path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary folder next to ``path``; rename it to ``path`` when the block succeeds.

    ``path`` must be new or an empty folder (checked on entry, see :func:`check_outputs`); an empty folder
    is replaced. ``replace=True`` (a checkpoint rewritten in place) takes an existing folder with files too:
    it is moved aside to ``.NAME.old`` only once the new one is complete, then removed, so a failed write
    (a full disk, an interrupt) leaves it intact. On failure (or SIGTERM after :func:`install_signal_cleanup`)
    the temporary folder and everything in it are removed, so the folder appears complete or not at all.
    """
    if replace:
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise ValueError(f"{p}: expected a folder to replace, got an existing file; choose a folder path")
        p.parent.mkdir(parents=True, exist_ok=True)
    else:
        p = check_outputs({"output": path}, kinds={"output": FOLDER})["output"]
    parent = p.parent if str(p.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".part", dir=parent))
    _register(tmp, True)
    try:
        yield tmp
        old = p.with_name(f".{p.name}.old")
        if replace and p.exists() and any(p.iterdir()):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(p, old)  # os.replace cannot swap folders: the old one steps aside first
        elif p.exists():
            try:
                p.rmdir()  # an empty folder the user made beforehand
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise FileExistsError(errno.EEXIST, f"{p} received files while this command ran (another run "
                                      "writing the same folder?); it is kept, and this run's output is discarded",
                                      str(p)) from None
        _commit(tmp, p)
        shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.chmod(p, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    except BaseException:
        _remove(tmp, True)
        raise
    finally:
        _unregister(tmp)


@contextlib.contextmanager
def atomic_group(paths: Sequence[str | os.PathLike | None]) -> Iterator[list[Path | None]]:
    """Write several output files as one unit: yield a temporary path for each (None stays None), and move
    them all into place when the block succeeds; every one appears, or none does.

    The temporaries are ``.STEM.XXXX.part.SUFFIX`` next to their targets (the suffix kept, so a writer that
    chooses the format by it still does). When one rename fails (a file appeared meanwhile at a guarded path,
    a full disk), the outputs already moved are taken back: removed, or a replaced file put back as it was.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_group([d / "v.mp4", None, d / "v.png"]) as (a, none, b):
    ...     _ = a.write_text("video"); _ = b.write_text("strip")
    >>> sorted(p.name for p in d.iterdir())
    ['v.mp4', 'v.png']
    """
    targets = [None if p is None else Path(p) for p in paths]
    tmps: list[Path | None] = []
    try:
        for t in targets:
            if t is None:
                tmps.append(None)
                continue
            fd, name = tempfile.mkstemp(prefix=f".{t.stem}.", suffix=f".part{t.suffix}", dir=t.parent if str(t.parent) else ".")
            tmp = Path(name)
            _register(tmp, False)
            tmps.append(tmp)
            os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())
        yield tmps
        _commit_all([(tmp, t) for tmp, t in zip(tmps, targets) if t is not None])
    except BaseException:
        for tmp in tmps:
            if tmp is not None:
                _remove(tmp, False)
        raise
    finally:
        for tmp in tmps:
            if tmp is not None:
                _unregister(tmp)


def _commit_all(pairs: list[tuple[Path, Path]]) -> None:
    done: list[tuple[Path, Path | None]] = []  # (target, its previous version kept aside)
    try:
        for tmp, dst in pairs:
            backup = None
            if not _is_guarded(dst) and dst.is_file():
                backup = dst.with_name(f".{dst.name}.{os.getpid()}.old")
                with contextlib.suppress(FileNotFoundError):
                    backup.unlink()
                try:
                    os.link(dst, backup)
                except OSError:
                    backup = None  # no hard links here: a rollback can only remove the new file
            _commit(tmp, dst)
            done.append((dst, backup))
    except BaseException:
        for dst, backup in reversed(done):
            if backup is not None:
                os.replace(backup, dst)
            else:
                with contextlib.suppress(FileNotFoundError):
                    dst.unlink()
        raise
    for _, backup in done:
        if backup is not None:
            with contextlib.suppress(FileNotFoundError):
                backup.unlink()
