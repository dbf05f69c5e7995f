"""The head interface: the output layer that turns a hidden vector into a loss.

As fastText's ``Loss`` subclasses, every head owns its output parameters and offers
the same two entry points, so the trainer never knows which head it drives:

- :meth:`Head.batch_step`: one exact minibatch SGD step for ``m`` hidden vectors and
  their padded targets, on the array backend (NumPy or CuPy) or, where a head has one,
  as a compiled CPU kernel (the factored exact heads);
- :meth:`Head.compiled_step`: optionally, a Numba per-example step and its state
  for the compiled CPU drivers of :mod:`embedtrain.kernels`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from embedtrain.backend import Ops
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

PADDING = -1  # marks an empty slot in a padded target matrix


@dataclass
class StepResult:
    """What one minibatch step reports back to the engine."""

    loss: Any  # summed loss before the step: a float64 backend scalar (no GPU sync per step)
    pairs: int  # (example, target) pairs in the batch
    grad_hidden: Any  # dL/dhidden, (m, d), with the parameters as they were before the step
    lr: float  # the learning rate the step used; the engine applies the same to the inputs


class Head(ABC):
    """An output layer over the vocabulary.

    ``targets`` in :meth:`batch_step` is an ``(m, K)`` integer matrix: row ``j`` lists
    the words example ``j`` must predict (skip-gram: all context words of one centre
    word; CBOW: K = 1), ``PADDING`` where there are fewer; repeated words count twice.
    """

    name: ClassVar[str]
    #: Examples per minibatch on the batched engine when ``--batch-size`` is 0.
    default_batch_size: ClassVar[int] = 1024

    def __init__(self, vocab: Vocabulary, settings: Settings, ops: Ops, seed: int) -> None:
        self.vocab_size = len(vocab)
        self.dim = settings.dim
        self.ops = ops

    @abstractmethod
    def batch_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        """Apply one SGD step to the output parameters for the summed loss of the batch.

        A head may take a smaller step than ``lr`` where a larger one would be unstable
        (the exact heads); the result says which rate it used.
        """

    def notices(self) -> list[str]:
        """Messages for the user gathered since the last call (e.g. learning-rate caps)."""
        return []

    def compiled_step(self) -> tuple[Callable, tuple] | None:
        """A Numba per-example step and its state tuple, or None if the head has none."""
        return None

    @abstractmethod
    def parameters(self) -> dict[str, np.ndarray]:
        """Learned parameters as host arrays, for saving."""

    @abstractmethod
    def load_parameters(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`parameters` returned."""

    #: Whether the head keeps one output vector per word (``--save-output``); hierarchical
    #: softmax does not: its output rows belong to the inner nodes of the Huffman tree.
    has_output_vectors = False

    def output_vectors(self) -> np.ndarray:
        """One output vector per word, as a host array (heads with ``has_output_vectors``)."""
        raise NotImplementedError(f"the {self.name} head has no per-word output vectors")

    def check_finite(self) -> bool:
        """Whether every learned parameter is finite."""
        return all(bool(np.isfinite(a).all()) for a in self.parameters().values())


def logistic_loss_and_gradient(ops: Ops, scores: Any, labels: Any) -> tuple[Any, Any]:
    """Per-element binary logistic loss and dL/dscore, float64-exact in form.

    loss = softplus(-f) for label 1 and softplus(f) for label 0; dL/df = sigmoid(f) - label.
    """
    xp = ops.xp
    signed = xp.where(labels > 0.5, -scores, scores)
    loss = xp.logaddexp(0.0, signed)
    grad = 1.0 / (1.0 + xp.exp(-scores)) - labels
    return loss, grad
