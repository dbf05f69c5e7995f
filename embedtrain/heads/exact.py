"""Exact full-vocabulary heads: spherical softmax and squared error in O(d^2) per example
with the factored update of Vincent, de Brebisson & Bouthillier (NIPS 2015), their naive
O(D d) references, and the ordinary full softmax.

Both losses depend on the D-dimensional output o = W h only through q = |o|^2 and the
outputs at the targets, so with W = V U, Q = W^T W and U^-1 kept current, one exact
minibatch SGD step never forms o (notation of ``shared/papers/BRIEF.md`` section 1):

- forward: q = h^T Q h, o_t = V_t (U h);
- W_new = W (I - S^T S) - lr Y H with S = sqrt(2 lr dL/dq) H, applied as
  U <- U (I - S^T S), U^-1 <- (I - S^T S)^-1 U^-1 (Woodbury, an m x m solve) and
  V_t <- V_t - lr a_t h^T U_new^-1 on the target rows only;
- Q_new = Q - lr (G^T H + H^T G) + lr^2 H^T (E^T E) H, with G the hidden gradients and
  E^T E (m x m) assembled from H Q H^T, H Z^T and the target overlap Y^T Y.

Skip-gram feeds all context words of a centre word as one K-sparse target; the loss of
an example is the sum of its per-pair losses, which stays in the family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from embedtrain.backend import Ops
from embedtrain.heads.base import PADDING, Head, StepResult
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

#: The multiplicative factor I - S^T S keeps every eigenvalue >= 1 - STABILITY_CAP:
#: a step with 2 lr lambda_max(H^T diag(dL/dq) H) above the cap gets a smaller rate.
STABILITY_CAP = 0.5
OUTPUT_INIT_STD = 0.01  # never zero: spherical softmax has a zero gradient at o = 0
REINVERT_PERIOD = 50  # steps between exact re-inversions of U (Woodbury updates drift)
REFOLD_PERIOD = 2000  # steps between unconditional refolds (recomputes Q exactly from V)
#: Refold when the running upper bound on cond(U) passes this. Every step multiplies U by
#: I - S^T S, whose eigenvalues lie in [1 - lambda, 1], so cond(U) grows at most by
#: 1 / (1 - lambda) per step: a bound that costs nothing to keep.
CONDITION_LIMIT = 100.0
REFOLD_CHUNK = 16_384  # rows of V per block while refolding (bounds the float64 temporaries)


class SphericalFamilyLoss(ABC):
    """A loss L_j = F(q_j, o_j[targets]) per example, summed over the batch."""

    name: str

    @abstractmethod
    def derivatives(
        self, ops: Ops, q: Any, scores: Any, present: Any, vocab_size: int
    ) -> tuple[Any, Any, Any]:
        """(summed loss, dL/dq (m,), dL/dscores (m, K), zero at padding)."""

    def full_gradient(self, ops: Ops, output: Any, rows: Any, present: Any) -> tuple[Any, Any, Any]:
        """Naive form from the explicit output (m, D): (loss, dL/doutput, dL/dq)."""
        xp = ops.xp
        q = (output * output).sum(axis=1, dtype=np.float64)
        scores = xp.take_along_axis(output, rows, axis=1).astype(np.float64)
        loss, grad_q, grad_scores = self.derivatives(ops, q, scores, present, output.shape[1])
        grad = (2.0 * grad_q[:, None]).astype(output.dtype) * output
        example, slot = xp.nonzero(present)
        ops.scatter_add(
            grad, (example, rows[example, slot]), grad_scores[example, slot].astype(output.dtype)
        )
        return loss, grad, grad_q


class SquaredError(SphericalFamilyLoss):
    """Sum over targets t of |o - e_t|^2 = K q - 2 sum_t o_t + K."""

    name = "squared"

    def derivatives(self, ops, q, scores, present, vocab_size):
        weights = present.astype(np.float64)
        count = weights.sum(axis=1)
        loss = (count * q - 2.0 * (scores * weights).sum(axis=1) + count).sum()
        return loss, count, -2.0 * weights


class SphericalSoftmax(SphericalFamilyLoss):
    """Sum over targets t of -log P(t|h), P(t|h) = (o_t^2 + eps) / (q + D eps)."""

    name = "spherical"

    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon

    def derivatives(self, ops, q, scores, present, vocab_size):
        xp = ops.xp
        weights = present.astype(np.float64)
        count = weights.sum(axis=1)
        norm = q + vocab_size * self.epsilon
        target = scores * scores + self.epsilon
        loss = (count * xp.log(norm)).sum() - (xp.log(target) * weights).sum()
        return loss, count / norm, -2.0 * scores / target * weights


class FullSoftmax:
    """Sum over targets t of -log softmax(o)_t: the O(D d) baseline."""

    name = "softmax"

    def full_gradient(
        self, ops: Ops, output: Any, rows: Any, present: Any
    ) -> tuple[Any, Any, None]:
        xp = ops.xp
        weights = present.astype(output.dtype)
        count = weights.sum(axis=1)
        peak = output.max(axis=1, keepdims=True)
        exp = xp.exp(output - peak)
        total = exp.sum(axis=1, keepdims=True)
        log_norm = (xp.log(total) + peak)[:, 0]
        scores = xp.take_along_axis(output, rows, axis=1)
        loss = (count.astype(np.float64) * log_norm).sum() - (scores * weights).sum(
            dtype=np.float64
        )
        grad = exp * (count[:, None] / total)
        example, slot = xp.nonzero(present)
        ops.scatter_add(grad, (example, rows[example, slot]), -weights[example, slot])
        return loss, grad, None


def stable_learning_rate(ops: Ops, hidden: Any, grad_q: Any, lr: float) -> tuple[float, float]:
    """The largest rate <= ``lr`` with 2 lr lambda_max(H^T diag(dL/dq) H) <= STABILITY_CAP,
    and an upper bound on that lambda (the shrink of the step) at the returned rate.

    The trace is a cheap upper bound; the exact m x m eigenvalue is computed only when
    the bound is exceeded.
    """
    xp = ops.xp
    scale = 2.0 * grad_q
    trace = float((scale * (hidden * hidden).sum(axis=1)).sum())
    if trace * lr <= STABILITY_CAP:
        return lr, trace * lr
    scaled = xp.sqrt(scale)[:, None] * hidden
    largest = float(xp.linalg.eigvalsh(scaled @ scaled.T)[-1])
    if largest * lr <= STABILITY_CAP:
        return lr, largest * lr
    return STABILITY_CAP / largest, STABILITY_CAP


def _targets(ops: Ops, targets: Any) -> tuple[Any, Any]:
    """(present mask, row indices with padding replaced by 0)."""
    present = targets != PADDING
    return present, ops.xp.where(present, targets, 0).astype(np.int64)


class _ExactHead(Head):
    """Shared by the exact heads: learning-rate caps are counted and reported."""

    default_batch_size = 64

    def __init__(self, vocab: Vocabulary, settings: Settings, ops: Ops, seed: int) -> None:
        super().__init__(vocab, settings, ops, seed)
        self.capped_steps = 0
        self._reported_caps = 0

    def _cap(self, hidden: Any, grad_q: Any, lr: float) -> tuple[float, float]:
        """(rate to use, bound on the step's shrink lambda); no cap without dL/dq."""
        if grad_q is None:
            return lr, 0.0
        used, shrink = stable_learning_rate(self.ops, hidden, grad_q, lr)
        self.capped_steps += used < lr
        return used, shrink

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


class NaiveHead(_ExactHead):
    """The O(D d) reference: computes the whole output o = W h for every example."""

    def __init__(
        self,
        loss,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(vocab, settings, ops, seed)
        self.loss = loss
        self.name = loss.name
        rng = np.random.default_rng(seed)
        weights = rng.normal(0.0, OUTPUT_INIT_STD, (len(vocab), settings.dim)).astype(dtype)
        self.weights = ops.asarray(weights)
        self._update = ops.xp.empty_like(self.weights)

    def batch_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        xp = self.ops.xp
        present, rows = _targets(self.ops, targets)
        h = hidden.astype(self.weights.dtype)
        output = h @ self.weights.T
        loss, grad, grad_q = self.loss.full_gradient(self.ops, output, rows, present)
        grad_hidden = grad @ self.weights
        lr, _ = self._cap(h.astype(np.float64), grad_q, lr)
        xp.matmul(grad.T, h, out=self._update)
        self._update *= -lr
        self.weights += self._update
        return StepResult(loss, int(present.sum()), grad_hidden.astype(hidden.dtype), lr)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"output": self.ops.to_host(self.weights)}

    def load_parameters(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights = self.ops.asarray(arrays["output"], dtype=self.weights.dtype)
        self._update = self.ops.xp.empty_like(self.weights)

    def output_vectors(self) -> np.ndarray:
        return self.ops.to_host(self.weights)


class FactoredHead(_ExactHead):
    """Spherical-family loss over the whole vocabulary in O(d^2 + K d) per example.

    V (D x d) is stored in ``dtype`` (float32 by default); U, U^-1 and Q in float64.
    """

    def __init__(
        self,
        loss: SphericalFamilyLoss,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(vocab, settings, ops, seed)
        self.loss = loss
        self.name = loss.name
        rng = np.random.default_rng(seed)
        basis = rng.normal(0.0, OUTPUT_INIT_STD, (len(vocab), settings.dim)).astype(dtype)
        self.basis = ops.asarray(basis)
        self.steps = 0
        self.refolds = 0
        self._reset_factors()

    def _reset_factors(self) -> None:
        """U = I and Q recomputed exactly from V (after a refold or a load)."""
        xp = self.ops.xp
        self.mix = xp.eye(self.dim, dtype=np.float64)
        self.mix_inverse = xp.eye(self.dim, dtype=np.float64)
        self.condition_bound = 1.0
        self.gram = xp.zeros((self.dim, self.dim), dtype=np.float64)
        for start in range(0, self.basis.shape[0], REFOLD_CHUNK):
            block = self.basis[start : start + REFOLD_CHUNK].astype(np.float64)
            self.gram += block.T @ block

    def refold(self) -> None:
        """V <- V U, U <- I: W unchanged, U perfectly conditioned, Q drift removed."""
        for start in range(0, self.basis.shape[0], REFOLD_CHUNK):
            block = self.basis[start : start + REFOLD_CHUNK].astype(np.float64) @ self.mix
            self.basis[start : start + REFOLD_CHUNK] = block.astype(self.basis.dtype)
        self.refolds += 1
        self._reset_factors()

    def batch_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        xp = self.ops.xp
        present, rows = _targets(self.ops, targets)
        h = hidden.astype(np.float64)
        m = h.shape[0]
        projected = h @ self.gram  # rows: (Q h_j)^T
        q = (h * projected).sum(axis=1)
        mixed = h @ self.mix.T  # rows: (U h_j)^T
        gathered = self.basis[rows].astype(np.float64)  # (m, K, d): V at the targets
        scores = xp.matmul(gathered, mixed[:, :, None])[:, :, 0]
        loss, grad_q, grad_scores = self.loss.derivatives(
            self.ops, q, scores, present, self.vocab_size
        )
        target_sum = xp.matmul(grad_scores[:, None, :], gathered)[:, 0, :]  # rows: (V^T y_j)^T
        sparse_part = target_sum @ self.mix  # rows: (W^T y_j)^T = (U^T V^T y_j)^T
        grad_hidden = 2.0 * grad_q[:, None] * projected + sparse_part

        lr, shrink_bound = self._cap(h, grad_q, lr)
        self.condition_bound /= 1.0 - shrink_bound
        scale = 2.0 * lr * grad_q
        shrink = xp.sqrt(scale)[:, None] * h  # S: W_new = W (I - S^T S) - lr Y H
        inner = xp.eye(m) - shrink @ shrink.T
        self.mix = self.mix - mixed.T @ (scale[:, None] * h)
        self.mix_inverse = self.mix_inverse + shrink.T @ xp.linalg.solve(
            inner, shrink @ self.mix_inverse
        )

        back = h @ self.mix_inverse  # rows: h_j^T U_new^-1
        example, slot = xp.nonzero(present)
        updates = (-lr * grad_scores[example, slot])[:, None] * back[example]
        self.ops.scatter_add(self.basis, rows[example, slot], updates.astype(self.basis.dtype))

        overlap = self._target_overlap(example, rows[example, slot], grad_scores[example, slot], m)
        cross = h @ sparse_part.T  # [i, j] = o_i^T y_j
        outer = (
            4.0 * grad_q[:, None] * (projected @ h.T) * grad_q[None, :]
            + 2.0 * grad_q[:, None] * cross
            + 2.0 * cross.T * grad_q[None, :]
            + overlap
        )  # E^T E, E = dL/do for the batch (D x m), never formed
        mixed_grad = grad_hidden.T @ h
        gram = self.gram - lr * (mixed_grad + mixed_grad.T) + lr * lr * (h.T @ (outer @ h))
        self.gram = 0.5 * (gram + gram.T)
        self.steps += 1
        self._maintain()
        return StepResult(loss, int(example.shape[0]), grad_hidden.astype(hidden.dtype), lr)

    def _target_overlap(self, example: Any, words: Any, values: Any, m: int) -> Any:
        """Y^T Y (m x m) for the sparse targets, repeated words accumulated."""
        xp = self.ops.xp
        unique, column = xp.unique(words, return_inverse=True)
        dense = xp.zeros((m, unique.shape[0]), dtype=np.float64)
        self.ops.scatter_add(dense, (example, column.reshape(-1)), values)
        return dense @ dense.T

    def _maintain(self) -> None:
        if self.condition_bound > CONDITION_LIMIT or self.steps % REFOLD_PERIOD == 0:
            self.refold()
        elif self.steps % REINVERT_PERIOD == 0:
            self.mix_inverse = self.ops.xp.linalg.inv(self.mix)
            singular = self.ops.xp.linalg.svd(self.mix, compute_uv=False)
            self.condition_bound = float(singular[0] / singular[-1])

    def weights(self) -> Any:
        """W = V U on the backend (O(D d^2): for export and checks, not for training)."""
        return (self.basis.astype(np.float64) @ self.mix).astype(self.basis.dtype)

    def consistency(self) -> dict[str, float]:
        """Invariants of the factored state: relative |Q - W^T W| and |U U^-1 - I|."""
        xp = self.ops.xp
        w = self.basis.astype(np.float64) @ self.mix
        exact = w.T @ w
        gram_error = float(
            xp.abs(self.gram - exact).max() / max(float(xp.abs(exact).max()), 1e-300)
        )
        inverse_error = float(xp.abs(self.mix @ self.mix_inverse - xp.eye(self.dim)).max())
        return {
            "gram": gram_error,
            "inverse": inverse_error,
            "condition": float(xp.linalg.cond(self.mix)),
        }

    def parameters(self) -> dict[str, np.ndarray]:
        return {"output": self.ops.to_host(self.weights())}

    def load_parameters(self, arrays: dict[str, np.ndarray]) -> None:
        self.basis = self.ops.asarray(arrays["output"], dtype=self.basis.dtype)
        self._reset_factors()

    def output_vectors(self) -> np.ndarray:
        return self.ops.to_host(self.weights())


def spherical_head(vocab: Vocabulary, settings: Settings, ops: Ops, seed: int) -> Head:
    """``--head spherical``: factored, or naive with ``--exact naive``."""
    kind = FactoredHead if settings.exact == "factored" else NaiveHead
    return kind(SphericalSoftmax(settings.epsilon), vocab, settings, ops, seed)


def squared_head(vocab: Vocabulary, settings: Settings, ops: Ops, seed: int) -> Head:
    """``--head squared``: factored, or naive with ``--exact naive``."""
    kind = FactoredHead if settings.exact == "factored" else NaiveHead
    return kind(SquaredError(), vocab, settings, ops, seed)


def softmax_head(vocab: Vocabulary, settings: Settings, ops: Ops, seed: int) -> Head:
    """``--head softmax``: the ordinary full softmax, O(D d) per example."""
    return NaiveHead(FullSoftmax(), vocab, settings, ops, seed)
