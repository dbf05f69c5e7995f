"""Exact full-vocabulary heads: spherical softmax and squared error in O(d^2) per example
with the factored update of Vincent, de Brebisson & Bouthillier (NIPS 2015), their naive
O(D d) references, and the ordinary full softmax.

Both losses depend on the D-dimensional output o = W h only through q = |o|^2 and the
outputs at the targets, so with W = V U, Q = W^T W and U^-1 kept current, one exact
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
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from embedtrain.backend import Ops
from embedtrain.heads import factored_kernel
from embedtrain.heads.base import PADDING, Head, StepResult
from embedtrain.heads.factored_kernel import factored_step, refresh_inverse, workspace_size
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
REINVERT_PERIOD = 100  # steps between exact re-inversions of U (Woodbury updates drift)
REFOLD_PERIOD = 5000  # steps between unconditional refolds (recomputes Q from V: no drift)
#: Refold when the running upper bound on cond(U) passes this. Every step multiplies U by
#: I - S^T S, whose eigenvalues lie in [1 - lambda, 1], so cond(U) grows at most by
#: 1 / (1 - lambda) per step: a bound that costs nothing to keep.
CONDITION_LIMIT = 100.0
POWER_ITERATIONS = 20  # per norm in the cond(U) estimate
REFOLD_CHUNK = 16_384  # rows of V per block while refolding (bounds the float64 temporaries)


class SphericalFamilyLoss(ABC):
    """A loss L_j = F(q_j, o_j[targets]) per example, summed over the batch."""

    name: str
    kind: int  # the loss as the compiled step knows it (factored_kernel.SQUARED, ...)
    epsilon: float = 0.0

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
    kind = factored_kernel.SQUARED

    def derivatives(self, ops, q, scores, present, vocab_size):
        weights = present.astype(np.float64)
        count = weights.sum(axis=1)
        loss = (count * q - 2.0 * (scores * weights).sum(axis=1) + count).sum()
        return loss, count, -2.0 * weights


class SphericalSoftmax(SphericalFamilyLoss):
    """Sum over targets t of -log P(t|h), P(t|h) = (o_t^2 + eps) / (q + D eps)."""

    name = "spherical"
    kind = factored_kernel.SPHERICAL

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


def stable_learning_rate(ops: Ops, weighted_gram: Any, lr: float) -> tuple[float, float]:
    """The largest rate <= ``lr`` with 2 lr lambda_max(H^T diag(dL/dq) H) <= STABILITY_CAP,
    and an upper bound on that lambda (the shrink of the step) at the returned rate.

    ``weighted_gram`` is the m x m matrix (sqrt(g) h)(sqrt(g) h)^T, g = dL/dq, which has the
    same non-zero eigenvalues. Gershgorin's bound (the largest absolute row sum) is cheap and
    tight for nearly orthogonal rows; the exact eigenvalue is computed only when it is exceeded.
    A non-finite bound (a diverged run) comes back as an infinite shrink: the step then
    updates nothing and returns a non-finite loss, which stops training with a message.
    """
    xp = ops.xp
    bound = float(xp.abs(weighted_gram).sum(axis=1).max())
    if not math.isfinite(bound):  # diverged: no eigenvalue solver on non-finite input
        return lr, math.inf
    if 2.0 * lr * bound <= STABILITY_CAP:
        return lr, 2.0 * lr * bound
    largest = float(xp.linalg.eigvalsh(weighted_gram)[-1])
    if 2.0 * lr * largest <= STABILITY_CAP:
        return lr, 2.0 * lr * largest
    return STABILITY_CAP / (2.0 * largest), STABILITY_CAP


def weighted_gram(ops: Ops, hidden: Any, grad_q: Any) -> Any:
    """(sqrt(g) h)(sqrt(g) h)^T for the stability check, g = dL/dq."""
    weighted = hidden * grad_q[:, None] ** 0.5
    return ops.gemm(weighted, weighted.T)


def _targets(ops: Ops, targets: Any) -> tuple[Any, Any]:
    """(present mask, row indices with padding replaced by 0)."""
    present = targets != PADDING
    return present, ops.xp.where(present, targets, 0).astype(np.int64)


class ExactHead(Head):
    """The exact full-vocabulary heads (``--head spherical|squared|softmax``): the loss
    and its form (factored or naive) come from the settings in :meth:`create`. Shared:
    the batch-size limit, and learning-rate caps counted and reported."""

    default_batch_size = 64
    max_batch_size = MAX_EXACT_BATCH
    batch_limit_reason = "its minibatch step holds m x m matrices"
    has_output_vectors = True

    @classmethod
    def create(
        cls,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        seed: int,
        parameters: dict[str, np.ndarray] | None = None,
    ) -> Head:
        loss = LOSSES[settings.head](settings)
        form = (
            NaiveHead if settings.head == "softmax" or settings.exact == "naive" else FactoredHead
        )
        return form(loss, vocab, settings, ops, seed, parameters=parameters)

    def __init__(
        self,
        loss,
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
        if parameters is None:
            rng = np.random.default_rng(seed)
            initial = rng.normal(0.0, OUTPUT_INIT_STD, (self.vocab_size, self.dim))
        else:
            initial = parameters["output"]
        self._start(ops.asarray(initial, dtype=dtype))

    @abstractmethod
    def _start(self, output: Any) -> None:
        """Take the initial output weights (N(0, OUTPUT_INIT_STD^2), never zero)."""

    def _cap(self, gram: Any, lr: float) -> tuple[float, float]:
        """(rate to use, bound on the step's shrink lambda) from :func:`weighted_gram`."""
        used, shrink = stable_learning_rate(self.ops, gram, lr)
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


class NaiveHead(ExactHead):
    """The O(D d) reference: computes the whole output o = W h for every example."""

    def _start(self, output: Any) -> None:
        self.weights = output

    def batch_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        """Three O(m D d) products; the update of W accumulates in place (BLAS beta = 1)."""
        ops = self.ops
        present, rows = _targets(ops, targets)
        h = hidden.astype(self.weights.dtype)
        output = ops.gemm(h, self.weights.T)
        loss, grad, grad_q = self.loss.full_gradient(ops, output, rows, present)
        grad_hidden = ops.gemm(grad, self.weights)
        if grad_q is not None:
            lr, shrink = self._cap(weighted_gram(ops, h.astype(np.float64), grad_q), lr)
            if not math.isfinite(shrink):  # diverged: W stays as it was
                return StepResult(
                    math.nan, int(present.sum()), grad_hidden.astype(hidden.dtype), lr
                )
        ops.gemm(grad.T, h, out=self.weights, alpha=-lr)
        return StepResult(loss, int(present.sum()), grad_hidden.astype(hidden.dtype), lr)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"output": self.ops.to_host(self.weights)}

    def output_vectors(self) -> np.ndarray:
        return self.ops.to_host(self.weights)


