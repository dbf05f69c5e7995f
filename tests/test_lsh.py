"""The LSH negative-sampling head: the hash family against its collision probability, the
sampler (retrieval, top-ups, never the target), the per-pair gradient against float64
finite differences, the table schedule and its saved state, and learning end to end."""

import numpy as np
import pytest
from conftest import neighbour_purity, numeric_gradient

import embedtrain
from embedtrain.backend import NumpyOps
from embedtrain.cli import main
from embedtrain.heads import resolved_settings
from embedtrain.heads.lsh import (
    BUCKET_CAPACITY,
    LshNegativeSampling,
    hash_functions,
    retrieval_probability,
)
from embedtrain.heads.lsh_kernels import SIMHASH, TARGET_RETRIES, build_tables, draw_negatives
from embedtrain.rng import seed_state
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

DIM = 8


def pair_at_angle(theta: float, seed: int) -> np.ndarray:
    """Two unit vectors in R^DIM at angle ``theta``, in a random plane."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, 2)))
    first = basis[:, 0]
    second = np.cos(theta) * basis[:, 0] + np.sin(theta) * basis[:, 1]
    return np.stack([first, second]).astype(np.float32)


def codes_of(vectors: np.ndarray, bits: int, tables: int, generation: int) -> np.ndarray:
    """Every vector's SimHash bucket in each table of one generation of hash functions."""
    planes, pairs = hash_functions(7, generation, tables * bits, DIM)
    size = vectors.shape[0]
    codes = np.zeros((2, tables, size), dtype=np.int32)
    build_tables(
        vectors,
        np.arange(size),
        np.stack([planes, planes]),
        np.stack([pairs, pairs]),
        SIMHASH,
        bits,
        0,
        np.zeros((2, tables, 2**bits, BUCKET_CAPACITY), dtype=np.int32),
        np.zeros((2, tables, 2**bits), dtype=np.int32),
        codes,
        np.zeros((2, tables, size), dtype=np.uint8),
    )
    return codes[0]


