"""The factored exact heads' state, W = V U, and its upkeep.

V (D x d) is stored in the head's dtype (float32 by default). The d x d matrices live in
one float64 array [Q; U; U^-T] (3d x d), Q = W^T W, so the step's three products with the
batch's hidden vectors are a single matrix product with its transpose, and U is contiguous.
The steps (:class:`embedtrain.heads.exact.FactoredHead`) update both; this class keeps them
usable: U^-1 re-inverted against drift, U folded back into V when ill-conditioned, and Q
recomputed from V on a schedule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from embedtrain.backend import Ops
from embedtrain.heads.factored_kernel import refresh_inverse, workspace_size

REINVERT_PERIOD = 100  # steps between exact re-inversions of U (Woodbury updates drift)
REFOLD_PERIOD = 5000  # steps between unconditional refolds (recomputes Q from V: no drift)
#: Refold when the running upper bound on cond(U) passes this. Every step multiplies U by
#: I - S^T S, whose eigenvalues lie in [1 - lambda, 1], so cond(U) grows at most by
#: 1 / (1 - lambda) per step: a bound that costs nothing to keep.
CONDITION_LIMIT = 100.0
POWER_ITERATIONS = 20  # per norm in the cond(U) estimate
REFOLD_CHUNK = 16_384  # rows of V per block while refolding (bounds the float64 temporaries)


class FactoredState:
    """V (``basis``) and [Q; U; U^-T] (``matrices``, with views ``gram``, ``mix_t`` and
    ``mix_inverse``) on the backend, the compiled step's workspace, and the counters and
    bound that decide the upkeep."""

    def __init__(self, ops: Ops, basis: Any, matrices: Any = None) -> None:
        """A fresh state for V = ``basis`` (U = I, Q computed), or the saved ``matrices``."""
        self.ops = ops
        self.basis = basis
        self.dim = d = basis.shape[1]
        fresh = matrices is None
        self.matrices = ops.xp.zeros((3 * d, d), dtype=np.float64) if fresh else matrices
        self.gram = self.matrices[:d]  # Q = W^T W
        self.mix_t = self.matrices[d : 2 * d].T  # U^T (a view: the array holds U)
        self.mix_inverse = self.matrices[2 * d :].T  # U^-1 (a view: the array holds U^-T)
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
        """What :meth:`saved` writes: V, [Q; U; U^-T], (steps, refolds, cond(U) bound)."""
        return {"basis": (vocab_size, dim), "matrices": (3 * dim, dim), "upkeep": (3,)}

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

    def advance(self, shrink: float) -> None:
        """Count a step whose factor on U had eigenvalues in [1 - ``shrink``, 1] (infinite:
        a diverged step, which changed nothing), then keep the state usable."""
        if math.isfinite(shrink):
            self.condition_bound /= 1.0 - shrink
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
        :func:`factored_kernel.refresh_inverse`, on a host copy (3d x d: small next to V)."""
        host = self.ops.to_host(self.matrices)
        estimate = refresh_inverse(host, POWER_ITERATIONS)
        self.matrices[...] = self.ops.asarray(host)
        self.mirrored = False
        return estimate

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

    def _reset_factors(self, recompute_gram: bool = True) -> None:
        """U = I, and Q recomputed exactly from V (after a load, or a refold that should
        also remove the drift of Q's float32-product updates)."""
        xp = self.ops.xp
        self.mirrored = False
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

    def weights(self) -> Any:
        """W = V U on the backend (O(D d^2): for export and checks, not for training)."""
        return (self.basis.astype(np.float64) @ self.mix).astype(self.basis.dtype)

    def consistency(self) -> dict[str, float]:
        """Invariants: relative |Q - W^T W|, |U U^-1 - I|, cond(U)."""
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
        """V and the d x d matrices, without forming W (O(D d^2))."""
        xp = self.ops.xp
        return bool(xp.isfinite(self.basis).all()) and bool(xp.isfinite(self.matrices).all())
