import numpy as np
import pytest

from embedtrain.backend import NumpyOps
from embedtrain.errors import SettingsError
from embedtrain.heads import resolved_settings
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
        resolved_settings(**option)


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


def test_subsampling_threshold_uses_the_words_kept_not_every_token():
    """word2vec's t = sample * train_words, where train_words sums the counts of the words
    kept (min_count pruned words excluded). A corpus of 10,000 tokens of which 4,000 are
    pruned: t = 1e-2 * 6,000 = 60, so a word of count 5,000 is kept with probability
    (sqrt(5000 / 60) + 1) * 60 / 5000 = 0.1215445."""
    vocab = Vocabulary(["a", "b"], np.array([5000, 1000]), total_words=10_000)
    keep = vocab.keep_probabilities(1e-2)
    assert keep[0] == pytest.approx(0.1215445, rel=1e-6)
    assert keep[1] == pytest.approx((np.sqrt(1000 / 60) + 1) * 60 / 1000, rel=1e-6)


def test_sample_of_one_or_more_is_an_absolute_count_threshold():
    """gensim: sample >= 1 is the threshold t itself: count 100, t = 4 keeps
    (sqrt(25) + 1) * 4 / 100 = 0.24; a word at or under t always stays."""
    vocab = Vocabulary(["a", "b"], np.array([100, 4]), total_words=104)
    keep = vocab.keep_probabilities(4)
    assert keep[0] == pytest.approx(0.24, rel=1e-6)
    assert keep[1] == 1.0


@pytest.mark.parametrize(
    "exponent,expected",
    [
        (0.75, [0.71092, 0.22447, 0.05125, 0.01337]),  # 1000, 315.7, 72.1, 18.8 over 1406.6
        (0.0, [0.25, 0.25, 0.25, 0.25]),
        (1.0, [10000 / 12500, 2150 / 12500, 300 / 12500, 50 / 12500]),
    ],
)
def test_noise_distribution_is_count_to_the_exponent(exponent, expected):
    counts = np.array([10000, 2150, 300, 50])
    vocab = Vocabulary(list("abcd"), counts, int(counts.sum()))
    np.testing.assert_allclose(vocab.noise_distribution(exponent), expected, atol=6e-5)


def test_alias_table_draws_match_the_distribution():
    """400,000 draws through the alias table (as both sampling paths read it): every
    frequency within 5 standard errors of its probability."""
    from embedtrain.vocab import alias_table

    probabilities = np.array([0.5, 0.3, 0.1, 0.06, 0.04])
    table = alias_table(probabilities)
    rng = np.random.default_rng(7)
    n = 400_000
    scaled = rng.random(n) * 5
    bucket = scaled.astype(np.int64)
    draws = np.where(scaled - bucket < table.probability[bucket], bucket, table.alias[bucket])
    frequency = np.bincount(draws, minlength=5) / n
    error = np.sqrt(probabilities * (1 - probabilities) / n)
    assert (np.abs(frequency - probabilities) < 5 * error).all()


def test_huffman_codes_longer_than_64_bits():
    """Fibonacci counts give a maximally unbalanced tree: word i sits at depth i + 1, the
    last two at depth V - 1 = 89 (word2vec.c's fixed 40-slot buffer, and ours of 64,
    would overflow). Kraft's equality holds and the weighted length is Huffman's."""
    fibonacci = [1, 1]
    while len(fibonacci) < 90:
        fibonacci.append(fibonacci[-1] + fibonacci[-2])
    counts = np.array(fibonacci[::-1], dtype=np.int64)
    tree = huffman_tree(counts)
    assert int(tree.lengths.max()) == 89
    assert tree.lengths.tolist() == list(range(1, 89)) + [89, 89]
    assert sum(2.0 ** -int(n) for n in tree.lengths) == pytest.approx(1.0)
