"""The factored exact step as one compiled CPU function, and the rules on small matrices
that every backend runs compiled: the stable rate (:func:`stable_rate`) and the inverse
refresh (:func:`refresh_inverse`), which the array forms, the naive heads and
:class:`FactoredState` call from Python on the host.

The step has the same mathematics as the array form in :meth:`FactoredHead._array_step`
(and the same notation), written so that a minibatch costs six BLAS products, an m x m
inverse and a few loops instead of some forty NumPy calls: at d = 100 the calls, not the
arithmetic, were most of the time. The state is stored as [Q; U; r^T; c^T; U^-T]
((3d + 2) x d), and the products are grouped by their common factor:

- ``H [Q; U; r^T; c^T; U^-T]^T`` gives Q h, U h, r^T h, s = c^T h and h^T U^-1 for
  every example (m x d x (3d + 2));
- ``H [H; H Q; Z]^T`` gives H H^T, H Q H^T and the cross term H Z^T (m x d x 3m);
- ``[B | -2 lr diag(g) U H | rho | gamma | diag(root sign) X]^T H`` updates Q (as
  B^T H + H^T B), U, r, c and U^-T at once ((3d + 2) x m x d), with
  B = lr^2/2 (E^T E) H - lr G.

Products run in V's precision (float32 in training) on a copy of the state in that
precision which the step keeps current; the float64 state and every reduction
accumulate in float64, as in the array form. The Woodbury matrix is inverted by its
truncated series where that is exact to rounding (:func:`_woodbury_inverse`); the array
form always solves. Temporaries come from a preallocated workspace, and every BLAS call
goes to SciPy's OpenBLAS (see :meth:`Ops.gemm`).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import overload

from embedtrain.backend_kernels import scatter_scaled_rows, sparse_gram, spd_inverse

#: Loops vectorise with reassociation and fused multiply-adds; NaN and infinity keep
#: their IEEE behaviour, so a diverging run is still caught by the finiteness check.
FAST = {"reassoc", "contract", "nsz", "arcp"}


def _cast_like(value, probe):
    """``value`` converted to ``probe``'s dtype (compiled code only): inner loops then
    run in V's precision instead of converting every element to float64 and back."""
    raise NotImplementedError("only callable from compiled code")


@overload(_cast_like)
def _cast_like_compiled(value, probe):
    dtype = probe.dtype

    def cast(value, probe):
        return dtype(value)

    return cast


@njit(fastmath=FAST, cache=True)
def stable_rate(pair_products, root_g, lr, cap):
    """(rate, shrink bound): the largest rate <= ``lr`` with 2 rate lambda_max <= ``cap`` for
    the m x m matrix diag(sqrt g) H H^T diag(sqrt g), g = dL/dq (H H^T: the first m columns
    of ``pair_products``; sqrt g: ``root_g``), and an upper bound on 2 rate lambda_max, the
    shrink of the step, at that rate. That matrix has the non-zero eigenvalues of
    H^T diag(g) H, so the factor I - S^T S keeps every eigenvalue >= 1 - cap.

    Gershgorin's bound (the largest absolute row sum) is cheap and tight for nearly
    orthogonal rows; the exact eigenvalue is computed only when it is exceeded. A
    non-finite bound (a diverged run) comes back as an infinite shrink: the step then
    updates nothing and returns a non-finite loss, which stops training with a message.
    The only implementation: the compiled step calls it directly, the array forms and
    the naive heads on host copies.
    """
    m = root_g.shape[0]
    bound = 0.0
    total = 0.0  # max() would skip a NaN row; a sum keeps it
    for a in range(m):
        row_sum = 0.0
        for b in range(m):
            row_sum += abs(pair_products[a, b] * root_g[a] * root_g[b])
        bound = max(bound, row_sum)
        total += row_sum
    if not np.isfinite(total):  # diverged: no eigenvalue solver on non-finite input
        return lr, np.inf
    if 2.0 * lr * bound <= cap:
        return lr, 2.0 * lr * bound
    weighted = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            weighted[a, b] = pair_products[a, b] * root_g[a] * root_g[b]
    largest = np.linalg.eigvalsh(weighted)[-1]
    if 2.0 * lr * largest <= cap:
        return lr, 2.0 * lr * largest
    return cap / (2.0 * largest), cap


