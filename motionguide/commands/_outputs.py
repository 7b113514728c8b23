"""The ``--overwrite`` (``-y``) option every command that writes an output takes, and how a command line
error reads when the disk is full.

Without ``--overwrite`` an existing output file is refused before any work, and the final rename refuses a
file that appeared meanwhile (:func:`flow.atomic.check_outputs`, :func:`flow.atomic.rename_noreplace`); with
it the file is replaced. An output that is an input is refused either way, and a folder output is always new
or empty.
"""
from __future__ import annotations

import argparse
import os

__all__ = ["add_overwrite_argument", "disk_full_message"]


def add_overwrite_argument(p: argparse.ArgumentParser, what: str = "output files") -> None:
    p.add_argument("-y", "--overwrite", action="store_true",
                   help=f"replace existing {what} (as ffmpeg's -y); without it an existing output is refused "
                        "before any work")


def disk_full_message(err: OSError) -> str:
    """One line for a full disk: what happened, where, that nothing is left behind, and what to do."""
    from flow.diskfull import DISK_FULL_ERRNOS

    what = DISK_FULL_ERRNOS.get(err.errno, os.strerror(err.errno or 0))
    where = f" writing {os.path.dirname(os.path.abspath(err.filename)) or err.filename}" if err.filename else ""
    return (f"{what}{where}: the output was not written and no partial file is left; free some space, or write "
            "to another disk")
