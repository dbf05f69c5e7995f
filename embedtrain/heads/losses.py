"""The exact heads' losses, each defined once.

A spherical-family loss depends on the D-dimensional output o = W h only through
q = |o|^2, s = sum_i o_i and the outputs o_t at the example's targets, so two small
functions say everything about it:

- ``target(score, q, s, vocab_size, constants)`` for one target's output ``score``:
  (its loss term, dL/dscore, and two terms summed over the example's targets);
- ``example(count, first, second, q, s, vocab_size, constants)`` once per example, with
  its number of targets and those two sums: (its loss term, dL/dq, dL/ds);

``constants`` being an instance of the loss's own named tuple ``Constants`` (its fields
are the loss's options), whose type tells the compiled step which loss it runs.

Both are written with arithmetic and NumPy ufuncs only, so that one source serves every
form of the step: Numba compiles them into the factored CPU kernel
(:func:`embedtrain.heads.factored_kernel.factored_step`), and their Python originals run
element-wise on NumPy or CuPy arrays (:meth:`SphericalFamilyLoss.derivatives`) for the
array step a GPU runs and for the naive O(D d) reference.

Adding a loss is adding a subclass here with a ``name``: it becomes ``--head NAME``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
from numba import njit

from embedtrain.heads.base import log_softmax, softmax_loss
from embedtrain.heads.factored_kernel import FAST

if TYPE_CHECKING:
    from embedtrain.backend import Ops
    from embedtrain.settings import Settings

#: How a loss's two functions are compiled (cached: the kernel that calls them is too).
loss_function = njit(fastmath=FAST, cache=True)

#: Every exact loss by its head name, in the order they were added.
LOSSES: dict[str, type[ExactLoss]] = {}


class ExactLoss:
    """An exact full-vocabulary loss, summed over an example's targets and over the batch."""

    name: ClassVar[str]
    #: Whether the loss has the factored O(d^2) form (the spherical family).
    factored: ClassVar[bool] = True
    #: Initial learning rate when ``lr`` is 0 (word2vec's unless measured otherwise).
    default_lr: ClassVar[float] = 0.025
    #: The constant input feature (a per-word output bias) when ``bias_feature`` is not
    #: given: none unless measured better.
    default_bias_feature: ClassVar[float] = 0.0
    #: The input vectors' expected norm at the start, for a loss that needs one other than
    #: gensim's (None: gensim's).
    input_init_norm: ClassVar[float | None] = None

    class Constants(NamedTuple):
        """The loss's constants (none here), as its two functions read them."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return
        if "Constants" not in cls.__dict__:  # a type of its own: the compiled step's key
            cls.Constants = NamedTuple(f"{cls.__name__}Constants", [])
            cls.Constants.__qualname__ = f"{cls.__qualname__}.Constants"
            cls.Constants.__module__ = cls.__module__
        cls.Constants.loss = cls
        LOSSES[cls.name] = cls

    def __init__(self, *constants: float) -> None:
        self.constants = self.Constants(*(float(c) for c in constants))

    @classmethod
    def from_settings(cls, settings: Settings) -> ExactLoss:
        return cls()

    def log_distribution(self, xp: Any, output: Any) -> Any:
        """log P(w | h) of every word from the explicit float64 output (m, D), for the
        losses that are one (NotImplementedError otherwise)."""
        raise NotImplementedError(f"{self.name} is not a normalised distribution")

    def full_gradient(self, ops: Ops, output: Any, rows: Any, present: Any) -> tuple[Any, Any, Any]:
        """Naive form from the explicit output (m, D): (loss, dL/doutput, dL/dq or None)."""
        xp = ops.xp
        q = (output * output).sum(axis=1, dtype=np.float64)
        s = output.sum(axis=1, dtype=np.float64)
        scores = xp.take_along_axis(output, rows, axis=1).astype(np.float64)
        loss, grad_q, grad_s, grad_scores = self.derivatives(
            xp, q, s, scores, present, output.shape[1]
        )
        grad = (2.0 * grad_q[:, None]).astype(output.dtype) * output
        grad += grad_s[:, None].astype(output.dtype)
        example, slot = xp.nonzero(present)
        ops.scatter_add(
            grad, (example, rows[example, slot]), grad_scores[example, slot].astype(output.dtype)
        )
        return loss, grad, grad_q


class SphericalFamilyLoss(ExactLoss):
    """A loss given by its ``target`` and ``example`` functions (see the module)."""

    target: ClassVar[Any]
    example: ClassVar[Any]

    def derivatives(
        self, xp: Any, q: Any, s: Any, scores: Any, present: Any, vocab_size: int
    ) -> tuple[Any, Any, Any, Any]:
        """(summed loss, dL/dq (m,), dL/ds (m,), dL/dscores (m, K), zero at padding), all
        float64, from the compiled kernel's own two functions run on arrays."""
        weights = present.astype(np.float64)
        count = weights.sum(axis=1)
        term, slope, first, second = type(self).target.py_func(
            scores, q[:, None], s[:, None], vocab_size, self.constants
        )
        extra, grad_q, grad_s = type(self).example.py_func(
            count, (first * weights).sum(axis=1), (second * weights).sum(axis=1), q, s,
            vocab_size, self.constants,
        )  # fmt: skip
        loss = (term * weights).sum() + (xp.zeros_like(q) + extra).sum()
        return loss, xp.zeros_like(q) + grad_q, xp.zeros_like(q) + grad_s, slope * weights