@njit(fastmath=FAST, cache=True)
def _woodbury_inverse(pair_products, root, sign, signed, shrink, scratch):
    """(I - N)^-1 for N = S S^T Sigma = diag(root) H H^T diag(root sign), whose norm is at
    most ``shrink`` (its eigenvalues those of 2 lr H^T diag(g) H), written into
    ``scratch`` (3m x m). The series I + N + N^2 + ... cut after k terms is off by
    N^k (I - N)^-1, of norm <= shrink^k / (1 - shrink): where that is below the unit
    roundoff for k = 2 or 4, the series is as exact as a factorisation and costs nothing
    or two m x m products instead of a Cholesky factorisation and a triangular inverse
    (most minibatches of a training run qualify). With mixed signs (``signed``) I - N is
    not symmetric, and LAPACK's general inverse replaces Cholesky."""
    m = root.shape[0]
    unit = np.finfo(scratch.dtype).eps / 2.0
    part = scratch[:m]  # N
    for a in range(m):
        for b in range(m):
            part[a, b] = pair_products[a, b] * root[a] * root[b] * sign[b]
    if shrink**2 <= unit * (1.0 - shrink):
        return _add_identity(part, 1.0)  # I + N
    if shrink**4 > unit * (1.0 - shrink):
        system = _add_identity(part, -1.0)
        if not signed:
            return spd_inverse(system)  # (I - N)^-1
        system[...] = np.linalg.inv(system)
        return system
    square, series = scratch[m : 2 * m], scratch[2 * m :]  # (I + N)(I + N^2), expanded
    np.dot(part, part, square)
    np.dot(part, square, series)
    for a in range(m):
        for b in range(m):
            series[a, b] += part[a, b] + square[a, b]
    return _add_identity(series, 1.0)


@njit(fastmath=FAST, cache=True)
def _add_identity(matrix, sign):
    """matrix <- I + sign * matrix, in place; returns it."""
    for a in range(matrix.shape[0]):
        for b in range(matrix.shape[1]):
            matrix[a, b] *= sign
        matrix[a, a] += 1.0
    return matrix


def loss_target(constants, score, q, s, vocab_size):
    """The loss's ``target`` function (compiled code only): the loss is the one whose
    constants' type ``constants`` has, so each loss compiles, and caches, its own step."""
    raise NotImplementedError("only callable from compiled code")


@overload(loss_target)
def _loss_target_compiled(constants, score, q, s, vocab_size):
    target = constants.instance_class.loss.target

    def call(constants, score, q, s, vocab_size):
        return target(score, q, s, vocab_size, constants)

    return call


def loss_example(constants, count, first, second, q, s, vocab_size):
    """The loss's ``example`` function (compiled code only), as :func:`loss_target`."""
    raise NotImplementedError("only callable from compiled code")


@overload(loss_example)
def _loss_example_compiled(constants, count, first, second, q, s, vocab_size):
    example = constants.instance_class.loss.example

    def call(constants, count, first, second, q, s, vocab_size):
        return example(count, first, second, q, s, vocab_size, constants)

    return call


@njit(cache=True)
def state_rows(dim):
    """Where the blocks of the packed state [Q; U; r^T; c^T; U^-T] ((3d + 2) x d, float64)
    start: (U, r, c, U^-T, the height); Q is the first ``dim`` rows. The one definition of
    the layout, which the compiled step, the array step and :class:`FactoredState` read."""
    return dim, 2 * dim, 2 * dim + 1, 2 * dim + 2, 3 * dim + 2


@njit(cache=True)
def uses_woodbury(m, dim):
    """Whether a step of ``m`` examples keeps U^-1 current by Woodbury (an m x m system)
    rather than inverting U (d x d): the smaller of the two."""
    return m <= dim


