"""Trained word vectors as the Python API returns them (:class:`Embeddings`): lookup,
neighbours, analogies, evaluation, export, and a gensim ``KeyedVectors`` view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embedtrain.errors import ModelFileError, SettingsError, UnknownWord
from embedtrain.evaluate import (
    DEFAULT_RESTRICT_VOCAB,
    default_analogies,
    default_similarities,
    evaluate,
)
from embedtrain.export import is_binary_path, save_word2vec
from embedtrain.history import EpochReport
from embedtrain.model import Model
from embedtrain.settings import Settings


class Embeddings:
    """Words (most frequent first) and their vectors; from :func:`embedtrain.train`, or
    :func:`embedtrain.load` of a saved model (resumable) or word2vec vectors (not)."""

    def __init__(self, words: list[str], vectors: np.ndarray, model: Model | None = None) -> None:
        self.words: list[str] = list(words)
        #: (V, d) float32, row i for ``words[i]``.
        self.vectors: np.ndarray = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index = {word: i for i, word in enumerate(self.words)}
        self._model = model
        self._unit: np.ndarray | None = None

    @classmethod
    def from_model(cls, model: Model) -> Embeddings:
        return cls(model.vocab.words, model.host_vectors(), model)

    @property
    def model(self) -> Model | None:
        """The model behind these vectors (vocabulary with counts, the head, where training
        stands), for what this class does not wrap; None for loaded word2vec vectors."""
        return self._model

    @property
    def settings(self) -> Settings | None:
        """The training settings (None for vectors loaded from a word2vec file)."""
        return self._model.settings if self._model else None

    @property
    def history(self) -> list[EpochReport]:
        """One report per epoch trained, over every run that continued this model."""
        return [EpochReport.from_dict(r) for r in self._model.history] if self._model else []

    @property
    def output_vectors(self) -> np.ndarray | None:
        """The head's per-word output vectors (syn1neg for ns, W for the exact heads), in
        the order of :attr:`words`; None where the head has none (hs) or for loaded vectors."""
        if self._model is None or not self._model.head.has_output_vectors:
            return None
        return self._model.head.output_vectors()

    def log_probabilities(self, rows: Any) -> np.ndarray | None:
        """log p(w | h) of every word w (float64, len(rows) x V) for the input vectors of
        the words at ``rows`` (indices into :attr:`words`), under the head's own
        distribution: the held-out log-loss (perplexity) of a model. None where the head's
        output is not a normalised distribution (ns, hs, lsh, squared, zloss) or for
        loaded word2vec vectors. O(V d) per row."""
        if self._model is None:
            return None
        model = self._model
        try:
            hidden = model.ops.asarray(self.vectors[np.asarray(rows)])
            return model.ops.to_host(model.head.log_probabilities(hidden))
        except NotImplementedError:
            return None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self._row(word)]

    def __repr__(self) -> str:
        return f"Embeddings({len(self):,} words, dimension {self.vectors.shape[1]})"

    def _row(self, word: str) -> int:
        try:
            return self._index[word]
        except KeyError:
            raise UnknownWord(f"word {word!r} is not in the vocabulary") from None

    def _unit_vectors(self) -> np.ndarray:
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = self.vectors / np.maximum(norms, np.finfo(np.float32).tiny)
        return self._unit

    def _nearest(self, query: np.ndarray, n: int, exclude: set[int]) -> list[tuple[str, float]]:
        if n < 1:
            raise SettingsError(f"n must be positive, not {n}")
        unit = self._unit_vectors()
        norm = float(np.linalg.norm(query))
        similarity = unit @ (query / norm if norm > 0 else query).astype(np.float32)
        count = min(n + len(exclude), len(self.words))
        best = np.argpartition(-similarity, count - 1)[:count]
        ranked = sorted(best, key=lambda i: (-similarity[i], i))
        return [(self.words[i], float(similarity[i])) for i in ranked if i not in exclude][:n]

    def most_similar(self, word_or_vector: str | Any, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` words of highest cosine similarity to a word (itself excluded) or to a
        vector, as (word, similarity), best first."""
        if isinstance(word_or_vector, str):
            row = self._row(word_or_vector)
            return self._nearest(self._unit_vectors()[row], n, {row})
        vector = np.asarray(word_or_vector, dtype=np.float32)
        if vector.shape != self.vectors.shape[1:]:
            raise ValueError(f"a query vector must have shape {self.vectors.shape[1:]}")
        return self._nearest(vector, n, set())

    def analogy(self, a: str, b: str, c: str, n: int = 10) -> list[tuple[str, float]]:
        """Answers to a : b :: c : ? by 3CosAdd (b - a + c on unit vectors, as gensim's
        ``most_similar(positive=[b, c], negative=[a])``), the three words excluded."""
        rows = [self._row(word) for word in (a, b, c)]
        unit = self._unit_vectors()
        query = (unit[rows[1]] + unit[rows[2]] - unit[rows[0]]) / 3.0
        return self._nearest(query, n, set(rows))

    def keyed_vectors(self):
        """These vectors as a gensim ``KeyedVectors`` (gensim's whole ecosystem applies)."""
        from gensim.models import KeyedVectors

        vectors = KeyedVectors(self.vectors.shape[1])
        vectors.add_vectors(self.words, self.vectors)
        return vectors

    def evaluate(
        self,
        analogies: list[str] | None = None,
        similarities: list[str] | None = None,
        restrict_vocab: int = DEFAULT_RESTRICT_VOCAB,
    ) -> dict[str, dict[str, float | str]]:
        """What ``embedtrain eval`` reports, keyed by data set: Google analogies and the
        WS-353 and SimLex-999 Spearman correlations (gensim's data and functions), plus
        any further files; each ``{"task", "score", "coverage"}``."""
        scores = evaluate(
            self.keyed_vectors(),
            analogies=default_analogies() + list(analogies or []),
            similarities=default_similarities() + list(similarities or []),
            restrict_vocab=restrict_vocab,
        )
        return {s.name: {"task": s.task, "score": s.score, "coverage": s.coverage} for s in scores}

    def save_vectors(self, path: str | Path, binary: bool | None = None) -> None:
        """Write word2vec vectors atomically: binary if ``binary`` or, when None, if the
        name ends in ``.bin``; text otherwise."""
        save_word2vec(
            path, self.words, self.vectors, is_binary_path(path) if binary is None else binary
        )

    def save_output_vectors(self, path: str | Path, binary: bool | None = None) -> None:
        """Write :attr:`output_vectors` as :meth:`save_vectors` writes the input vectors."""
        if self._model is None:
            raise SettingsError("vectors loaded from a word2vec file have no output vectors")
        self._model.head.require_output_vectors(self._model.settings.head)
        outputs = self._model.head.output_vectors()
        save_word2vec(path, self.words, outputs, is_binary_path(path) if binary is None else binary)

    def save(self, path: str | Path) -> None:
        """Save the full model (``.npz``, atomic) for :func:`embedtrain.load` and
        ``train(..., resume=path)``."""
        if self._model is None:
            raise ModelFileError(
                "vectors loaded from a word2vec file are not a model: nothing to resume from"
            )
        self._model.save(path)
