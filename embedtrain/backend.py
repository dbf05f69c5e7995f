"""Array backend: every NumPy/CuPy difference lives here and nowhere else.

:class:`Ops` is written once against ``xp`` (NumPy); :class:`CupyOps` swaps the array
module and overrides only what CuPy does differently (scatter-add, host copies,
synchronisation, memory pool). Nothing else in the package imports CuPy.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
from numba import njit
from scipy.linalg import blas

from embedtrain.errors import UsageError

#: Set to ``numpy`` to run the GPU code path (the batched engine) on NumPy: how the
#: tests exercise it on machines without a GPU.
GPU_BACKEND_ENV = "EMBEDTRAIN_GPU_BACKEND"
GPU_INSTALL_HINT = "pip install 'embedtrain[gpu]'"


class Ops:
    """Array operations on the host with NumPy."""

    name = "numpy"
    xp: Any = np

    def __init__(self, gpu_path: bool = False) -> None:
        #: True when this backend stands for ``--device gpu``: the batched engine then
        #: runs every head, and heads take their array form (no compiled CPU kernels),
        #: as they would on a real GPU.
        self.gpu_path = gpu_path

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Copy a host array to this backend (no copy when already there)."""
        return self.xp.asarray(array, dtype=dtype)

    def to_host(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def scatter_add(self, target: Any, indices: Any, values: Any) -> None:
        """``target[indices] += values`` with repeated indices accumulated, not dropped.

        Whole-row updates of a matrix (the common case) take a compiled loop, many times
        faster than ``np.add.at``.
        """
        if (
            target.ndim == 2
            and isinstance(indices, np.ndarray)
            and indices.ndim == 1
            and values.shape == (indices.shape[0], target.shape[1])
            and values.dtype == target.dtype
        ):
            _scatter_rows(target, indices, values)
        else:
            np.add.at(target, indices, values)

    def scatter_add_scaled(
        self, target: Any, indices: Any, scales: Any, sources: Any, source_rows: Any
    ) -> None:
        """``target[indices[k]] += scales[k] * sources[source_rows[k]]`` for every k,
        repeated indices accumulated: a sparse rank update without forming its rows."""
        scatter_scaled_rows(target, indices, scales, sources, source_rows)

    def sparse_gram(self, rows: Any, columns: Any, values: Any, n_rows: int) -> Any:
        """A A^T (n_rows x n_rows, float64) for the sparse matrix A given as coordinates
        (``rows``, ``columns``, ``values``), repeated coordinates accumulated."""
        return sparse_gram(rows, columns, values.astype(np.float64), n_rows)

    def solve_spd(self, matrix: Any, rhs: Any) -> Any:
        """Solve ``matrix @ x = rhs`` for a small symmetric positive definite matrix
        (through its Cholesky factor: LAPACK's general solver costs several times more
        at these sizes)."""
        return self.gemm(spd_inverse(matrix).astype(rhs.dtype), rhs)

    def gemm(self, a: Any, b: Any, out: Any = None, alpha: float = 1.0) -> Any:
        """``alpha * a @ b``, or ``out += alpha * a @ b`` in place when ``out`` is given.

        Calls BLAS through SciPy, the library the compiled kernels use (Numba binds to
        SciPy's BLAS): NumPy bundles a second OpenBLAS whose idle threads spin for a while
        after each call, and alternating between the two libraries makes them fight over
        the cores. Operands are C-contiguous matrices or their transposes; in Fortran order
        they are the transposes BLAS wants, so nothing is copied.
        """
        routine = blas.get_blas_funcs("gemm", (a, b) if out is None else (a, b, out))
        a_fortran, a_trans = _fortran_operand(a)
        b_fortran, b_trans = _fortran_operand(b)
        # C = A B in C order is C^T = B^T A^T in Fortran order.
        if out is None:
            return routine(alpha, b_fortran, a_fortran, trans_a=b_trans, trans_b=a_trans).T
        if not out.flags.c_contiguous:
            raise ValueError("gemm accumulates into C-contiguous arrays only")
        result = routine(
            alpha,
            b_fortran,
            a_fortran,
            beta=1.0,
            c=out.T,
            trans_a=b_trans,
            trans_b=a_trans,
            overwrite_c=True,
        )
        if not np.may_share_memory(result, out):  # SciPy had to convert ``out``: copy back
            out[...] = result.T
        return out

    def random_state(self, seed: int) -> Any:
        """A seeded random generator living on this backend."""
        return self.xp.random.RandomState(seed % (2**32))

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the host)."""

    def release_memory(self) -> None:
        """Return cached device memory to the system (a no-op on the host)."""


def _fortran_operand(matrix: np.ndarray) -> tuple[np.ndarray, int]:
    """(Fortran-ordered array, BLAS transpose flag) whose op() is ``matrix`` transposed."""
    if matrix.flags.c_contiguous:
        return matrix.T, 0
    if matrix.flags.f_contiguous:
        return matrix, 1
    return np.ascontiguousarray(matrix).T, 0


@njit(nogil=True, cache=True)
def _scatter_rows(target: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
    for k in range(indices.shape[0]):
        row = target[indices[k]]
        for i in range(row.shape[0]):
            row[i] += values[k, i]


@njit(nogil=True, fastmath=True, cache=True)
def scatter_scaled_rows(target, indices, scales, sources, source_rows) -> None:
    """Compiled form of :meth:`Ops.scatter_add_scaled` (also called by compiled kernels)."""
    for k in range(indices.shape[0]):
        row = target[indices[k]]
        source = sources[source_rows[k]]
        scale = scales[k]
        for i in range(row.shape[0]):
            row[i] += scale * source[i]


@njit(nogil=True, cache=True)
def sparse_gram(rows, columns, values, n_rows) -> np.ndarray:
    """Entries sharing a column meet in a linked list per column, found through a small
    open-addressing table (O(entries), whatever the largest column index)."""
    n = rows.shape[0]
    size = 2
    while size < 2 * n:
        size *= 2
    keys = np.full(size, -1, dtype=np.int64)
    last = np.full(size, -1, dtype=np.int64)
    following = np.empty(n, dtype=np.int64)
    for k in range(n):
        column = np.int64(columns[k])
        slot = (column * 2654435761) & (size - 1)
        while keys[slot] != -1 and keys[slot] != column:
            slot = (slot + 1) & (size - 1)
        keys[slot] = column
        following[k] = last[slot]
        last[slot] = k
    gram = np.zeros((n_rows, n_rows))
    for k in range(n):
        other = following[k]
        gram[rows[k], rows[k]] += values[k] * values[k]
        while other >= 0:
            product = values[k] * values[other]
            gram[rows[k], rows[other]] += product
            gram[rows[other], rows[k]] += product
            other = following[other]
    return gram


@njit(nogil=True, fastmath=True, cache=True)
def lower_triangular_inverse(lower: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular matrix, row by row: each row of the inverse is a
    combination of the rows above it (contiguous row operations, which vectorise)."""
    n = lower.shape[0]
    inverse = np.zeros_like(lower)
    for i in range(n):
        row = inverse[i]
        row[i] = 1.0
        for k in range(i):
            factor = lower[i, k]
            above = inverse[k]
            for j in range(k + 1):
                row[j] -= factor * above[j]
        scale = 1.0 / lower[i, i]
        for j in range(i + 1):
            row[j] *= scale
    return inverse