def workspace_size(m: int, dim: int) -> int:
    """Elements of scratch space (V's dtype) one step of ``m`` examples carves its
    temporaries from: preallocated, so a step allocates almost nothing (at d = 300 fresh
    megabyte-sized temporaries cost page faults every step)."""
    return 6 * dim * dim + 4 * dim + 14 * m * dim + 4 * m + 8 * m * m


@njit(cache=True)
def _carve(workspace, offset, rows, columns):
    """A (rows, columns) C-contiguous view of the workspace at ``offset``, and the next offset."""
    stop = offset + rows * columns
    return workspace[offset:stop].reshape((rows, columns)), stop


@njit(fastmath=FAST, cache=True)
def factored_step(basis, state, hidden, targets, lr, constants, cap, workspace, mirrored):
    """One exact minibatch step on V (``basis``, updated in place at the target rows) and
    ``state`` = [Q; U; r^T; c^T; U^-T] (float64, (3d + 2) x d, updated in place).

    ``constants`` are the loss's (:mod:`embedtrain.heads.losses`), whose type picks
    its two functions when the step compiles; ``hidden`` is
    C-contiguous in V's dtype; ``workspace`` holds at least :func:`workspace_size`
    elements of it and starts with a copy of ``state`` in that dtype, which the step
    keeps current; ``mirrored`` says whether that copy is already there (False after
    anything else changed the state). Returns (summed loss, pairs, dL/dhidden (m x d),
    rate used, shrink bound, whether some dL/dq < 0: U may grow).
    """
    vocab_size, dim = basis.shape
    m, width = targets.shape
    h = hidden
    mix_at, shared_at, sum_at, inverse_at, height = state_rows(dim)

    mirror, at = _carve(workspace, 0, height, dim)
    if not mirrored:
        for a in range(height):
            for b in range(dim):
                mirror[a, b] = state[a, b]
    mix, _ = _carve(workspace, mix_at * dim, dim, dim)  # U in the mirror
    inverse_t, _ = _carve(workspace, inverse_at * dim, dim, dim)  # U^-T in the mirror
    # rows [(Q h)^T | (U h)^T | r^T h | c^T h | h^T U^-1]
    products, at = _carve(workspace, at, m, height)
    np.dot(h, mirror.T, products)
    stacked, at = _carve(workspace, at, 3 * m, dim)  # [H; H Q; Z], Z rows (W^T y_j)^T
    target_sum, at = _carve(workspace, at, m, dim)  # rows (V^T y_j)^T

    # One pass over the target rows: outputs o_t = V_t (U h) + r^T h, the loss and its
    # derivatives g = dL/dq, g_s = dL/ds and dL/do_t, the target rows weighted by dL/do_t,
    # and the targets as coordinates (example, word, dL/do_t) of the sparse D x m matrix Y.
    grad_q = np.zeros(m)
    grad_s = np.zeros(m)
    target_total = np.zeros(m)  # y_j^T 1
    examples = np.empty(m * width, dtype=np.int64)
    words = np.empty(m * width, dtype=np.int64)
    values = np.empty(m * width)
    loss = 0.0
    pairs = 0
    for j in range(m):
        q = 0.0
        for i in range(dim):
            stacked[j, i] = h[j, i]
            stacked[m + j, i] = products[j, i]
            target_sum[j, i] = 0.0
            q += h[j, i] * products[j, i]
        shared = products[j, shared_at]
        s = products[j, sum_at]
        count = 0
        first = 0.0  # the loss's two sums over the example's targets
        second = 0.0
        mixed = products[j, mix_at:shared_at]
        summed = target_sum[j]
        for k in range(width):
            word = targets[j, k]
            if word < 0:
                continue
            row = basis[word]
            score = _cast_like(0.0, basis)
            for i in range(dim):
                score += row[i] * mixed[i]
            score += shared
            term, value, first_term, second_term = loss_target(constants, score, q, s, vocab_size)
            loss += term
            first += first_term
            second += second_term
            examples[pairs + count] = j
            words[pairs + count] = word
            values[pairs + count] = value
            target_total[j] += value
            count += 1
            weight = _cast_like(value, basis)
            for i in range(dim):
                summed[i] += weight * row[i]
        pairs += count
        term, grad_q[j], grad_s[j] = loss_example(constants, count, first, second, q, s, vocab_size)
        loss += term

    sparse_part = stacked[2 * m :]
    np.dot(target_sum, mix, sparse_part)
    grad_hidden = np.empty((m, dim), dtype=basis.dtype)
    for j in range(m):
        factor = _cast_like(2.0 * grad_q[j], basis)
        total = _cast_like(target_total[j], basis)
        dense = _cast_like(grad_s[j], basis)
        for i in range(dim):
            sparse_part[j, i] += total * mirror[shared_at, i]
            grad_hidden[j, i] = (
                factor * products[j, i] + sparse_part[j, i] + dense * mirror[sum_at, i]
            )

    pair_products, at = _carve(workspace, at, m, 3 * m)  # [H H^T | H Q H^T | H Z^T]
    np.dot(h, stacked.T, pair_products)
    root_g = np.sqrt(np.abs(grad_q))
    used_lr, shrink = stable_rate(pair_products, root_g, lr, cap)
    signed = (grad_q < 0.0).any()
    if not np.isfinite(shrink):  # diverged: leave V and the state alone
        return np.nan, pairs, grad_hidden, used_lr, shrink, signed

    # W_new = W (I - S^T Sigma S) - lr 1 (H^T g_s)^T - lr Y H with S = diag(root) H and
    # Sigma = sign(g): U takes the first factor, r the first two terms, V the last.
    root = np.sqrt(2.0 * used_lr) * root_g
    sign = np.where(grad_q < 0.0, -1.0, 1.0)
    woodbury = uses_woodbury(m, dim)
    update_width = height if woodbury else inverse_at  # U^-1 from Woodbury or inv(U)
    right, at = _carve(workspace, at, m, update_width)
    back, at = _carve(workspace, at, m, dim)  # rows h_j^T U_new^-1
    if woodbury:  # U^-1 by Woodbury: an m x m system
        scratch, at = _carve(workspace, at, 3 * m, m)
        inverse_c = _woodbury_inverse(pair_products, root, sign, signed, shrink, scratch)
        scaled, at = _carve(workspace, at, m, dim)  # S U^-1: rows root_j h_j^T U^-1
        for a in range(m):
            factor = _cast_like(root[a], basis)
            for i in range(dim):
                scaled[a, i] = factor * products[a, inverse_at + i]
        solved, at = _carve(workspace, at, m, dim)  # (I - S S^T Sigma)^-1 S U^-1 = S U_new^-1
        np.dot(inverse_c, scaled, solved)
        # Rows of S U_new^-1 are root_j h_j^T U_new^-1: divide by root_j where that loses
        # at most 6 bits; the rare rows with a much smaller root take the explicit form
        # h_j^T U^-1 + h_j^T H^T diag(root Sigma) (S U_new^-1), which needs no division.
        smallest = np.max(root) / 64.0
        for j in range(m):
            factor = _cast_like(root[j] * sign[j], basis)
            for i in range(dim):
                right[j, inverse_at + i] = factor * solved[j, i]
            if root[j] > smallest:
                reciprocal = _cast_like(1.0 / root[j], basis)
                for i in range(dim):
                    back[j, i] = reciprocal * solved[j, i]
            else:
                for i in range(dim):
                    back[j, i] = products[j, inverse_at + i]
                for k in range(m):
                    weight = _cast_like(pair_products[j, k] * root[k] * sign[k], basis)
                    for i in range(dim):
                        back[j, i] += weight * solved[k, i]

    outer, at = _carve(workspace, at, m, m)  # E^T E, E = dL/do (D x m), never formed
    examples, words, values = examples[:pairs], words[:pairs], values[:pairs]
    overlap = sparse_gram(examples, words, values, m)  # Y^T Y
    with_sum = np.empty(m)  # E^T 1 - D g_s
    for j in range(m):
        with_sum[j] = 2.0 * grad_q[j] * products[j, sum_at] + target_total[j]
    for a in range(m):
        for b in range(m):
            outer[a, b] = (
                4.0 * grad_q[a] * pair_products[a, m + b] * grad_q[b]
                + 2.0 * grad_q[a] * pair_products[a, 2 * m + b]
                + 2.0 * pair_products[b, 2 * m + a] * grad_q[b]
                + overlap[a, b]
                + vocab_size * grad_s[a] * grad_s[b]
                + grad_s[a] * with_sum[b]
                + with_sum[a] * grad_s[b]
            )
    curvature, at = _carve(workspace, at, m, dim)
    np.dot(outer, h, curvature)
    half_square = _cast_like(0.5 * used_lr * used_lr, basis)
    rate = _cast_like(used_lr, basis)
    for j in range(m):
        factor = _cast_like(-2.0 * used_lr * grad_q[j], basis)
        for i in range(dim):
            right[j, i] = half_square * curvature[j, i] - rate * grad_hidden[j, i]
            right[j, mix_at + i] = factor * products[j, mix_at + i]
        right[j, shared_at] = -used_lr * (2.0 * grad_q[j] * products[j, shared_at] + grad_s[j])
        right[j, sum_at] = -used_lr * (with_sum[j] + vocab_size * grad_s[j])
    update, at = _carve(workspace, at, update_width, dim)  # [X_Q; X_U; X_r; X_c; X_U^-T]
    np.dot(right.T, h, update)
    _add_symmetrised(state, mirror, update, dim)  # Q += H^T B + B^T H
    for a in range(dim, update_width):
        for b in range(dim):
            state[a, b] += update[a, b]  # U <- U (I - S^T Sigma S), r, c; U^-T by Woodbury
            mirror[a, b] = state[a, b]
    if not woodbury:  # inverting U directly is cheaper than the m x m system
        inverse = np.linalg.inv(state[mix_at:shared_at])
        for a in range(dim):
            for b in range(dim):
                state[inverse_at + a, b] = inverse[b, a]
                inverse_t[a, b] = inverse[b, a]
        np.dot(h, inverse_t.T, back)

    scatter_scaled_rows(basis, words, (-used_lr * values).astype(basis.dtype), back, examples)
    return loss, pairs, grad_hidden, used_lr, shrink, signed