class FactoredHead(ExactHead):
    """Spherical-family loss over the whole vocabulary in O(d^2 + K d) per example.

    V (D x d) is stored in ``dtype`` (float32 by default). The d x d state lives in one
    float64 array [Q; U; U^-T] (3d x d), so the three products with the batch's hidden
    vectors are a single matrix product with its transpose, and U is contiguous.
    """

    def _start(self, output: Any) -> None:
        self.basis = output
        d = self.dim
        self.state = self.ops.xp.zeros((3 * d, d), dtype=np.float64)
        self.gram = self.state[:d]  # Q = W^T W
        self.mix_t = self.state[d : 2 * d].T  # U^T (a view: the state holds U)
        self.mix_inverse = self.state[2 * d :].T  # U^-1 (a view: the state holds U^-T)
        self.steps = 0
        self.refolds = 0
        self._workspace = np.empty(0, dtype=output.dtype)  # scratch of the compiled step
        # The step's form, decided once: compiled on host arrays, array form on others.
        compiled = self.ops.runs_compiled_kernels
        self._step = self._compiled_step if compiled else self._array_step
        self._refresh_inverse = (
            self._compiled_refresh_inverse if compiled else self._array_refresh_inverse
        )
        self._reset_factors()

    @property
    def mix(self) -> Any:
        """U (a view)."""
        return self.mix_t.T

    def _reset_factors(self, recompute_gram: bool = True) -> None:
        """U = I, and Q recomputed exactly from V (after a load, or a refold that should
        also remove the drift of Q's float32-product updates)."""
        xp = self.ops.xp
        self._mirrored = False
        identity = xp.eye(self.dim, dtype=np.float64)
        self.mix_t[...] = identity
        self.mix_inverse[...] = identity
        self.condition_bound = 1.0
        if not recompute_gram:
            return
        self.gram[...] = 0.0
        for start in range(0, self.basis.shape[0], REFOLD_CHUNK):
            block = self.basis[start : start + REFOLD_CHUNK]
            self.gram += self.ops.gemm(block.T, block)  # V's precision, summed in float64

    def refold(self, recompute_gram: bool = True) -> None:
        """V <- V U, U <- I: W unchanged, so Q = W^T W too; U perfectly conditioned.
        Recomputing Q from V as well (the same cost again) removes its drift."""
        mix = self.mix.astype(self.basis.dtype)
        for start in range(0, self.basis.shape[0], REFOLD_CHUNK):
            self.basis[start : start + REFOLD_CHUNK] = self.ops.gemm(
                self.basis[start : start + REFOLD_CHUNK], mix
            )
        self.refolds += 1
        self._reset_factors(recompute_gram)

    def batch_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        result = self._step(hidden, targets, lr)
        self.steps += 1
        self._maintain()
        return result

    def _compiled_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        """The CPU path: the whole step in one compiled call (:mod:`factored_kernel`)."""
        needed = workspace_size(hidden.shape[0], self.dim)
        if self._workspace.shape[0] < needed:
            self._workspace = np.empty(needed, dtype=self.basis.dtype)
            self._mirrored = False
        loss, pairs, grad_hidden, used, shrink = factored_step(
            self.basis,
            self.state,
            np.ascontiguousarray(hidden, dtype=self.basis.dtype),
            np.ascontiguousarray(targets),
            float(lr),
            self.loss.kind,
            self.loss.epsilon,
            STABILITY_CAP,
            self._workspace,
            self._mirrored,
        )
        self._mirrored = True
        self.capped_steps += used < lr
        self.condition_bound /= 1.0 - shrink
        return StepResult(
            np.float64(loss), pairs, grad_hidden.astype(hidden.dtype, copy=False), used
        )

    def _array_step(self, hidden: Any, targets: Any, lr: float) -> StepResult:
        """The step written against ``xp``: the GPU path (and the compiled step's twin)."""
        xp = self.ops.xp
        d = self.dim
        compute = self.basis.dtype  # products in V's precision; the state accumulates in float64
        present, rows = _targets(self.ops, targets)
        h = hidden.astype(compute)
        m = h.shape[0]
        state = self.state.T.astype(compute, copy=False)  # [Q | U^T | U^-1]
        products = h @ state
        projected = products[:, :d]  # rows: (Q h_j)^T
        mixed = products[:, d : 2 * d]  # rows: (U h_j)^T
        pulled = products[:, 2 * d :]  # rows: h_j^T U^-1
        q = (h * projected).sum(axis=1, dtype=np.float64)
        gathered = xp.take(self.basis, rows, axis=0)  # (m, K, d): V at the targets
        scores = xp.matmul(gathered, mixed[:, :, None])[:, :, 0].astype(np.float64)
        loss, grad_q, grad_scores = self.loss.derivatives(
            self.ops, q, scores, present, self.vocab_size
        )
        step_scores = grad_scores.astype(compute)
        target_sum = xp.matmul(step_scores[:, None, :], gathered)[:, 0, :]  # rows: (V^T y_j)^T
        sparse_part = target_sum @ state[:, d : 2 * d].T  # rows: (W^T y_j)^T
        step_q = grad_q.astype(compute)
        grad_hidden = 2.0 * step_q[:, None] * projected + sparse_part

        hh = h @ h.T
        root_g = xp.sqrt(grad_q)
        lr, shrink_bound = self._cap(hh * root_g[:, None] * root_g[None, :], lr)
        if not math.isfinite(shrink_bound):  # diverged: V and the state stay as they were
            return StepResult(math.nan, int(present.sum()), grad_hidden.astype(hidden.dtype), lr)
        self.condition_bound /= 1.0 - shrink_bound
        # W_new = W (I - S^T S) - lr Y H with S = diag(sqrt(2 lr g)) H.
        root = xp.sqrt(2.0 * lr) * root_g
        if m <= d:  # Woodbury: an m x m solve keeps U^-1 current
            inner = xp.eye(m) - hh * root[:, None] * root[None, :]  # I - S S^T
            solved = self.ops.solve_spd(inner, (root[:, None] * pulled).astype(compute))
            back = pulled + (hh * root.astype(compute)[None, :]) @ solved  # h_j^T U_new^-1
            self.mix_inverse += (root.astype(compute)[:, None] * h).T @ solved
        self.mix_t -= (2.0 * lr * step_q[:, None] * h).T @ mixed  # U <- U (I - S^T S)
        if m > d:  # inverting U directly is cheaper than the m x m system
            self.mix_inverse[...] = xp.linalg.inv(self.mix)
            back = h @ self.mix_inverse.astype(compute)

        example, slot = xp.nonzero(present)
        words = rows[example, slot]
        values = grad_scores[example, slot]
        self.ops.scatter_add_scaled(
            self.basis, words, (-lr * values).astype(compute), back, example
        )

        cross = h @ sparse_part.T  # [i, j] = o_i^T y_j
        outer = (
            4.0 * step_q[:, None] * (projected @ h.T) * step_q[None, :]
            + 2.0 * step_q[:, None] * cross
            + 2.0 * cross.T * step_q[None, :]
            + self.ops.sparse_gram(example, words, values, m).astype(compute)
        )  # E^T E, E = dL/do for the batch (D x m), never formed; Y^T Y is the target overlap
        # Q <- Q - lr (G^T H + H^T G) + lr^2 H^T (E^T E) H, as one product.
        left = xp.concatenate([h, -lr * grad_hidden], axis=0)
        right = xp.concatenate([lr * lr * (outer @ h) - lr * grad_hidden, h], axis=0)
        self.gram += left.T @ right
        return StepResult(loss, int(example.shape[0]), grad_hidden.astype(hidden.dtype), lr)

    def _maintain(self) -> None:
        """Re-invert U periodically; refold when U is ill-conditioned or on schedule. The
        running bound is loose, so passing the limit first triggers a real estimate."""
        if self.steps % REFOLD_PERIOD == 0:
            self.refold()
        elif self.condition_bound > CONDITION_LIMIT or self.steps % REINVERT_PERIOD == 0:
            self._mirrored = False
            self.condition_bound = self._refresh_inverse()
            if self.condition_bound > CONDITION_LIMIT:  # Q's drift waits for the scheduled one
                self.refold(recompute_gram=False)

    def _compiled_refresh_inverse(self) -> float:
        return refresh_inverse(self.state, POWER_ITERATIONS)

    def _array_refresh_inverse(self) -> float:
        """:func:`factored_kernel.refresh_inverse` written against ``xp``."""
        xp = self.ops.xp
        self.mix_inverse[...] = xp.linalg.inv(self.mix)
        self.gram[...] = 0.5 * (self.gram + self.gram.T)
        estimate = 1.0
        for matrix in (self.mix, self.mix_inverse):
            vector = xp.ones(self.dim) / self.dim**0.5
            norm = 1.0
            for _ in range(POWER_ITERATIONS):
                vector = matrix.T @ (matrix @ vector)
                norm = float(xp.linalg.norm(vector))
                vector /= norm
            estimate *= norm**0.5
        return estimate

    def weights(self) -> Any:
        """W = V U on the backend (O(D d^2): for export and checks, not for training)."""
        return (self.basis.astype(np.float64) @ self.mix).astype(self.basis.dtype)

    def consistency(self) -> dict[str, float]:
        """Invariants of the factored state: relative |Q - W^T W|, |U U^-1 - I|, cond(U)."""
        xp = self.ops.xp
        w = self.basis.astype(np.float64) @ self.mix
        exact = w.T @ w
        scale = max(float(xp.abs(exact).max()), 1e-300)
        gram_error = float(xp.abs(self.gram - exact).max()) / scale
        inverse_error = float(xp.abs(self.mix @ self.mix_inverse - xp.eye(self.dim)).max())
        singular = xp.linalg.svd(self.mix_t, compute_uv=False)
        condition = float(singular[0] / singular[-1])
        return {"gram": gram_error, "inverse": inverse_error, "condition": condition}

    def check_finite(self) -> bool:
        """V and the d x d state, without forming W (O(D d^2))."""
        xp = self.ops.xp
        return bool(xp.isfinite(self.basis).all()) and bool(xp.isfinite(self.state).all())

    def parameters(self) -> dict[str, np.ndarray]:
        return {"output": self.ops.to_host(self.weights())}

    def output_vectors(self) -> np.ndarray:
        return self.ops.to_host(self.weights())


#: The loss of each exact head, from the settings.
LOSSES = {
    "spherical": lambda settings: SphericalSoftmax(settings.epsilon),
    "squared": lambda settings: SquaredError(),
    "softmax": lambda settings: FullSoftmax(),
}
