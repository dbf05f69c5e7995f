"""The library's entry points: :func:`train` and :func:`load`. The command line is a thin
wrapper over them; they raise :mod:`embedtrain.errors` exceptions, never exit, and speak
only through the progress bar (``progress=True``) and the ``embedtrain`` logger."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from embedtrain.backend import NumpyOps
from embedtrain.corpus import open_corpus
from embedtrain.embeddings import Embeddings
from embedtrain.engines import choose_engine
from embedtrain.errors import ModelFileError, TrainingInterrupted
from embedtrain.evaluate import load_vectors
from embedtrain.model import Model
from embedtrain.settings import Settings
from embedtrain.training import Callback, encode_corpus, run_training, scan_vocabulary

log = logging.getLogger("embedtrain")
Corpus = str | os.PathLike | Sequence[str | os.PathLike] | Iterable[Sequence[str]] | None
_ZIP_MAGIC = b"PK\x03\x04"


def train(
    corpus: Corpus = None,
    *,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    resume: str | os.PathLike | None = None,
    allow_binary: bool = False,
    **options: Any,
) -> Embeddings:
    """Train word vectors and return them.

    ``corpus``: a text file (``.gz``/``.bz2``/``.xz`` read transparently), a directory, a
    list of those, or sentences as token lists (any re-iterable, as gensim's
    ``sentences``; a one-shot iterator is spooled once to a temporary file); None trains
    on the shipped corpus. ``options`` are the command line's options in snake_case
    (``model``, ``head``, ``dim``, ``window``, ``negative``, ``min_count``, ``sample``,
    ``epochs``, ``lr``, ``min_lr``, ``threads``, ``seed``, ``device``, ``engine``,
    ``batch_size``, ``epsilon``, ...) with the same defaults (:class:`Settings`).

    ``callbacks`` are called after each epoch with its :class:`EpochReport`; one that
    returns False or raises :class:`StopTraining` ends training there. ``resume``
    continues a model saved by :meth:`Embeddings.save`: its settings are kept, and only
    ``epochs``, ``threads``, ``device`` and ``engine`` may be given. A file that does not
    look like UTF-8 text is refused unless ``allow_binary``.

    Raises :class:`SettingsError`, :class:`CorpusError`, :class:`ModelFileError`,
    :class:`GpuUnavailable`, :class:`TrainingDiverged`; SIGINT, SIGTERM or SIGHUP raise
    :class:`TrainingInterrupted` once the jobs in flight are done, carrying the model so
    far (resumable).
    """
    if resume is not None:
        _check_model_file(resume)
        settings = Model.saved_settings(resume).resumed_with(**options)
    else:
        settings = Settings.from_options(**options)
    engine, ops = choose_engine(settings)
    quiet = not progress
    with open_corpus(corpus, settings.max_sentence_length, allow_binary) as source:
        if resume is not None:
            model = Model.load(resume, ops, settings)
            model.check_epochs()
        else:
            model = Model(scan_vocabulary(source, settings, quiet), settings, ops)
        encoded = encode_corpus(source, model.vocab, quiet)
        try:
            result = run_training(model, encoded, engine, quiet, callbacks)
        finally:
            encoded.close()
        bad_bytes = source.bad_bytes
    if bad_bytes:
        log.warning("%s undecodable bytes in the corpus were replaced", f"{bad_bytes:,}")
    embeddings = Embeddings.from_model(model)
    if result.interrupted:
        raise TrainingInterrupted("training interrupted", embeddings)
    return embeddings


def load(path: str | os.PathLike) -> Embeddings:
    """Load a model saved by :meth:`Embeddings.save` (resumable), or word2vec vectors
    (text, or binary if the name ends in ``.bin``; not resumable). Raises
    :class:`ModelFileError`."""
    if _is_model_file(path):
        return Embeddings.from_model(Model.load(path, NumpyOps()))
    vectors = load_vectors(path)
    return Embeddings(list(vectors.index_to_key), vectors.vectors)


def _is_model_file(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read(4) == _ZIP_MAGIC
    except FileNotFoundError:
        raise ModelFileError(f"file {path} does not exist") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _check_model_file(path: str | os.PathLike) -> None:
    """Resuming needs a model file: word2vec vectors lack the output layer and counts."""
    if not _is_model_file(path):
        raise ModelFileError(
            f"{Path(path)} is not a model saved by embedtrain (word2vec vectors cannot be "
            "resumed: they hold no output layer or word counts; save with --save-model)"
        )
