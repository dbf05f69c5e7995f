"""Compiled per-example steps of the logistic-unit heads (negative sampling and
hierarchical softmax), called by the skip-gram/CBOW drivers of :mod:`embedtrain.drivers`.

A step is ``step(state, hidden, target, lr, work, rng) -> loss``: it updates the head's
output rows, adds ``-lr * dL/dhidden`` to ``work`` and draws from ``rng``. ``state`` is a
named tuple (:class:`NegativeSamplingState`, :class:`HierarchicalSoftmaxState`), defined
here once for both the head that builds it and the step that reads it. The sigmoid is
word2vec's table (1,000 cells over [-6, 6]), the loss its exact log on the same grid.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from embedtrain.rng import uniform

MAX_EXP = 6.0
SIGMOID_TABLE_SIZE = 1000
_GRID = (np.arange(SIGMOID_TABLE_SIZE) + 0.5) / SIGMOID_TABLE_SIZE * 2 * MAX_EXP - MAX_EXP
SIGMOID_TABLE = (1.0 / (1.0 + np.exp(-_GRID))).astype(np.float32)
# -log(sigmoid(x)) and -log(sigmoid(-x)) on the same grid, for the loss tally.
LOSS_POSITIVE_TABLE = np.log1p(np.exp(-_GRID))
LOSS_NEGATIVE_TABLE = np.log1p(np.exp(_GRID))
_TABLE_SCALE = SIGMOID_TABLE_SIZE / (2 * MAX_EXP)


class NegativeSamplingState(NamedTuple):
    output: np.ndarray  # syn1neg, (V, d) float32
    alias_probability: np.ndarray  # noise distribution as an alias table
    alias_index: np.ndarray
    negative: int  # noise words per target


class HierarchicalSoftmaxState(NamedTuple):
    output: np.ndarray  # one row per inner node of the Huffman tree
    codes: np.ndarray  # (V, max code length) code bits
    points: np.ndarray  # (V, max code length) inner nodes on the path
    lengths: np.ndarray  # (V,) code lengths


@njit(inline="always")
def _logistic_step(f: float, label: float) -> tuple[float, float]:
    """(label - sigmoid(f), loss) with word2vec's table; saturated outside +-MAX_EXP."""
    if f >= MAX_EXP:
        return label - 1.0, (1.0 - label) * f + np.log1p(np.exp(-f))
    if f <= -MAX_EXP:
        return label, -label * f + np.log1p(np.exp(f))
    i = int((f + MAX_EXP) * _TABLE_SCALE)
    if label > 0.5:
        return label - SIGMOID_TABLE[i], LOSS_POSITIVE_TABLE[i]
    return label - SIGMOID_TABLE[i], LOSS_NEGATIVE_TABLE[i]


@njit(inline="always")
def _logistic_row(
    output: np.ndarray, row: int, hidden: np.ndarray, label: float, lr: float, work: np.ndarray
) -> float:
    """One binary logistic unit: update ``output[row]`` and accumulate into ``work``."""
    return _shifted_logistic_row(output, row, hidden, label, 0.0, lr, work)


@njit(inline="always")
def _shifted_logistic_row(
    output: np.ndarray,
    row: int,
    hidden: np.ndarray,
    label: float,
    shift: float,
    lr: float,
    work: np.ndarray,
) -> float:
    """A logistic unit on the logit ``output[row] . hidden - shift`` (a sampler's log-Q
    correction; 0 for the plain unit)."""
    d = hidden.shape[0]
    weights = output[row]
    f = np.float32(0.0)
    for i in range(d):
        f += hidden[i] * weights[i]
    g, loss = _logistic_step(f - np.float32(shift), label)
    g = np.float32(g * lr)
    for i in range(d):
        work[i] += g * weights[i]
        weights[i] += g * hidden[i]
    return loss


@njit(inline="always")
def alias_draw(probability, alias, rng) -> int:
    """One draw from the distribution of an alias table (Walker's method): a uniform
    bucket, kept with its ``probability``, else its ``alias``; O(1) per draw."""
    u = uniform(rng) * probability.shape[0]
    bucket = int(u)
    if u - bucket < probability[bucket]:
        return bucket
    return alias[bucket]


