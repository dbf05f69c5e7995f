"""Compiled parts of the LSH negative-sampling head (:mod:`embedtrain.heads.lsh`): hashing,
the table build and the per-example step for the drivers of :mod:`embedtrain.drivers`.

Tables are double-buffered: ``tables[b]``, ``sizes[b]``, ``codes[b]``, ``kept[b]`` and the
hash functions ``planes[b]``/``pairs[b]`` belong together, and ``active[0]`` names the
buffer the steps read. A rebuild writes the other buffer and then flips ``active[0]``,
so a Hogwild thread never reads a half-built table; a thread that read the old index
finishes its example on the old (complete) buffer, which is not written again before the
next rebuild. Every slot ever written holds a word id in ``[0, V)`` and every size is at
most the capacity, so even a torn read cannot index out of range.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from embedtrain.heads.logistic_kernels import _logistic_row, _shifted_logistic_row, alias_draw
from embedtrain.rng import next_random

SIMHASH = 0
DWTA = 1
EMBEDDING = 0
LABEL = 1
#: Draws of a union slot that may land on the target before a negative is topped up.
TARGET_RETRIES = 4


class LshState(NamedTuple):
    output: np.ndarray  # (V, d) float32 output vectors
    alias_probability: np.ndarray  # count**ns_exponent as an alias table (top-ups)
    alias_index: np.ndarray
    noise_probability: np.ndarray  # (V,) float64 count**ns_exponent, normalised
    negative: int  # negatives per target
    mode: int  # EMBEDDING (query: the hidden vector) or LABEL (the target's bucket)
    hash_kind: int  # SIMHASH or DWTA
    bits: int  # K: hash bits per table
    correct: int  # 1: shift each negative's logit by -log(negative * q)
    planes: np.ndarray  # (2, L*K, d) float32 SimHash hyperplanes
    pairs: np.ndarray  # (2, L*K, 2) int32 DWTA coordinate pairs
    tables: np.ndarray  # (2, L, 2**K, C) int32 word ids
    sizes: np.ndarray  # (2, L, 2**K) int32 words held per bucket (<= C)
    codes: np.ndarray  # (2, L, V) int32 each word's bucket at the build
    kept: np.ndarray  # (2, L, V) uint8 whether the word is held in that bucket
    active: np.ndarray  # (1,) int64 the buffer the steps read
    counts: np.ndarray  # (2,) int64 negatives drawn, of which topped up (Hogwild tallies)


@njit(inline="always")
def hash_code(planes, pairs, hash_kind, buffer, table, bits, vector) -> int:
    """The bucket of ``vector`` in ``table``: K sign bits of SimHash projections, or K
    winner-take-all bits over coordinate pairs (DWTA's bins of two; a dense vector never
    has an empty bin, so densification changes nothing)."""
    code = 0
    for k in range(bits):
        h = table * bits + k
        if hash_kind == SIMHASH:
            plane = planes[buffer, h]
            s = np.float32(0.0)
            for i in range(vector.shape[0]):
                s += vector[i] * plane[i]
            bit = s > 0
        else:
            bit = vector[pairs[buffer, h, 0]] > vector[pairs[buffer, h, 1]]
        if bit:
            code |= 1 << k
    return code


@njit(nogil=True, cache=True)
def build_tables(output, order, planes, pairs, hash_kind, bits, buffer, tables, sizes, codes, kept):
    """Hash every output vector into each table of ``buffer``, the words taken in
    ``order`` (a permutation): a bucket keeps the first C words of that order, i.e. for a
    random order a uniform sample of its members (reservoir sampling in one pass), so
    every word its bucket holds is equally likely to be a negative. Memory is fixed:
    L * 2**K * C ids per buffer."""
    n_tables = tables.shape[1]
    capacity = tables.shape[3]
    sizes[buffer] = 0
    for t in range(n_tables):
        for index in range(order.shape[0]):
            w = order[index]
            code = hash_code(planes, pairs, hash_kind, buffer, t, bits, output[w])
            codes[buffer, t, w] = code
            size = sizes[buffer, t, code]
            if size < capacity:
                tables[buffer, t, code, size] = w
                sizes[buffer, t, code] = size + 1
                kept[buffer, t, w] = 1
            else:
                kept[buffer, t, w] = 0


@njit(inline="always")
def _multiplicity(state, a, buckets, word) -> int:
    """In how many of the query's buckets ``word`` is held (its share of the union)."""
    m = 0
    for t in range(buckets.shape[0]):
        if state.kept[a, t, word] and state.codes[a, t, word] == buckets[t]:
            m += 1
    return m


