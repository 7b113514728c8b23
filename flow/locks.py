"""A lock on an output folder while a long run (training) writes into it.

:func:`hold_lock` keeps ``.FOLDER.motionguide.lock`` next to the folder locked (``fcntl.flock``), holding the
pid, host and start time of its holder; a second run on the same folder is refused with who holds it, before
any work. The lock sits beside the folder, not in it, so taking it neither creates the folder nor adds a file
to it (a run that fails before writing leaves no folder behind).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

__all__ = ["LockHeldError", "hold_lock", "lock_path"]


class LockHeldError(OSError):
    """A folder another run is writing into (:func:`hold_lock`)."""


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: ``.NAME.motionguide.lock`` in its parent."""
    folder = Path(os.path.abspath(folder))
    return folder.with_name(f".{folder.name}.motionguide.lock")


@contextlib.contextmanager
def hold_lock(folder: str | os.PathLike, *, option: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` while the block runs; yield the lock file (:func:`lock_path`).

    The lock is taken with ``fcntl.flock`` (released by the system if the process dies, so it never goes
    stale), and the file holds the pid, host and start time of its holder. A second holder gets
    :class:`LockHeldError` naming them, at once. The file is removed on release, and so are the parent
    folders this call had to make, when they are still empty.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with hold_lock(d):
    ...     with hold_lock(d):  # doctest: +ELLIPSIS
    ...         pass
    Traceback (most recent call last):
    ...
    flow.locks.LockHeldError: [Errno 11] --out .../run is being written by another run (pid ...
    >>> sorted(p.name for p in d.parent.iterdir())
    []
    """
    import fcntl  # POSIX only: imported where it is used

    lock = lock_path(folder)
    made = [q for q in (lock.parent, *lock.parent.parents) if not q.exists()]
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads(os.read(fd, 4096) or b"{}")
            except ValueError:
                info = {}
            os.close(fd)
            who = (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"
                   if info else "another process")
            raise LockHeldError(errno.EWOULDBLOCK, f"{option} {folder} is being written by another run ({who}; "
                                f"lock file {lock}); wait for it to finish or stop it, or choose another {option}")
        except BaseException:
            os.close(fd)
            raise
        # the holder before us may have removed the file between our open and our lock: lock the one in place
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode())
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()  # while still locked: a waiting run then locks a fresh file
        os.close(fd)
        for q in made:  # innermost first
            with contextlib.suppress(OSError):
                q.rmdir()  # only when empty
