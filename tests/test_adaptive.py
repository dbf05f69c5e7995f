"""Adaptive softmax: loss and every gradient against a float64 reference written from the
definition (an explicit log-softmax over the factorised distribution) and finite
differences; the distribution's normalisation; the cutoff chooser on known profiles."""

import numpy as np
import pytest
from conftest import numeric_gradient

from embedtrain.backend import NumpyOps, Ops
from embedtrain.errors import SettingsError
from embedtrain.heads import resolved_settings
from embedtrain.heads.adaptive import AdaptiveSoftmax, choose_cutoffs, expected_cost
from embedtrain.heads.base import PADDING
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

D, DIM = 30, 8
COUNTS = np.arange(D, 0, -1) * 7
VOCAB = Vocabulary([f"w{i}" for i in range(D)], COUNTS, int(COUNTS.sum()))
#: Shortlist of 6, tails of 8 and 16 words in 4 and 2 dimensions (div 2).
SETTINGS = Settings(head="adaptive", dim=DIM, cutoffs="6,14", div_value=2.0)


def make_head(backend=NumpyOps, seed=0):
    head = AdaptiveSoftmax(VOCAB, SETTINGS, backend(), seed)
    rng = np.random.default_rng(seed + 100)
    for array in head.weights.values():  # away from the zero start: every term matters
        array[...] = rng.normal(0, 0.5, array.shape)
    return head


def reference_loss(weights, hidden, targets):
    """Sum over pairs of -log p(t | h), each p computed in float64 from the definition."""
    head = hidden @ weights["head"].T
    total = 0.0
    for j, row in enumerate(targets):
        head_log = head[j] - np.log(np.exp(head[j]).sum())
        for t in row[row != PADDING]:
            if t < 6:
                total -= head_log[t]
                continue
            i, start = (1, 6) if t < 14 else (2, 14)
            scores = weights[f"tail{i}"] @ (weights[f"projection{i}"] @ hidden[j])
            within = scores - np.log(np.exp(scores).sum())
            total -= head_log[6 + i - 1] + within[t - start]
    return total


def batch(rng, m=7, k=5):
    """Targets in every cluster, repeated within and across rows, with padding."""
    hidden = rng.normal(0, 0.7, (m, DIM))
    targets = rng.integers(0, D, size=(m, k))
    targets[:, 1] = targets[:, 0]  # a repeated target within a row
    targets[rng.random((m, k)) < 0.2] = PADDING
    targets[0, :3] = [2, 9, 20]
    return hidden, targets


class DeviceLikeOps(Ops):
    def to_host(self, array):
        return np.array(array)


@pytest.mark.parametrize("backend", [NumpyOps, DeviceLikeOps], ids=["host", "array-generic"])
def test_loss_and_every_gradient_match_the_reference(backend):
    rng = np.random.default_rng(1)
    head = make_head(backend)
    for name in head.weights:  # float64 state for the check
        head.weights[name] = head.weights[name].astype(np.float64)
    hidden, targets = batch(rng)
    before = {name: array.copy() for name, array in head.weights.items()}
    expected = reference_loss(before, hidden, targets)
    grad_h = numeric_gradient(lambda: reference_loss(before, hidden, targets), hidden)
    grads = {}
    for name, array in before.items():
        probe = {**before, name: array.copy()}
        grads[name] = numeric_gradient(
            lambda probe=probe: reference_loss(probe, hidden, targets), probe[name]
        )
    lr = 0.01
    step = head.batch_step(hidden, targets, lr)
    assert float(step.loss) == pytest.approx(expected, rel=1e-12)
    assert step.pairs == int((targets != PADDING).sum())
    np.testing.assert_allclose(step.grad_hidden, grad_h, rtol=1e-6, atol=1e-8)
    for name, array in before.items():
        np.testing.assert_allclose(
            head.weights[name], array - lr * grads[name], rtol=1e-6, atol=1e-9
        )


def test_the_distribution_is_normalised_and_matches_the_reference():
    rng = np.random.default_rng(2)
    head = make_head()
    hidden = rng.normal(0, 2.0, (5, DIM))
    log_p = head.log_probabilities(hidden)
    assert log_p.shape == (5, D)
    np.testing.assert_allclose(np.exp(log_p).sum(axis=1), 1.0, rtol=0, atol=1e-12)
    weights = {k: v.astype(np.float64) for k, v in head.weights.items()}
    for j in range(5):
        for word in (0, 5, 6, 13, 14, 29):
            single = reference_loss(weights, hidden[j : j + 1], np.array([[word]]))
            assert -log_p[j, word] == pytest.approx(single, rel=1e-12)


