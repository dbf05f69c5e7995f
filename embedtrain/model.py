"""The model: vocabulary, input vectors, the head and where training stands.

The native file (``.npz``) holds everything needed to continue training: settings,
vocabulary with counts, input vectors, the head's parameters and the words done.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from embedtrain.atomic import atomic_write
from embedtrain.backend import Ops
from embedtrain.errors import UsageError
from embedtrain.heads import Head, make_head
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

FORMAT_VERSION = 1


class Model:
    """Parameters and progress of one training run."""

    def __init__(self, vocab: Vocabulary, settings: Settings, ops: Ops) -> None:
        self.vocab = vocab
        self.settings = settings
        self.ops = ops
        rng = np.random.default_rng(settings.seed)
        # gensim 4.x initialisation: uniform in [-1/d, 1/d).
        vectors = rng.random((len(vocab), settings.dim), dtype=np.float32)
        vectors *= 2.0
        vectors -= 1.0
        vectors /= settings.dim
        self.vectors = ops.asarray(vectors)
        self.head: Head = make_head(vocab, settings, ops, settings.seed + 1)
        self.words_done = 0  # in-vocabulary words trained on, over all epochs

    def host_vectors(self) -> np.ndarray:
        return self.ops.to_host(self.vectors)

    def save(self, path: str | Path) -> None:
        """Write the native model file atomically."""
        header = {
            "format": FORMAT_VERSION,
            "settings": self.settings.to_dict(),
            "words_done": self.words_done,
            "total_corpus_words": self.vocab.total_words,
        }
        arrays = {f"head.{k}": v for k, v in self.head.parameters().items()}
        with atomic_write(path) as out:
            np.savez(
                out,
                header=np.array(json.dumps(header)),
                words=np.array(self.vocab.words, dtype=str),
                counts=self.vocab.counts,
                vectors=self.host_vectors(),
                **arrays,
            )

    @staticmethod
    def saved_settings(path: str | Path) -> Settings:
        """The settings stored in a model file, without loading its arrays."""
        with _open_model(path) as data:
            return Settings.from_dict(_header(path, data)["settings"])

    @classmethod
    def load(cls, path: str | Path, ops: Ops) -> Model:
        """Read a native model file written by :meth:`save`."""
        with _open_model(path) as data:
            header = _header(path, data)
            try:
                vocab = Vocabulary(
                    [str(w) for w in data["words"]],
                    data["counts"].astype(np.int64),
                    int(header["total_corpus_words"]),
                )
                model = cls(vocab, Settings.from_dict(header["settings"]), ops)
                model.vectors = ops.asarray(data["vectors"].astype(np.float32))
                model.head.load_parameters(
                    {k[5:]: data[k] for k in data.files if k.startswith("head.")}
                )
                model.words_done = int(header["words_done"])
            except (OSError, ValueError, KeyError) as exc:
                raise UsageError(f"{path} is not an embedtrain model file ({exc})") from exc
        return model


@contextmanager
def _open_model(path: str | Path) -> Iterator:
    """The model file's arrays, loaded lazily; unreadable files are usage errors."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise UsageError(f"model file {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not an embedtrain model file ({exc})") from exc
    with data:
        yield data


def _header(path: str | Path, data) -> dict:
    try:
        header = json.loads(str(data["header"]))
    except (KeyError, ValueError) as exc:
        raise UsageError(f"{path} is not an embedtrain model file ({exc})") from exc
    if header.get("format") != FORMAT_VERSION:
        raise UsageError(f"{path}: unsupported model format {header.get('format')}")
    return header
