"""The training loop, one for a single process and for a cluster: epochs, the
learning-rate schedule, progress, divergence, callbacks and Ctrl-C. Where an epoch's words
are trained is an :class:`EpochRunner`: :class:`LocalEpochs` (threads in this process,
each running an engine) or :class:`embedtrain.distributed.ClusterEpochs` (rounds on a
cluster's workers, merged). Neither knows which head is inside."""

from __future__ import annotations

import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm

from embedtrain.batching import EncodedCorpus, job_words, prefetch
from embedtrain.corpus import Corpus, SentenceCorpus
from embedtrain.engines import make_engine
from embedtrain.errors import CorpusError, StopTraining, TrainingDiverged
from embedtrain.history import EpochReport
from embedtrain.model import Model
from embedtrain.settings import Settings
from embedtrain.signals import signals_set_flag
from embedtrain.vocab import Vocabulary, build_vocabulary

log = logging.getLogger("embedtrain")


#: A callback gets each epoch's report; returning False (or raising StopTraining) stops.
Callback = Callable[[EpochReport], "bool | None"]


@dataclass
class TrainingResult:
    epochs: list[EpochReport] = field(default_factory=list)
    interrupted: bool = False  # by a signal (SIGINT, SIGTERM, SIGHUP)
    stopped_early: bool = False  # by a callback


def scan_vocabulary(
    corpus: Corpus | SentenceCorpus, settings: Settings, quiet: bool = False
) -> Vocabulary:
    """Count the corpus once and build the vocabulary; an empty result is a :class:`CorpusError`."""
    with tqdm(desc="vocabulary", unit="word", unit_scale=True, disable=quiet) as bar:

        def blocks():
            for block in corpus.sentence_blocks():
                bar.update(sum(map(len, block)))
                yield block

        vocab = build_vocabulary(
            blocks(), settings.min_count, settings.max_vocab_size, settings.max_final_vocab
        )
    check_vocabulary(vocab, corpus.name, settings, quiet)
    return vocab


def check_vocabulary(vocab: Vocabulary, name: str, settings: Settings, quiet: bool) -> None:
    """An empty corpus or vocabulary is a :class:`CorpusError`; else say what was kept."""
    if vocab.total_words == 0:
        raise CorpusError(f"corpus {name} is empty")
    if len(vocab) == 0:
        raise CorpusError(
            f"vocabulary is empty: no word of {name} occurs {settings.min_count} times "
            "or more (lower --min-count)"
        )
    if not quiet:
        tqdm.write(
            f"vocabulary: {len(vocab):,} words (min count {settings.min_count}) from "
            f"{vocab.total_words:,} tokens, {vocab.retained_words:,} kept",
            file=sys.stderr,
        )


def encode_corpus(
    corpus: Corpus | SentenceCorpus, vocab: Vocabulary, quiet: bool = False
) -> EncodedCorpus:
    """Write the corpus as word ids to a temporary file (one tokenising pass)."""
    with tqdm(desc="encoding", unit="word", unit_scale=True, disable=quiet) as bar:
        encoded = EncodedCorpus(corpus, vocab, on_block=bar.update)
    if encoded.words == 0:
        encoded.close()
        raise CorpusError(f"corpus {corpus.name} has no words of the model's vocabulary")
    return encoded


def learning_rate(settings_lr: float, min_lr: float, progress: float) -> float:
    """Linear decay from ``lr`` to ``min_lr`` over the whole run (word2vec, gensim)."""
    return settings_lr - (settings_lr - min_lr) * min(max(progress, 0.0), 1.0)


def job_rates(
    settings: Settings, start: int, end: int, total: int, scale: float = 1.0
) -> tuple[float, float]:
    """(lr at a job's start, lr at its end) for a job from word ``start`` to word ``end`` of
    a run of ``total`` words, times ``scale`` (a cluster round's active workers)."""
    return (
        scale * learning_rate(settings.lr, settings.min_lr, start / total),
        scale * learning_rate(settings.lr, settings.min_lr, end / total),
    )


