import numpy as np
import pytest

from embedtrain.backend import NumpyOps
from embedtrain.errors import SettingsError
from embedtrain.heads.sparse import NegativeSampling
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary, build_vocabulary, huffman_tree


def blocks(*sentences):
    return [[s.split() for s in sentences]]


def test_counts_sorted_by_count_then_word():
    vocab = build_vocabulary(blocks("b a c b", "a b d d"), min_count=2)
    assert vocab.words == ["b", "a", "d"]
    assert vocab.counts.tolist() == [3, 2, 2]
    assert vocab.total_words == 8
    assert vocab.retained_words == 7


def test_max_final_vocab_keeps_most_frequent():
    vocab = build_vocabulary(blocks("a a a b b c"), min_count=1, max_final_vocab=2)
    assert vocab.words == ["a", "b"]


def test_max_vocab_size_prunes_rare_words_while_counting():
    # 6 distinct words with limit 3: after the first block the singletons go.
    data = [[["x", "x", "x", "a", "b", "c"]], [["x", "y", "y"]]]
    vocab = build_vocabulary(data, min_count=1, max_vocab_size=3)
    assert vocab.words == ["x", "y"]
    assert vocab.counts.tolist() == [4, 2]


@pytest.mark.parametrize(
    "option", [{"min_count": 0}, {"max_vocab_size": 0}, {"max_final_vocab": 0}]
)
def test_bad_vocab_parameters(option):
    with pytest.raises(SettingsError, match=next(iter(option)).replace("_", "-")):
        Settings.from_options(**option)


def test_keep_probabilities_follow_word2vec_formula():
    counts = np.array([1000, 100, 10, 1])
    vocab = Vocabulary(["a", "b", "c", "d"], counts, 1111)
    keep = vocab.keep_probabilities(1e-2)
    t = 1e-2 * counts.sum()
    expected = np.minimum((np.sqrt(counts / t) + 1) * t / counts, 1.0)
    np.testing.assert_allclose(keep, expected, rtol=1e-6)
    assert keep[0] < 1 and keep[-1] == 1
    assert (vocab.keep_probabilities(0) == 1).all()


def test_huffman_codes_are_a_complete_prefix_code():
    rng = np.random.default_rng(0)
    counts = np.sort(rng.integers(1, 10_000, size=300))[::-1]
    tree = huffman_tree(counts)
    codes = ["".join(map(str, tree.codes[w, : tree.lengths[w]])) for w in range(len(counts))]
    assert len(set(codes)) == len(codes)
    for a in codes:
        assert not any(b != a and b.startswith(a) for b in codes)
    assert sum(2.0 ** -len(c) for c in codes) == pytest.approx(1.0)
    # more frequent words never get longer codes; every path starts at the root
    assert all(np.diff(tree.lengths) >= 0)
    assert (tree.points[:, 0] == len(counts) - 2).all()
    for w in range(len(counts)):
        assert (tree.points[w, : tree.lengths[w]] < len(counts) - 1).all()


def test_huffman_lengths_are_optimal():
    counts = np.array([45, 13, 12, 16, 9, 5])
    order = np.argsort(-counts, kind="stable")
    tree = huffman_tree(counts[order])
    # Classic textbook example: optimal weighted length 224.
    assert int((tree.lengths * counts[order]).sum()) == 224


def test_noise_draws_follow_count_power():
    counts = np.array([500, 200, 100, 50, 10])
    vocab = Vocabulary(list("abcde"), counts, int(counts.sum()))
    head = NegativeSampling(vocab, Settings(dim=4), NumpyOps(), seed=3)
    draws = head.draw_noise((200_000,))
    frequency = np.bincount(draws, minlength=5) / draws.size
    np.testing.assert_allclose(frequency, vocab.noise_distribution(0.75), atol=3e-3)
