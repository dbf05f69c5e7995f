"""Engines: how one job of word ids becomes parameter updates, and the one rule that
decides which runs (:func:`choose_engine`).

- :class:`CompiledEngine`: the Numba skip-gram/CBOW drivers with the head's compiled
  step; ``nogil``, so ``threads`` threads train at once (Hogwild, as word2vec). Skip-gram
  takes the context word's vector as input (word2vec); ``settings.step`` (the head's
  default or ``--step``) picks the update form: per example or shared.
- :class:`BatchedEngine`: minibatches on the array backend (NumPy or CuPy) through
  :meth:`Head.batch_step`, one stream of minibatches (``threads`` is not used; BLAS
  threads its own products). Skip-gram groups the same (centre, context) pairs by centre
  word: each centre word's vector is the input for all its context words at once (one
  K-sparse target, fastText's orientation, the form the exact heads need). Over a corpus
  the pairs, and so the objective, are the same; the order and grouping of updates differ.

Both expose ``run_job(job, lr_start, lr_end, seed) -> (loss, examples)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedtrain import drivers
from embedtrain.backend import NumpyOps, Ops, select_ops
from embedtrain.batching import window_batch
from embedtrain.errors import SettingsError
from embedtrain.heads.base import PADDING
from embedtrain.model import Model
from embedtrain.rng import seed_state
from embedtrain.settings import Settings


class CompiledEngine:
    """SGD in compiled kernels, one call per job: per example, or per block of examples
    sharing their output units (``settings.step``)."""

    def __init__(self, model: Model, keep: np.ndarray) -> None:
        settings = model.settings
        self.model = model
        self.keep = keep
        self.workers = settings.threads
        cbow = settings.model == "cbow"
        if settings.step == "shared":
            self.driver = drivers.train_cbow_shared if cbow else drivers.train_skipgram_shared
            self.block = 1 if cbow else 2 * settings.window  # examples per step
        else:
            self.driver = drivers.train_cbow if cbow else drivers.train_skipgram
            self.block = None
            self.compiled = model.head.compiled_step()

    def _head_arguments(self) -> tuple:
        """The head's step and state, and for the shared form a fresh workspace (a job
        runs in one thread, so each job has its own)."""
        if self.block is None:
            return self.compiled
        return self.model.head.compiled_shared_step(self.block)

    def run_job(
        self, job: np.ndarray, lr_start: float, lr_end: float, seed: int
    ) -> tuple[float, int]:
        return self.driver(
            *self._head_arguments(),
            self.model.vectors,
            job,
            self.keep,
            self.model.settings.window,
            lr_start,
            lr_end,
            seed_state(np.uint64(seed)),
        )


class BatchedEngine:
    """Minibatch SGD on the backend: skip-gram feeds each centre word's vector with all
    its context words as one K-sparse target; CBOW feeds the mean context vector with the
    centre word as target and adds the (unscaled) update to every context vector."""

    workers = 1

    def __init__(self, model: Model, keep: np.ndarray) -> None:
        self.model = model
        self.ops = model.ops
        self.keep = self.ops.asarray(keep)
        settings = model.settings
        self.batch_size = model.head.batch_size(settings)
        self.cbow = settings.model == "cbow"

    def run_job(
        self, job: np.ndarray, lr_start: float, lr_end: float, seed: int
    ) -> tuple[float, int]:
        # Overflow shows up as a non-finite loss, which the training loop reports.
        with np.errstate(all="ignore"):
            return self._run_job(job, lr_start, lr_end, seed)

    def _run_job(
        self, job: np.ndarray, lr_start: float, lr_end: float, seed: int
    ) -> tuple[float, int]:
        random = self.ops.random_state(seed)
        self.model.head.reseed(seed + 1)  # the head's draws follow the job, as the windows
        batch = window_batch(self.ops, job, self.keep, self.model.settings.window, random)
        n = int(batch.centres.shape[0])
        loss = self.ops.xp.zeros((), dtype=np.float64)
        examples = 0
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            lr = lr_start + (lr_end - lr_start) * start / max(n, 1)
            centres = batch.centres[start:stop]
            contexts = batch.contexts[start:stop]
            if self.cbow:
                batch_loss, pairs = self._cbow_step(centres, contexts, lr)
            else:
                batch_loss, pairs = self._skipgram_step(centres, contexts, lr)
            loss = loss + batch_loss
            examples += pairs
        return float(loss), examples

    def _skipgram_step(self, centres: Any, contexts: Any, lr: float) -> tuple[Any, int]:
        vectors = self.model.vectors
        step = self.model.head.batch_step(vectors[centres], contexts, lr)
        self.ops.scatter_add(vectors, centres, -step.lr * step.grad_hidden)
        return step.loss, step.pairs

    def _cbow_step(self, centres: Any, contexts: Any, lr: float) -> tuple[Any, int]:
        xp = self.ops.xp
        vectors = self.model.vectors
        present = contexts != PADDING
        rows = xp.where(present, contexts, 0)
        weights = present.astype(np.float32)
        hidden = (vectors[rows] * weights[:, :, None]).sum(axis=1)
        hidden /= weights.sum(axis=1, keepdims=True)
        step = self.model.head.batch_step(hidden, centres[:, None], lr)
        example, slot = xp.nonzero(present)
        scales = xp.full(example.shape[0], -step.lr, dtype=vectors.dtype)
        self.ops.scatter_add_scaled(
            vectors, contexts[example, slot], scales, step.grad_hidden, example
        )
        return step.loss, step.pairs


def choose_engine(settings: Settings) -> tuple[str, Ops]:
    """The engine (``compiled`` or ``batched``) and the backend to run, decided once here
    from ``settings.engine``, ``settings.device`` and the head:

    - ``compiled`` needs a head with a compiled per-example step (ns, lsh, hs) and the CPU;
    - ``batched`` runs any head on the device's backend;
    - ``auto``: ``compiled`` where it can run (ns, lsh and hs on the CPU, i.e. ``device`` cpu,
      or auto without a usable GPU), ``batched`` otherwise (a GPU, the exact heads);
    - a cluster run (``settings.cluster``) is ``compiled`` on each worker's CPU: the rounds
      merge the rows that per-example steps changed (:mod:`embedtrain.distributed`).
    """
    if settings.cluster:  # the settings allow no other engine or device with it (resolve)
        return "compiled", NumpyOps()
    has_compiled_step = settings.head_class.has_compiled_step
    if settings.engine == "compiled":
        if not has_compiled_step:
            raise SettingsError(
                f"--engine compiled: the {settings.head} head has no compiled per-example "
                "step (use --engine batched or auto)"
            )
        if settings.device == "gpu":
            raise SettingsError("--engine compiled runs on the CPU (use --engine batched on a GPU)")
        return "compiled", NumpyOps()
    ops = select_ops(settings.device)
    if settings.engine == "batched":
        return "batched", ops
    compiled = has_compiled_step and ops.runs_compiled_kernels
    return ("compiled" if compiled else "batched"), ops


Engine = CompiledEngine | BatchedEngine


def make_engine(model: Model, keep: np.ndarray, engine: str) -> Engine:
    """Build the engine :func:`choose_engine` chose for ``model``."""
    if engine == "compiled":
        return CompiledEngine(model, keep)
    return BatchedEngine(model, keep)
