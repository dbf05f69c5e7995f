"""Exact full-vocabulary heads: spherical softmax, squared error, Taylor softmax and the
Z-loss in O(d^2) per example with the factored update of Vincent, de Brebisson & Bouthillier
(NIPS 2015), their naive O(D d) references, and the ordinary full softmax.

These losses depend on the D-dimensional output o = W h only through q = |o|^2, s = sum of
o and the outputs at the targets, so with W = V U (+ 1 r^T for the part of the update that
dL/ds makes dense: :mod:`factored_state`), Q = W^T W and U^-1 kept current, one exact
minibatch SGD step never forms o (notation of ``shared/papers/BRIEF.md`` section 1):

- forward: q = h^T Q h, o_t = V_t (U h);
- W_new = W (I - S^T S) - lr Y H with S = sqrt(2 lr dL/dq) H, applied as
  U <- U (I - S^T S), U^-1 <- (I - S^T S)^-1 U^-1 (Woodbury, an m x m solve, when the
  minibatch is smaller than d; a direct d x d inverse otherwise) and
  V_t <- V_t - lr a_t h^T U_new^-1 on the target rows only;
- Q_new = Q - lr (G^T H + H^T G) + lr^2 H^T (E^T E) H, with G the hidden gradients and
  E^T E (m x m) assembled from H Q H^T, H Z^T and the target overlap Y^T Y.

Skip-gram feeds all context words of a centre word as one K-sparse target; the loss of
an example is the sum of its per-pair losses, which stays in the family.

The state (V and [Q; U; U^-T]) and its upkeep are :class:`FactoredState`; the step runs
as one compiled call on host arrays (:mod:`factored_kernel`) or written against ``xp``
(the GPU). The rules on small matrices (the stable rate, the inverse refresh) exist only
compiled: the array forms and the naive heads call them on host copies.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any

import numpy as np

from embedtrain.backend import Ops
from embedtrain.heads import factored_kernel
from embedtrain.heads.aop import DenseUpdates
from embedtrain.heads.base import PADDING, Head, StepResult, log_softmax, softmax_loss
from embedtrain.heads.factored_kernel import (
    LossConstants,
    factored_step,
    stable_rate,
    state_rows,
    uses_woodbury,
)
from embedtrain.heads.factored_state import FactoredState
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

#: The exact heads' minibatch step holds m x m matrices (and m x D outputs for the naive
#: ones): beyond this the memory, not the arithmetic, decides, and a typo could page the
#: machine to a halt instead of failing.
MAX_EXACT_BATCH = 4096
#: The multiplicative factor I - S^T S keeps every eigenvalue >= 1 - STABILITY_CAP:
#: a step with 2 lr lambda_max(H^T diag(dL/dq) H) above the cap gets a smaller rate.
STABILITY_CAP = 0.5
OUTPUT_INIT_STD = 0.01  # never zero: spherical softmax has a zero gradient at o = 0


class SphericalFamilyLoss(ABC):
    """A loss L_j = F(q_j, s_j, o_j[targets]) per example, summed over the batch, with
    q = |o|^2 and s = sum_i o_i."""

    name: str
    kind: int  # the loss as the compiled step knows it (factored_kernel.SQUARED, ...)
    #: The loss's constants as the compiled step takes them.
    constants: LossConstants = LossConstants()
    #: Initial learning rate when ``lr`` is 0 (word2vec's unless measured otherwise).
    default_lr: float = 0.025
    #: The constant input feature (a per-word output bias) when ``bias_feature`` is not
    #: given: none unless measured better.
    default_bias_feature: float = 0.0
    #: The input vectors' expected norm at the start, for a loss that needs one other than
    #: gensim's (None: its 1/d half-width, a norm of 1/sqrt(3d)).
    input_init_norm: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SphericalFamilyLoss:
        return cls()

    @abstractmethod
    def derivatives(
        self, ops: Ops, q: Any, s: Any, scores: Any, present: Any, vocab_size: int
    ) -> tuple[Any, Any, Any, Any]:
        """(summed loss, dL/dq (m,), dL/ds (m,), dL/dscores (m, K), zero at padding), all
        float64."""

    def log_distribution(self, xp: Any, output: Any) -> Any:
        """log P(w | h) of every word from the explicit float64 output (m, D), for the
        losses that are one (NotImplementedError otherwise)."""
        raise NotImplementedError(f"{self.name} is not a normalised distribution")

    def full_gradient(self, ops: Ops, output: Any, rows: Any, present: Any) -> tuple[Any, Any, Any]:
        """Naive form from the explicit output (m, D): (loss, dL/doutput, dL/dq)."""
        xp = ops.xp
        q = (output * output).sum(axis=1, dtype=np.float64)
        s = output.sum(axis=1, dtype=np.float64)
        scores = xp.take_along_axis(output, rows, axis=1).astype(np.float64)
        loss, grad_q, grad_s, grad_scores = self.derivatives(
            ops, q, s, scores, present, output.shape[1]
        )
        grad = (2.0 * grad_q[:, None]).astype(output.dtype) * output
        grad += grad_s[:, None].astype(output.dtype)
        example, slot = xp.nonzero(present)
        ops.scatter_add(
            grad, (example, rows[example, slot]), grad_scores[example, slot].astype(output.dtype)
        )
        return loss, grad, grad_q


class SquaredError(SphericalFamilyLoss):
    """Sum over targets t of |o - e_t|^2 = K q - 2 sum_t o_t + K."""

    name = "squared"
    kind = factored_kernel.SQUARED

    def derivatives(self, ops, q, s, scores, present, vocab_size):
        weights = present.astype(np.float64)
        count = weights.sum(axis=1)
        loss = (count * q - 2.0 * (scores * weights).sum(axis=1) + count).sum()
        return loss, count, ops.xp.zeros_like(q), -2.0 * weights


class SphericalSoftmax(SphericalFamilyLoss):
    """Sum over targets t of -log P(t|h), P(t|h) = (o_t^2 + eps) / (q + D eps)."""

    name = "spherical"
    kind = factored_kernel.SPHERICAL

    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon
        self.constants = LossConstants(epsilon=float(epsilon))

    @classmethod
    def from_settings(cls, settings: Settings) -> SphericalSoftmax:
        return cls(settings.epsilon)

    def log_distribution(self, xp, output):
        norm = (output * output).sum(axis=1, keepdims=True) + output.shape[1] * self.epsilon
        return xp.log(output * output + self.epsilon) - xp.log(norm)

    def derivatives(self, ops, q, s, scores, present, vocab_size):
        xp = ops.xp
        weights = present.astype(np.float64)
        count = weights.sum(axis=1)
        norm = q + vocab_size * self.epsilon
        target = scores * scores + self.epsilon
        loss = (count * xp.log(norm)).sum() - (xp.log(target) * weights).sum()
        return loss, count / norm, xp.zeros_like(q), -2.0 * scores / target * weights


class TaylorSoftmax(SphericalFamilyLoss):
    """Sum over targets t of -log P(t|h), P(t|h) = (1 + o_t + o_t^2/2) / (D + s + q/2): the
    second-order Taylor expansion of exp in place of it (de Brebisson & Vincent, ICLR
    2016). Every term of the normaliser is >= 1/2: no epsilon, and o and -o differ."""

    name = "taylor"
    kind = factored_kernel.TAYLOR
    #: Measured on the first 2M tokens of bench17m, skip-gram, 3 epochs (README): 0.025
    #: learns a third as fast; 0.2 and above drift away.
    default_lr = 0.05
    #: Measured on bench17m, skip-gram, 5 epochs (README, heads report): analogies 25.6% ->
    #: 28.2%, WS-353 0.577 -> 0.631.
    default_bias_feature = 1.0

    def log_distribution(self, xp, output):
        taylor = 1.0 + output + 0.5 * output * output
        return xp.log(taylor) - xp.log(taylor.sum(axis=1, keepdims=True))

    def derivatives(self, ops, q, s, scores, present, vocab_size):
        xp = ops.xp
        weights = present.astype(np.float64)
        count = weights.sum(axis=1)
        norm = vocab_size + s + 0.5 * q
        target = 1.0 + scores + 0.5 * scores * scores
        loss = (count * xp.log(norm)).sum() - (xp.log(target) * weights).sum()
        return loss, 0.5 * count / norm, count / norm, -(1.0 + scores) / target * weights


class ZLoss(SphericalFamilyLoss):
    """Sum over targets t of softplus(a (b - z_t)) / a, z_t = (o_t - mu) / sigma with
    mu = s / D and sigma^2 = q / D - mu^2: the output standardised, so the loss is
    invariant to shifting and scaling o (de Brebisson & Vincent, 2016)."""

    name = "zloss"
    kind = factored_kernel.ZLOSS
    #: z ignores the scale of h, so dL/dh ~ 1/|h| and SGD moves h's direction by about
    #: lr/|h|^2: from gensim's |h| = 0.06 the first updates throw each vector to a norm of
    #: tens along its first contexts, where it stays. sqrt(3) (w = 3/sqrt(d)) and the
    #: bias feature were measured best on bench17m (README, "The Z-loss's input scale").
    input_init_norm = math.sqrt(3.0)
    default_bias_feature = 1.0

    def __init__(self, sharpness: float, margin: float) -> None:
        self.sharpness = sharpness
        self.margin = margin
        self.constants = LossConstants(sharpness=float(sharpness), margin=float(margin))

    @classmethod
    def from_settings(cls, settings: Settings) -> ZLoss:
        return cls(settings.zloss_a, settings.zloss_b)

    def derivatives(self, ops, q, s, scores, present, vocab_size):
        xp = ops.xp
        weights = present.astype(np.float64)
        mean = s / vocab_size
        deviation = xp.sqrt(q / vocab_size - mean * mean)
        z = (scores - mean[:, None]) / deviation[:, None]
        argument = self.sharpness * (self.margin - z)
        loss = (xp.logaddexp(0.0, argument) * weights).sum() / self.sharpness
        pull = weights / (1.0 + xp.exp(-argument))  # -dL/dz_t, zero at padding
        pull_z = (pull * z).sum(axis=1)
        grad_q = pull_z / (2.0 * vocab_size * deviation * deviation)
        grad_s = (pull.sum(axis=1) - mean * pull_z / deviation) / (vocab_size * deviation)
        return loss, grad_q, grad_s, -pull / deviation[:, None]


class FullSoftmax:
    """Sum over targets t of -log softmax(o)_t: the O(D d) baseline."""

    name = "softmax"
    default_lr = 0.025
    default_bias_feature = 0.0
    input_init_norm = None

    @classmethod
    def from_settings(cls, settings: Settings) -> FullSoftmax:
        return cls()

    def log_distribution(self, xp: Any, output: Any) -> Any:
        return log_softmax(xp, output)

    def full_gradient(
        self, ops: Ops, output: Any, rows: Any, present: Any
    ) -> tuple[Any, Any, None]:
        example, slot = ops.xp.nonzero(present)
        loss, grad = softmax_loss(ops, output, example, rows[example, slot])
        return loss, grad, None


def _targets(ops: Ops, targets: Any) -> tuple[Any, Any]:
    """(present mask, row indices with padding replaced by 0)."""
    present = targets != PADDING
    return present, ops.xp.where(present, targets, 0).astype(np.int64)


class ExactHead(Head):
    """The exact full-vocabulary heads (``--head spherical|squared|taylor|zloss|softmax``): the loss
    and its form (factored or naive) come from the settings in :meth:`create`. Shared:
    the batch-size limit, and learning-rate caps counted and reported."""

    default_batch_size = 64
    max_batch_size = MAX_EXACT_BATCH
    batch_limit_reason = "its minibatch step holds m x m matrices"
    has_output_vectors = True
    takes_bias_feature = True

    @classmethod
    def create(
        cls,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> Head:
        loss = LOSSES[settings.head].from_settings(settings)
        return cls._form(settings)(loss, vocab, settings, ops, seed, parameters=parameters)

    @classmethod
    def default_lr(cls, settings: Settings) -> float:
        return LOSSES[settings.head].default_lr

    @classmethod
    def default_bias_feature(cls, settings: Settings) -> float:
        return LOSSES[settings.head].default_bias_feature

    @classmethod
    def default_init_norm(cls, settings: Settings) -> float:
        norm = LOSSES[settings.head].input_init_norm
        return super().default_init_norm(settings) if norm is None else norm

    @classmethod
    def width(cls, settings: Settings) -> int:
        """Columns of W: the hidden vector's, and one for the constant feature if any."""
        return settings.dim + (1 if cls.bias_feature(settings) else 0)

    @staticmethod
    def _form(settings: Settings) -> type[ExactHead]:
        """Naive for the full softmax and ``exact="naive"``, factored otherwise."""
        naive = settings.head == "softmax" or settings.exact == "naive"
        return NaiveHead if naive else FactoredHead

    @classmethod
    def has_dense_updates(cls, settings: Settings) -> bool:
        return cls._form(settings) is NaiveHead

    @classmethod
    def parameter_shapes(cls, vocab_size: int, settings: Settings) -> dict[str, tuple[int, ...]]:
        if cls is ExactHead:
            return cls._form(settings).parameter_shapes(vocab_size, settings)
        return super().parameter_shapes(vocab_size, settings)

    @classmethod
    def upgraded_parameters(
        cls, parameters: dict[str, np.ndarray], settings: Settings
    ) -> dict[str, np.ndarray]:
        if cls is ExactHead:
            return cls._form(settings).upgraded_parameters(parameters, settings)
        return super().upgraded_parameters(parameters, settings)

    def __init__(
        self,
        loss: SphericalFamilyLoss | FullSoftmax,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        dtype: Any = np.float32,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(vocab, settings, ops, seed)
        self.loss = loss
        self.name = loss.name
        self.capped_steps = 0
        self._reported_caps = 0
        self.feature = self.bias_feature(settings)
        if parameters is None:
            rng = np.random.default_rng(seed)
            shape = (self.vocab_size, self.width(settings))
            initial = rng.normal(0.0, OUTPUT_INIT_STD, shape)
            self._start(ops.asarray(initial, dtype=dtype))
        else:
            self._restore(parameters, dtype)

    def batch_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        """The step on the hidden vectors with the constant feature appended (if any); the
        feature's gradient is dropped (it is not a parameter)."""
        result = self._weight_step(self._with_feature(hidden), targets, lr)
        if not self.feature:
            return result
        grad_hidden = self.ops.xp.ascontiguousarray(result.grad_hidden[:, : self.dim])
        return replace(result, grad_hidden=grad_hidden)

    def _with_feature(self, hidden: Any) -> Any:
        """``hidden`` (m, d) with the column of ``bias_feature`` appended, if any."""
        if not self.feature:
            return hidden
        xp = self.ops.xp
        constant = xp.full((hidden.shape[0], 1), self.feature, dtype=hidden.dtype)
        return xp.concatenate([hidden, constant], axis=1)

    @abstractmethod
    def _weight_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        """One minibatch step on hidden vectors of W's width."""

    @abstractmethod
    def _weights(self) -> np.ndarray:
        """W (D, width) on the host, the bias column included."""

    def output_vectors(self) -> np.ndarray:
        """W's rows without the bias column: one d-dimensional vector per word."""
        return np.ascontiguousarray(self._weights()[:, : self.dim])

    @abstractmethod
    def _start(self, output: Any) -> None:
        """Take the initial output weights (N(0, OUTPUT_INIT_STD^2), never zero)."""

    @abstractmethod
    def _restore(self, parameters: dict[str, np.ndarray], dtype: Any) -> None:
        """Take the state :meth:`parameters` saved, exactly (a resumed run continues the
        same trajectory)."""

    def _cap(self, gram: Any, root_g: Any, lr: float) -> tuple[float, float]:
        """(rate to use, bound on the step's shrink lambda) for ``gram`` = H H^T and
        ``root_g`` = sqrt|dL/dq|, by :func:`factored_kernel.stable_rate` on host copies:
        they are m x m and m, and the rate is read on the host anyway."""
        host = self.ops.to_host
        used, shrink = stable_rate(host(gram), host(root_g), float(lr), STABILITY_CAP)
        self._count_cap(used, lr)
        return used, shrink

    def log_probabilities(self, hidden: Any) -> Any:
        """From o = W h in float64, for the losses that are distributions."""
        xp = self.ops.xp
        weights = self.ops.asarray(self._weights()).astype(np.float64)
        features = self._with_feature(hidden.astype(np.float64))
        return self.loss.log_distribution(xp, features @ weights.T)

    def _count_cap(self, used: float, lr: float) -> None:
        """Count a step whose rate the stability cap reduced, for :meth:`notices`."""
        self.capped_steps += used < lr

    def notices(self) -> list[str]:
        new = self.capped_steps - self._reported_caps
        self._reported_caps = self.capped_steps
        if not new:
            return []
        message = (
            f"{self.name}: learning rate reduced on {new:,} minibatches to keep "
            f"2*lr*lambda_max(H^T diag(dL/dq) H) <= {STABILITY_CAP} (stability of the exact update)"
        )
        return [message]


class NaiveHead(ExactHead):
    """The O(D d) reference: computes the whole output o = W h for every example; its
    weight update is a dense product, exact or Mem-AOP-GD (:class:`DenseUpdates`)."""

    def __init__(
        self,
        loss: SphericalFamilyLoss | FullSoftmax,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        dtype: Any = np.float32,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(loss, vocab, settings, ops, seed, dtype, parameters)
        self.updates = DenseUpdates(
            ops,
            settings,
            self.batch_size(settings),
            {"output": self.weights.shape},
            dtype,
            parameters,
        )

    @classmethod
    def parameter_shapes(cls, vocab_size: int, settings: Settings) -> dict[str, tuple[int, ...]]:
        shapes = {"output": (vocab_size, cls.width(settings))}
        return {**shapes, **DenseUpdates.state_shapes(settings, cls.batch_size(settings), shapes)}

    def reseed(self, seed: int) -> None:
        self.updates.reseed(seed)

    def epoch_summary(self) -> str:
        return self.updates.summary()

    def _start(self, output: Any) -> None:
        self.weights = output

    def _restore(self, parameters: dict[str, np.ndarray], dtype: Any) -> None:
        self._start(self.ops.asarray(parameters["output"], dtype=dtype))

    def _weight_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        """Three O(m D d) products; the update of W accumulates in place (BLAS beta = 1)."""
        ops = self.ops
        present, rows = _targets(ops, targets)
        h = hidden.astype(self.weights.dtype)
        output = ops.gemm(h, self.weights.T)
        loss, grad, grad_q = self.loss.full_gradient(ops, output, rows, present)
        grad_hidden = ops.gemm(grad, self.weights)
        if grad_q is not None:
            h64 = h.astype(np.float64)
            lr, shrink = self._cap(ops.gemm(h64, h64.T), ops.xp.sqrt(abs(grad_q)), lr)
            if not math.isfinite(shrink):  # diverged: W stays as it was
                return StepResult(
                    math.nan, int(present.sum()), grad_hidden.astype(hidden.dtype), lr
                )
        self.updates.apply("output", self.weights, h, grad, ops.xp.arange(h.shape[0]), lr)
        return StepResult(loss, int(present.sum()), grad_hidden.astype(hidden.dtype), lr)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"output": self.ops.to_host(self.weights), **self.updates.parameters()}

    def _weights(self) -> np.ndarray:
        return self.ops.to_host(self.weights)


class FactoredHead(ExactHead):
    """Spherical-family loss over the whole vocabulary in O(d^2 + K d) per example: the
    loss and the step here, V and the d x d matrices in :class:`FactoredState`."""

    @classmethod
    def parameter_shapes(cls, vocab_size: int, settings: Settings) -> dict[str, tuple[int, ...]]:
        """V, [Q; U; r^T; c^T; U^-T] and the upkeep counters: W alone would lose the
        factorisation (refolding it in float32 changes the trajectory)."""
        return FactoredState.shapes(vocab_size, cls.width(settings))

    @classmethod
    def upgraded_parameters(
        cls, parameters: dict[str, np.ndarray], settings: Settings
    ) -> dict[str, np.ndarray]:
        return FactoredState.upgraded(parameters)

    def _start(self, output: Any) -> None:
        self._state_from(FactoredState(self.ops, output))

    def _restore(self, parameters: dict[str, np.ndarray], dtype: Any) -> None:
        self._state_from(FactoredState.restore(self.ops, parameters, dtype))

    def _state_from(self, state: FactoredState) -> None:
        self.state = state
        # The step's form, decided once: compiled on host arrays, array form on others.
        self._step = self._compiled_step if self.ops.runs_compiled_kernels else self._array_step

    def _weight_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        result, shrink, signed = self._step(hidden, targets, lr)
        self.state.advance(shrink, signed)
        return result

    def _compiled_step(
        self, hidden: Any, targets: Any, lr: float
    ) -> tuple[StepResult, float, bool]:
        """The CPU path: the whole step in one compiled call (:mod:`factored_kernel`).
        Returns the result, the bound on the step's shrink of U and whether U may grow."""
        state = self.state
        workspace = state.workspace(hidden.shape[0])
        loss, pairs, grad_hidden, used, shrink, signed = factored_step(
            state.basis,
            state.matrices,
            np.ascontiguousarray(hidden, dtype=state.basis.dtype),
            np.ascontiguousarray(targets),
            float(lr),
            self.loss.kind,
            self.loss.constants,
            STABILITY_CAP,
            workspace,
            state.mirrored,
        )
        state.mirrored = True
        self._count_cap(used, lr)
        result = StepResult(
            np.float64(loss), pairs, grad_hidden.astype(hidden.dtype, copy=False), used
        )
        return result, shrink, bool(signed)

    def _array_step(self, hidden: Any, targets: Any, lr: float) -> tuple[StepResult, float, bool]:
        """The step written against ``xp``: the GPU path (and the compiled step's twin)."""
        xp = self.ops.xp
        state = self.state
        d = state.dim  # W's width
        compute = state.basis.dtype  # products in V's precision; the state accumulates in float64
        present, rows = _targets(self.ops, targets)
        h = hidden.astype(compute)
        m = h.shape[0]
        mix_at, shared_at, sum_at, inverse_at, _ = state_rows(d)
        matrices = state.matrices.T.astype(compute, copy=False)  # [Q | U^T | r | c | U^-1]
        products = h @ matrices
        projected = products[:, :mix_at]  # rows: (Q h_j)^T
        mixed = products[:, mix_at:shared_at]  # rows: (U h_j)^T
        shared = products[:, shared_at].astype(np.float64)  # r^T h_j
        s = products[:, sum_at].astype(np.float64)  # s_j = c^T h_j
        pulled = products[:, inverse_at:]  # rows: h_j^T U^-1
        q = (h * projected).sum(axis=1, dtype=np.float64)
        gathered = xp.take(state.basis, rows, axis=0)  # (m, K, d): V at the targets
        scores = xp.matmul(gathered, mixed[:, :, None])[:, :, 0].astype(np.float64)
        scores += shared[:, None]
        loss, grad_q, grad_s, grad_scores = self.loss.derivatives(
            self.ops, q, s, scores, present, self.vocab_size
        )
        target_total = grad_scores.sum(axis=1)  # y_j^T 1
        step_scores = grad_scores.astype(compute)
        target_sum = xp.matmul(step_scores[:, None, :], gathered)[:, 0, :]  # rows: (V^T y_j)^T
        sparse_part = (  # rows: (W^T y_j)^T
            target_sum @ matrices[:, mix_at:shared_at].T
            + target_total.astype(compute)[:, None] * matrices[:, shared_at]
        )
        step_q = grad_q.astype(compute)
        grad_hidden = (
            2.0 * step_q[:, None] * projected
            + sparse_part
            + grad_s.astype(compute)[:, None] * matrices[:, sum_at]
        )

        hh = h @ h.T
        root_g = xp.sqrt(abs(grad_q))
        lr, shrink = self._cap(hh, root_g, lr)
        signed = bool((grad_q < 0).any())
        if not math.isfinite(shrink):  # diverged: V and the state stay as they were
            pairs = int(present.sum())
            result = StepResult(math.nan, pairs, grad_hidden.astype(hidden.dtype), lr)
            return result, shrink, signed
        # W_new = W (I - S^T Sigma S) - lr 1 (H^T g_s)^T - lr Y H, S = diag(sqrt(2 lr |g|)) H,
        # Sigma = sign(g): U takes the first factor, r the first two, V the last.
        signs = xp.where(grad_q < 0, -1.0, 1.0)
        root = xp.sqrt(2.0 * lr) * root_g
        signed_root = (root * signs).astype(compute)
        woodbury = uses_woodbury(m, d)
        if woodbury:  # an m x m solve keeps U^-1 current
            inner = xp.eye(m) - hh * root[:, None] * (root * signs)[None, :]  # I - S S^T Sigma
            right_side = (root[:, None] * pulled).astype(compute)
            if signed:
                solved = xp.linalg.solve(inner, right_side).astype(compute)
            else:
                solved = self.ops.solve_spd(inner, right_side)
            back = pulled + (hh * signed_root[None, :]) @ solved  # h_j^T U_new^-1
            state.mix_inverse += (signed_root[:, None] * h).T @ solved
        state.shared_row -= h.T @ (lr * (2.0 * grad_q * shared + grad_s)).astype(compute)
        with_sum = 2.0 * grad_q * s + target_total  # E^T 1 - D g_s, per example
        state.column_sum -= h.T @ (lr * (with_sum + self.vocab_size * grad_s)).astype(compute)
        state.mix_t -= (2.0 * lr * step_q[:, None] * h).T @ mixed  # U <- U (I - S^T Sigma S)
        if not woodbury:  # inverting U directly is cheaper than the m x m system
            state.mix_inverse[...] = xp.linalg.inv(state.mix)
            back = h @ state.mix_inverse.astype(compute)

        example, slot = xp.nonzero(present)
        words = rows[example, slot]
        values = grad_scores[example, slot]
        self.ops.scatter_add_scaled(
            state.basis, words, (-lr * values).astype(compute), back, example
        )

        cross = h @ sparse_part.T  # [i, j] = o_i^T y_j
        outer = (
            4.0 * step_q[:, None] * (projected @ h.T) * step_q[None, :]
            + 2.0 * step_q[:, None] * cross
            + 2.0 * cross.T * step_q[None, :]
            + self.ops.sparse_gram(example, words, values, m).astype(compute)
            + (
                self.vocab_size * grad_s[:, None] * grad_s[None, :]
                + grad_s[:, None] * with_sum[None, :]
                + with_sum[:, None] * grad_s[None, :]
            ).astype(compute)
        )  # E^T E, E = dL/do for the batch (D x m), never formed; Y^T Y is the target overlap
        # Q <- Q - lr (G^T H + H^T G) + lr^2 H^T (E^T E) H, as one product.
        left = xp.concatenate([h, -lr * grad_hidden], axis=0)
        right = xp.concatenate([lr * lr * (outer @ h) - lr * grad_hidden, h], axis=0)
        state.gram += left.T @ right
        pairs = int(example.shape[0])
        return StepResult(loss, pairs, grad_hidden.astype(hidden.dtype), lr), shrink, signed

    def check_finite(self) -> bool:
        return self.state.check_finite()

    def parameters(self) -> dict[str, np.ndarray]:
        return self.state.saved()

    def _weights(self) -> np.ndarray:
        return self.ops.to_host(self.state.weights())


#: The loss of each exact head, from the settings.
LOSSES: dict[str, type[SphericalFamilyLoss | FullSoftmax]] = {
    "spherical": SphericalSoftmax,
    "squared": SquaredError,
    "taylor": TaylorSoftmax,
    "zloss": ZLoss,
    "softmax": FullSoftmax,
}