@njit(nogil=True, fastmath=True, cache=True)
def spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a small symmetric positive definite matrix through its Cholesky factor
    (also called by compiled kernels)."""
    lower_inverse = lower_triangular_inverse(np.linalg.cholesky(matrix))
    return np.dot(lower_inverse.T, lower_inverse)


class CupyOps(Ops):
    """The same operations on a CUDA GPU with CuPy."""

    name = "cupy"

    def __init__(self, cupy: Any) -> None:
        import cupyx

        super().__init__(gpu_path=True)
        self.xp = cupy
        self._cupyx = cupyx

    def to_host(self, array: Any) -> np.ndarray:
        return self.xp.asnumpy(array)

    def scatter_add(self, target: Any, indices: Any, values: Any) -> None:
        self._cupyx.scatter_add(target, indices, values)

    def scatter_add_scaled(
        self, target: Any, indices: Any, scales: Any, sources: Any, source_rows: Any
    ) -> None:
        rows = (scales[:, None] * sources[source_rows]).astype(target.dtype)
        self._cupyx.scatter_add(target, indices, rows)

    def sparse_gram(self, rows: Any, columns: Any, values: Any, n_rows: int) -> Any:
        xp = self.xp
        unique, column = xp.unique(columns, return_inverse=True)
        width = unique.shape[0]
        flat = rows * width + column.reshape(-1)
        dense = xp.bincount(flat, weights=values, minlength=n_rows * width).reshape(n_rows, width)
        return dense @ dense.T

    def solve_spd(self, matrix: Any, rhs: Any) -> Any:
        return self.xp.linalg.solve(matrix, rhs)

    def gemm(self, a: Any, b: Any, out: Any = None, alpha: float = 1.0) -> Any:
        product = a @ b
        if alpha != 1.0:
            product *= alpha
        if out is None:
            return product
        out += product
        return out

    def synchronize(self) -> None:
        self.xp.cuda.Stream.null.synchronize()

    def release_memory(self) -> None:
        self.xp.get_default_memory_pool().free_all_blocks()


class GpuUnavailable(UsageError):
    """No usable GPU: CuPy missing or no working CUDA device."""


def gpu_ops() -> Ops:
    """The GPU backend, or :class:`GpuUnavailable` with a one-line reason."""
    if os.environ.get(GPU_BACKEND_ENV, "").lower() == "numpy":
        return Ops(gpu_path=True)
    try:
        import cupy
    except ImportError as exc:
        raise GpuUnavailable(
            f"--device gpu needs CuPy, which is not installed: {GPU_INSTALL_HINT}"
        ) from exc
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise GpuUnavailable("--device gpu: CuPy is installed but finds no CUDA device")
        cupy.zeros(1).sum().item()
    except GpuUnavailable:
        raise
    except Exception as exc:  # CuPy raises several driver/runtime error types
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GpuUnavailable(f"--device gpu: no working CUDA device ({first_line})") from exc
    return CupyOps(cupy)


def select_ops(device: str, quiet: bool = False) -> Ops:
    """Backend for ``--device``: ``cpu``, ``gpu`` or ``auto`` (GPU when one works; otherwise
    the CPU, said once unless ``quiet``)."""
    if device == "cpu":
        return Ops()
    if device == "gpu":
        return gpu_ops()
    try:
        return gpu_ops()
    except GpuUnavailable as exc:
        if not quiet:
            print(f"embedtrain: no usable GPU, training on the CPU ({exc})", file=sys.stderr)
        return Ops()
