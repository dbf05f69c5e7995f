"""Compiled CPU drivers (Numba, ``nogil``): skip-gram and CBOW over one job of word ids.

A driver walks a job (``-1`` ends a sentence), subsamples, picks the randomly reduced
window and trains on every example in one of two forms (``--step``):

- ``per-example`` (word2vec.c): ``head_step(state, hidden, target, lr, work, rng)`` for
  each example, with its own noise draws, updating the output rows before the next;
- ``shared``: ``shared_step(state, hidden, examples, target, lr, rng, fresh, delta,
  workspace)`` trains ``examples`` inputs of one target against one set of output units.
  Skip-gram calls it once per window: all its context words predict the centre word, so
  they share one draw of negatives and are updated together as small dense products
  (HogBatch, Ji et al. 2016). CBOW calls it once per position, in word2vec's order, with
  one draw of negatives shared by :data:`CBOW_BLOCK` consecutive positions (``fresh``).

The head's compiled step is passed in as an argument, with its own ``state`` (a named
tuple) and, for the shared form, its ``workspace``, so the drivers never know which head
they drive (the compiled counterpart of :class:`embedtrain.heads.base.Head`; the steps
live with their heads).

Conventions, as word2vec.c and gensim: skip-gram predicts the centre word from each
context word's input vector; CBOW predicts it from the mean of the context vectors
and adds the same (unscaled) update to every context vector (gensim ``cbow_mean=1``).
``work`` receives ``-lr * dL/dhidden``; the return value is the example's loss.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from embedtrain.rng import next_random, uniform

#: CBOW positions that share one draw of noise words in the shared form, as the context
#: words of one skip-gram window (about 2 x 3 with window 5) do.
CBOW_BLOCK = 6


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


# Not cached on disk, as train_skipgram.
@njit(nogil=True, fastmath=True)
def train_skipgram_shared(
    shared_step, state, workspace, vectors, ids, keep, window, lr_start, lr_end, rng
):
    """Skip-gram, each window one shared step (its context vectors, at most ``2 window``,
    against the centre word's units); returns (loss sum, examples)."""
    d = vectors.shape[1]
    width = 2 * window
    hidden = np.empty((width, d), dtype=np.float32)
    delta = np.empty((width, d), dtype=np.float32)
    contexts = np.empty(width, dtype=np.int32)
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
            m = 0
            for c in range(lo, hi):
                if c != pos:
                    contexts[m] = sentence[c]
                    hidden[m] = vectors[sentence[c]]
                    m += 1
            if m == 0:
                continue
            loss += shared_step(state, hidden, m, sentence[pos], lr, rng, True, delta, workspace)
            for i in range(m):
                context = vectors[contexts[i]]
                for k in range(d):
                    context[k] += delta[i, k]
            examples += m
        start = end + 1
    return loss, examples


# Not cached on disk, as train_skipgram.
@njit(nogil=True, fastmath=True)
def train_cbow_shared(
    shared_step, state, workspace, vectors, ids, keep, window, lr_start, lr_end, rng
):
    """CBOW as :func:`train_cbow`, each :data:`CBOW_BLOCK` consecutive examples sharing one
    draw of negatives; returns (loss sum, examples)."""
    d = vectors.shape[1]
    hidden = np.empty((1, d), dtype=np.float32)
    delta = np.empty((1, d), dtype=np.float32)
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
            hidden[0] = 0.0
            for c in range(lo, hi):
                if c != pos:
                    context = vectors[sentence[c]]
                    for k in range(d):
                        hidden[0, k] += context[k]
            scale = np.float32(1.0 / count)
            for k in range(d):
                hidden[0, k] *= scale
            fresh = examples % CBOW_BLOCK == 0
            loss += shared_step(state, hidden, 1, sentence[pos], lr, rng, fresh, delta, workspace)
            for c in range(lo, hi):
                if c != pos:
                    context = vectors[sentence[c]]
                    for k in range(d):
                        context[k] += delta[0, k]
            examples += 1
        start = end + 1
    return loss, examples
