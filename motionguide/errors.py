"""The error types of ``motionguide``, in one place below everything else.

Each is an expected failure caused by what the user passed (a file, a value, a call order); the command
line prints its message on one line and exits with status 2. Every other exception is a bug and shows
its traceback. The messages say what was expected, what came, and how to fix it.
"""
from __future__ import annotations

__all__ = ["UserError", "UsageError", "CheckpointError", "MotionGuidanceError"]


class UserError(Exception):
    """An error caused by the user's input (a missing option, a file that cannot be used)."""


class UsageError(UserError):
    """Arguments a command's parser refuses (``train KIND``: an option of another kind, a missing one), raised
    instead of argparse's usage-and-exit so the command line prints it as ``motionguide COMMAND: error: ...``
    on one line, exit status 2."""

    def __init__(self, command: str, message: str):
        super().__init__(message)
        self.command = command


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt or of another model (says where and how to fix)."""


class MotionGuidanceError(ValueError):
    """Motion guidance used in the wrong order or on the wrong model (applied twice, not applied, mismatch)."""
