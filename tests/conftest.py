"""Shared fixtures: small generated corpora with known structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

GROUPS = {
    "animal": ["cat", "dog", "horse", "cow", "sheep", "goat"],
    "colour": ["red", "green", "blue", "yellow", "purple", "orange"],
    "tool": ["hammer", "saw", "drill", "wrench", "chisel", "pliers"],
    "fruit": ["apple", "pear", "plum", "cherry", "grape", "lemon"],
    "city": ["paris", "london", "berlin", "madrid", "rome", "vienna"],
}
CONTEXTS = {group: [f"{group}ctx{i}" for i in range(8)] for group in GROUPS}
FILLER = ["the", "a", "of", "and", "in", "is"]


def structured_sentences(n_sentences: int = 6000, seed: int = 0) -> list[list[str]]:
    """Sentences where words of one group share their contexts (and nothing else)."""
    rng = np.random.default_rng(seed)
    names = list(GROUPS)
    sentences = []
    for _ in range(n_sentences):
        group = names[rng.integers(len(names))]
        words = [GROUPS[group][rng.integers(6)] for _ in range(2)]
        words += [CONTEXTS[group][rng.integers(8)] for _ in range(5)]
        words += [FILLER[rng.integers(len(FILLER))] for _ in range(2)]
        rng.shuffle(words)
        sentences.append(words)
    return sentences


def write_corpus(path: Path, sentences: list[list[str]]) -> Path:
    path.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def structured_corpus(tmp_path_factory) -> Path:
    return write_corpus(
        tmp_path_factory.mktemp("corpus") / "structured.txt", structured_sentences()
    )


def neighbour_purity(words: list[str], vectors: np.ndarray, k: int = 3) -> float:
    """Fraction of each group word's k nearest group words (cosine) in its own group."""
    index = {w: i for i, w in enumerate(words)}
    members = [(g, w) for g, ws in GROUPS.items() for w in ws]
    matrix = np.stack([vectors[index[w]] for _, w in members]).astype(np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    similarity = matrix @ matrix.T
    np.fill_diagonal(similarity, -np.inf)
    hits = 0
    for i, (group, _) in enumerate(members):
        nearest = np.argsort(-similarity[i])[:k]
        hits += sum(members[j][0] == group for j in nearest)
    return hits / (k * len(members))


def numeric_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar ``f()`` with respect to ``x`` (in place)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        up = f()
        x[i] = saved - eps
        down = f()
        x[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad


def train_model(corpus_path, callbacks=(), **options):
    """(model, result) of a quiet run on ``corpus_path``: the API's pipeline (the engine and
    backend chosen by the settings, as ``embedtrain.train`` chooses them), exposing the
    model and the training result that the API wraps."""
    from embedtrain.corpus import Corpus
    from embedtrain.engines import choose_engine
    from embedtrain.heads import resolved_settings
    from embedtrain.model import Model
    from embedtrain.training import LocalEpochs, encode_corpus, run_training, scan_vocabulary

    settings = resolved_settings(**options)
    engine, ops = choose_engine(settings)
    with Corpus(corpus_path) as corpus:
        vocab = scan_vocabulary(corpus, settings, quiet=True)
        model = Model(vocab, settings, ops)
        encoded = encode_corpus(corpus, vocab, quiet=True)
        try:
            result = run_training(model, LocalEpochs(model, encoded, engine), True, callbacks)
        finally:
            encoded.close()
    return model, result
