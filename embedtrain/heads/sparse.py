"""Heads made of binary logistic units over a few output rows per target word:
negative sampling and hierarchical softmax (word2vec's two output layers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from embedtrain.backend import Ops
from embedtrain.errors import SettingsError
from embedtrain.heads.base import PADDING, Head, StepResult, logistic_loss_and_gradient
from embedtrain.heads.logistic_kernels import (
    HierarchicalSoftmaxState,
    NegativeSamplingState,
    hierarchical_softmax_shared_step,
    hierarchical_softmax_step,
    negative_sampling_shared_step,
    negative_sampling_step,
    shared_workspace,
)
from embedtrain.vocab import Vocabulary, alias_table, huffman_tree

if TYPE_CHECKING:
    from embedtrain.settings import Settings


def target_and_noise_units(xp: Any, words: Any, noise: Any) -> tuple[Any, Any, Any]:
    """Rows, labels and mask of negative sampling's units for targets ``words`` (n,) and
    their ``noise`` (n, k): each target a positive unit, each noise word a negative one,
    masked out where it is the target (word2vec skips such a draw)."""
    rows = xp.concatenate([words[:, None].astype(np.int64), noise.astype(np.int64)], axis=1)
    labels = xp.zeros(rows.shape, dtype=np.float32)
    labels[:, 0] = 1.0
    mask = xp.ones(rows.shape, dtype=np.float32)
    mask[:, 1:] = noise != words[:, None]
    return rows, labels, mask


class LogisticUnitsHead(Head):
    """Shared batched step: each target word selects rows of ``output``, each row a
    logistic unit with a 0/1 label; output rows start at zero, as in word2vec."""

    has_compiled_step = True
    has_shared_step = True
    merges_by_row = True

    def __init__(
        self,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(vocab, settings, ops, seed)
        if parameters is None:
            shape = self.parameter_shapes(len(vocab), settings)["output"]
            self.output = ops.xp.zeros(shape, dtype=np.float32)
        else:
            self.output = ops.asarray(parameters["output"], dtype=np.float32)
        self._prepare(vocab, settings, seed)

    def _prepare(self, vocab: Vocabulary, settings: Settings, seed: int) -> None:
        """Build what the head derives from the vocabulary and seed (noise table and its
        random stream, Huffman tree)."""

    def _units(self, words: Any) -> tuple[Any, Any, Any]:
        """Rows, labels and a 0/1 mask (all ``(P, R)``) for the target words ``(P,)``."""
        raise NotImplementedError

    def _pair_units(self, words: Any, pair_hidden: Any) -> tuple[Any, Any, Any, Any]:
        """:meth:`_units` for pairs whose hidden vectors are ``pair_hidden``, and each
        unit's logit shift (None: none); heads whose units depend on the input override."""
        return (*self._units(words), None)

    def batch_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        xp = self.ops.xp
        example, slot = xp.nonzero(targets != PADDING)
        words = targets[example, slot]
        pair_hidden = hidden[example]
        rows, labels, mask, shifts = self._pair_units(words, pair_hidden)
        weights = self.output[rows]
        scores = xp.matmul(weights, pair_hidden[:, :, None])[:, :, 0]
        if shifts is not None:
            scores = scores - shifts
        loss, grad_scores = logistic_loss_and_gradient(self.ops, scores, labels)
        grad_scores = grad_scores * mask
        grad_pairs = xp.matmul(grad_scores[:, None, :], weights)[:, 0, :]
        grad_hidden = xp.zeros_like(hidden)
        self.ops.scatter_add(grad_hidden, example, grad_pairs)
        units = rows.shape[1]
        self.ops.scatter_add_scaled(
            self.output,
            rows.ravel(),
            (-lr * grad_scores).ravel().astype(self.output.dtype),
            hidden,
            xp.repeat(example, units),
        )
        return StepResult((loss * mask).sum(dtype=np.float64), int(words.shape[0]), grad_hidden, lr)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"output": self.ops.to_host(self.output)}

    def row_parameters(self) -> dict[str, np.ndarray]:
        return {"output": self.output}