@pytest.mark.parametrize("theta", [0.3, 1.0, 2.0])
def test_simhash_collision_probability_per_table(theta):
    """A table's K sign bits agree for two vectors at angle theta with (1 - theta/pi)^K:
    counted over 4,000 seeded tables, within 4 standard errors."""
    bits, tables, trials = 2, 100, 40
    hits = 0
    for generation in range(trials):
        codes = codes_of(pair_at_angle(theta, generation), bits, tables, generation)
        hits += int((codes[:, 0] == codes[:, 1]).sum())
    expected = (1 - theta / np.pi) ** bits
    n = tables * trials
    assert abs(hits / n - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize("theta", [0.0, 0.6, 1.2])
def test_a_planted_word_is_retrieved_with_the_predicted_probability(theta):
    """Query and planted word at angle theta share one of L buckets with probability
    1 - (1 - p^K)^L, p = 1 - theta/pi (1 for the query's own vector)."""
    bits, tables, trials = 3, 4, 1500
    retrieved = 0
    for generation in range(trials):
        codes = codes_of(pair_at_angle(theta, generation), bits, tables, generation)
        retrieved += bool((codes[:, 0] == codes[:, 1]).any())
    expected = float(retrieval_probability(np.cos(theta), bits, tables))
    error = np.sqrt(max(expected * (1 - expected), 1e-12) / trials)
    assert abs(retrieved / trials - expected) <= 4 * error + 1e-12


COUNTS = np.array([50, 40, 30, 25, 20, 15, 12, 10, 8, 6, 5, 4])
VOCAB = Vocabulary([f"w{i}" for i in range(len(COUNTS))], COUNTS, int(COUNTS.sum()))


def make_head(seed=0, **options):
    settings = Settings(dim=DIM, negative=4, lsh_bits=2, lsh_tables=3, **options)
    head = LshNegativeSampling(VOCAB, settings, NumpyOps(), seed=seed)
    head.output[:] = np.random.default_rng(seed).normal(0, 0.5, head.output.shape)
    head.compiled_step()  # the compiled engine's head: the tables are in use
    head.start_job(0)
    return head


def plant_buckets(head, contents: list[list[int]]) -> None:
    """Make table t's bucket 0 hold ``contents[t]`` and every other bucket nothing, with
    every word's code 0 (label mode queries bucket 0 in each table)."""
    a = int(head._active[0])
    head._sizes[a] = 0
    head._kept[a] = 0
    head._codes[a] = 0
    for t, words in enumerate(contents):
        head._tables[a, t, 0, : len(words)] = words
        head._sizes[a, t, 0] = len(words)
        head._kept[a, t, words] = 1


def draw(head, target, seed, hidden=None):
    _, state = head.compiled_step()
    negatives = np.empty(head.negative, dtype=np.int64)
    shifts = np.empty(head.negative, dtype=np.float64)
    hidden = np.zeros(DIM, dtype=np.float32) if hidden is None else hidden
    topped = draw_negatives(state, hidden, target, seed_state(seed), negatives, shifts)
    return negatives, shifts, topped


def test_union_draws_follow_slot_multiplicity_and_never_the_target():
    """Buckets {3, 5, target 2}, {3, 7}, {3}: a uniform union slot other than the target's
    is 3 with probability 3/5 and 5, 7 with 1/5 each, never the target; a negative is
    topped up only after TARGET_RETRIES draws of the target's slot, (1/6)^4 of them."""
    head = make_head(lsh_mode="label")
    plant_buckets(head, [[3, 5, 2], [3, 7], [3]])
    seen, topups = [], 0
    for seed in range(3000):
        negatives, _, topped = draw(head, target=2, seed=seed)
        seen.extend(negatives[: head.negative - topped].tolist())
        topups += topped
    seen = np.array(seen)
    assert not (seen == 2).any()
    expected_topups = 3000 * head.negative / 6**TARGET_RETRIES
    assert topups <= expected_topups + 4 * np.sqrt(expected_topups) + 1
    share = np.array([(seen == w).mean() for w in (3, 5, 7)])
    np.testing.assert_allclose(share, [0.6, 0.2, 0.2], atol=4 * np.sqrt(0.24 / seen.size))


def test_too_few_words_are_topped_up_from_the_noise_distribution():
    """Buckets holding the target and one other word: that word once, the other three
    negatives from count^0.75 (a top-up equal to the target skipped, as -1)."""
    head = make_head(lsh_mode="label")
    plant_buckets(head, [[4, 9], [4], []])
    topups = []
    for seed in range(4000):
        negatives, _, topped = draw(head, target=4, seed=seed)
        assert topped == 3 and negatives[0] == 9
        topups.extend(negatives[1:].tolist())
    topups = np.array(topups)
    noise = VOCAB.noise_distribution(0.75)
    observed = np.bincount(np.where(topups < 0, 4, topups), minlength=len(COUNTS)) / topups.size
    np.testing.assert_allclose(observed, noise, atol=4 * np.sqrt(noise.max() / topups.size))
    assert (topups == -1).mean() == pytest.approx(noise[4], abs=0.01)


@pytest.mark.parametrize("mode", ["embedding", "label"])
def test_the_target_is_never_its_own_negative(mode):
    """Real tables built from random vectors, every word as target, many draws."""
    head = make_head(lsh_mode=mode, seed=3)
    rng = np.random.default_rng(0)
    for seed in range(400):
        target = seed % len(COUNTS)
        hidden = rng.normal(0, 1, DIM).astype(np.float32)
        negatives, _, _ = draw(head, target, seed, hidden)
        assert not (negatives == target).any()


@pytest.mark.parametrize("correction", ["none", "logq"])
def test_step_matches_finite_differences_of_the_per_pair_loss(correction):
    """The compiled step's update of the hidden vector and of every row equals -lr times
    the float64 finite-difference gradient of softplus(-o_t.h) + sum_n softplus(o_n.h - s_n)
    over the negatives (and shifts s_n) it drew (to the sigmoid table's precision)."""
    head = make_head(lsh_mode="embedding", lsh_correction=correction, seed=5)
    step, state = head.compiled_step()
    hidden = np.random.default_rng(1).normal(0, 0.5, DIM).astype(np.float32)
    target, seed, lr = 1, 11, 1e-3
    negatives, shifts, _ = draw(head, target, seed, hidden)
    if correction == "logq":
        assert np.any(shifts != 0)
    h64 = hidden.astype(np.float64)
    w64 = head.output.astype(np.float64)

    def loss():
        total = np.logaddexp(0, -w64[target] @ h64)
        for word, shift in zip(negatives, shifts):
            if word >= 0:
                total += np.logaddexp(0, w64[word] @ h64 - shift)
        return total

    grad_hidden = numeric_gradient(loss, h64)
    grad_output = numeric_gradient(loss, w64)
    before = head.output.copy()
    work = np.zeros(DIM, dtype=np.float32)
    step(state, hidden, target, lr, work, seed_state(seed))
    np.testing.assert_allclose(work / -lr, grad_hidden, atol=2e-2)
    np.testing.assert_allclose((head.output - before) / -lr, grad_output, atol=2e-2)


def test_tables_follow_the_vectors_on_their_schedule():
    """No rebuild inside a rehash period; past it the other buffer becomes active and
    holds every word in the bucket its current output vector hashes to."""
    head = make_head(lsh_rehash=1000, lsh_mode="label")
    active = int(head._active[0])
    head.output[:] = np.random.default_rng(9).normal(0, 1, head.output.shape)
    head.start_job(999)
    assert int(head._active[0]) == active
    head.start_job(1000)
    assert int(head._active[0]) == 1 - active
    a = 1 - active
    codes = codes_of(head.output, 2, 3, generation=0)
    planes, _ = hash_functions(head._hash_seed, 0, 6, DIM)
    np.testing.assert_array_equal(head._planes[a], planes)
    expected = (head.output @ planes.T > 0).reshape(len(COUNTS), 3, 2) @ np.array([1, 2])
    np.testing.assert_array_equal(head._codes[a], expected.T)
    assert codes.shape == expected.T.shape
    for t in range(3):
        for b in range(4):
            held = head._tables[a, t, b, : head._sizes[a, t, b]]
            members = np.flatnonzero(expected[:, t] == b)  # fewer than a bucket holds
            np.testing.assert_array_equal(np.sort(held), members)


def test_a_full_bucket_keeps_a_uniform_sample_of_its_words():
    """Every word hashes to one bucket, 3x its capacity: over many rebuilds each word is
    kept with probability C / n (not the most frequent first), 5 standard errors."""
    words = 3 * BUCKET_CAPACITY
    vocab = Vocabulary([f"w{i}" for i in range(words)], np.arange(words, 0, -1), words)
    settings = resolved_settings(head="lsh", dim=DIM, lsh_bits=1, lsh_tables=1)
    head = LshNegativeSampling(vocab, settings, NumpyOps(), seed=0)
    head.output[:] = 1.0
    rebuilds = 300
    kept = np.zeros(words)
    for rebuild in range(rebuilds):
        head.rebuild_tables(rebuild)
        a = int(head._active[0])
        bucket = head._codes[a, 0, 0]
        assert head._sizes[a, 0, bucket] == BUCKET_CAPACITY
        kept[head._tables[a, 0, bucket]] += 1
    share = BUCKET_CAPACITY / words
    spread = np.sqrt(share * (1 - share) / rebuilds)
    assert np.all(np.abs(kept / rebuilds - share) < 5 * spread)


FAST = {"dim": 20, "epochs": 5, "threads": 1, "min_count": 1, "model": "skipgram", "seed": 3}


@pytest.mark.parametrize(
    "options",
    [
        {"lsh_mode": "embedding", "lsh_rehash": 5000},
        {"lsh_mode": "label", "lsh_rehash": 5000, "lsh_correction": "logq"},
        {"lsh_hash": "dwta", "lsh_rehash": 5000, "model": "cbow", "threads": 2},
        {"engine": "batched", "batch_size": 64},
    ],
    ids=["embedding", "label-logq", "dwta-cbow-2-threads", "batched"],
)
def test_learning_recovers_the_planted_neighbours(structured_corpus, options):
    embeddings = embedtrain.train(structured_corpus, progress=False, head="lsh", **FAST | options)
    assert neighbour_purity(embeddings.words, embeddings.vectors) >= 0.9


def test_damaged_tables_are_refused(structured_corpus, tmp_path):
    """A saved table holding an id outside the vocabulary is a damaged file."""
    embeddings = embedtrain.train(
        structured_corpus, progress=False, head="lsh", **FAST | {"epochs": 1}
    )
    path = tmp_path / "m.npz"
    embeddings.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    assert arrays["head.lsh_rebuild"][0] >= 0 and arrays["head.lsh_sizes"].sum() > 0
    arrays["head.lsh_tables"][0, :, 0] = 10**6
    np.savez(path, **arrays)
    with pytest.raises(embedtrain.ModelFileError, match="damaged"):
        embedtrain.load(path)


def test_cli_trains_saves_and_resumes(capsys, structured_corpus, tmp_path):
    common = ["--dim", "16", "--threads", "1", "--device", "cpu", "--quiet"]
    lsh = ["--head", "lsh", "--lsh-mode", "label", "--lsh-bits", "3", "--lsh-tables", "4"]
    model = tmp_path / "m.npz"
    argv = ["train", structured_corpus, "-o", tmp_path / "v.txt", "--save-model", model]
    assert main([str(a) for a in [*argv, *common, *lsh, "--epochs", "1"]]) == 0
    saved = embedtrain.load(model)
    assert saved.settings.lsh_bits == 3 and saved.settings.lsh_mode == "label"
    resume = ["train", structured_corpus, "-o", tmp_path / "v2.txt", "--resume", model]
    assert main([str(a) for a in [*resume, "--epochs", "2", "--quiet"]]) == 0
    assert (tmp_path / "v2.txt").exists()
    code = main([str(a) for a in [*argv, *common, "--head", "lsh", "--lsh-bits", "13"]])
    assert code == 2 and "--lsh-bits" in capsys.readouterr().err


def test_epoch_summary_counts_every_negative_and_the_top_ups():
    """One thread: the summary's tally is negative x examples, exactly; with tables built
    from the zero initial vectors every word shares one bucket per table, the one a label
    query reads, so a corpus of fewer words than a bucket holds never needs a top-up."""
    from conftest import structured_sentences

    options = FAST | {"epochs": 1, "lsh_rehash": 10**9, "negative": 4, "lsh_mode": "label"}
    embeddings = embedtrain.train(structured_sentences(300), progress=False, head="lsh", **options)
    report = embeddings.history[-1]
    assert report.head_summary == (
        f"lsh: 0.0% of {4 * report.examples:,} negatives topped up from count^0.75 "
        "(the query's buckets held too few words)"
    )


def test_tables_are_rebuilt_once_per_rehash_window():
    """start_job rebuilds the tables at the first job of each lsh_rehash words and at no
    other: the rebuilds a run does, job by job, are its windows' numbers."""
    vocab = Vocabulary([f"w{i}" for i in range(40)], np.arange(40, 0, -1), 820)
    settings = resolved_settings(head="lsh", dim=DIM, lsh_rehash=100)
    head = LshNegativeSampling(vocab, settings, NumpyOps(), seed=0)
    head.compiled_step()  # the compiled engine uses the tables
    rebuilt = []
    original = head.rebuild_tables
    head.rebuild_tables = lambda rebuild: (rebuilt.append(rebuild), original(rebuild))
    for position in (0, 10, 60, 99, 100, 150, 250, 260):
        head.start_job(position)
    assert rebuilt == [0, 1, 2]
