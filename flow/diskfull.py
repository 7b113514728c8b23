"""A full disk, recognised in any library's error, so the command line can say so in one line.

A full disk reaches the commands as an OSError (ENOSPC, EDQUOT, EFBIG) from Python and PyAV, but as a
``SafetensorError`` saying "No space left on device (os error 28)" from safetensors and as a ``RuntimeError``
from torch.save's C++ writer that only says a write failed; :func:`disk_full` finds it in each.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path

__all__ = ["DISK_FULL_ERRNOS", "disk_full"]

DISK_FULL_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
                    errno.EFBIG: "the file is too large for the file system"}
"""errno -> what it means to a user: the failures of a full disk."""

# how libraries that do not raise OSError say it (safetensors' Rust I/O error, libc's strerror in C++ code)
_DISK_FULL_WORDS = {"No space left on device": errno.ENOSPC, "StorageFull": errno.ENOSPC,
                    "Disk quota exceeded": errno.EDQUOT, "QuotaExceeded": errno.EDQUOT,
                    "File too large": errno.EFBIG, "FileTooLarge": errno.EFBIG}


# torch.save's C++ writer on a full disk: "PytorchStreamWriter failed writing file ...: file write failed", or
# "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534" (measured on a full tmpfs)
_TORCH_WRITE_FAILED = r"file write failed|inline_container\.cc|unexpected pos \d+ vs \d+"


def disk_full(exc: BaseException, path: str | os.PathLike | None = None) -> OSError | None:
    """The full-disk error in ``exc`` or its causes (an OSError with errno ENOSPC, EDQUOT or EFBIG, or a
    library's error that says so in words), as an OSError with that errno; None when it is not one.

    torch.save's writer says only that a write failed (:data:`_TORCH_WRITE_FAILED`): that counts when
    ``path``'s file system has less than 16 MiB free.

    >>> disk_full(OSError(28, "No space left on device")).errno
    28
    >>> disk_full(ValueError("bad")) is None
    True
    """
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return e
        text = str(e)
        for words, code in _DISK_FULL_WORDS.items():
            if words in text:
                return OSError(code, os.strerror(code), None if path is None else str(path))
        if path is not None and re.search(_TORCH_WRITE_FAILED, text):
            with contextlib.suppress(OSError):
                folder = Path(path)
                while not folder.exists() and folder != folder.parent:
                    folder = folder.parent
                if shutil.disk_usage(folder).free < 16 << 20:
                    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        e = e.__cause__ or e.__context__
    return None


