"""Word-vector export in word2vec's text and binary formats (what gensim's
``KeyedVectors.load_word2vec_format`` and most tools read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedtrain.atomic import atomic_write


def is_binary_path(path: str | Path) -> bool:
    """word2vec binary for ``.bin`` outputs, text otherwise (the CLI's convention)."""
    return str(path).lower().endswith(".bin")


def save_word2vec(path: str | Path, words: list[str], vectors: np.ndarray, binary: bool) -> None:
    """Write ``words`` and their ``vectors`` atomically in word2vec format."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    with atomic_write(path) as out:
        out.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        if binary:
            little_endian = vectors.astype("<f4", copy=False)
            for word, row in zip(words, little_endian):
                out.write(word.encode() + b" " + row.tobytes() + b"\n")
        else:
            # %.9g round-trips every float32 exactly.
            row_format = " ".join(["%.9g"] * vectors.shape[1])
            for word, row in zip(words, vectors.tolist()):
                out.write(f"{word} {row_format % tuple(row)}\n".encode())
