"""Compressed files, chosen by the name's suffix as gensim (smart_open) does: the one table
that the corpus reader, the vectors writer and the vectors reader share."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: Each suffix's opener: ``opener(path_or_stream, mode)``.
OPENERS: dict[str, Callable[..., BinaryIO]] = {
    ".gz": gzip.open,
    ".bz2": bz2.open,
    ".xz": lzma.open,
}
#: The first bytes of each format, and the suffix its files should have.
MAGIC = {b"\x1f\x8b": ".gz", b"\xfd7zXZ\x00": ".xz", b"BZh": ".bz2"}


def opener(path: str | Path) -> Callable[..., BinaryIO] | None:
    """The opener for ``path``'s compression suffix, or None for an uncompressed name."""
    return OPENERS.get(Path(str(path)).suffix.lower())


def open_read(path: str | Path) -> BinaryIO:
    """``path`` opened for reading bytes, decompressed as its suffix says."""
    decompress = opener(path)
    return decompress(path, "rb") if decompress else open(path, "rb")


def uncompressed_name(path: str | Path) -> str:
    """``path`` without its compression suffix (``vectors.bin.gz`` -> ``vectors.bin``)."""
    name = str(path)
    return name[: -len(Path(name).suffix)] if opener(name) else name
