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


# The shared ("window") form. Several examples (rows of ``hidden``) are trained against
# one set of output units at once: skip-gram's context words of one window, which share
# their target, or CBOW's consecutive positions. ``group_of[i]`` names example i's target
# in ``targets``. Each unit is an output row, its label and its owner: the group it
# belongs to, or SHARED for a noise draw that every group meets as a negative (skipped by
# a group whose target it is, as word2vec skips such a draw). ``workspace`` holds the
# unit arrays and gradients (:func:`shared_workspace`).
SHARED = -1


def shared_workspace(examples: int, units: int) -> tuple[np.ndarray, ...]:
    """Scratch for a shared step of up to ``examples`` examples and ``units`` units."""
    return (
        np.empty(units, dtype=np.int64),  # rows
        np.empty(units, dtype=np.float32),  # labels
        np.empty(units, dtype=np.int32),  # owner
        np.empty((examples, units), dtype=np.float32),  # lr-scaled gradients of the scores
    )


@njit(nogil=True, fastmath=True, cache=True)
def negative_sampling_shared_step(
    state, hidden, examples, group_of, targets, groups, lr, rng, delta, workspace
) -> float:
    """Each target a positive unit of its own group, then ``negative`` noise draws shared
    by the whole block (HogBatch's shared negatives)."""
    rows, labels, owner, grads = workspace
    for group in range(groups):
        rows[group] = targets[group]
        labels[group] = 1.0
        owner[group] = group
    count = groups
    for _ in range(state.negative):
        rows[count] = alias_draw(state.alias_probability, state.alias_index, rng)
        labels[count] = 0.0
        owner[count] = SHARED
        count += 1
    return logistic_block(
        state.output,
        hidden,
        examples,
        group_of,
        targets,
        rows,
        labels,
        owner,
        count,
        lr,
        grads,
        delta,
    )


@njit(nogil=True, fastmath=True, cache=True)
def hierarchical_softmax_shared_step(
    state, hidden, examples, group_of, targets, groups, lr, rng, delta, workspace
) -> float:
    """The inner nodes on each target's Huffman path, labelled 1 - code bit; a skip-gram
    window shares its one target's path, CBOW's positions share nothing."""
    rows, labels, owner, grads = workspace
    count = 0
    for group in range(groups):
        target = targets[group]
        for j in range(state.lengths[target]):
            rows[count] = state.points[target, j]
            labels[count] = 1.0 - state.codes[target, j]
            owner[count] = group
            count += 1
    return logistic_block(
        state.output,
        hidden,
        examples,
        group_of,
        targets,
        rows,
        labels,
        owner,
        count,
        lr,
        grads,
        delta,
    )


@njit(inline="always")
def logistic_block(
    output, hidden, examples, group_of, targets, rows, labels, owner, units, lr, grads, delta
) -> float:
    """Train ``examples`` hidden vectors against ``units`` logistic units at once: every
    score and gradient from the parameters as they were before the block, then
    ``delta[i] = -lr dL/dhidden[i]`` and each unit's output row updated by the sum of its
    examples' gradients (level-3 work: each output row is read once per block).
    Returns the block's loss."""
    d = hidden.shape[1]
    loss = 0.0
    for i in range(examples):
        group = group_of[i]
        target = targets[group]
        for a in range(units):
            if owner[a] != group and (owner[a] != SHARED or rows[a] == target):
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
