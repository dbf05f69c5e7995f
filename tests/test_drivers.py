"""The compiled skip-gram and CBOW drivers and the batched engine's windows, pinned by what
word2vec defines: each position's half-width is window - b with b uniform in 0..window-1,
so a context word at distance k takes part with probability (window - k + 1) / window;
CBOW's input is the mean of the context vectors. A recording head step (word i's vector
is [i]) sees exactly which (input, target) pairs a driver produces, in both update forms
(per example, and shared: a block of examples per call)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from embedtrain import drivers
from embedtrain.backend import NumpyOps
from embedtrain.batching import window_batch
from embedtrain.heads import resolved_settings
from embedtrain.heads.base import PADDING, StepResult
from embedtrain.rng import seed_state

WINDOW = 5
LENGTH = 60  # one sentence of distinct words 0..59: a word's id is its position
RUNS = 400
INTERIOR = range(WINDOW, LENGTH - WINDOW)  # positions whose windows are never cut


@njit
def recording_step(state, hidden, target, lr, work, rng):
    """Record (input value, target) and change nothing."""
    records, count = state
    records[count[0], 0] = hidden[0]
    records[count[0], 1] = target
    count[0] += 1
    return 0.0


@njit
def recording_shared_step(state, hidden, examples, target, lr, rng, fresh, delta, workspace):
    """Record (input value, target) of every example of the block and change nothing."""
    records, count = state
    for i in range(examples):
        records[count[0], 0] = hidden[i, 0]
        records[count[0], 1] = target
        count[0] += 1
        delta[i, :] = 0.0
    return 0.0


@njit
def rate_recording_shared_step(state, hidden, examples, target, lr, rng, fresh, delta, workspace):
    """Record the rate each example of the block trains with."""
    rates, count = state
    for i in range(examples):
        rates[count[0]] = lr
        count[0] += 1
        delta[i, :] = 0.0
    return 0.0


SKIPGRAM = [drivers.train_skipgram, drivers.train_skipgram_shared]
CBOW = [drivers.train_cbow, drivers.train_cbow_shared]
SHARED = (drivers.train_skipgram_shared, drivers.train_cbow_shared)
WORKSPACE = (np.zeros(1),)  # the recording steps need none


def call_driver(driver, step, shared_step, state, *arguments):
    """A driver of either form, with the recording step of its form."""
    if driver in SHARED:
        return driver(shared_step, state, WORKSPACE, *arguments)
    return driver(step, state, *arguments)


def run_driver(driver, seed):
    vectors = np.arange(LENGTH, dtype=np.float32)[:, None].copy()
    job = np.append(np.arange(LENGTH, dtype=np.int32), np.int32(-1))
    keep = np.ones(LENGTH, dtype=np.float32)
    records = np.zeros((LENGTH * 2 * WINDOW, 2), dtype=np.float64)
    count = np.zeros(1, dtype=np.int64)
    arguments = (vectors, job, keep, WINDOW, 0.1, 0.1, seed_state(seed))
    call_driver(driver, recording_step, recording_shared_step, (records, count), *arguments)
    np.testing.assert_array_equal(vectors[:, 0], np.arange(LENGTH))  # nothing was updated
    return records[: count[0]]


def expected_share(distance: int) -> float:
    return (WINDOW - distance + 1) / WINDOW


def assert_distance_shares(pairs_per_distance: np.ndarray, trials: int) -> None:
    """Observed share of (centre, distance k, side) trials that produced a pair, against
    (W - k + 1) / W, within 5 binomial standard errors."""
    for distance in range(1, WINDOW + 1):
        p = expected_share(distance)
        observed = pairs_per_distance[distance] / trials
        assert abs(observed - p) < 5 * np.sqrt(p * (1 - p) / trials) + 1e-12, (distance, observed)
    assert pairs_per_distance[WINDOW + 1 :].sum() == 0


@pytest.mark.parametrize("driver", SKIPGRAM)
def test_skipgram_windows_are_reduced_as_word2vec(driver):
    per_distance = np.zeros(LENGTH, dtype=np.int64)
    for seed in range(RUNS):
        records = run_driver(driver, seed)
        context, centre = records[:, 0].astype(int), records[:, 1].astype(int)
        interior = np.isin(centre, INTERIOR)
        np.add.at(per_distance, np.abs(context - centre)[interior], 1)
    assert_distance_shares(per_distance, RUNS * len(INTERIOR) * 2)


@pytest.mark.parametrize("driver", SKIPGRAM)
def test_skipgram_input_is_the_context_word_and_target_the_centre(driver):
    """word2vec's orientation: one example per (context, centre) pair, the centre never
    its own context."""
    records = run_driver(driver, 3)
    assert (records[:, 0] != records[:, 1]).all()
    assert (np.abs(records[:, 0] - records[:, 1]) <= WINDOW).all()


@pytest.mark.parametrize("driver", CBOW)
def test_cbow_input_is_the_mean_of_the_context_vectors(driver):
    """An interior window is symmetric around its centre, so the mean of its word ids is
    the centre's id exactly (a sum would be 2 (W - b) times it)."""
    for seed in range(20):
        records = run_driver(driver, seed)
        interior = np.isin(records[:, 1], INTERIOR)
        np.testing.assert_allclose(records[interior, 0], records[interior, 1], rtol=1e-6)
        assert len(records) == LENGTH  # one example per position


