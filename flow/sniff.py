"""What a file is, from its first and last bytes: for messages about a file given in the wrong place.

A PNG passed as weights, random bytes named ``.png``, or a cut-off download should be told what they are
("a PNG image", "a text file", "a PNG image whose end is missing") rather than fail deep inside a decoder.

>>> describe_file(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8), 16)
'a PNG image'
>>> describe_file(b"hello world", 11)
'a text file'
"""
from __future__ import annotations

import string
import struct
import zlib

import numpy as np

__all__ = ["describe_file", "damaged_image"]

# Leading bytes of files people pass in the wrong place, for the message.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image or AVI video)"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (b"PIEH", "a Middlebury .flo flow file"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"PK\x03\x04", "a zip archive (or a torch checkpoint)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)
_PRINTABLE = set(string.printable.encode())


def describe_file(head: bytes, size: int) -> str:
    """What a file looks like from its first bytes ``head`` and its ``size``: "a PNG image", "a text file"."""
    if size == 0:
        return "an empty file"
    if head[4:8] == b"ftyp":
        return "an MP4/MOV video"
    for sig, what in _SIGNATURES:
        if head.startswith(sig):
            return what
    if all(b in _PRINTABLE for b in head):
        return "a text file"
    return f"{size} bytes of data in no known format"


def damaged_image(buf) -> str | None:
    """A one-phrase description when ``buf`` (a whole file, bytes or uint8 array) is a PNG or JPEG that is cut
    off or corrupt, else None. Decoders print their own warnings on such files, outside Python; checking
    first keeps the report to one line. PNG chunks are walked and their CRCs checked; a JPEG must end with
    its end-of-image marker.

    >>> damaged_image(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(4))
    'a PNG image whose end is missing (12 bytes)'
    """
    data = buf.tobytes() if isinstance(buf, np.ndarray) else bytes(buf)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_damage(data)
    if data.startswith(b"\xff\xd8\xff") and b"\xff\xd9" not in data[-64:]:
        return f"a JPEG image whose end is missing ({len(data)} bytes)"
    return None


def _png_damage(data: bytes) -> str | None:
    pos = 8
    while pos + 12 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + n
        if end > len(data):
            break
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(data[pos + 4:end - 4]) != crc:
            return f"a corrupt PNG image (the checksum of its {kind.decode('latin-1')!r} chunk at byte {pos} is wrong)"
        if kind == b"IEND":
            return None
        pos = end
    return f"a PNG image whose end is missing ({len(data)} bytes)"