class SphericalSoftmax(SphericalFamilyLoss):
    """Sum over targets t of -log P(t|h), P(t|h) = (o_t^2 + eps) / (q + D eps)."""

    name = "spherical"

    class Constants(NamedTuple):
        epsilon: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SphericalSoftmax:
        return cls(settings.epsilon)

    @staticmethod
    @loss_function
    def target(score, q, s, vocab_size, constants):
        numerator = score * score + constants.epsilon
        return -np.log(numerator), -2.0 * score / numerator, 0.0, 0.0

    @staticmethod
    @loss_function
    def example(count, first, second, q, s, vocab_size, constants):
        norm = q + vocab_size * constants.epsilon
        return count * np.log(norm), count / norm, 0.0

    def log_distribution(self, xp, output):
        epsilon = self.constants.epsilon
        norm = (output * output).sum(axis=1, keepdims=True) + output.shape[1] * epsilon
        return xp.log(output * output + epsilon) - xp.log(norm)


class SquaredError(SphericalFamilyLoss):
    """Sum over targets t of |o - e_t|^2 = K q - 2 sum_t o_t + K."""

    name = "squared"

    @staticmethod
    @loss_function
    def target(score, q, s, vocab_size, constants):
        return 1.0 - 2.0 * score, -2.0 + 0.0 * score, 0.0, 0.0

    @staticmethod
    @loss_function
    def example(count, first, second, q, s, vocab_size, constants):
        return count * q, 1.0 * count, 0.0


class TaylorSoftmax(SphericalFamilyLoss):
    """Sum over targets t of -log P(t|h), P(t|h) = (1 + o_t + o_t^2/2) / (D + s + q/2): the
    second-order Taylor expansion of exp in place of it (de Brebisson & Vincent, ICLR
    2016). Every term of the normaliser is >= 1/2: no epsilon, and o and -o differ."""

    name = "taylor"
    #: Measured on the first 2M tokens of bench17m, skip-gram, 3 epochs: 0.025 learns a
    #: third as fast; 0.2 and above drift away.
    default_lr = 0.05
    #: Measured on bench17m, skip-gram, 5 epochs (heads report): analogies 25.6% ->
    #: 28.2%, WS-353 0.577 -> 0.631.
    default_bias_feature = 1.0

    @staticmethod
    @loss_function
    def target(score, q, s, vocab_size, constants):
        numerator = 1.0 + score + 0.5 * score * score
        return -np.log(numerator), -(1.0 + score) / numerator, 0.0, 0.0

    @staticmethod
    @loss_function
    def example(count, first, second, q, s, vocab_size, constants):
        norm = vocab_size + s + 0.5 * q
        return count * np.log(norm), 0.5 * count / norm, count / norm

    def log_distribution(self, xp, output):
        taylor = 1.0 + output + 0.5 * output * output
        return xp.log(taylor) - xp.log(taylor.sum(axis=1, keepdims=True))


class ZLoss(SphericalFamilyLoss):
    """Sum over targets t of softplus(a (b - z_t)) / a, z_t = (o_t - mu) / sigma with
    mu = s / D and sigma^2 = q / D - mu^2: the output standardised, so the loss is
    invariant to shifting and scaling o (de Brebisson & Vincent, 2016). The two sums are
    -dL/dz_t and -dL/dz_t z_t."""

    name = "zloss"
    #: z ignores the scale of h, so dL/dh ~ 1/|h| and SGD moves h's direction by about
    #: lr/|h|^2: from gensim's |h| = 0.06 the first updates throw each vector to a norm of
    #: tens along its first contexts, where it stays. sqrt(3) (w = 3/sqrt(d)) and the
    #: bias feature were measured best on bench17m (the Z-loss's input-scale study).
    input_init_norm = math.sqrt(3.0)
    default_bias_feature = 1.0

    class Constants(NamedTuple):
        sharpness: float  # a
        margin: float  # b

    @classmethod
    def from_settings(cls, settings: Settings) -> ZLoss:
        return cls(settings.zloss_a, settings.zloss_b)

    @staticmethod
    @loss_function
    def target(score, q, s, vocab_size, constants):
        sharpness, margin = constants.sharpness, constants.margin
        mean = s / vocab_size
        deviation = np.sqrt(q / vocab_size - mean * mean)
        z = (score - mean) / deviation
        argument = sharpness * (margin - z)
        pull = 1.0 / (1.0 + np.exp(-argument))
        return np.logaddexp(0.0, argument) / sharpness, -pull / deviation, pull, pull * z

    @staticmethod
    @loss_function
    def example(count, first, second, q, s, vocab_size, constants):
        mean = s / vocab_size
        deviation = np.sqrt(q / vocab_size - mean * mean)
        grad_q = second / (2.0 * vocab_size * deviation * deviation)
        grad_s = (first - mean * second / deviation) / (vocab_size * deviation)
        return 0.0 * count, grad_q, grad_s


class FullSoftmax(ExactLoss):
    """Sum over targets t of -log softmax(o)_t: the O(D d) baseline (no factored form)."""

    name = "softmax"
    factored = False

    def log_distribution(self, xp: Any, output: Any) -> Any:
        return log_softmax(xp, output)

    def full_gradient(
        self, ops: Ops, output: Any, rows: Any, present: Any
    ) -> tuple[Any, Any, None]:
        example, slot = ops.xp.nonzero(present)
        loss, grad = softmax_loss(ops, output, example, rows[example, slot])
        return loss, grad, None