def test_batched_windows_are_reduced_as_word2vec():
    ops = NumpyOps()
    job = np.append(np.arange(LENGTH, dtype=np.int32), np.int32(-1))
    keep = np.ones(LENGTH, dtype=np.float32)
    per_distance = np.zeros(LENGTH, dtype=np.int64)
    for seed in range(RUNS):
        batch = window_batch(ops, job, keep, WINDOW, ops.random_state(seed))
        for centre, contexts in zip(batch.centres, batch.contexts):
            if centre in INTERIOR:
                present = contexts[contexts != PADDING]
                np.add.at(per_distance, np.abs(present - centre), 1)
    assert_distance_shares(per_distance, RUNS * len(INTERIOR) * 2)


class RecordingHead:
    """Stands in for a head in the batched engine: records the hidden vectors it gets."""

    def __init__(self) -> None:
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    @staticmethod
    def batch_size(settings) -> int:
        return 1024

    def reseed(self, seed: int) -> None:
        pass

    def batch_step(self, hidden, targets, lr):
        self.seen.append((hidden.copy(), targets.copy()))
        return StepResult(0.0, len(targets), np.zeros_like(hidden), lr)


@pytest.mark.parametrize("model", ["cbow", "skipgram"])
def test_batched_engine_inputs(model):
    """CBOW: the mean of the context vectors (interior windows: the centre's id);
    skip-gram: the centre word's own vector, with its context words as targets."""
    from embedtrain.engines import BatchedEngine
    from embedtrain.model import Model
    from embedtrain.vocab import Vocabulary

    counts = np.full(LENGTH, 10)
    vocab = Vocabulary([f"w{i}" for i in range(LENGTH)], counts, int(counts.sum()))
    settings = resolved_settings(model=model, dim=1, window=WINDOW, sample=0)
    vectors = np.arange(LENGTH, dtype=np.float32)[:, None]
    engine_model = Model(vocab, settings, NumpyOps(), vectors=vectors)
    engine_model.head = RecordingHead()
    engine = BatchedEngine(engine_model, np.ones(LENGTH, dtype=np.float32))
    job = np.append(np.arange(LENGTH, dtype=np.int32), np.int32(-1))
    engine.run_job(job, 0.1, 0.1, seed=5)
    ((hidden, targets),) = engine_model.head.seen
    if model == "cbow":
        centres = targets[:, 0]
        interior = np.isin(centres, INTERIOR)
        np.testing.assert_allclose(hidden[interior, 0], centres[interior], rtol=1e-6)
    else:
        for value, row in zip(hidden[:, 0], targets):
            present = row[row != PADDING]
            assert value not in present and (np.abs(present - value) <= WINDOW).all()


