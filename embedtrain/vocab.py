"""Vocabulary: one streaming counting pass, word2vec-style pruning, and the tables
the heads need (subsampling keep probabilities, noise distribution, Huffman codes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain

import numpy as np
from numba import njit


@dataclass
class Vocabulary:
    """Words sorted by decreasing count (ties by the word), with their counts.

    ``total_words`` counts every token of the corpus, in the vocabulary or not;
    ``retained_words`` only those kept.
    """

    words: list[str]
    counts: np.ndarray
    total_words: int

    def __post_init__(self) -> None:
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @property
    def retained_words(self) -> int:
        return int(self.counts.sum())

    def keep_probabilities(self, sample: float) -> np.ndarray:
        """Probability of keeping each occurrence of a word (word2vec/gensim formula).

        With t = sample * retained words (or ``sample`` itself when >= 1, as gensim),
        a word of count c is kept with probability (sqrt(c/t) + 1) * t / c, capped at 1.
        ``sample == 0`` disables subsampling.
        """
        counts = self.counts.astype(np.float64)
        if sample <= 0:
            return np.ones(len(self), dtype=np.float32)
        threshold = sample if sample >= 1 else sample * counts.sum()
        keep = (np.sqrt(counts / threshold) + 1.0) * threshold / counts
        return np.minimum(keep, 1.0).astype(np.float32)

    def noise_distribution(self, exponent: float) -> np.ndarray:
        """Negative-sampling distribution proportional to count**exponent (float64)."""
        weights = self.counts.astype(np.float64) ** exponent
        return weights / weights.sum()


def build_vocabulary(
    sentence_blocks: Iterable[list[list[str]]],
    min_count: int = 5,
    max_vocab_size: int | None = None,
    max_final_vocab: int | None = None,
) -> Vocabulary:
    """Count words in one pass and keep those seen at least ``min_count`` times
    (:func:`count_words`, then :func:`vocabulary_from_counts`)."""
    counts, total = count_words(sentence_blocks, max_vocab_size)
    return vocabulary_from_counts(counts, total, min_count, max_final_vocab)


def count_words(
    sentence_blocks: Iterable[list[list[str]]], max_vocab_size: int | None = None
) -> tuple[Counter[str], int]:
    """Word counts and the number of tokens, in one pass.

    ``max_vocab_size`` bounds the number of distinct words held while counting: when it
    is exceeded, words with count <= ``min_reduce`` are dropped and ``min_reduce`` grows,
    as word2vec.c's ReduceVocab and gensim's prune_vocab do (a distributed run prunes each
    worker's shard so, as each word2vec process would).
    """
    counts: Counter[str] = Counter()
    total = 0
    min_reduce = 1
    for block in sentence_blocks:
        counts.update(chain.from_iterable(block))  # one C-level pass per block
        total += sum(map(len, block))
        if max_vocab_size is not None and len(counts) > max_vocab_size:
            counts = Counter({w: c for w, c in counts.items() if c > min_reduce})
            min_reduce += 1
    return counts, total


def vocabulary_from_counts(
    counts: Counter[str], total: int, min_count: int = 5, max_final_vocab: int | None = None
) -> Vocabulary:
    """The words seen at least ``min_count`` times, most frequent first (ties by the
    word); ``max_final_vocab`` then keeps at most that many."""
    kept = sorted(
        ((w, c) for w, c in counts.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0])
    )
    if max_final_vocab is not None:
        kept = kept[:max_final_vocab]
    words = [w for w, _ in kept]
    return Vocabulary(words, np.array([c for _, c in kept], dtype=np.int64), total)


@dataclass
class AliasTable:
    """Walker/Vose alias table: O(1) draws from a discrete distribution."""

    probability: np.ndarray  # float32, chance of keeping the bucket's own index
    alias: np.ndarray  # int32, the index drawn otherwise


def alias_table(distribution: np.ndarray) -> AliasTable:
    """Build an alias table for ``distribution`` (non-negative, summing to 1)."""
    probability, alias = _vose(np.asarray(distribution, dtype=np.float64))
    return AliasTable(probability.astype(np.float32), alias)


@njit(cache=True)
def _vose(distribution: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = distribution.shape[0]
    scaled = distribution * n
    probability = np.ones(n, dtype=np.float64)
    alias = np.arange(n).astype(np.int32)
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    n_small = 0
    n_large = 0
    for i in range(n):
        if scaled[i] < 1.0:
            small[n_small] = i
            n_small += 1
        else:
            large[n_large] = i
            n_large += 1
    while n_small > 0 and n_large > 0:
        n_small -= 1
        s = small[n_small]
        g = large[n_large - 1]
        probability[s] = scaled[s]
        alias[s] = g
        scaled[g] = scaled[g] + scaled[s] - 1.0
        if scaled[g] < 1.0:
            n_large -= 1
            small[n_small] = g
            n_small += 1
    return probability, alias


@dataclass
class HuffmanTree:
    """Per-word paths in word2vec's Huffman tree, padded to the longest code.

    ``codes[w, :lengths[w]]`` are the branch bits from the root to word ``w`` and
    ``points[w, :lengths[w]]`` the inner nodes (rows of the HS output matrix) on the way.
    """

    codes: np.ndarray  # uint8, (V, max_length)
    points: np.ndarray  # int32, (V, max_length)
    lengths: np.ndarray  # int32, (V,)


def huffman_tree(counts: np.ndarray) -> HuffmanTree:
    """Build the Huffman tree of word2vec.c (counts must be sorted, decreasing)."""
    codes, points, lengths = _huffman(np.asarray(counts, dtype=np.int64))
    return HuffmanTree(codes, points, lengths)


@njit(cache=True)
def _huffman(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """word2vec.c's construction (two queues over the sorted counts). Codes are as long as
    the tree is deep, with no fixed buffer: Fibonacci-like counts give depth V - 1, and
    int64 counts bound it near 92."""
    n = counts.shape[0]
    lengths = np.zeros(n, dtype=np.int32)
    if n < 2:
        return np.zeros((n, 1), dtype=np.uint8), np.zeros((n, 1), dtype=np.int32), lengths
    count = np.empty(2 * n, dtype=np.int64)
    count[:n] = counts
    count[n:] = np.iinfo(np.int64).max
    binary = np.zeros(2 * n, dtype=np.uint8)
    parent = np.zeros(2 * n, dtype=np.int64)
    pos1 = n - 1
    pos2 = n
    for a in range(n - 1):
        picks = np.empty(2, dtype=np.int64)
        for k in range(2):
            if pos1 >= 0 and count[pos1] < count[pos2]:
                picks[k] = pos1
                pos1 -= 1
            else:
                picks[k] = pos2
                pos2 += 1
        count[n + a] = count[picks[0]] + count[picks[1]]
        parent[picks[0]] = n + a
        parent[picks[1]] = n + a
        binary[picks[1]] = 1
    root = 2 * n - 2
    depth = np.zeros(2 * n - 1, dtype=np.int32)  # parents are created after their children
    for node in range(root - 1, -1, -1):
        depth[node] = depth[parent[node]] + 1
    lengths[:] = depth[:n]
    width = lengths.max()
    codes = np.zeros((n, width), dtype=np.uint8)
    points = np.zeros((n, width), dtype=np.int32)
    for w in range(n):
        node = w
        for i in range(lengths[w] - 1, -1, -1):  # from the leaf up, written root first
            codes[w, i] = binary[node]
            points[w, i] = parent[node] - n
            node = parent[node]
    return codes, points, lengths
