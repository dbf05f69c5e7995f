"""Evaluation through gensim's own functions and bundled data (analogies, word-pair
similarity), so figures are comparable with every gensim user's."""

from __future__ import annotations

import logging
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedtrain.errors import ModelFileError, SettingsError
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


def gensim_data(name: str) -> str:
    from gensim.test.utils import datapath

    return datapath(name)


def default_analogies() -> list[str]:
    return [gensim_data("questions-words.txt")]


def default_similarities() -> list[str]:
    return [gensim_data("wordsim353.tsv"), gensim_data("simlex999.txt")]


def load_vectors(path: str | Path):
    """Load word2vec text or binary vectors with gensim (binary for ``.bin``)."""
    from gensim.models import KeyedVectors

    if not Path(path).is_file():
        raise ModelFileError(f"vectors file {path} does not exist")
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
    broken = int((~np.isfinite(vectors.vectors).all(axis=1)).sum())
    if broken:
        log.warning(
            "%s of %s vectors have NaN or infinite values: the scores below are meaningless",
            f"{broken:,}",
            f"{len(vectors.vectors):,}",
        )
    scores: list[Score] = []
    for path in analogies if analogies is not None else default_analogies():
        _check_readable(path)
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
        _check_readable(path)
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


def _check_readable(path: str) -> None:
    if not Path(path).is_file():
        raise SettingsError(f"evaluation file {path} does not exist")


def _count_analogy_questions(path: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as lines:
        return sum(1 for line in lines if line.strip() and not line.startswith(":"))


def format_table(scores: list[Score]) -> str:
    """A readable table of scores."""
    lines = [f"{'task':<11}{'data':<24}{'score':>8}{'coverage':>10}"]
    for s in scores:
        value = f"{s.score * 100:.2f}%" if s.task == "analogy" else f"{s.score:.4f}"
        lines.append(f"{s.task:<11}{s.name:<24}{value:>8}{s.coverage * 100:>9.1f}%")
    return "\n".join(lines)
