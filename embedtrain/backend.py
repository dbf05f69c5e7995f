"""Array backend: every NumPy/CuPy difference lives here and nowhere else (thinc's shape).

:class:`Ops` is written once against ``xp`` and runs on NumPy as it would on CuPy (the
array forms every head has); :class:`NumpyOps` (the host) and :class:`CupyOps` (a CUDA
GPU) override only what they do faster or differently: compiled scatters and SciPy's
BLAS on the host (:mod:`embedtrain.backend_kernels`), ``cupyx`` scatters, device copies,
synchronisation and the memory pool on the GPU. Nothing else in the package imports CuPy.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.linalg import blas

from embedtrain import backend_kernels
from embedtrain.errors import GpuUnavailable

GPU_INSTALL_HINT = "pip install 'embedtrain[gpu]'"
log = logging.getLogger("embedtrain")


class Ops:
    """Array operations written against ``xp`` (NumPy here): the generic form, run as is
    on the host only to exercise the GPU's code path on a machine without one."""

    name = "generic"
    xp: Any = np
    #: Whether heads may run their compiled CPU forms on this backend's arrays (host
    #: arrays and Numba kernels); otherwise they take their array forms.
    runs_compiled_kernels = False

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Copy a host array to this backend (no copy when already there)."""
        return self.xp.asarray(array, dtype=dtype)

    def to_host(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def scatter_add(self, target: Any, indices: Any, values: Any) -> None:
        """``target[indices] += values`` with repeated indices accumulated, not dropped."""
        self.xp.add.at(target, indices, values)

    def scatter_add_scaled(
        self, target: Any, indices: Any, scales: Any, sources: Any, source_rows: Any
    ) -> None:
        """``target[indices[k]] += scales[k] * sources[source_rows[k]]`` for every k,
        repeated indices accumulated: a sparse rank update."""
        rows = (scales[:, None] * sources[source_rows]).astype(target.dtype)
        self.scatter_add(target, indices, rows)

    def sparse_gram(self, rows: Any, columns: Any, values: Any, n_rows: int) -> Any:
        """A A^T (n_rows x n_rows, float64) for the sparse matrix A given as coordinates
        (``rows``, ``columns``, ``values``), repeated coordinates accumulated."""
        xp = self.xp
        unique, column = xp.unique(columns, return_inverse=True)
        width = unique.shape[0]
        flat = rows * width + column.reshape(-1)
        dense = xp.bincount(
            flat, weights=values.astype(np.float64), minlength=n_rows * width
        ).reshape(n_rows, width)
        return dense @ dense.T

    def solve_spd(self, matrix: Any, rhs: Any) -> Any:
        """Solve ``matrix @ x = rhs`` for a small symmetric positive definite matrix."""
        return self.xp.linalg.solve(matrix, rhs)

    def gemm(self, a: Any, b: Any, out: Any = None, alpha: float = 1.0) -> Any:
        """``alpha * a @ b``, or ``out += alpha * a @ b`` in place when ``out`` is given."""
        product = a @ b
        if alpha != 1.0:
            product *= alpha
        if out is None:
            return product
        out += product
        return out

    def random_state(self, seed: int) -> Any:
        """A seeded random generator living on this backend."""
        return self.xp.random.RandomState(seed % (2**32))

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the host)."""

    def release_memory(self) -> None:
        """Return cached device memory to the system (a no-op on the host)."""


class NumpyOps(Ops):
    """The host backend: NumPy arrays, Numba kernels for the sparse updates, SciPy's BLAS."""

    name = "numpy"
    runs_compiled_kernels = True

    def scatter_add(self, target: Any, indices: Any, values: Any) -> None:
        """Whole-row updates of a matrix (the common case) take a compiled loop, many times
        faster than ``np.add.at``."""
        if (
            target.ndim == 2
            and isinstance(indices, np.ndarray)
            and indices.ndim == 1
            and values.shape == (indices.shape[0], target.shape[1])
            and values.dtype == target.dtype
        ):
            backend_kernels.scatter_rows(target, indices, values)
        else:
            np.add.at(target, indices, values)

    def scatter_add_scaled(
        self, target: Any, indices: Any, scales: Any, sources: Any, source_rows: Any
    ) -> None:
        backend_kernels.scatter_scaled_rows(target, indices, scales, sources, source_rows)

    def sparse_gram(self, rows: Any, columns: Any, values: Any, n_rows: int) -> Any:
        return backend_kernels.sparse_gram(rows, columns, values.astype(np.float64), n_rows)

    def solve_spd(self, matrix: Any, rhs: Any) -> Any:
        """Through the Cholesky factor: LAPACK's general solver costs several times more
        at these sizes."""
        return self.gemm(backend_kernels.spd_inverse(matrix).astype(rhs.dtype), rhs)

    def gemm(self, a: Any, b: Any, out: Any = None, alpha: float = 1.0) -> Any:
        """Calls BLAS through SciPy, the library the compiled kernels use (Numba binds to
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


def _fortran_operand(matrix: np.ndarray) -> tuple[np.ndarray, int]:
    """(Fortran-ordered array, BLAS transpose flag) whose op() is ``matrix`` transposed."""
    if matrix.flags.c_contiguous:
        return matrix.T, 0
    if matrix.flags.f_contiguous:
        return matrix, 1
    return np.ascontiguousarray(matrix).T, 0


class CupyOps(Ops):
    """The same operations on a CUDA GPU with CuPy."""

    name = "cupy"

    def __init__(self, cupy: Any) -> None:
        import cupyx

        self.xp = cupy
        self._cupyx = cupyx

    def to_host(self, array: Any) -> np.ndarray:
        return self.xp.asnumpy(array)

    def scatter_add(self, target: Any, indices: Any, values: Any) -> None:
        self._cupyx.scatter_add(target, indices, values)

    def synchronize(self) -> None:
        self.xp.cuda.Stream.null.synchronize()

    def release_memory(self) -> None:
        self.xp.get_default_memory_pool().free_all_blocks()


def gpu_ops() -> CupyOps:
    """The GPU backend, or :class:`GpuUnavailable` with a one-line reason."""
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


def select_ops(device: str) -> Ops:
    """Backend for ``device``: ``cpu``, ``gpu`` or ``auto`` (the GPU when one works;
    otherwise the CPU, with a logged notice that says why)."""
    if device == "cpu":
        return NumpyOps()
    if device == "gpu":
        return gpu_ops()
    try:
        return gpu_ops()
    except GpuUnavailable as exc:
        log.info("no usable GPU, training on the CPU (%s)", exc)
        return NumpyOps()