@njit(fastmath=FAST, cache=True)
def _add_symmetrised(state, mirror, update, dim):
    """state[:dim] += X + X^T for X = update[:dim] (d x d), the result copied to ``mirror``.
    (Row by row with the transposed reads strided: measured faster here than tiling.)"""
    for a in range(dim):
        for b in range(dim):
            state[a, b] += update[a, b] + update[b, a]
            mirror[a, b] = state[a, b]


@njit(cache=True)
def refresh_inverse(state, iterations):
    """Recompute U^-1 exactly and symmetrise Q (both drift under rank-m updates) in
    ``state`` = [Q; U; r^T; c^T; U^-T]; return an estimate of cond(U) = |U| |U^-1| (2-norms, each by
    power iteration: O(d^2) per iteration, where an SVD would cost O(d^3)). The only
    implementation: :class:`FactoredState` runs it on the host on every backend."""
    dim = state.shape[1]
    mix_at, shared_at, _, inverse_at, _ = state_rows(dim)
    mix = np.ascontiguousarray(state[mix_at:shared_at])
    if not np.isfinite(state).all():  # diverged: the next step reports it
        return np.inf
    inverse = np.linalg.inv(mix)
    state[inverse_at:] = inverse.T
    for a in range(dim):
        for b in range(a):
            mean = 0.5 * (state[a, b] + state[b, a])
            state[a, b] = mean
            state[b, a] = mean
    return _spectral_norm(mix, iterations) * _spectral_norm(inverse, iterations)


@njit(cache=True)
def _spectral_norm(matrix, iterations):
    """Largest singular value by power iteration on M^T M."""
    vector = np.ones(matrix.shape[1]) / np.sqrt(matrix.shape[1])
    norm = 1.0
    for _ in range(iterations):
        vector = np.dot(matrix.T, np.dot(matrix, vector))
        norm = np.sqrt(np.dot(vector, vector))
        vector /= norm
    return np.sqrt(norm)