def test_skipgram_targets_share_one_hidden_vector():
    """K targets of one example: the loss is the sum of their -log p (one head pass)."""
    rng = np.random.default_rng(3)
    head = make_head()
    hidden = rng.normal(0, 1.0, (1, DIM))
    log_p = head.log_probabilities(hidden.astype(np.float64))
    targets = np.array([[3, 3, 10, 25, PADDING]])
    step = head.batch_step(hidden.astype(np.float32), targets, 0.0)
    assert float(step.loss) == pytest.approx(-log_p[0, [3, 3, 10, 25]].sum(), rel=1e-5)


def test_output_vectors_give_each_word_its_score_inside_its_cluster():
    rng = np.random.default_rng(4)
    head = make_head()
    h = rng.normal(0, 1.0, DIM)
    vectors = head.output_vectors()
    assert vectors.shape == (D, DIM)
    w = head.weights
    np.testing.assert_allclose(vectors[:6] @ h, w["head"][:6] @ h, rtol=1e-5)
    np.testing.assert_allclose(
        vectors[14:] @ h, w["tail2"] @ (w["projection2"] @ h), rtol=1e-4, atol=1e-5
    )


def test_parameter_shapes_follow_the_cutoffs_and_div_value():
    shapes = AdaptiveSoftmax.parameter_shapes(D, SETTINGS)
    assert shapes == {
        "head": (6 + 2, DIM),
        "projection1": (4, DIM),
        "tail1": (8, 4),
        "projection2": (2, DIM),
        "tail2": (16, 2),
    }


COSTS = (70.0, 18.6e6)  # the host's softmax and fixed costs (backend.NumpyOps)


def zipf_counts(size, exponent=1.0):
    return (1e9 / np.arange(1, size + 1) ** exponent).astype(np.int64) + 1


def test_cutoff_chooser_on_known_profiles():
    """A large Zipf vocabulary splits (the head is cheap, the rare words rarely reached); a
    tiny vocabulary stays one softmax; a flat profile gains nothing from tails with a
    fixed cost; and the choice is the minimum of the stated cost over all candidates."""
    zipf = zipf_counts(70_000)
    chosen = choose_cutoffs(zipf, 100, 4.0, 64, 6.0, COSTS)
    assert 1 <= len(chosen) <= 4 and chosen[0] <= 5_000
    shares = zipf / zipf.sum()
    best = expected_cost(chosen, shares, 100, 4.0, 64, 6.0, COSTS)
    for other in ([], [2000], [2000, 10000], [1000, 5000, 20000], [100], [50000]):
        assert best <= expected_cost(other, shares, 100, 4.0, 64, 6.0, COSTS)
    assert choose_cutoffs(zipf_counts(150), 100, 4.0, 64, 6.0, COSTS) == []
    flat = np.full(3_000, 10)
    assert choose_cutoffs(flat, 100, 4.0, 64, 6.0, (70.0, 1e12)) == []


def test_expected_cost_by_hand():
    """D = 10, shortlist 4 (share 0.7), one tail of 6 words in 100 / 4 = 25 dimensions, a
    batch of 10 examples with 2 targets each."""
    counts = np.array([40, 20, 5, 5, 5, 5, 5, 5, 5, 5])
    shares = counts / counts.sum()
    cost = expected_cost([4], shares, 100, 4.0, 10, 2.0, (50.0, 7.0))
    rows = 10 * (1 - 0.7**2)  # examples with at least one of their 2 targets in the tail
    head = 10 * 5 * (300 + 50)  # 4 shortlist words + 1 tail token
    tail = rows * (300 * 25 + 6 * (75 + 50)) + 7.0
    assert cost == pytest.approx(head + tail)
    assert expected_cost([], shares, 100, 4.0, 10, 2.0, (50.0, 7.0)) == 10 * 10 * 350


@pytest.mark.parametrize("cutoffs", ["0,10", "10,5", "a,b", "5,5"])
def test_bad_cutoffs_are_refused(cutoffs):
    with pytest.raises(SettingsError, match="--cutoffs"):
        resolved_settings(head="adaptive", cutoffs=cutoffs)


def test_cutoffs_beyond_the_vocabulary_are_refused():
    with pytest.raises(SettingsError, match="vocabulary size"):
        AdaptiveSoftmax.settle(Settings(head="adaptive", cutoffs="10,30"), VOCAB, NumpyOps())