def job_seed(seed: int, position: int) -> int:
    """The seed of the job starting ``position`` words into the run: a function of where
    the job is, not of how many jobs this process handed out, so a resumed run draws what
    the uninterrupted one would have; reduced to 64 bits (any ``seed`` is valid)."""
    return (seed * 0x9E3779B97F4A7C15 + position) % 2**64


class EpochRunner(Protocol):
    """Where the words of an epoch are trained: the threads of this process
    (:class:`LocalEpochs`) or the workers of a cluster
    (:class:`embedtrain.distributed.ClusterEpochs`). :func:`run_training` drives either."""

    #: In-vocabulary words of one epoch.
    epoch_words: int

    def run_epoch(self, bar: tqdm, stop: threading.Event) -> EpochReport:
        """Train the rest of the epoch ``model.words_done`` stands in (until ``stop`` is
        set), counting its words with :func:`count_words`; its report."""
        ...


def run_training(
    model: Model,
    runner: EpochRunner,
    quiet: bool = False,
    callbacks: Sequence[Callback] = (),
) -> TrainingResult:
    """Train ``model`` from where it stands (``model.words_done``) to the last epoch, one
    epoch at a time on ``runner``, in one process or on a cluster alike.

    After each epoch its report is appended to ``model.history`` and handed to every
    callback; one returning False or raising :class:`StopTraining` ends training there
    (``stopped_early``). SIGINT, SIGTERM and SIGHUP stop after the work in flight and
    return with ``interrupted`` set; a non-finite loss or parameter raises
    :class:`TrainingDiverged`.
    """
    model.use_corpus(runner.epoch_words)
    settings = model.settings
    result = TrainingResult()
    total = runner.epoch_words * settings.epochs
    try:
        with (
            signals_set_flag() as stop,
            tqdm(
                total=total,
                initial=min(model.words_done, total),
                unit="word",
                unit_scale=True,
                disable=quiet,
                smoothing=0.1,
                dynamic_ncols=True,
            ) as bar,
        ):
            while model.words_done < total:
                epoch = model.words_done // runner.epoch_words
                bar.set_description(f"epoch {epoch + 1}/{settings.epochs}")
                report = runner.run_epoch(bar, stop)
                if not end_epoch(model, report, result, total, bar, stop, callbacks, quiet):
                    break
    finally:
        model.ops.release_memory()  # the GPU pool's cached blocks (minibatch temporaries)
    return result


def count_words(
    model: Model, report: EpochReport, bar: tqdm, words: int, loss: float, examples: int
) -> None:
    """Add trained work to the model's position, the epoch's report and the progress bar."""
    model.words_done += words
    report.words += words
    report.loss += loss
    report.examples += examples
    bar.update(words)


def end_epoch(
    model: Model,
    report: EpochReport,
    result: TrainingResult,
    total: int,
    bar: tqdm,
    stop: threading.Event,
    callbacks: Sequence[Callback],
    quiet: bool,
) -> bool:
    """What follows every epoch, in one process or on a cluster: its summary line, the
    head's notices, the divergence check, its record in the history, then a signal's or a
    callback's stop (marked in ``result``). Returns whether training goes on."""
    report.head_summary = model.head.epoch_summary()
    if not quiet:
        bar.write(
            f"epoch {report.epoch}/{model.settings.epochs}: loss {report.mean_loss:.4f} per "
            f"example over {report.examples:,} examples, {report.words_per_second:,.0f} words/s"
            + (f"; {report.head_summary}" if report.head_summary else ""),
            file=sys.stderr,
        )
    for notice in model.head.notices():
        log.warning(notice)
    if not model.head.check_finite() or not _finite(model):
        raise diverged(report.epoch, "non-finite parameters")
    if report.words:  # an epoch stopped before its first job did nothing
        result.epochs.append(report)
        model.history.append(report.as_dict())
    if stop.is_set() and model.words_done < total:  # a finished run is not interrupted
        result.interrupted = True
        return False
    if not callbacks_continue(callbacks, report):
        result.stopped_early = True
        return False
    return True


def diverged(epoch: int, cause: str) -> TrainingDiverged:
    """The error for a run whose loss or parameters became non-finite in ``epoch``."""
    return TrainingDiverged(f"training diverged in epoch {epoch} ({cause}); try a smaller --lr")