def test_batched_windows_stay_inside_their_sentence():
    """Two sentences of ten words: no context word comes from the other sentence."""
    ops = NumpyOps()
    job = np.array([*range(10), -1, *range(10, 20), -1], dtype=np.int32)
    keep = np.ones(20, dtype=np.float32)
    for seed in range(50):
        batch = window_batch(ops, job, keep, WINDOW, ops.random_state(seed))
        for centre, contexts in zip(batch.centres, batch.contexts):
            present = contexts[contexts != PADDING]
            assert ((present < 10) == (centre < 10)).all()


@pytest.mark.parametrize("driver", SKIPGRAM)
def test_skipgram_pairs_are_symmetric_windows_around_each_target(driver):
    """Each target (the centre) comes with the inputs t-k..t+k except t, for one k, in
    sentence order: the centre is the target, not the input."""
    records = run_driver(driver, 11)
    targets = records[:, 1].astype(int)
    assert (np.diff(targets) >= 0).all()
    for target in INTERIOR:
        inputs = sorted(records[targets == target, 0].astype(int))
        k = (len(inputs)) // 2
        assert inputs == [*range(target - k, target), *range(target + 1, target + k + 1)]


@njit
def rate_recording_step(state, hidden, target, lr, work, rng):
    """Record the rate each example trains with."""
    rates, count = state
    rates[count[0]] = lr
    count[0] += 1
    return 0.0


@pytest.mark.parametrize("driver", SKIPGRAM + CBOW)
def test_drivers_interpolate_the_rate_across_the_job(driver):
    """Sentence s of a job (starting at id index i) trains at lr_start + (lr_end -
    lr_start) * i / len(job): 0.1 -> 0 over a job of 4 sentences of 11 slots."""
    vectors = np.zeros((10, 1), dtype=np.float32)
    job = np.tile(np.append(np.arange(10, dtype=np.int32), np.int32(-1)), 4)
    keep = np.ones(10, dtype=np.float32)
    rates = np.zeros(1000)
    count = np.zeros(1, dtype=np.int64)
    arguments = (vectors, job, keep, 3, 0.1, 0.0, seed_state(1))
    call_driver(driver, rate_recording_step, rate_recording_shared_step, (rates, count), *arguments)
    seen = sorted(set(np.round(rates[: count[0]], 12)), reverse=True)
    assert seen == pytest.approx([0.1 * (1 - start / 44) for start in (0, 11, 22, 33)])


class FixedGradientHead(RecordingHead):
    """A head whose hidden gradient is all ones and whose used rate is ``share`` of the
    requested one (as a capped exact head reports)."""

    def __init__(self, share: float = 1.0) -> None:
        super().__init__()
        self.share = share
        self.rates: list[float] = []

    def batch_step(self, hidden, targets, lr):
        self.rates.append(lr)
        return StepResult(0.0, len(targets), np.ones_like(hidden), lr * self.share)


def batched_engine(model: str, head, length: int, window: int = 1, batch_size: int = 1024):
    from embedtrain.engines import BatchedEngine
    from embedtrain.model import Model
    from embedtrain.vocab import Vocabulary

    counts = np.full(length, 10)
    vocab = Vocabulary([f"w{i}" for i in range(length)], counts, int(counts.sum()))
    settings = resolved_settings(model=model, dim=1, window=window, sample=0, batch_size=batch_size)
    vectors = np.zeros((length, 1), dtype=np.float32)
    engine_model = Model(vocab, settings, NumpyOps(), vectors=vectors)
    engine_model.head = head
    head.batch_size = lambda settings: batch_size
    return BatchedEngine(engine_model, np.ones(length, dtype=np.float32)), engine_model


def test_batched_skipgram_accumulates_repeated_centre_words():
    """Centres 0,1,0,1,0 in one minibatch: word 0's vector moves by -lr three times, word
    1's twice (a fancy-index += would count each once)."""
    head = FixedGradientHead()
    engine, model = batched_engine("skipgram", head, 2)
    engine.run_job(np.array([0, 1, 0, 1, 0, -1], dtype=np.int32), 0.1, 0.1, seed=0)
    np.testing.assert_allclose(model.vectors[:, 0], [-0.3, -0.2], rtol=1e-6)


