"""Data-parallel training with sparse synchronisation: the round protocol, the merge rule
and the worker, in plain NumPy; :mod:`embedtrain.ray_cluster` runs the workers as Ray
actors (the tests' in-process cluster, ``tests/in_process_cluster.py``, runs the same
workers as objects in one process).

Each worker holds full copies of the input vectors and the head's output matrix, and a
shard of the corpus (every ``workers``-th sentence). Training goes in rounds: every worker
trains ``sync_words`` words of its shard with the compiled engine, then sends the rows it
changed as deltas; the driver merges them into its master copy,

    new = old + sum_i delta_i / n,   n = the number of workers that changed the row,

(Spark MLlib's rule since 2019: averaging would damp the rare words one worker sees,
summing would overshoot the frequent ones all workers see) and sends every changed row's
new value back, after which all copies are identical again. A block of rows is sent as its
leading run of rows (the most frequent words, which every worker changes) densely, as
pWord2Vec does, and the rest with their row numbers. The learning rate follows the global
word count: ``A`` active workers that each trained ``p`` words of a round stand ``A * p``
words past the round's start, and each trains at ``A`` times that rate (see
:func:`job_rates`). Each epoch ends with a checkpoint of the master copy; a
worker lost in the next epoch is restarted and the epoch resumes from that checkpoint.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from embedtrain import training
from embedtrain.batching import DEFAULT_JOB_WORDS, EncodedCorpus, job_words
from embedtrain.corpus import Corpus
from embedtrain.engines import choose_engine, make_engine
from embedtrain.errors import ClusterError, CorpusError
from embedtrain.heads import resolve
from embedtrain.history import EpochReport
from embedtrain.model import Model
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary, count_words, vocabulary_from_counts

log = logging.getLogger("embedtrain")
#: Times the workers may be lost over one run before it fails with ClusterError.
MAX_WORKER_LOSSES = 3


@dataclass
class RowBlock:
    """Some rows of a matrix: rows ``0..len(prefix)-1`` densely, then ``rows`` (ascending,
    all past the prefix) with their ``values``."""

    prefix: np.ndarray  # (k, d)
    rows: np.ndarray  # (m,) int64
    values: np.ndarray  # (m, d)

    @classmethod
    def of(cls, ids: np.ndarray, values: np.ndarray) -> RowBlock:
        """The block of rows ``ids`` (ascending, unique) with ``values``: its leading run
        0, 1, 2, ... goes dense."""
        gaps = np.flatnonzero(ids != np.arange(ids.shape[0]))
        k = int(gaps[0]) if gaps.size else int(ids.shape[0])
        return cls(values[:k], ids[k:].astype(np.int64), values[k:])

    def row_ids(self) -> np.ndarray:
        return np.concatenate([np.arange(self.prefix.shape[0]), self.rows])

    def row_values(self) -> np.ndarray:
        return np.concatenate([self.prefix, self.values])

    @property
    def nbytes(self) -> int:
        """Bytes on the wire (arrays only)."""
        return self.prefix.nbytes + self.rows.nbytes + self.values.nbytes


def row_delta(current: np.ndarray, snapshot: np.ndarray) -> RowBlock:
    """The rows of ``current`` that differ from ``snapshot`` (the round's start), as deltas."""
    ids = np.flatnonzero((current != snapshot).any(axis=1))
    return RowBlock.of(ids, current[ids] - snapshot[ids])


def merge_deltas(master: np.ndarray, deltas: Sequence[RowBlock]) -> RowBlock:
    """Apply ``new = old + sum_i delta_i / n`` to ``master`` in place, ``n`` counting the
    deltas that hold the row; return the new value of every row any delta holds."""
    ids = [delta.row_ids() for delta in deltas]
    rows = master.shape[0]
    holders = np.bincount(np.concatenate(ids), minlength=rows) if ids else np.zeros(rows, int)
    union = np.flatnonzero(holders)
    position = np.cumsum(holders > 0) - 1  # row -> its place in the union
    total = np.zeros((union.shape[0], master.shape[1]), dtype=master.dtype)
    for held, delta in zip(ids, deltas, strict=True):
        where = position[held]  # rows are unique within one delta
        total[where] += delta.row_values()
    total *= (1.0 / holders[union]).astype(master.dtype)[:, None]
    master[union] += total
    return RowBlock.of(union, master[union])


def round_position(global_start: int, active_workers: int, local_words: int) -> int:
    """Where the run stands, in words over all workers, once each of the round's
    ``active_workers`` has trained ``local_words`` words since ``global_start``."""
    return global_start + active_workers * local_words


@dataclass
class RoundPlan:
    """What a worker needs to train its part of one round."""

    global_start: int  # words trained over the run by all workers when the round starts
    active_workers: int  # workers whose shard still has words this epoch
    total_words: int  # words of the whole run (epoch words x epochs): the schedule's end


def job_rates(
    settings: Settings, plan: RoundPlan, local_start: int, words: int
) -> tuple[float, float]:
    """(lr at the job's start, lr at its end) for a job starting ``local_start`` words into
    the worker's round: the linear schedule at the cluster's global word count, times the
    round's active workers A. The merge moves a row that all A workers changed by the mean
    of their deltas; at A times the rate that mean is the step one process takes over the
    same words (at the plain rate those rows, most of the model, learn A times slower:
    the distributed study in the docs has the measurements)."""
    start = round_position(plan.global_start, plan.active_workers, local_start)
    end = round_position(plan.global_start, plan.active_workers, local_start + words)
    return training.job_rates(settings, start, end, plan.total_words, plan.active_workers)


@dataclass
class RoundResult:
    """A worker's part of a round: its deltas and what it trained."""

    deltas: dict[str, RowBlock]
    words: int
    loss: float
    examples: int
    exhausted: bool  # its shard has no words left this epoch
    seconds: float  # training time, for the cost model of ``python -m benchmarks distributed``


@dataclass
class ShardInfo:
    words: int  # in-vocabulary words of the shard
    compile_seconds: float  # the first call of the compiled driver in this process


class WorkerRestarted(Exception):
    """A worker was asked to go on from a state it does not hold (it was restarted)."""


class ShardSentences:
    """Every ``count``-th sentence of a corpus, from the ``index``-th: one worker's shard."""

    def __init__(self, corpus: Corpus, index: int, count: int) -> None:
        self.corpus = corpus
        self.index = index
        self.count = count
        self.name = f"{corpus.name} (shard {index + 1}/{count})"

    def sentence_blocks(self) -> Iterator[list[list[str]]]:
        seen = 0
        for block in self.corpus.sentence_blocks():
            mine = block[(self.index - seen) % self.count :: self.count]
            seen += len(block)
            if mine:
                yield mine


def parameter_arrays(model: Model) -> dict[str, np.ndarray]:
    """The matrices the workers train and the rounds merge: the input vectors and the
    head's rows."""
    return {"vectors": model.vectors, **model.head.row_parameters()}


class ShardWorker:
    """One worker: its shard of the corpus, encoded once, and full copies of the matrices.

    Methods other than counting take the driver's ``generation``: a worker restarted by
    the cluster (a fresh object) holds none and raises :class:`WorkerRestarted`, so that
    the driver restores every worker from the checkpoint."""

    def __init__(
        self,
        files: list[str],
        settings: dict[str, Any],
        index: int,
        count: int,
        allow_binary: bool = False,
    ) -> None:
        self.settings = resolve(Settings.from_dict(settings))
        self.corpus = Corpus(files, self.settings.max_sentence_length, allow_binary)
        self.shard = ShardSentences(self.corpus, index, count)
        self.index = index
        self.count = count
        self.generation: int | None = None
        self.vocab_words: list[str] | None = None

    def count_words(self) -> tuple[Counter[str], int]:
        """This shard's word counts (pruned by ``max_vocab_size`` as word2vec) and tokens."""
        return count_words(self.shard.sentence_blocks(), self.settings.max_vocab_size)

    def prepare(
        self, settings: dict[str, Any], words: list[str], counts: np.ndarray, total: int
    ) -> ShardInfo:
        """Build the model for the vocabulary, encode the shard, compile the driver (a
        worker that holds this vocabulary already just answers)."""
        if self.vocab_words == words:
            return self.info
        self.settings = resolve(Settings.from_dict(settings))
        vocab = Vocabulary(words, np.asarray(counts, dtype=np.int64), total)
        engine, ops = choose_engine(self.settings)
        self.model = Model(vocab, self.settings, ops)  # its arrays come with load()
        keep = vocab.keep_probabilities(self.settings.sample)
        self.engine = make_engine(self.model, keep, engine)
        self.arrays = parameter_arrays(self.model)
        self.encoded = EncodedCorpus(self.shard, vocab)
        self.epoch_words = 0
        started = time.perf_counter()
        self.engine.run_job(np.full(1, -1, dtype=np.int32), 0.0, 0.0, 0)  # compiles only
        self.info = ShardInfo(self.encoded.words, time.perf_counter() - started)
        self.vocab_words = words
        return self.info

    def load(self, generation: int, arrays: dict[str, np.ndarray]) -> None:
        """Take the driver's matrices (after a start or a restore)."""
        for name, array in arrays.items():
            self.arrays[name][...] = array
        self.snapshots = {name: array.copy() for name, array in self.arrays.items()}
        self.generation = generation

    def start_epoch(self, generation: int, epoch: int, epoch_words: int, skip: int) -> None:
        """Read the shard from its start, past ``skip`` words (a resumed epoch)."""
        self._check(generation)
        self.epoch = epoch
        self.epoch_words = epoch_words
        self.position = skip
        # Four jobs per thread and round: a round overshoots sync_words by under one job.
        jobs = 4 * self.settings.threads
        job_size = min(DEFAULT_JOB_WORDS, math.ceil(self.settings.sync_words / jobs))
        self.jobs = self.encoded.jobs(job_words=job_size, skip_words=skip)

    def train_round(self, generation: int, plan: RoundPlan) -> RoundResult:
        """Train about ``sync_words`` words of the shard (whole sentences) on ``threads``
        threads; return the changed rows as deltas."""
        self._check(generation)
        started = time.perf_counter()
        planned = []
        done = 0
        while done < self.settings.sync_words and (job := next(self.jobs, None)) is not None:
            words = job_words(job)
            lr_start, lr_end = job_rates(self.settings, plan, done, words)
            key = (self.epoch * self.count + self.index) * self.epoch_words + self.position
            planned.append((job, lr_start, lr_end, training.job_seed(self.settings.seed, key)))
            done += words
            self.position += words
        with ThreadPoolExecutor(max_workers=self.settings.threads) as pool:
            results = list(pool.map(lambda item: self.engine.run_job(*item), planned))
        deltas = {
            name: row_delta(array, self.snapshots[name]) for name, array in self.arrays.items()
        }
        return RoundResult(
            deltas,
            done,
            float(sum(loss for loss, _ in results)),
            sum(examples for _, examples in results),
            done < self.settings.sync_words,
            time.perf_counter() - started,
        )

    def apply(self, generation: int, update: dict[str, RowBlock]) -> None:
        """Overwrite the rows the round changed with the merged values."""
        self._check(generation)
        for name, block in update.items():
            rows, values = block.row_ids(), block.row_values()
            self.arrays[name][rows] = values
            self.snapshots[name][rows] = values

    def parameters(self, generation: int) -> dict[str, np.ndarray]:
        """This worker's copies of the matrices (to check that they match the driver's)."""
        self._check(generation)
        return {name: array.copy() for name, array in self.arrays.items()}

    def _check(self, generation: int) -> None:
        if self.generation != generation:
            raise WorkerRestarted(f"worker {self.index + 1} does not hold generation {generation}")


class WorkerLost(Exception):
    """A worker died or was restarted during a call; ``index`` is the worker's."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"worker {index + 1} lost ({reason})")
        self.index = index


class Cluster(Protocol):
    """Workers the driver calls; a lost worker raises :class:`WorkerLost` from the call
    and is restarted by the cluster (a fresh :class:`ShardWorker` with the same
    arguments)."""

    size: int

    def map(self, method: str, arguments: Sequence[tuple]) -> list[Any]:
        """Call ``method`` on worker i with ``arguments[i]``, all at once; the results."""
        ...

    def broadcast(self, method: str, *arguments: Any) -> list[Any]:
        """Call ``method`` with the same arguments (sent once) on every worker."""
        ...


@dataclass
class RoundCost:
    """One round, as the driver saw it (for the benchmark's scaling estimate)."""

    words: int
    compute_seconds: float  # the slowest worker's training time
    round_seconds: float  # from sending the plan to the last worker holding the update
    bytes_up: int  # deltas sent to the driver
    bytes_down: int  # the update, once per worker
    rows_changed: dict[str, list[int]]  # per matrix, per worker
    rows_merged: dict[str, int]  # per matrix, the union


@dataclass
class ClusterStats:
    rounds: list[RoundCost] = field(default_factory=list)
    restarts: int = 0
    compile_seconds: list[float] = field(default_factory=list)


def build_vocabulary_on(cluster: Cluster, settings: Settings, name: str, quiet: bool) -> Vocabulary:
    """Count the shards on the workers, merge the counts, prune as one process would."""
    counts: Counter[str] = Counter()
    total = 0
    for shard_counts, shard_total in cluster.broadcast("count_words"):
        counts.update(shard_counts)
        total += shard_total
    vocab = vocabulary_from_counts(counts, total, settings.min_count, settings.max_final_vocab)
    training.check_vocabulary(vocab, name, settings, quiet)
    return vocab


class ClusterEpochs:
    """Epochs on a cluster's workers, for :func:`embedtrain.training.run_training`: the
    driver's master copy (``model``), the rounds of an epoch, the epoch checkpoint and the
    restore from it after a worker's loss."""

    def __init__(self, cluster: Cluster, model: Model, stats: ClusterStats | None = None) -> None:
        """Prepare every worker for ``model`` (its vocabulary, its shard encoded, its driver
        compiled) and hand them the master copy."""
        self.stats = stats if stats is not None else ClusterStats()
        self.cluster = cluster
        self.model = model
        infos = self._prepare()
        self.stats.compile_seconds = [info.compile_seconds for info in infos]
        self.shard_words = [info.words for info in infos]
        self.epoch_words = sum(self.shard_words)
        if self.epoch_words == 0:
            raise CorpusError("the corpus has no words of the model's vocabulary")
        self.generation = 0
        self.checkpoint = self._snapshot()
        self.cluster.broadcast("load", self.generation, parameter_arrays(model))

    def _prepare(self) -> list[ShardInfo]:
        """Every worker holds the model's vocabulary, its shard encoded, its driver compiled."""
        vocab = self.model.vocab
        settings = self.model.settings.to_dict()
        return self.cluster.broadcast(
            "prepare", settings, vocab.words, vocab.counts, vocab.total_words
        )

    def _snapshot(self) -> tuple[dict[str, np.ndarray], int]:
        arrays = {name: array.copy() for name, array in parameter_arrays(self.model).items()}
        return arrays, self.model.words_done

    def _restore(self, lost: WorkerLost) -> None:
        """Every worker (the restarted one rebuilt) back to the last epoch checkpoint."""
        self.stats.restarts += 1
        if self.stats.restarts > MAX_WORKER_LOSSES:
            raise ClusterError(f"{lost}; workers were lost {self.stats.restarts} times, giving up")
        arrays, words_done = self.checkpoint
        log.warning(
            "%s; restarting it and resuming from the checkpoint at %s words", lost,
            f"{words_done:,}",
        )  # fmt: skip
        for name, array in parameter_arrays(self.model).items():
            array[...] = arrays[name]
        self.model.words_done = words_done
        self.generation += 1
        self._prepare()
        self.cluster.broadcast("load", self.generation, parameter_arrays(self.model))

    def run_epoch(self, bar: tqdm, stop: threading.Event) -> EpochReport:
        """One epoch (or the rest of one) in rounds; a lost worker restores the checkpoint
        taken at the epoch's start and the epoch runs again from there."""
        self.checkpoint = self._snapshot()
        lost: WorkerLost | None = None
        while True:
            try:
                if lost is not None:
                    self._restore(lost)
                    bar.n = self.model.words_done
                    bar.refresh()
                return self._rounds(bar, stop)
            except WorkerLost as again:
                lost = again

    def _rounds(self, bar: tqdm, stop: threading.Event) -> EpochReport:
        model, cluster = self.model, self.cluster
        epoch, skip = divmod(model.words_done, self.epoch_words)
        skips = [skip * words // self.epoch_words for words in self.shard_words]
        cluster.map(
            "start_epoch",
            [(self.generation, epoch, self.epoch_words, s) for s in skips],
        )
        active = [words > s for words, s in zip(self.shard_words, skips, strict=True)]
        report = EpochReport(epoch + 1, 0.0, 0, 0, 0.0)
        started = time.perf_counter()
        total = self.epoch_words * model.settings.epochs
        while any(active) and not stop.is_set():
            plan = RoundPlan(model.words_done, sum(active), total)
            round_started = time.perf_counter()
            results = cluster.map("train_round", [(self.generation, plan)] * cluster.size)
            words = sum(r.words for r in results)
            loss = sum(r.loss for r in results)
            if not math.isfinite(loss):
                raise training.diverged(epoch + 1, f"loss became {loss}")
            update, cost = self._merge(results, words)
            cluster.broadcast("apply", self.generation, update)
            cost.round_seconds = time.perf_counter() - round_started
            self.stats.rounds.append(cost)
            active = [a and not r.exhausted for a, r in zip(active, results, strict=True)]
            examples = sum(r.examples for r in results)
            training.count_words(model, report, bar, words, loss, examples)
        if not any(active):  # the shards' word boundaries: the epoch ends where it should
            rest = (epoch + 1) * self.epoch_words - model.words_done
            training.count_words(model, report, bar, rest, 0.0, 0)
        report.seconds = time.perf_counter() - started
        return report

    def _merge(self, results: list[RoundResult], words: int) -> tuple[dict, RoundCost]:
        update = {}
        changed: dict[str, list[int]] = {}
        merged: dict[str, int] = {}
        for name, master in parameter_arrays(self.model).items():
            deltas = [r.deltas[name] for r in results]
            update[name] = merge_deltas(master, deltas)
            changed[name] = [d.row_ids().shape[0] for d in deltas]
            merged[name] = update[name].row_ids().shape[0]
        cost = RoundCost(
            words,
            max(r.seconds for r in results),
            0.0,
            sum(d.nbytes for r in results for d in r.deltas.values()),
            sum(b.nbytes for b in update.values()) * self.cluster.size,
            changed,
            merged,
        )
        return update, cost