def callbacks_continue(callbacks: Sequence[Callback], report: EpochReport) -> bool:
    """Whether every callback lets training go on (all are called, even after a stop)."""
    going_on = True
    for callback in callbacks:
        try:
            going_on = callback(report) is not False and going_on
        except StopTraining:
            going_on = False
    return going_on


def _finite(model: Model) -> bool:
    return bool(model.ops.xp.isfinite(model.vectors).all())


class LocalEpochs:
    """Epochs in this process: jobs of the encoded corpus handed to ``engine.workers``
    threads, each running the engine (:mod:`embedtrain.engines`) on its jobs."""

    def __init__(self, model: Model, encoded: EncodedCorpus, engine_name: str) -> None:
        self.model = model
        self.encoded = encoded
        self.epoch_words = encoded.words
        keep = model.vocab.keep_probabilities(model.settings.sample)
        self.engine = make_engine(model, keep, engine_name)

    def run_epoch(self, bar: tqdm, stop: threading.Event) -> EpochReport:
        epoch, skip = divmod(self.model.words_done, self.epoch_words)
        source = _JobSource(self.model, self.encoded, epoch, skip, stop)
        try:
            return self._train_jobs(source, epoch, bar, stop)
        finally:
            source.jobs.close()  # stops and joins the prefetch thread before the file closes

    def _train_jobs(
        self, source: _JobSource, epoch: int, bar: tqdm, stop: threading.Event
    ) -> EpochReport:
        model, engine = self.model, self.engine
        results: queue.Queue = queue.Queue()

        def work() -> None:
            try:
                while (item := source.next()) is not None:
                    job, words, lr_start, lr_end, seed, position = item
                    model.head.start_job(position)
                    loss, examples = engine.run_job(job, lr_start, lr_end, seed)
                    results.put((words, loss, examples, lr_end))
            except Exception as exc:  # noqa: BLE001 -- handed to the main thread, which re-raises
                results.put(exc)
            finally:
                results.put(None)

        workers = [threading.Thread(target=work, daemon=True) for _ in range(engine.workers)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        report = EpochReport(epoch + 1, 0.0, 0, 0, 0.0)
        running = len(workers)
        failure: BaseException | None = None
        try:
            while running:
                try:
                    item = results.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is None:
                    running -= 1
                    continue
                if isinstance(item, BaseException):
                    failure = failure or item
                    stop.set()
                    continue
                words, loss, examples, lr = item
                if not math.isfinite(loss):
                    failure = failure or diverged(epoch + 1, f"loss became {loss}")
                    stop.set()
                    continue
                count_words(model, report, bar, words, loss, examples)
                bar.set_postfix(lr=f"{lr:.5f}", loss=f"{report.mean_loss:.4f}", refresh=False)
        except BaseException:  # this thread failed (out of memory): no worker outlives it
            stop.set()
            for worker in workers:
                worker.join()
            raise
        report.seconds = time.perf_counter() - started
        if failure is not None:
            raise failure
        return report


class _JobSource:
    """Hands out jobs with their learning rates and seeds; shared by the worker threads."""

    def __init__(
        self, model: Model, encoded: EncodedCorpus, epoch: int, skip: int, stop: threading.Event
    ) -> None:
        self.settings = model.settings
        self.jobs = prefetch(encoded.jobs(skip_words=skip))
        self.total = encoded.words * self.settings.epochs
        self.position = epoch * encoded.words + skip
        self.lock = threading.Lock()
        self.stop = stop

    def next(self) -> tuple[np.ndarray, int, float, float, int, int] | None:
        """The next job, its words, the rates at its ends, its seed and its position in the
        run (words from the start of the first epoch); None once stopped or done."""
        with self.lock:
            if self.stop.is_set():
                return None
            job = next(self.jobs, None)
            if job is None:
                return None
            words = job_words(job)
            position = self.position
            lr_start, lr_end = job_rates(self.settings, position, position + words, self.total)
            self.position += words
            return job, words, lr_start, lr_end, job_seed(self.settings.seed, position), position
