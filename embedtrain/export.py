"""Word-vector export in word2vec's text and binary formats (what gensim's
``KeyedVectors.load_word2vec_format`` and most tools read)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import BinaryIO

import numpy as np

from embedtrain import compression
from embedtrain.atomic import atomic_write

#: Rows converted to text at a time.
EXPORT_BLOCK_ROWS = 4096


def is_binary_path(path: str | Path) -> bool:
    """word2vec binary for ``.bin`` outputs, text otherwise (the CLI's convention), under a
    compression suffix too (``.bin.gz``)."""
    return compression.uncompressed_name(path).lower().endswith(".bin")


def save_word2vec(path: str | Path, words: list[str], vectors: np.ndarray, binary: bool) -> None:
    """Write ``words`` and their ``vectors`` atomically in word2vec format."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    with atomic_write(path) as stream, _compressed(stream, path) as out:
        out.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        if binary:
            little_endian = vectors.astype("<f4", copy=False)
            for word, row in zip(words, little_endian):
                out.write(word.encode() + b" " + row.tobytes() + b"\n")
        else:
            # %.9g round-trips every float32 exactly. Rows go out in blocks: the whole matrix
            # as Python floats would take six times its own memory.
            row_format = " ".join(["%.9g"] * vectors.shape[1])
            for start in range(0, len(words), EXPORT_BLOCK_ROWS):
                block = vectors[start : start + EXPORT_BLOCK_ROWS].tolist()
                for word, row in zip(words[start : start + EXPORT_BLOCK_ROWS], block):
                    out.write(f"{word} {row_format % tuple(row)}\n".encode())


@contextmanager
def _compressed(stream: BinaryIO, path: str | Path) -> Iterator[BinaryIO]:
    """``stream``, compressed as ``path``'s suffix says (gzip, bz2, xz), finished on exit."""
    compress = compression.opener(path)
    with compress(stream, "wb") if compress else nullcontext(stream) as out:
        yield out
