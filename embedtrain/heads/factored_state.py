"""The factored exact heads' state, W = V U + 1 r^T, and its upkeep.

V (D x d) is stored in the head's dtype (float32 by default). The small matrices live in
one float64 array [Q; U; r^T; c^T; U^-T] ((3d + 2) x d), Q = W^T W and c = W^T 1 (the
column sums, so s = sum_i o_i = c^T h costs d), so the step's products with the batch's
hidden vectors are a single matrix product with its transpose, and U is contiguous. The
shared row r carries the part of the update that moves every row of W alike (a loss
depending on s has dL/do = ... + (dL/ds) 1): U absorbs the multiplicative part, V the
sparse part at the target rows, r the dense part (BRIEF section 1.11).
The steps (:class:`embedtrain.heads.exact.FactoredHead`) update both; this class keeps them
usable: U^-1 re-inverted against drift, U folded back into V when ill-conditioned, and Q
recomputed from V on a schedule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from embedtrain.backend import Ops
from embedtrain.heads.factored_kernel import refresh_inverse, state_rows, workspace_size

REINVERT_PERIOD = 100  # steps between exact re-inversions of U (Woodbury updates drift)
REFOLD_PERIOD = 5000  # steps between unconditional refolds (recomputes Q from V: no drift)
#: Refold when the running upper bound on cond(U) passes this. Every step multiplies U by
#: I - S^T S, whose eigenvalues lie in [1 - lambda, 1], so cond(U) grows at most by
#: 1 / (1 - lambda) per step: a bound that costs nothing to keep.
CONDITION_LIMIT = 100.0
POWER_ITERATIONS = 20  # per norm in the cond(U) estimate
REFOLD_CHUNK = 16_384  # rows of V per block while refolding (bounds the float64 temporaries)


class FactoredState:
    """V (``basis``) and [Q; U; r^T; c^T; U^-T] (``matrices``, with views ``gram``,
    ``mix_t``, ``shared_row``, ``column_sum`` and ``mix_inverse``) on the backend, the
    compiled step's workspace, and the counters and bound that decide the upkeep."""

    def __init__(self, ops: Ops, basis: Any, matrices: Any = None) -> None:
        """A fresh state for W = ``basis`` (U = I, r = 0, Q and c computed), or the saved
        ``matrices``."""
        self.ops = ops
        self.basis = basis
        self.dim = d = basis.shape[1]
        mix_at, shared_at, sum_at, inverse_at, height = state_rows(d)
        fresh = matrices is None
        self.matrices = ops.xp.zeros((height, d), dtype=np.float64) if fresh else matrices
        self.gram = self.matrices[:mix_at]  # Q = W^T W
        self.mix_t = self.matrices[mix_at:shared_at].T  # U^T (a view: the array holds U)
        self.shared_row = self.matrices[shared_at]  # r
        self.column_sum = self.matrices[sum_at]  # c = W^T 1
        self.mix_inverse = self.matrices[inverse_at:].T  # U^-1 (a view: the array holds U^-T)
        self.steps = 0
        self.refolds = 0
        #: Scratch of the compiled step, which starts with a copy of ``matrices`` in V's
        #: dtype; ``mirrored`` says whether that copy is current (the copy is a plain cast,
        #: so a restored state rebuilds exactly the copy it had).
        self._workspace = np.empty(0, dtype=basis.dtype)
        self.mirrored = False
        self.condition_bound = 1.0
        if fresh:
            self._reset_factors()

    @staticmethod
    def shapes(vocab_size: int, dim: int) -> dict[str, tuple[int, ...]]:
        """What :meth:`saved` writes: V, [Q; U; r^T; c^T; U^-T], (steps, refolds, cond(U)
        bound)."""
        height = state_rows(dim)[-1]
        return {"basis": (vocab_size, dim), "matrices": (height, dim), "upkeep": (3,)}

    @staticmethod
    def upgraded(saved: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A state saved before the shared row (model format 2: [Q; U; U^-T]) in today's
        layout: r = 0 and c = W^T 1 = U^T (V^T 1), the same W continued exactly."""
        matrices = saved["matrices"]
        dim = matrices.shape[1]
        if matrices.shape[0] != 3 * dim:
            return saved
        mix_at, shared_at, _, _, _ = state_rows(dim)  # [Q; U] are where they were
        column_sum = saved["basis"].sum(axis=0, dtype=np.float64) @ matrices[mix_at:shared_at]
        sums = np.stack([np.zeros(dim), column_sum])  # r and c between U and U^-T
        layout = np.concatenate([matrices[:shared_at], sums, matrices[shared_at:]])
        return {**saved, "matrices": layout}

    def saved(self) -> dict[str, np.ndarray]:
        """Everything a resumed run needs to continue this state exactly, as host arrays."""
        upkeep = np.array([self.steps, self.refolds, self.condition_bound], dtype=np.float64)
        host = self.ops.to_host
        return {"basis": host(self.basis), "matrices": host(self.matrices), "upkeep": upkeep}

    @classmethod
    def restore(cls, ops: Ops, saved: dict[str, np.ndarray], dtype: Any) -> FactoredState:
        """The state :meth:`saved` wrote (shapes and finiteness checked by the loader)."""
        matrices = ops.asarray(saved["matrices"], dtype=np.float64).copy()
        state = cls(ops, ops.asarray(saved["basis"], dtype=dtype), matrices)
        steps, refolds, bound = (float(v) for v in saved["upkeep"])
        state.steps, state.refolds, state.condition_bound = int(steps), int(refolds), bound
        return state

    @property
    def mix(self) -> Any:
        """U (a view)."""
        return self.mix_t.T

    def workspace(self, m: int) -> np.ndarray:
        """The compiled step's scratch for ``m`` examples, grown when needed (a new one
        holds no copy of the matrices yet)."""
        needed = workspace_size(m, self.dim)
        if self._workspace.shape[0] < needed:
            self._workspace = np.empty(needed, dtype=self.basis.dtype)
            self.mirrored = False
        return self._workspace

    def advance(self, shrink: float, signed: bool) -> None:
        """Count a step whose factor on U had eigenvalues in [1 - ``shrink``, 1 + growth],
        then keep the state usable. The growth is ``shrink`` where the step was ``signed``
        (a loss with dL/dq < 0 for some examples grows U along their hidden vectors), 0
        otherwise; an infinite shrink is a diverged step, which changed nothing."""
        growth = shrink if signed else 0.0
        if math.isfinite(shrink):
            self.condition_bound *= (1.0 + growth) / (1.0 - shrink)
        self.steps += 1
        self.maintain()

    def maintain(self) -> None:
        """Re-invert U periodically; refold when U is ill-conditioned or on schedule. The
        running bound is loose, so passing the limit first triggers a real estimate."""
        if self.steps % REFOLD_PERIOD == 0:
            self.refold()
        elif self.condition_bound > CONDITION_LIMIT or self.steps % REINVERT_PERIOD == 0:
            self.condition_bound = self.refresh_inverse()
            if self.condition_bound > CONDITION_LIMIT:  # Q's drift waits for the scheduled one
                self.refold(recompute_gram=False)

    def refresh_inverse(self) -> float:
        """Recompute U^-1, symmetrise Q and estimate cond(U) with the one implementation,
        :func:`factored_kernel.refresh_inverse`, on a host copy ((3d + 2) x d: small next to V)."""
        host = self.ops.to_host(self.matrices)
        estimate = refresh_inverse(host, POWER_ITERATIONS)
        self.matrices[...] = self.ops.asarray(host)
        self.mirrored = False
        return estimate

    def refold(self, recompute_gram: bool = True) -> None:
        """V <- V U + 1 r^T, U <- I, r <- 0: W unchanged, so Q = W^T W and c = W^T 1 too;
        U perfectly conditioned. Recomputing Q and c from V as well (the same cost again)
        removes their drift."""
        mix = self.mix.astype(self.basis.dtype)
        shared = self.shared_row.astype(self.basis.dtype)
        for start in range(0, self.basis.shape[0], REFOLD_CHUNK):
            block = self.ops.gemm(self.basis[start : start + REFOLD_CHUNK], mix)
            block += shared
            self.basis[start : start + REFOLD_CHUNK] = block
        self.refolds += 1
        self._reset_factors(recompute_gram)

    def _reset_factors(self, recompute_gram: bool = True) -> None:
        """U = I, r = 0, and Q and c recomputed exactly from V (for a fresh state, or a
        refold that should also remove the drift of their float32-product updates)."""
        xp = self.ops.xp
        self.mirrored = False
        identity = xp.eye(self.dim, dtype=np.float64)
        self.mix_t[...] = identity
        self.mix_inverse[...] = identity
        self.shared_row[...] = 0.0
        self.condition_bound = 1.0
        if not recompute_gram:
            return
        self.gram[...] = 0.0
        self.column_sum[...] = 0.0
        for start in range(0, self.basis.shape[0], REFOLD_CHUNK):
            block = self.basis[start : start + REFOLD_CHUNK]
            self.gram += self.ops.gemm(block.T, block)  # V's precision, summed in float64
            self.column_sum += block.sum(axis=0, dtype=np.float64)

    def weights(self) -> Any:
        """W = V U + 1 r^T on the backend (O(D d^2): for export and checks, not training)."""
        return self._exact_weights().astype(self.basis.dtype)

    def _exact_weights(self) -> Any:
        return self.basis.astype(np.float64) @ self.mix + self.shared_row

    def consistency(self) -> dict[str, float]:
        """Invariants: relative |Q - W^T W| and |c - W^T 1|, |U U^-1 - I|, cond(U)."""
        xp = self.ops.xp
        w = self._exact_weights()
        exact = w.T @ w
        scale = max(float(xp.abs(exact).max()), 1e-300)
        gram_error = float(xp.abs(self.gram - exact).max()) / scale
        sums = w.sum(axis=0)
        sum_scale = max(float(xp.abs(sums).max()), 1e-300)
        sum_error = float(xp.abs(self.column_sum - sums).max()) / sum_scale
        inverse_error = float(xp.abs(self.mix @ self.mix_inverse - xp.eye(self.dim)).max())
        singular = xp.linalg.svd(self.mix_t, compute_uv=False)
        condition = float(singular[0] / singular[-1])
        return {
            "gram": gram_error,
            "column_sum": sum_error,
            "inverse": inverse_error,
            "condition": condition,
        }

    def check_finite(self) -> bool:
        """V and the d x d matrices, without forming W (O(D d^2))."""
        xp = self.ops.xp
        return bool(xp.isfinite(self.basis).all()) and bool(xp.isfinite(self.matrices).all())
