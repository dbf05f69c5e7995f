"""Compiled CPU kernels (Numba, ``nogil``): the skip-gram and CBOW drivers and the
per-example steps of the sparse heads.

A driver walks a job of word ids (``-1`` ends a sentence), subsamples, picks the
randomly reduced window and calls ``head_step(state, hidden, target, lr, work, rng)``
for every training example. The head step is a compiled function passed in as an
argument, with its own ``state`` tuple, so the drivers never know which head they
drive (the compiled counterpart of :class:`embedtrain.heads.base.Head`).

Conventions, as word2vec.c and gensim: skip-gram predicts the centre word from each
context word's input vector; CBOW predicts it from the mean of the context vectors
and adds the same (unscaled) update to every context vector (gensim ``cbow_mean=1``).
``work`` receives ``-lr * dL/dhidden``; the return value is the example's loss.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_EXP = 6.0
SIGMOID_TABLE_SIZE = 1000
_GRID = (np.arange(SIGMOID_TABLE_SIZE) + 0.5) / SIGMOID_TABLE_SIZE * 2 * MAX_EXP - MAX_EXP
SIGMOID_TABLE = (1.0 / (1.0 + np.exp(-_GRID))).astype(np.float32)
# -log(sigmoid(x)) and -log(sigmoid(-x)) on the same grid, for the loss tally.
LOSS_POSITIVE_TABLE = np.log1p(np.exp(-_GRID))
LOSS_NEGATIVE_TABLE = np.log1p(np.exp(_GRID))
_TABLE_SCALE = SIGMOID_TABLE_SIZE / (2 * MAX_EXP)


@njit(inline="always")
def _next_random(rng: np.ndarray) -> np.uint64:
    """xorshift64*: one 64-bit draw; ``rng`` is a one-element uint64 state array."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return x * np.uint64(2685821657736338717)


@njit(inline="always")
def uniform(rng: np.ndarray) -> float:
    """A float in [0, 1) with 53 random bits."""
    return (_next_random(rng) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def seed_state(seed: int) -> np.ndarray:
    """A non-zero xorshift state derived from ``seed`` by splitmix64."""
    z = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    state = np.empty(1, dtype=np.uint64)
    state[0] = z if z != 0 else np.uint64(1)
    return state


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
    d = hidden.shape[0]
    weights = output[row]
    f = np.float32(0.0)
    for i in range(d):
        f += hidden[i] * weights[i]
    g, loss = _logistic_step(f, label)
    g = np.float32(g * lr)
    for i in range(d):
        work[i] += g * weights[i]
        weights[i] += g * hidden[i]
    return loss


@njit(nogil=True, fastmath=True, cache=True)
def negative_sampling_step(state, hidden, target, lr, work, rng) -> float:
    """Negative sampling: the target as positive, ``negative`` draws from the noise
    distribution (alias table) as negatives; a draw equal to the target is skipped."""
    output, alias_probability, alias_index, negative = state
    vocab_size = output.shape[0]
    loss = _logistic_row(output, target, hidden, 1.0, lr, work)
    for _ in range(negative):
        u = uniform(rng) * vocab_size
        bucket = int(u)
        noise = bucket if u - bucket < alias_probability[bucket] else alias_index[bucket]
        if noise == target:
            continue
        loss += _logistic_row(output, noise, hidden, 0.0, lr, work)
    return loss


@njit(nogil=True, fastmath=True, cache=True)
def hierarchical_softmax_step(state, hidden, target, lr, work, rng) -> float:
    """Hierarchical softmax: one logistic unit per inner node on the target's Huffman path."""
    output, codes, points, lengths = state
    loss = 0.0
    for j in range(lengths[target]):
        loss += _logistic_row(output, points[target, j], hidden, 1.0 - codes[target, j], lr, work)
    return loss


@njit(inline="always")
def _read_sentence(ids, start, keep, rng, sentence) -> tuple[int, int]:
    """Copy the subsampled words of the sentence at ``start``; return (length, end)."""
    n = 0
    end = start
    while end < ids.shape[0] and ids[end] >= 0:
        word = ids[end]
        if keep[word] >= 1.0 or uniform(rng) < keep[word]:
            sentence[n] = word
            n += 1
        end += 1
    return n, end


@njit(inline="always")
def _reduced_window(rng, pos, n, window) -> tuple[int, int]:
    """[lo, hi) around ``pos``: half-width window - b, b uniform in 0..window-1 (word2vec)."""
    reduced = int(_next_random(rng) % np.uint64(window))
    return max(0, pos - window + reduced), min(n, pos + window + 1 - reduced)


# Not cached on disk: a driver typed by the head step it is given (a dispatcher) never
# hits Numba's cache, and saving its index can fail on a dispatcher from another process.
@njit(nogil=True, fastmath=True)
def train_skipgram(head_step, state, vectors, ids, keep, window, lr_start, lr_end, rng):
    """Train skip-gram on one job; returns (loss sum, examples)."""
    d = vectors.shape[1]
    work = np.empty(d, dtype=np.float32)
    sentence = np.empty(ids.shape[0], dtype=np.int32)
    total = max(ids.shape[0], 1)
    loss = 0.0
    examples = 0
    start = 0
    while start < ids.shape[0]:
        lr = lr_start + (lr_end - lr_start) * start / total
        n, end = _read_sentence(ids, start, keep, rng, sentence)
        for pos in range(n):
            lo, hi = _reduced_window(rng, pos, n, window)
            for c in range(lo, hi):
                if c == pos:
                    continue
                context = vectors[sentence[c]]
                work[:] = 0.0
                loss += head_step(state, context, sentence[pos], lr, work, rng)
                for i in range(d):
                    context[i] += work[i]
                examples += 1
        start = end + 1
    return loss, examples


# Not cached on disk, as train_skipgram.
@njit(nogil=True, fastmath=True)
def train_cbow(head_step, state, vectors, ids, keep, window, lr_start, lr_end, rng):
    """Train CBOW (mean of context vectors) on one job; returns (loss sum, examples)."""
    d = vectors.shape[1]
    work = np.empty(d, dtype=np.float32)
    hidden = np.empty(d, dtype=np.float32)
    sentence = np.empty(ids.shape[0], dtype=np.int32)
    total = max(ids.shape[0], 1)
    loss = 0.0
    examples = 0
    start = 0
    while start < ids.shape[0]:
        lr = lr_start + (lr_end - lr_start) * start / total
        n, end = _read_sentence(ids, start, keep, rng, sentence)
        for pos in range(n):
            lo, hi = _reduced_window(rng, pos, n, window)
            count = hi - lo - 1
            if count <= 0:
                continue
            hidden[:] = 0.0
            for c in range(lo, hi):
                if c != pos:
                    context = vectors[sentence[c]]
                    for i in range(d):
                        hidden[i] += context[i]
            scale = np.float32(1.0 / count)
            for i in range(d):
                hidden[i] *= scale
            work[:] = 0.0
            loss += head_step(state, hidden, sentence[pos], lr, work, rng)
            for c in range(lo, hi):
                if c != pos:
                    context = vectors[sentence[c]]
                    for i in range(d):
                        context[i] += work[i]
            examples += 1
        start = end + 1
    return loss, examples
