"""Evaluation through gensim's own functions and bundled data (analogies, word-pair
similarity), so figures are comparable with every gensim user's."""

from __future__ import annotations

import logging
import lzma
import os
import stat
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedtrain import compression, memory
from embedtrain.corpus import TEXT_CHECK_BYTES, text_problem
from embedtrain.errors import EmbedtrainError, ModelFileError, SettingsError
from embedtrain.export import is_binary_path

log = logging.getLogger("embedtrain")

DEFAULT_RESTRICT_VOCAB = 30_000


@dataclass
class Score:
    task: str  # "analogy" or "similarity"
    name: str  # data set
    score: float  # accuracy (analogy) or Spearman correlation (similarity)
    coverage: float  # fraction of the data set's items that could be evaluated

    def as_dict(self) -> dict:
        return asdict(self)


def warn_if_not_finite(vectors: np.ndarray, consequence: str) -> None:
    """A warning (the ``embedtrain`` logger) where some vectors hold NaN or infinity."""
    broken = int((~np.isfinite(vectors).all(axis=1)).sum())
    if broken:
        log.warning(
            "%s of %s vectors have NaN or infinite values: %s",
            f"{broken:,}",
            f"{len(vectors):,}",
            consequence,
        )


def gensim_data(name: str) -> str:
    from gensim.test.utils import datapath

    return datapath(name)


def default_analogies() -> list[str]:
    return [gensim_data("questions-words.txt")]


def default_similarities() -> list[str]:
    return [gensim_data("wordsim353.tsv"), gensim_data("simlex999.txt")]


def load_vectors(path: str | Path):
    """Load word2vec text or binary vectors with gensim (binary for ``.bin``; ``.gz``,
    ``.bz2`` and ``.xz`` decompressed), after checking that the file can be read and that
    its header's size fits in memory; :class:`ModelFileError` otherwise."""
    from gensim.models import KeyedVectors

    head = read_head(path, "vectors file", ModelFileError)
    _check_header(path, head)
    try:
        return KeyedVectors.load_word2vec_format(str(path), binary=is_binary_path(path))
    except (ValueError, UnicodeDecodeError, EOFError, IndexError, OSError, zlib.error) as exc:
        raise ModelFileError(
            f"{path} is not a word2vec {'binary' if is_binary_path(path) else 'text'} file ({exc})"
        ) from exc


def evaluate(
    vectors,
    analogies: list[str] | None = None,
    similarities: list[str] | None = None,
    restrict_vocab: int = DEFAULT_RESTRICT_VOCAB,
) -> list[Score]:
    """Google-style analogies (3CosAdd, gensim ``evaluate_word_analogies``) restricted to the
    ``restrict_vocab`` most frequent words, and Spearman correlations on word pairs."""
    logging.getLogger("gensim").setLevel(logging.ERROR)
    warn_if_not_finite(vectors.vectors, "the scores below are meaningless")
    scores: list[Score] = []
    for path in analogies if analogies is not None else default_analogies():
        _check_text_file(path, "analogy file")
        total = _count_analogy_questions(path)
        try:
            accuracy, sections = vectors.evaluate_word_analogies(
                path, restrict_vocab=restrict_vocab, case_insensitive=True
            )
        except (ValueError, OSError) as exc:  # no ": section" line, not UTF-8 text, ...
            raise SettingsError(f"{path} is not an analogy file ({exc})") from exc
        overall = sections[-1]
        done = len(overall["correct"]) + len(overall["incorrect"])
        value = float(accuracy) if done else float("nan")
        scores.append(Score("analogy", Path(path).name, value, done / max(total, 1)))
    for path in similarities if similarities is not None else default_similarities():
        _check_text_file(path, "word-pair similarity file")
        try:
            _, spearman, oov_percent = vectors.evaluate_word_pairs(
                path, restrict_vocab=max(restrict_vocab, len(vectors)), case_insensitive=True
            )
        except ValueError:  # gensim: no pair has both words in the vocabulary
            scores.append(Score("similarity", Path(path).name, float("nan"), 0.0))
            continue
        except (OSError, IndexError) as exc:  # not text, or not word pairs with a score
            raise SettingsError(f"{path} is not a word-pair similarity file ({exc})") from exc
        scores.append(
            Score("similarity", Path(path).name, float(spearman[0]), 1.0 - oov_percent / 100.0)
        )
    return scores


def read_head(path: str | Path, what: str, error: type[EmbedtrainError]) -> bytes:
    """The first bytes of the file at ``path`` (decompressed as its suffix says), or
    ``error`` naming in one line why it cannot be read: missing, a directory, not a regular
    file, no permission, an I/O error, damaged compression."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            kind = "a directory" if os.path.isdir(path) else "not a regular file"
            raise error(f"{what} {path} is {kind}")
        with compression.open_read(path) as stream:
            return stream.read(TEXT_CHECK_BYTES)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except (EOFError, zlib.error, lzma.LZMAError) as exc:
        raise error(f"{what} {path} is damaged compressed data ({exc})") from exc


def _check_text_file(path: str, what: str) -> None:
    """An evaluation file must be readable text (:class:`SettingsError` otherwise)."""
    reason = text_problem(read_head(path, what, SettingsError))
    if reason is not None:
        raise SettingsError(f"{what} {path} is not text: {reason}")


def _check_header(path: str | Path, head: bytes) -> None:
    """A word2vec header (``rows dims``) whose size cannot fit is refused by what it
    claims, before gensim allocates it."""
    fields = head.split(b"\n", 1)[0].split()
    try:
        rows, dims = (int(field) for field in fields[:2])
    except ValueError:
        return  # not a header: gensim's own error says what the file is not
    if rows < 0 or dims <= 0 or len(fields) != 2:
        return
    problem = memory.shortage(4 * rows * dims)
    if problem:
        raise ModelFileError(
            f"{path}'s header claims {rows:,} vectors of {dims:,} dimensions "
            f"({memory.size(4 * rows * dims)}), and {problem}"
        )


def _count_analogy_questions(path: str) -> int:
    with compression.open_read(path) as stream:
        lines = (line.decode("utf-8", errors="replace") for line in stream)
        return sum(1 for line in lines if line.strip() and not line.startswith(":"))


def format_table(scores: list[Score]) -> str:
    """A readable table of scores."""
    lines = [f"{'task':<11}{'data':<24}{'score':>8}{'coverage':>10}"]
    for s in scores:
        value = f"{s.score * 100:.2f}%" if s.task == "analogy" else f"{s.score:.4f}"
        lines.append(f"{s.task:<11}{s.name:<24}{value:>8}{s.coverage * 100:>9.1f}%")
    return "\n".join(lines)
