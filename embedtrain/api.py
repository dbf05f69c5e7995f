"""The library's entry points: :func:`train` and :func:`load`. The command line is a thin
wrapper over them; they raise :mod:`embedtrain.errors` exceptions, never exit, and speak
only through the progress bar (``progress=True``) and the ``embedtrain`` logger."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from embedtrain.backend import NumpyOps
from embedtrain.corpus import open_corpus
from embedtrain.embeddings import Embeddings
from embedtrain.engines import choose_engine
from embedtrain.errors import SettingsError, TrainingInterrupted
from embedtrain.evaluate import load_vectors
from embedtrain.heads import resolve, resolved_settings
from embedtrain.model import Model, is_model_file
from embedtrain.settings import Settings
from embedtrain.training import (
    Callback,
    LocalEpochs,
    TrainingResult,
    encode_corpus,
    run_training,
    scan_vocabulary,
)

log = logging.getLogger("embedtrain")
CorpusSource = str | os.PathLike | Sequence[str | os.PathLike] | Iterable[Sequence[str]] | None


def train(
    corpus: CorpusSource = None,
    *,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    resume: str | os.PathLike | None = None,
    allow_binary: bool = False,
    settings: Settings | None = None,
    **options: Any,
) -> Embeddings:
    """Train word vectors and return them.

    ``corpus``: a text file (``.gz``/``.bz2``/``.xz`` read transparently), a directory, a
    list of those, or sentences as token lists (any re-iterable, as gensim's
    ``sentences``; a one-shot iterator is spooled once to a temporary file); None trains
    on the shipped corpus. ``options`` are the command line's options in snake_case
    (``model``, ``head``, ``dim``, ``window``, ``negative``, ``min_count``, ``sample``,
    ``epochs``, ``lr``, ``min_lr``, ``threads``, ``seed``, ``device``, ``engine``,
    ``batch_size``, ``epsilon``, ``bias_feature``, ``init_norm``, ``zloss_a``, ``zloss_b``,
    ``cutoffs``, ``div_value``, ``aop_k``, ``aop_policy``, ``aop_memory``, ``cluster``,
    ``workers``, ``sync_words``, ...) with the same defaults (:class:`Settings`); ``lr=0``
    (the default) is the head's rate, and an absent ``bias_feature`` or ``init_norm`` the
    head's. ``cluster="ray"`` trains on ``workers`` Ray workers
    (:mod:`embedtrain.distributed`).

    ``callbacks`` are called after each epoch with its :class:`EpochReport`; one that
    returns False or raises :class:`StopTraining` ends training there. ``resume``
    continues a model saved by :meth:`Embeddings.save`: its settings are kept, and only
    the options in :data:`embedtrain.settings.RESUMABLE_OVERRIDES` may be given. A file that does not
    look like UTF-8 text is refused unless ``allow_binary``. ``settings`` (a
    :class:`Settings`, e.g. from :func:`resolve_settings`) may stand in for ``options``.

    Raises :class:`SettingsError`, :class:`CorpusError`, :class:`ModelFileError`,
    :class:`GpuUnavailable`, :class:`ClusterError` (Ray missing or unreachable),
    :class:`TrainingDiverged`; SIGINT, SIGTERM or SIGHUP raise :class:`TrainingInterrupted`
    once the jobs in flight are done, carrying the model so far (resumable).
    """
    if settings is None:
        settings = resolve_settings(resume, **options)
    elif options:
        raise SettingsError("give train() either settings or options, not both")
    elif settings.head_class is None:
        settings = resolve(settings, given=settings.changed())
    quiet = not progress
    if settings.cluster:
        from embedtrain.ray_cluster import train_on_cluster

        model, result = train_on_cluster(corpus, settings, resume, quiet, callbacks, allow_binary)
    else:
        model, result = _train_here(corpus, settings, resume, quiet, callbacks, allow_binary)
    embeddings = Embeddings.from_model(model)
    if result.interrupted:
        raise TrainingInterrupted("training interrupted", embeddings)
    return embeddings


def _train_here(
    corpus: CorpusSource,
    settings: Settings,
    resume: str | os.PathLike | None,
    quiet: bool,
    callbacks: Sequence[Callback],
    allow_binary: bool,
) -> tuple[Model, TrainingResult]:
    """Train in this process on the engine and backend the settings choose."""
    engine, ops = choose_engine(settings)
    with open_corpus(corpus, settings.max_sentence_length, allow_binary) as source:
        model = Model.start(settings, ops, resume, lambda: scan_vocabulary(source, settings, quiet))
        encoded = encode_corpus(source, model.vocab, quiet)
        try:
            result = run_training(model, LocalEpochs(model, encoded, engine), quiet, callbacks)
        finally:
            encoded.close()
        bad_bytes = source.bad_bytes
    if bad_bytes:
        log.warning("%s undecodable bytes in the corpus were replaced", f"{bad_bytes:,}")
    return model, result


def resolve_settings(resume: str | os.PathLike | None = None, **options: Any) -> Settings:
    """The settings a run will use: the defaults with ``options``, or a saved model's with
    the options a resumed run may change; validated."""
    if resume is not None:
        return resolve(Model.saved_settings(resume).resumed_with(**options), given=options)
    return resolved_settings(**options)


def load(path: str | os.PathLike) -> Embeddings:
    """Load a model saved by :meth:`Embeddings.save` (resumable), or word2vec vectors
    (text, or binary if the name ends in ``.bin``; not resumable). Raises
    :class:`ModelFileError`."""
    if is_model_file(path):
        return Embeddings.from_model(Model.load(path, NumpyOps()))
    vectors = load_vectors(path)
    return Embeddings(list(vectors.index_to_key), vectors.vectors)
