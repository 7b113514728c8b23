"""Rename a file or folder without replacing what is at the destination, atomically where Linux allows.

:func:`rename_noreplace` is the final step of every guarded output (:mod:`flow.atomic`): a file that
appeared at the destination while a command ran is kept, and the command's output is refused, instead of one
run silently replacing another's output.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["rename_noreplace"]

_AT_FDCWD = -100  # Linux <fcntl.h>
_RENAME_NOREPLACE = 1  # Linux <linux/fs.h>
_renameat2_fn = None


def _renameat2():
    """libc's renameat2 (glibc 2.28+, Linux 3.15+), or None where there is none."""
    global _renameat2_fn
    if _renameat2_fn is None:
        import ctypes

        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            fn = False
        _renameat2_fn = fn
    return _renameat2_fn or None


def _appeared(dst: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, f"{dst} appeared while this command ran (another run writing the same "
                           "output?); it is kept, and this run's output is discarded; pass --overwrite (or -y) to "
                           "replace it", str(dst))


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists, atomically: FileExistsError when it does.

    Linux's ``renameat2(RENAME_NOREPLACE)`` where the file system supports it; else, for a file, a hard link
    to ``dst`` (which fails if it exists) and the removal of ``src``; else a check then a rename (a window of
    microseconds in which a file appearing would be replaced).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a").write_text("new"); _ = (d / "b").write_text("theirs")
    >>> rename_noreplace(d / "a", d / "b")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: [Errno 17] ... appeared while this command ran ...
    >>> (d / "b").read_text(), (d / "a").exists()
    ('theirs', True)
    """
    src, dst = Path(src), Path(dst)
    fn = _renameat2()
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        import ctypes

        err = ctypes.get_errno()
        if err == errno.EEXIST or (err == errno.ENOTEMPTY and dst.is_dir()):
            raise _appeared(dst)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
        # the file system does not support the flag: fall through
    if not src.is_dir():
        try:
            os.link(src, dst)
        except FileExistsError:
            raise _appeared(dst) from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
        else:
            os.unlink(src)
            return
    if os.path.lexists(dst):
        raise _appeared(dst)
    os.rename(src, dst)