@njit(nogil=True, fastmath=True)
def draw_negatives(state, hidden, target, rng, negatives, shifts) -> int:
    """Fill ``negatives`` (and each one's logit shift, log(negative * q) or 0) for one
    example; returns how many were topped up from count**ns_exponent.

    The query's L buckets form a union of S slots (a word held in several counts several
    times, as LSH's retrieval probability). S <= negative: every slot not holding the
    target is taken once; otherwise each negative is a uniform slot, redrawn while it
    holds the target (``TARGET_RETRIES`` times). What is missing is topped up; a top-up
    equal to the target is skipped (as ``ns``), marked -1. Slot draws are uniform over
    the union, so the order the tables are read in cannot matter.
    """
    a = state.active[0]
    n_tables = state.sizes.shape[1]
    k = negatives.shape[0]
    buckets = np.empty(n_tables, dtype=np.int64)
    total = 0
    for t in range(n_tables):
        if state.mode == LABEL:
            buckets[t] = state.codes[a, t, target]
        else:
            buckets[t] = hash_code(
                state.planes, state.pairs, state.hash_kind, a, t, state.bits, hidden
            )
        total += min(state.sizes[a, t, buckets[t]], state.tables.shape[3])
    filled = 0
    if total <= k:
        for t in range(n_tables):
            size = min(state.sizes[a, t, buckets[t]], state.tables.shape[3])
            for j in range(size):
                word = state.tables[a, t, buckets[t], j]
                if word != target and filled < k:
                    negatives[filled] = word
                    filled += 1
    else:
        for _ in range(k):
            for _ in range(TARGET_RETRIES):
                r = np.int64(next_random(rng) % np.uint64(total))
                t = 0
                size = min(state.sizes[a, 0, buckets[0]], state.tables.shape[3])
                while r >= size:
                    r -= size
                    t += 1
                    size = min(state.sizes[a, t, buckets[t]], state.tables.shape[3])
                word = state.tables[a, t, buckets[t], r]
                if word != target:
                    negatives[filled] = word
                    filled += 1
                    break
    for j in range(filled):
        shifts[j] = 0.0
        if state.correct:
            q = _multiplicity(state, a, buckets, negatives[j]) / total
            shifts[j] = np.log(k * max(q, 1e-12))
    topped = k - filled
    for j in range(filled, k):
        word = alias_draw(state.alias_probability, state.alias_index, rng)
        negatives[j] = -1 if word == target else word
        shifts[j] = np.log(k * state.noise_probability[word]) if state.correct else 0.0
    return topped


@njit(nogil=True, fastmath=True)
def lsh_negative_sampling_step(state, hidden, target, lr, work, rng) -> float:
    """Negative sampling with the negatives of :func:`draw_negatives`: the target as a
    positive unit, each negative as a negative unit with its (optional) logit shift."""
    negatives = np.empty(state.negative, dtype=np.int64)
    shifts = np.empty(state.negative, dtype=np.float64)
    topped = draw_negatives(state, hidden, target, rng, negatives, shifts)
    state.counts[0] += state.negative
    state.counts[1] += topped
    loss = _logistic_row(state.output, target, hidden, 1.0, lr, work)
    for j in range(state.negative):
        if negatives[j] >= 0:
            loss += _shifted_logistic_row(
                state.output, negatives[j], hidden, 0.0, shifts[j], lr, work
            )
    return loss
