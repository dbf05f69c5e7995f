"""The head interface: the output layer that turns a hidden vector into a loss.

As fastText's ``Loss`` subclasses, every head owns its output parameters and offers
the same two entry points, so the trainer never knows which head it drives:

- :meth:`Head.batch_step`: one exact minibatch SGD step for ``m`` hidden vectors and
  their padded targets, on the array backend (NumPy or CuPy) or, where a head has one,
  as a compiled CPU kernel (the factored exact heads);
- :meth:`Head.compiled_step`: optionally, a Numba per-example step and its state
  for the compiled CPU drivers of :mod:`embedtrain.drivers`, and
  :meth:`Head.compiled_shared_step`, the same for blocks of examples that share their
  output units (``--step shared``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from embedtrain.backend import Ops
from embedtrain.errors import SettingsError
from embedtrain.vocab import Vocabulary

if TYPE_CHECKING:
    from embedtrain.settings import Settings

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
    #: Examples per minibatch on the batched engine when ``batch_size`` is 0.
    default_batch_size: ClassVar[int] = 1024
    #: The largest ``batch_size`` the head accepts (None: no limit).
    max_batch_size: ClassVar[int | None] = None
    #: Why ``max_batch_size`` is what it is, for the error message.
    batch_limit_reason: ClassVar[str] = ""
    #: Whether :meth:`compiled_step` gives a per-example step for the compiled engine.
    has_compiled_step: ClassVar[bool] = False
    #: Whether :meth:`compiled_shared_step` gives the shared form (``--step shared``).
    has_shared_step: ClassVar[bool] = False
    #: Whether copies trained apart merge row by row (``--cluster``, distributed.py): the
    #: head's state is its output rows, trained by its compiled step, and nothing else.
    merges_by_row: ClassVar[bool] = False
    #: Whether the head keeps one output vector per word (``--save-output``); hierarchical
    #: softmax does not: its output rows belong to the inner nodes of the Huffman tree.
    has_output_vectors: ClassVar[bool] = False
    #: Whether the head takes ``bias_feature`` (a constant input feature: the exact heads).
    takes_bias_feature: ClassVar[bool] = False
    #: The initial learning rate when ``lr`` is 0: word2vec's and gensim's.
    default_lr: ClassVar[float] = 0.025
    #: Parameters saved as integer arrays (the rest are floating point).
    integer_parameters: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> None:
        """A fresh (seeded) head or, given ``parameters`` (what :meth:`parameters` returned,
        shapes already checked against :meth:`parameter_shapes`), one built from them."""
        self.vocab_size = len(vocab)
        self.dim = settings.dim
        self.ops = ops

    @classmethod
    def create(
        cls,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> Head:
        """The head for ``settings`` (a head kind may build one of several classes)."""
        return cls(vocab, settings, ops, seed, parameters)

    @classmethod
    def settle(cls, settings: Settings, vocab: Vocabulary, ops: Ops) -> Settings:
        """The settings with what the head derives from the vocabulary written out, for a
        fresh model (saved with it, so a resumed run keeps them); most heads derive
        nothing. :class:`SettingsError` where the vocabulary rules the settings out."""
        return settings

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        """Raise :class:`SettingsError` for values this head cannot train with."""
        limit = cls.max_batch_size
        if limit is not None and settings.batch_size > limit:
            raise SettingsError(
                f"--batch-size must be <= {limit:,} for the {settings.head} head"
                + (f" ({cls.batch_limit_reason})" if cls.batch_limit_reason else "")
            )

    @classmethod
    def has_dense_updates(cls, settings: Settings) -> bool:
        """Whether the head's weight updates are dense products over the minibatch, which
        Mem-AOP-GD can approximate (``aop_k``; :mod:`embedtrain.heads.aop`)."""
        return False

    @classmethod
    def require_output_vectors(cls, name: str) -> None:
        """:class:`SettingsError` unless the head keeps one output vector per word."""
        if not cls.has_output_vectors:
            raise SettingsError(
                f"--save-output: the {name} head has no per-word output vectors "
                "(hierarchical softmax's output rows belong to the Huffman tree's inner nodes)"
            )

    @classmethod
    def with_defaults(cls, settings: Settings) -> Settings:
        """``settings`` with the head's defaults written in where they stand unset:
        ``lr = 0`` becomes :attr:`default_lr`, ``init_norm = None`` gensim 4's start
        (uniform in [-1/d, 1/d), a norm of 1/sqrt(3 d)), ``bias_feature = None`` none and
        ``step = None`` :meth:`default_step`; a head whose loss needs others overrides
        (the exact heads)."""
        changes: dict[str, Any] = {}
        if isinstance(settings.lr, Real) and settings.lr == 0:
            changes["lr"] = cls.default_lr
        if settings.init_norm is None and isinstance(settings.dim, Integral) and settings.dim > 0:
            changes["init_norm"] = 1.0 / math.sqrt(3.0 * settings.dim)
        if settings.bias_feature is None:
            changes["bias_feature"] = 0.0
        if settings.step is None:
            shared = cls.has_shared_step and cls.default_step(settings.model) == "shared"
            changes["step"] = "shared" if shared else "per-example"
        return replace(settings, **changes)

    @classmethod
    def default_step(cls, model: str) -> str:
        """The compiled engine's update form for ``model`` when ``step`` is unset (heads
        with a shared step): the shared form where it is measured faster at the same
        quality (``python -m benchmarks step --quality``), else per-example (word2vec's)."""
        return "per-example"

    @classmethod
    def batch_size(cls, settings: Settings) -> int:
        """Examples per minibatch on the batched engine: ``batch_size`` or the default."""
        return settings.batch_size or cls.default_batch_size

    @abstractmethod
    def batch_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        """Apply one SGD step to the output parameters for the summed loss of the batch.

        A head may take a smaller step than ``lr`` where a larger one would be unstable
        (the exact heads); the result says which rate it used.
        """

    @classmethod
    def parameter_problem(
        cls, parameters: dict[str, np.ndarray], vocab_size: int, settings: Settings
    ) -> str | None:
        """What is wrong with loaded parameters beyond their shapes and types (None: nothing),
        for heads whose saved arrays index into others."""
        return None

    def start_job(self, position: int) -> None:
        """Called before each job with its position in the run (words from the start of
        the first epoch), for heads that maintain state on a schedule (LSH tables)."""

    def reseed(self, seed: int) -> None:
        """Seed the head's own random draws for the next job (heads that draw override),
        so that a run resumed at a job boundary draws what an uninterrupted one would."""

    def epoch_summary(self) -> str:
        """Words for the epoch's summary line about what the head did since the last call
        ('' for nothing)."""
        return ""

    def notices(self) -> list[str]:
        """Messages for the user gathered since the last call (e.g. learning-rate caps)."""
        return []

    def compiled_step(self) -> tuple[Callable, tuple]:
        """A Numba per-example step and its state (a named tuple), for heads with
        ``has_compiled_step``."""
        raise NotImplementedError(f"the {self.name} head has no compiled per-example step")

    def compiled_shared_step(self, examples: int) -> tuple[Callable, tuple, tuple]:
        """A Numba step for up to ``examples`` examples of one target that share their
        output units, its state and a workspace (one per job), for heads with
        ``has_shared_step``."""
        raise NotImplementedError(f"the {self.name} head has no shared step")

    def row_parameters(self) -> dict[str, np.ndarray]:
        """The live arrays the compiled step trains, by their :meth:`parameters` names,
        for heads that ``merges_by_row``: the rounds of a cluster run merge their rows."""
        raise NotImplementedError(f"the {self.name} head does not merge by row")

    @abstractmethod
    def parameters(self) -> dict[str, np.ndarray]:
        """Learned parameters as host arrays, for saving."""

    @classmethod
    def parameter_shapes(cls, vocab_size: int, settings: Settings) -> dict[str, tuple[int, ...]]:
        """The shape of each array :meth:`parameters` returns (checked before loading)."""
        return {"output": (vocab_size, settings.dim)}

    @classmethod
    def upgraded_parameters(
        cls, parameters: dict[str, np.ndarray], settings: Settings
    ) -> dict[str, np.ndarray]:
        """Parameters saved in model format 2 in today's layout (only the factored heads'
        changed since); the loader checks the result as any other."""
        return parameters

    def log_probabilities(self, hidden: Any) -> Any:
        """log p(w | h) for every word (m x D, float64) where the head's output is a
        normalised distribution over the vocabulary (for evaluation: O(D d) per example);
        NotImplementedError otherwise."""
        raise NotImplementedError(f"the {self.name} head defines no normalised distribution")

    def output_vectors(self) -> np.ndarray:
        """One output vector per word, as a host array (heads with ``has_output_vectors``)."""
        raise NotImplementedError(f"the {self.name} head has no per-word output vectors")

    def check_finite(self) -> bool:
        """Whether every learned parameter is finite."""
        return all(bool(np.isfinite(a).all()) for a in self.parameters().values())


def log_softmax(xp: Any, scores: Any) -> Any:
    """log softmax along each row, shifted by the row's maximum (no overflow)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax_loss(ops: Ops, scores: Any, rows: Any, columns: Any) -> tuple[Any, Any]:
    """(summed -log softmax(scores[row])[column] over the (row, column) pairs, its
    gradient with respect to ``scores``): each row's softmax weighted by the number of its
    pairs, minus one at every pair (repeated pairs accumulated)."""
    xp = ops.xp
    count = xp.bincount(rows, minlength=scores.shape[0]).astype(scores.dtype)
    peak = scores.max(axis=1, keepdims=True)
    exp = xp.exp(scores - peak)
    total = exp.sum(axis=1, keepdims=True)
    log_norm = (xp.log(total) + peak)[:, 0].astype(np.float64)
    loss = (count.astype(np.float64) * log_norm).sum() - scores[rows, columns].sum(dtype=np.float64)
    grad = exp * (count[:, None] / total)
    ops.scatter_add(grad, (rows, columns), -xp.ones(rows.shape[0], dtype=scores.dtype))
    return loss, grad


def logistic_loss_and_gradient(ops: Ops, scores: Any, labels: Any) -> tuple[Any, Any]:
    """Per-element binary logistic loss and dL/dscore, float64-exact in form.

    loss = softplus(-f) for label 1 and softplus(f) for label 0; dL/df = sigmoid(f) - label.
    """
    xp = ops.xp
    signed = xp.where(labels > 0.5, -scores, scores)
    loss = xp.logaddexp(0.0, signed)
    grad = 1.0 / (1.0 + xp.exp(-scores)) - labels
    return loss, grad
