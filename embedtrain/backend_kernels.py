"""Numba kernels of the host backend (:class:`embedtrain.backend.NumpyOps`), also called
from compiled code (the factored exact step): sparse row updates, the sparse Gram matrix
and a small SPD inverse. Plain functions on NumPy arrays, ``nogil``."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def scatter_rows(target: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
    for k in range(indices.shape[0]):
        row = target[indices[k]]
        for i in range(row.shape[0]):
            row[i] += values[k, i]


@njit(nogil=True, fastmath=True, cache=True)
def scatter_scaled_rows(target, indices, scales, sources, source_rows) -> None:
    """Compiled :meth:`Ops.scatter_add_scaled`."""
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