@njit(nogil=True, fastmath=True, cache=True)
def negative_sampling_step(state, hidden, target, lr, work, rng) -> float:
    """Negative sampling: the target as positive, ``negative`` draws from the noise
    distribution (alias table) as negatives; a draw equal to the target is skipped."""
    output = state.output
    loss = _logistic_row(output, target, hidden, 1.0, lr, work)
    for _ in range(state.negative):
        noise = alias_draw(state.alias_probability, state.alias_index, rng)
        if noise == target:
            continue
        loss += _logistic_row(output, noise, hidden, 0.0, lr, work)
    return loss


@njit(nogil=True, fastmath=True, cache=True)
def hierarchical_softmax_step(state, hidden, target, lr, work, rng) -> float:
    """Hierarchical softmax: one logistic unit per inner node on the target's Huffman path."""
    loss = 0.0
    for j in range(state.lengths[target]):
        label = 1.0 - state.codes[target, j]
        loss += _logistic_row(state.output, state.points[target, j], hidden, label, lr, work)
    return loss


# The shared form. Several examples (rows of ``hidden``) with one target are trained
# against one set of output units at once: skip-gram's context words of one window all
# predict its centre word. The units are the target's own (its positive row; hs: the
# nodes of its path), then, from ``noise_from`` on, noise draws, each skipped where it
# is the target (as word2vec skips such a draw). With ``fresh`` false a step reuses the
# previous step's draws: CBOW shares one draw between consecutive positions. The
# workspace holds the units and the gradients (:func:`shared_workspace`).


def shared_workspace(examples: int, units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scratch for a shared step of up to ``examples`` examples and ``units`` units: the
    units' rows and labels, and the lr-scaled gradients of the scores."""
    return (
        np.empty(units, dtype=np.int64),
        np.empty(units, dtype=np.float32),
        np.empty((examples, units), dtype=np.float32),
    )


@njit(nogil=True, fastmath=True, cache=True)
def negative_sampling_shared_step(
    state, hidden, examples, target, lr, rng, fresh, delta, workspace
) -> float:
    """The target as the positive unit and ``negative`` noise draws, shared by all the
    examples (HogBatch's shared negatives) and, with ``fresh`` false, the previous step's."""
    rows, labels, grads = workspace
    rows[0] = target
    labels[0] = 1.0
    if fresh:
        for j in range(1, state.negative + 1):
            rows[j] = alias_draw(state.alias_probability, state.alias_index, rng)
            labels[j] = 0.0
    return logistic_block(
        state.output,
        hidden,
        examples,
        target,
        rows,
        labels,
        1,
        state.negative + 1,
        lr,
        grads,
        delta,
    )


@njit(nogil=True, fastmath=True, cache=True)
def hierarchical_softmax_shared_step(
    state, hidden, examples, target, lr, rng, fresh, delta, workspace
) -> float:
    """The inner nodes on the target's Huffman path, labelled 1 - code bit, shared by all
    the examples (no noise: ``fresh`` does not apply)."""
    rows, labels, grads = workspace
    length = state.lengths[target]
    for j in range(length):
        rows[j] = state.points[target, j]
        labels[j] = 1.0 - state.codes[target, j]
    return logistic_block(
        state.output, hidden, examples, target, rows, labels, length, length, lr, grads, delta
    )


@njit(inline="always")
def logistic_block(
    output, hidden, examples, target, rows, labels, noise_from, units, lr, grads, delta
) -> float:
    """Train ``examples`` hidden vectors against ``units`` logistic units at once: every
    score and gradient from the parameters as they were before the block, then
    ``delta[i] = -lr dL/dhidden[i]`` and each unit's output row updated by the sum of its
    examples' gradients (level-3 work: each output row is read once per block).
    Returns the block's loss."""
    d = hidden.shape[1]
    loss = 0.0
    for i in range(examples):
        for a in range(units):
            if a >= noise_from and rows[a] == target:
                grads[i, a] = 0.0
                continue
            weights = output[rows[a]]
            f = np.float32(0.0)
            for k in range(d):
                f += hidden[i, k] * weights[k]
            g, unit_loss = _logistic_step(f, labels[a])
            grads[i, a] = np.float32(g * lr)
            loss += unit_loss
    for i in range(examples):
        for k in range(d):
            delta[i, k] = 0.0
        for a in range(units):
            g = grads[i, a]
            if g != 0.0:
                weights = output[rows[a]]
                for k in range(d):
                    delta[i, k] += g * weights[k]
    for a in range(units):
        weights = output[rows[a]]
        for i in range(examples):
            g = grads[i, a]
            if g != 0.0:
                for k in range(d):
                    weights[k] += g * hidden[i, k]
    return loss