def test_batched_cbow_applies_the_rate_the_head_used():
    """A capped head trains at half the rate: each context vector moves by -lr/2 per use
    (window 1 over 0,1,0: word 1 is the context of both 0s, each 0 of the 1)."""
    head = FixedGradientHead(share=0.5)
    engine, model = batched_engine("cbow", head, 2)
    engine.run_job(np.array([0, 1, 0, -1], dtype=np.int32), 0.1, 0.1, seed=0)
    np.testing.assert_allclose(model.vectors[:, 0], [-0.1, -0.1], rtol=1e-6)


def test_batched_engine_interpolates_the_rate_across_the_job():
    """Minibatches of 8 out of n examples: the one starting at ``start`` gets
    lr_start + (lr_end - lr_start) * start / n."""
    head = FixedGradientHead()
    engine, _ = batched_engine("cbow", head, LENGTH, window=2, batch_size=8)
    engine.run_job(np.append(np.arange(LENGTH, dtype=np.int32), np.int32(-1)), 0.1, 0.0, 0)
    expected = [0.1 * (1 - start / LENGTH) for start in range(0, LENGTH, 8)]
    assert head.rates == pytest.approx(expected)


def test_batched_noise_draws_are_independent_of_the_subsampling_draws():
    """Each job seeds the windows' stream and the head's noise stream differently: with
    keep = 1/2 and a uniform noise distribution, "position 0 was kept" and "the first
    noise word is in the lower half" agree about half the time over 200 jobs (the same
    stream would make them agree every time)."""
    from embedtrain.engines import BatchedEngine
    from embedtrain.model import Model
    from embedtrain.vocab import Vocabulary

    counts = np.full(100, 10)
    vocab = Vocabulary([f"w{i}" for i in range(100)], counts, 1000)
    settings = resolved_settings(
        model="cbow", head="ns", dim=4, window=WINDOW, sample=0, batch_size=4096
    )
    model = Model(vocab, settings, NumpyOps())
    head = model.head
    first: dict[str, np.ndarray] = {}
    real_step, real_noise = head.batch_step, head.draw_noise

    def step(hidden, targets, lr):
        first.setdefault("targets", targets[:, 0].copy())
        return real_step(hidden, targets, lr)

    def noise(shape):
        drawn = real_noise(shape)
        first.setdefault("noise", np.asarray(drawn).ravel().copy())
        return drawn

    head.batch_step, head.draw_noise = step, noise
    engine = BatchedEngine(model, np.full(100, 0.5, dtype=np.float32))
    job = np.append(np.arange(100, dtype=np.int32), np.int32(-1))
    agree = 0
    for seed in range(200):
        first.clear()
        engine.run_job(job, 0.001, 0.001, seed)
        kept = first["targets"][0] == 0
        agree += kept == (first["noise"][0] < 50)
    assert 0.3 < agree / 200 < 0.7


@njit
def fresh_recording_shared_step(state, hidden, examples, target, lr, rng, fresh, delta, workspace):
    """Record, per call, whether the step was to draw fresh negatives."""
    flags, count = state
    flags[count[0]] = fresh
    count[0] += 1
    delta[:examples] = 0.0
    return 0.0


@pytest.mark.parametrize("driver", [drivers.train_skipgram_shared, drivers.train_cbow_shared])
def test_shared_drivers_draw_afresh_per_window_or_per_cbow_block(driver):
    """Skip-gram draws for every window (one call each); CBOW's calls are its examples, in
    order, the first of each CBOW_BLOCK drawing for the next ones."""
    flags = np.zeros(LENGTH, dtype=np.bool_)
    count = np.zeros(1, dtype=np.int64)
    vectors = np.zeros((LENGTH, 1), dtype=np.float32)
    job = np.append(np.arange(LENGTH, dtype=np.int32), np.int32(-1))
    keep = np.ones(LENGTH, dtype=np.float32)
    arguments = (vectors, job, keep, WINDOW, 0.1, 0.1, seed_state(2))
    driver(fresh_recording_shared_step, (flags, count), WORKSPACE, *arguments)
    calls = flags[: count[0]]
    assert len(calls) == LENGTH  # one call per position: a window, or a CBOW example
    if driver is drivers.train_skipgram_shared:
        assert calls.all()
    else:
        assert calls.tolist() == [i % drivers.CBOW_BLOCK == 0 for i in range(LENGTH)]