class NegativeSampling(LogisticUnitsHead):
    """Negative sampling: the target is a positive unit, ``negative`` noise words drawn
    from count**ns_exponent are negative units (a draw equal to the target is skipped)."""

    name = "ns"
    has_output_vectors = True
    default_batch_size = 512

    @classmethod
    def default_step(cls, model: str) -> str:
        """Shared for skip-gram: 1.87x the per-example step's words/s at the same quality
        (bench17m, 2 threads, 5 epochs: analogies 35.3% / 35.2%). Per-example for CBOW:
        there the shared draw is 1.34x faster but costs 1.4 analogy points (28.5% / 29.9%)."""
        return "shared" if model == "skipgram" else "per-example"

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        super().check_settings(settings)
        if settings.negative < 1:
            raise SettingsError(f"--head {settings.head} needs --negative >= 1")

    def _prepare(self, vocab: Vocabulary, settings: Settings, seed: int) -> None:
        self.random = self.ops.random_state(seed)
        table = alias_table(vocab.noise_distribution(settings.ns_exponent))
        self.negative = settings.negative
        self._alias_probability = table.probability
        self._alias_index = table.alias
        self._device_probability = self.ops.asarray(table.probability)
        self._device_alias = self.ops.asarray(table.alias)

    def reseed(self, seed: int) -> None:
        self.random = self.ops.random_state(seed)

    def draw_noise(self, shape: tuple[int, ...]) -> Any:
        """Noise words drawn from the alias table on the backend."""
        xp = self.ops.xp
        scaled = self.random.random_sample(shape) * self.vocab_size
        bucket = xp.minimum(scaled.astype(np.int64), self.vocab_size - 1)
        keep = (scaled - bucket) < self._device_probability[bucket]
        return xp.where(keep, bucket, self._device_alias[bucket])

    def _units(self, words: Any) -> tuple[Any, Any, Any]:
        noise = self.draw_noise((words.shape[0], self.negative))
        return target_and_noise_units(self.ops.xp, words, noise)

    def compiled_step(self) -> tuple[Callable, NegativeSamplingState]:
        state = NegativeSamplingState(
            self.output, self._alias_probability, self._alias_index, self.negative
        )
        return negative_sampling_step, state

    def compiled_shared_step(self, examples: int) -> tuple[Callable, NegativeSamplingState, tuple]:
        _, state = self.compiled_step()
        workspace = shared_workspace(examples, 1 + self.negative)
        return negative_sampling_shared_step, state, workspace

    def output_vectors(self) -> np.ndarray:
        """word2vec's syn1neg: the output row of each word."""
        return self.ops.to_host(self.output)


class HierarchicalSoftmax(LogisticUnitsHead):
    """Hierarchical softmax over word2vec's Huffman tree: one unit per inner node on the
    target's path, labelled 1 - code bit."""

    name = "hs"
    # The shared step runs at 0.75x (skip-gram) and 0.70x (CBOW) the per-example step's
    # words/s (1 thread): a path's rows are few and hot, so sharing saves little.
    # Every pair's path starts at the root of the tree, so a minibatch sums P updates into
    # the top rows: 256 examples (~2,500 pairs) diverged at lr 0.025 on WordNet glosses.
    default_batch_size = 64

    def _prepare(self, vocab: Vocabulary, settings: Settings, seed: int) -> None:
        self.tree = huffman_tree(vocab.counts)
        self._codes = self.ops.asarray(self.tree.codes)
        self._points = self.ops.asarray(self.tree.points.astype(np.int64))
        self._lengths = self.ops.asarray(self.tree.lengths)

    @classmethod
    def parameter_shapes(cls, vocab_size: int, settings: Settings) -> dict[str, tuple[int, ...]]:
        """One output row per inner node of the Huffman tree (at least one)."""
        return {"output": (max(vocab_size - 1, 1), settings.dim)}

    def _units(self, words: Any) -> tuple[Any, Any, Any]:
        xp = self.ops.xp
        rows = self._points[words]
        labels = 1.0 - self._codes[words].astype(np.float32)
        width = rows.shape[1]
        mask = (xp.arange(width)[None, :] < self._lengths[words][:, None]).astype(np.float32)
        return rows, labels, mask

    def compiled_step(self) -> tuple[Callable, HierarchicalSoftmaxState]:
        state = HierarchicalSoftmaxState(
            self.output, self.tree.codes, self.tree.points, self.tree.lengths
        )
        return hierarchical_softmax_step, state

    def compiled_shared_step(
        self, examples: int
    ) -> tuple[Callable, HierarchicalSoftmaxState, tuple]:
        _, state = self.compiled_step()
        workspace = shared_workspace(examples, self.tree.points.shape[1])
        return hierarchical_softmax_shared_step, state, workspace
