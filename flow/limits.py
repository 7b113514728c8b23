"""The memory limit the commands check their work against before doing it (``--max-memory``), in a module
that imports nothing heavy, so the check of a video's header runs before torch loads.

>>> DEFAULT_LIMIT_GB * GB > 0
True
"""
from __future__ import annotations

__all__ = ["DEFAULT_LIMIT_GB", "GB", "MemoryLimitError"]

#: ``--max-memory``'s default, in GiB
DEFAULT_LIMIT_GB = 8.0
GB = 1024 ** 3


class MemoryLimitError(ValueError):
    """The work needs more memory than the limit allows; the message names what fits."""
