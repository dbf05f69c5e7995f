"""Compiled CPU drivers (Numba, ``nogil``): skip-gram and CBOW over one job of word ids.

A driver walks a job (``-1`` ends a sentence), subsamples, picks the randomly reduced
window and calls ``head_step(state, hidden, target, lr, work, rng)`` for every training
example. The head step is a compiled function passed in as an argument, with its own
``state`` (a named tuple), so the drivers never know which head they drive (the compiled
counterpart of :class:`embedtrain.heads.base.Head`; the steps live with their heads).

Conventions, as word2vec.c and gensim: skip-gram predicts the centre word from each
context word's input vector; CBOW predicts it from the mean of the context vectors
and adds the same (unscaled) update to every context vector (gensim ``cbow_mean=1``).
``work`` receives ``-lr * dL/dhidden``; the return value is the example's loss.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from embedtrain.rng import next_random, uniform


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
    reduced = int(next_random(rng) % np.uint64(window))
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
