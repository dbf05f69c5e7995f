"""Adaptive softmax (Grave, Joulin, Cisse, Grangier & Jegou, ICML 2017): an exact,
normalised softmax over the whole vocabulary that costs a fraction of the full one.

The vocabulary is sorted by frequency. With cutoffs c_1 < ... < c_J, the head softmax
scores the c_1 most frequent words (the shortlist) and one token per tail cluster; tail
cluster i holds words [c_i, c_{i+1}) (the last ends at D) and scores them with a softmax
over O_i (P_i h), where P_i projects h from d to d / div^i dimensions (both without bias,
as the authors' code and PyTorch's ``AdaptiveLogSoftmaxWithLoss``):

- log p(w | h) = log softmax(A h)_w for a shortlist word,
- log p(w | h) = log softmax(A h)_{c_1 + i - 1} + log softmax(O_i P_i h)_{w - c_i} in tail i.

A minibatch step costs one product with the head for every example and, per tail
cluster, products only for the examples with a target in it; the cutoffs are chosen from
the vocabulary's counts by the paper's cost model (:func:`choose_cutoffs`).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from embedtrain.backend import Ops
from embedtrain.errors import SettingsError
from embedtrain.heads.aop import DenseUpdates
from embedtrain.heads.base import PADDING, Head, StepResult, log_softmax, softmax_loss
from embedtrain.vocab import Vocabulary

if TYPE_CHECKING:
    from embedtrain.settings import Settings

log = logging.getLogger("embedtrain")
#: The cost model's two constants on each backend (by ``Ops.name``), in multiply-adds:
#: a softmax's elementwise work per output (exponential, sums, gradient: measured
#: 1.2-1.4 ns an element against 1.9 ns for a d = 100 product), and what one tail
#: cluster's few array operations cost beyond their arithmetic (the flat part of a
#: product's cost; ``python -m benchmarks adaptive --fixed-cost`` measures it: 261 us at
#: 71 G multiply-adds/s on the 2-core host). The GPU's is not measured (no GPU in
#: development): about 20 kernel launches of ~10 us per cluster at ~20 T multiply-adds/s.
BACKEND_COSTS = {"numpy": (70.0, 18.6e6), "cupy": (70.0, 4e9)}

#: At most this many tail clusters: the paper finds the gain saturates after a few.
MAX_TAIL_CLUSTERS = 4
#: Cutoff candidates: 1-2-5 numbers from 100 up (2,000 and 10,000 are the authors' text8
#: cutoffs with 4,000/40,000 and 200,000 close to their One Billion Word ones).
CANDIDATE_MANTISSAS = (1, 2, 5)
SMALLEST_CUTOFF = 100


def parse_cutoffs(text: str) -> list[int]:
    """``"2000,10000"`` as [2000, 10000]; :class:`SettingsError` unless increasing positive
    integers."""
    try:
        cutoffs = [int(part) for part in text.split(",")]
    except ValueError:
        cutoffs = []
    if not cutoffs or min(cutoffs) < 1 or any(a >= b for a, b in itertools.pairwise(cutoffs)):
        raise SettingsError(
            f"--cutoffs must be increasing positive integers such as 2000,10000, not {text!r}"
        )
    return cutoffs


def tail_dims(dim: int, div_value: float, clusters: int) -> list[int]:
    """Dimension of each tail cluster's projection: d / div^i, at least 1 (PyTorch's rule)."""
    return [max(1, int(dim // div_value ** (i + 1))) for i in range(clusters)]


def expected_cost(
    cutoffs: list[int],
    shares: np.ndarray,
    dim: int,
    div_value: float,
    batch: int,
    targets_per_example: float,
    ops_costs: tuple[float, float],
) -> float:
    """Multiply-adds of one minibatch step under the paper's cost model, counting each
    product three times (forward, the input's gradient, the weights' gradient):

    - the head, for every example: (c_1 + J) outputs of a d-dimensional product and a
      softmax;
    - tail i, for the examples with at least one of their K targets in it,
      batch (1 - (1 - p_i)^K) with p_i the tail's share of the tokens: the d x d_i
      projection, then n_i outputs of a d_i-dimensional product and a softmax;
    - ``ops_costs`` = (cost of the softmax per output element, fixed cost per cluster),
      the backend's (:data:`BACKEND_COSTS`): the exponentials cost as much as a product
      of dozens of dimensions, and a cluster's few array operations as a product of
      millions (the flat part of the paper's g(k, B))."""
    softmax_cost, fixed_cost = ops_costs
    vocab_size = len(shares)
    bounds = [*cutoffs, vocab_size]
    outputs = cutoffs[0] + len(cutoffs) if cutoffs else vocab_size
    cost = batch * outputs * (3 * dim + softmax_cost)
    for (start, stop), reduced in zip(
        itertools.pairwise(bounds), tail_dims(dim, div_value, len(cutoffs)), strict=True
    ):
        share = float(shares[start:stop].sum())
        rows = batch * (1.0 - (1.0 - share) ** targets_per_example)
        cost += rows * (3 * dim * reduced + (stop - start) * (3 * reduced + softmax_cost))
        cost += fixed_cost
    return cost


def choose_cutoffs(
    counts: np.ndarray,
    dim: int,
    div_value: float,
    batch: int,
    targets_per_example: float,
    ops_costs: tuple[float, float],
) -> list[int]:
    """The cutoffs (from the 1-2-5 candidates below D, at most :data:`MAX_TAIL_CLUSTERS`)
    that minimise :func:`expected_cost` for a vocabulary with ``counts`` (frequency order);
    ties go to fewer clusters. Every subset is tried: a dozen candidates, a few hundred
    subsets."""
    vocab_size = len(counts)
    shares = counts / max(counts.sum(), 1)
    candidates = [
        mantissa * 10**exponent
        for exponent in range(int(math.log10(SMALLEST_CUTOFF)), 10)
        for mantissa in CANDIDATE_MANTISSAS
        if mantissa * 10**exponent < vocab_size
    ]
    best, best_cost = [], expected_cost([], shares, dim, div_value, batch, 1.0, ops_costs)
    for size in range(1, MAX_TAIL_CLUSTERS + 1):
        for cutoffs in itertools.combinations(candidates, size):
            cost = expected_cost(
                list(cutoffs), shares, dim, div_value, batch, targets_per_example, ops_costs
            )
            if cost < best_cost:
                best, best_cost = list(cutoffs), cost
    return best


class AdaptiveSoftmax(Head):
    """``--head adaptive``: the head matrix A ((c_1 + J) x d), and per tail cluster its
    projection P_i (d_i x d) and output matrix O_i (n_i x d_i)."""

    name = "adaptive"
    default_batch_size = 64
    has_output_vectors = True

    #: At word2vec's 0.025 the head's cluster tokens, which collect the gradient of every
    #: target in their cluster, and the input vectors feed each other until they diverge
    #: (skip-gram on bench17m's first 2M tokens: within 211 minibatches with the chosen
    #: cutoffs, 850 with 2000,10000); 0.01 trains.
    default_lr = 0.01

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        super().check_settings(settings)
        if settings.cutoffs:
            parse_cutoffs(settings.cutoffs)
        if settings.div_value < 1:
            raise SettingsError("--div-value must be >= 1")

    @classmethod
    def settle(cls, settings: Settings, vocab: Vocabulary, ops: Ops) -> Settings:
        """The settings with the cutoffs written out: chosen from the counts by the cost
        model where none were given (saved with the model, so a resumed run keeps them);
        given ones must lie below the vocabulary size."""
        if settings.cutoffs:
            cutoffs = parse_cutoffs(settings.cutoffs)
            if cutoffs[-1] >= len(vocab):
                raise SettingsError(
                    f"--cutoffs {cutoffs[-1]:,} is not below the vocabulary size {len(vocab):,}"
                )
        else:
            targets = settings.window + 1 if settings.model == "skipgram" else 1
            cutoffs = choose_cutoffs(
                vocab.counts,
                settings.dim,
                settings.div_value,
                cls.batch_size(settings),
                targets,
                BACKEND_COSTS.get(ops.name, BACKEND_COSTS["numpy"]),
            )
        share = float(vocab.counts[: cutoffs[0] if cutoffs else len(vocab)].sum())
        share /= max(int(vocab.counts.sum()), 1)
        sizes = np.diff([*cutoffs, len(vocab)])
        dims = tail_dims(settings.dim, settings.div_value, len(cutoffs))
        log.info(
            "adaptive softmax: cutoffs %s (%s): shortlist of %s words holds %.1f%% of the tokens%s",
            ",".join(map(str, cutoffs)) or "none",
            "given" if settings.cutoffs else "chosen by the cost model",
            f"{cutoffs[0] if cutoffs else len(vocab):,}",
            100 * share,
            "".join(f"; tail of {n:,} words in {k} dimensions" for n, k in zip(sizes, dims)),
        )
        return replace(settings, cutoffs=",".join(map(str, cutoffs)))

    @staticmethod
    def _layout(vocab_size: int, settings: Settings) -> tuple[list[int], list[int]]:
        """(cluster bounds [0, c_1, ..., D], tail dimensions) of settled settings."""
        cutoffs = parse_cutoffs(settings.cutoffs) if settings.cutoffs else []
        bounds = [0, *cutoffs, vocab_size]
        return bounds, tail_dims(settings.dim, settings.div_value, len(cutoffs))

    @classmethod
    def _weight_shapes(cls, vocab_size: int, settings: Settings) -> dict[str, tuple[int, int]]:
        """The head matrix A, and per tail cluster P_i and O_i."""
        bounds, dims = cls._layout(vocab_size, settings)
        shapes = {"head": (bounds[1] + len(dims), settings.dim)}
        for i, (reduced, (start, stop)) in enumerate(zip(dims, itertools.pairwise(bounds[1:]))):
            shapes[f"projection{i + 1}"] = (reduced, settings.dim)
            shapes[f"tail{i + 1}"] = (stop - start, reduced)
        return shapes

    @classmethod
    def parameter_shapes(cls, vocab_size: int, settings: Settings) -> dict[str, tuple[int, ...]]:
        """The weights and, with Mem-AOP-GD, their memories."""
        shapes = cls._weight_shapes(vocab_size, settings)
        return {**shapes, **DenseUpdates.state_shapes(settings, cls.batch_size(settings), shapes)}

    @classmethod
    def has_dense_updates(cls, settings: Settings) -> bool:
        return True

    def __init__(
        self,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(vocab, settings, ops, seed)
        self.bounds, self.dims = self._layout(len(vocab), settings)
        weights = self._weight_shapes(len(vocab), settings)
        if parameters is None:
            parameters = self._initial(weights, seed)
        self.weights = {name: ops.asarray(parameters[name], dtype=np.float32) for name in weights}
        self._cutoffs = ops.asarray(np.array(self.bounds[1:-1], dtype=np.int64))
        self.updates = DenseUpdates(
            ops, settings, self.batch_size(settings), weights, np.float32, parameters
        )

    def _initial(self, shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
        """A and the O_i at zero (word2vec's output layers start there; the softmax's
        gradient at zero is not zero), the P_i N(0, 1/d): norm-preserving, and never
        zero, or no gradient would reach them or the O_i."""
        rng = np.random.default_rng(seed)
        initial = {}
        for name, shape in shapes.items():
            if name.startswith("projection"):
                initial[name] = rng.normal(0.0, 1.0 / math.sqrt(self.dim), shape)
            else:
                initial[name] = np.zeros(shape)
        return initial

    @property
    def tails(self) -> int:
        return len(self.dims)

    def _cluster_of(self, words: Any) -> Any:
        """0 for a shortlist word, i for a word in tail i."""
        return self.ops.xp.searchsorted(self._cutoffs, words, side="right")

    def batch_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        """One SGD step on the summed -log p of every target; every gradient is taken at
        the parameters as they were before the step."""
        xp, ops = self.ops.xp, self.ops
        head = self.weights["head"]
        h = hidden.astype(head.dtype)
        example, slot = xp.nonzero(targets != PADDING)
        words = targets[example, slot].astype(np.int64)
        cluster = self._cluster_of(words)
        shortlist = self.bounds[1]
        head_index = xp.where(cluster == 0, words, shortlist + cluster - 1)

        loss, grad_head = softmax_loss(ops, ops.gemm(h, head.T), example, head_index)
        grad_hidden = ops.gemm(grad_head, head)
        everyone = xp.arange(h.shape[0])
        updates = [("head", h, grad_head, everyone)]
        for i in range(1, self.tails + 1):
            chosen = xp.nonzero(cluster == i)[0]
            if chosen.shape[0] == 0:
                continue
            rows, local = xp.unique(example[chosen], return_inverse=True)
            local = local.reshape(-1)
            projection, tail = self.weights[f"projection{i}"], self.weights[f"tail{i}"]
            h_rows = h[rows]
            reduced = ops.gemm(h_rows, projection.T)
            tail_loss, grad_tail = softmax_loss(
                ops, ops.gemm(reduced, tail.T), local, words[chosen] - self.bounds[i]
            )
            loss += tail_loss
            grad_reduced = ops.gemm(grad_tail, tail)
            grad_hidden[rows] += ops.gemm(grad_reduced, projection)
            updates.append((f"tail{i}", reduced, grad_tail, rows))
            updates.append((f"projection{i}", h_rows, grad_reduced, rows))
        for name, inputs, grads, slots in updates:
            self.updates.apply(name, self.weights[name], inputs, grads, slots, lr)
        return StepResult(loss, int(words.shape[0]), grad_hidden.astype(hidden.dtype), lr)

    def log_probabilities(self, hidden: Any) -> Any:
        """log p(w | h) for every word (m x D, float64): the full distribution, for
        evaluation and tests (O(D d_i) per example: not what training computes)."""
        xp = self.ops.xp
        h = hidden.astype(np.float64)
        head = log_softmax(xp, h @ self.weights["head"].T.astype(np.float64))
        shortlist = self.bounds[1]
        parts = [head[:, :shortlist]]
        for i in range(1, self.tails + 1):
            projection = self.weights[f"projection{i}"].astype(np.float64)
            tail = self.weights[f"tail{i}"].astype(np.float64)
            within = log_softmax(xp, (h @ projection.T) @ tail.T)
            parts.append(head[:, shortlist + i - 1 : shortlist + i] + within)
        return xp.concatenate(parts, axis=1)

    def reseed(self, seed: int) -> None:
        self.updates.reseed(seed)

    def epoch_summary(self) -> str:
        return self.updates.summary()

    def parameters(self) -> dict[str, np.ndarray]:
        weights = {name: self.ops.to_host(array) for name, array in self.weights.items()}
        return {**weights, **self.updates.parameters()}

    def output_vectors(self) -> np.ndarray:
        """One d-dimensional vector per word whose dot product with h is the word's score
        inside its softmax: the head row for a shortlist word, P_i^T O_i[w] for a word of
        tail i (its score O_i[w] . (P_i h) = (P_i^T O_i[w]) . h). Scores of different
        clusters sit under different normalisers, so compare tail words' vectors within
        a cluster or by cosine."""
        shortlist = self.bounds[1]
        parts = [self.ops.to_host(self.weights["head"][:shortlist])]
        for i in range(1, self.tails + 1):
            tail = self.weights[f"tail{i}"] @ self.weights[f"projection{i}"]
            parts.append(self.ops.to_host(tail))
        return np.concatenate(parts, axis=0)
