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
from abc import abstractmethod
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from embedtrain.heads.aop import DenseUpdates
from embedtrain.heads.base import PADDING, Head, StepResult
from embedtrain.heads.factored_kernel import factored_step, stable_rate, state_rows, uses_woodbury
from embedtrain.heads.factored_state import FactoredState
from embedtrain.heads.losses import ExactLoss

if TYPE_CHECKING:
    from embedtrain.backend import Ops
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


def _targets(ops: Ops, targets: Any) -> tuple[Any, Any]:
    """(present mask, row indices with padding replaced by 0)."""
    present = targets != PADDING
    return present, ops.xp.where(present, targets, 0).astype(np.int64)


class ExactHead(Head):
    """The exact full-vocabulary heads (one per loss of :mod:`embedtrain.heads.losses`),
    in one of two forms (:class:`NaiveHead`, :class:`FactoredHead`), each bound to its loss
    by :func:`exact_head`. Shared: the batch-size limit, the constant input feature, and
    learning-rate caps counted and reported."""

    default_batch_size = 64
    max_batch_size = MAX_EXACT_BATCH
    batch_limit_reason = "its minibatch step holds m x m matrices"
    has_output_vectors = True
    takes_bias_feature = True
    #: The loss, on the classes :func:`exact_head` binds.
    loss_type: ClassVar[type[ExactLoss]]

    @classmethod
    def create(
        cls,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> Head:
        loss = cls.loss_type.from_settings(settings)
        return cls(loss, vocab, settings, ops, seed, parameters=parameters)

    @classmethod
    def with_defaults(cls, settings: Settings) -> Settings:
        """The loss's input scale and constant feature (its rate is the class's default_lr)."""
        loss = cls.loss_type
        changes: dict[str, Any] = {}
        if settings.init_norm is None and loss.input_init_norm is not None:
            changes["init_norm"] = loss.input_init_norm
        if settings.bias_feature is None:
            changes["bias_feature"] = loss.default_bias_feature
        return super().with_defaults(replace(settings, **changes))

    @classmethod
    def width(cls, settings: Settings) -> int:
        """Columns of W: the hidden vector's, and one for the constant feature if any."""
        return settings.dim + (1 if settings.bias_feature else 0)

    def __init__(
        self,
        loss: ExactLoss,
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
        self.feature = settings.bias_feature or 0.0
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
        loss: ExactLoss,
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
    def has_dense_updates(cls, settings: Settings) -> bool:
        return True

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
            xp, q, s, scores, present, self.vocab_size
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


@cache
def exact_head(loss_type: type[ExactLoss], form: str) -> type[ExactHead]:
    """The head class of ``loss_type`` in ``form`` (``factored`` or ``naive``; a loss
    without a factored form is always naive)."""
    base = FactoredHead if form == "factored" and loss_type.factored else NaiveHead
    name = f"{base.__name__}[{loss_type.name}]"
    attributes = {
        "loss_type": loss_type,
        "name": loss_type.name,
        "default_lr": loss_type.default_lr,
    }
    return type(name, (base,), attributes)
