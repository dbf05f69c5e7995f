"""The shared ("window") step of negative sampling and hierarchical softmax (``--step
shared``) against float64 references written here from the definitions:

- a block: every score and gradient from the parameters before the block, each unit's
  row moved by the sum over the examples it applies to (the reference below);
- the per-example order (word2vec's): the same units, the rows updated after each
  example; the two differ by O(lr^2) only, which the tests measure;
- with one example, the shared step is the per-example step (same rng, same draws).
"""

import itertools

import numpy as np
import pytest

from embedtrain.backend import NumpyOps
from embedtrain.heads.logistic_kernels import SHARED, logistic_block, shared_workspace
from embedtrain.heads.sparse import HierarchicalSoftmax, NegativeSampling
from embedtrain.rng import seed_state
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

DIM = 8
COUNTS = np.array([40, 30, 20, 10, 6, 5, 3, 2])
VOCAB = Vocabulary([f"w{i}" for i in range(len(COUNTS))], COUNTS, int(COUNTS.sum()))
# word2vec's sigmoid table: 1,000 cells over [-6, 6], each valued at its centre.
CELLS, MAX_EXP = 1000, 6.0


def table_sigmoid(f: float) -> float:
    if f >= MAX_EXP:
        return 1.0
    if f <= -MAX_EXP:
        return 0.0
    cell = int((f + MAX_EXP) * CELLS / (2 * MAX_EXP))
    centre = (cell + 0.5) / CELLS * 2 * MAX_EXP - MAX_EXP
    return 1.0 / (1.0 + np.exp(-centre))


def applies(owner, row, group, target) -> bool:
    """A unit applies to an example of ``group``: its own units, and the shared noise
    draws unless the draw is the group's target."""
    return owner == group or (owner == SHARED and row != target)


def gradients(output, hidden, group_of, targets, rows, labels, owner, lr):
    """lr * (label - sigmoid(score)) for every (example, unit), 0 where it does not apply."""
    grads = np.zeros((len(hidden), len(rows)))
    for i, h in enumerate(hidden):
        for a, (row, label, own) in enumerate(zip(rows, labels, owner)):
            if applies(own, row, group_of[i], targets[group_of[i]]):
                grads[i, a] = lr * (label - table_sigmoid(float(h @ output[row])))
    return grads


def block_reference(output, hidden, group_of, targets, rows, labels, owner, lr):
    """All gradients first, then every update: (new output, delta of each example)."""
    output = output.copy()
    grads = gradients(output, hidden, group_of, targets, rows, labels, owner, lr)
    delta = grads @ output[rows]
    for a, row in enumerate(rows):
        output[row] += grads[:, a] @ hidden
    return output, delta


def sequential_reference(output, hidden, group_of, targets, rows, labels, owner, lr):
    """word2vec's order: example by example, the rows updated before the next example."""
    output = output.copy()
    delta = np.zeros_like(hidden)
    for i, h in enumerate(hidden):
        for a, (row, label, own) in enumerate(zip(rows, labels, owner)):
            if applies(own, row, group_of[i], targets[group_of[i]]):
                g = lr * (label - table_sigmoid(float(h @ output[row])))
                delta[i] += g * output[row]
                output[row] += g * h
    return output, delta


def window(seed=0, examples=6):
    """A skip-gram window: ``examples`` context vectors, one target (word 3), its positive
    unit and four noise draws, one of them the target itself and two the same word."""
    rng = np.random.default_rng(seed)
    output = rng.normal(0, 0.4, (len(COUNTS), DIM))
    hidden = rng.normal(0, 0.4, (examples, DIM))
    targets = np.array([3])
    group_of = np.zeros(examples, dtype=np.int64)
    rows = np.array([3, 0, 3, 5, 5])
    labels = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    owner = np.array([0, SHARED, SHARED, SHARED, SHARED])
    return output, hidden, group_of, targets, rows, labels, owner


def compiled_block(output, hidden, group_of, targets, rows, labels, owner, lr):
    output32 = output.astype(np.float32)
    hidden32 = hidden.astype(np.float32)
    _, _, _, grads = shared_workspace(len(hidden), len(rows))
    delta = np.empty_like(hidden32)
    loss = logistic_block(
        output32,
        hidden32,
        len(hidden),
        group_of.astype(np.int32),
        targets.astype(np.int32),
        rows.astype(np.int64),
        labels.astype(np.float32),
        owner.astype(np.int32),
        len(rows),
        lr,
        grads,
        delta,
    )
    return loss, output32, delta


def test_block_matches_the_float64_reference():
    case = window()
    lr = 0.5
    loss, output, delta = compiled_block(*case, lr)
    expected_output, expected_delta = block_reference(*case, lr)
    np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, expected_delta, rtol=1e-5, atol=1e-6)
    output0, hidden, _, _, rows, labels, owner = case
    # The loss: -log sigmoid(+-score) summed over the units that apply (exact log).
    expected_loss = 0.0
    for i, h in enumerate(hidden):
        for row, label, own in zip(rows, labels, owner):
            if applies(own, row, 0, 3):
                score = h @ output0[row]
                expected_loss += np.logaddexp(0.0, -score if label else score)
    assert loss == pytest.approx(expected_loss, rel=2e-3)


def test_block_differs_from_the_sequential_order_by_second_order_terms_only():
    """Shared and per-example updates agree to first order in lr: their difference
    shrinks fourfold when lr halves (it is lr^2 times the rows' interaction)."""
    case = window(seed=1)
    gaps = []
    for lr in (0.2, 0.1, 0.05):
        block_output, block_delta = block_reference(*case, lr)
        seq_output, seq_delta = sequential_reference(*case, lr)
        change = np.abs(block_output - case[0]).max()
        assert change > 1e-3 * lr  # the step does move the rows
        gaps.append(
            max(np.abs(block_output - seq_output).max(), np.abs(block_delta - seq_delta).max())
        )
    assert gaps[0] > 0
    for bigger, smaller in itertools.pairwise(gaps):
        assert 3.0 < bigger / smaller < 5.0


def test_noise_draws_equal_to_a_group_target_are_skipped_for_that_group_only():
    """CBOW's block: two groups (targets 3 and 5), the shared draws [3, 5, 0]: draw 3 is a
    negative for group 1 only, draw 5 for group 0 only, draw 0 for both."""
    rng = np.random.default_rng(3)
    output = rng.normal(0, 0.4, (len(COUNTS), DIM))
    hidden = rng.normal(0, 0.4, (2, DIM))
    group_of = np.array([0, 1])
    targets = np.array([3, 5])
    rows = np.array([3, 5, 3, 5, 0])
    labels = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    owner = np.array([0, 1, SHARED, SHARED, SHARED])
    case = (output, hidden, group_of, targets, rows, labels, owner)
    _, compiled_output, delta = compiled_block(*case, 0.3)
    expected_output, expected_delta = block_reference(*case, 0.3)
    np.testing.assert_allclose(compiled_output, expected_output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, expected_delta, rtol=1e-5, atol=1e-6)
    grads = gradients(*case, 0.3)
    assert (grads != 0).tolist() == [
        [True, False, False, True, True],
        [False, True, True, False, True],
    ]


# 300 words of similar counts: noise draws rarely repeat within one example.
FLAT_COUNTS = 100 + np.arange(300)[::-1]
FLAT_VOCAB = Vocabulary([f"w{i}" for i in range(300)], FLAT_COUNTS, int(FLAT_COUNTS.sum()))


def make_head(kind, vocab=VOCAB):
    head = kind(vocab, Settings(dim=DIM, negative=4), NumpyOps(), seed=0)
    head.output[...] = np.random.default_rng(0).normal(0, 0.4, head.output.shape)
    return head


@pytest.mark.parametrize("kind", [NegativeSampling, HierarchicalSoftmax])
def test_one_example_shared_step_is_the_per_example_step(kind):
    """One example, one target: the same draws from the same rng state, the same units
    and the same update as word2vec's per-example step (whose only other difference is
    the order inside the example: a repeated noise draw sees the first one's update,
    hence the flat vocabulary, where the seeds below repeat none)."""
    hidden = np.random.default_rng(4).normal(0, 0.4, DIM).astype(np.float32)
    lr = 0.25
    for target in range(0, 300, 30):
        per_example = make_head(kind, FLAT_VOCAB)
        step, state = per_example.compiled_step()
        work = np.zeros(DIM, dtype=np.float32)
        rng_a = seed_state(target)
        loss_a = step(state, hidden.copy(), target, lr, work, rng_a)

        shared = make_head(kind, FLAT_VOCAB)
        shared_step, shared_state, workspace = shared.compiled_shared_step(1, 1)
        delta = np.empty((1, DIM), dtype=np.float32)
        rng_b = seed_state(target)
        loss_b = shared_step(
            shared_state,
            hidden[None, :].copy(),
            1,
            np.zeros(1, np.int32),
            np.array([target], np.int32),
            1,
            lr,
            rng_b,
            delta,
            workspace,
        )
        assert rng_a[0] == rng_b[0]  # the same number of draws
        rows = workspace[0][: 1 + per_example.negative] if kind is NegativeSampling else []
        assert len(set(rows)) == len(rows)
        assert loss_b == pytest.approx(loss_a, rel=1e-5)
        np.testing.assert_allclose(delta[0], work, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(shared.output, per_example.output, rtol=1e-5, atol=1e-7)


def test_shared_negative_sampling_step_draws_once_per_block():
    """A window of five examples draws ``negative`` noise words once (the rng moves as
    for one example), and every example meets the same draws."""
    head = make_head(NegativeSampling)
    shared_step, state, workspace = head.compiled_shared_step(5, 1)
    hidden = np.random.default_rng(5).normal(0, 0.4, (5, DIM)).astype(np.float32)
    delta = np.empty_like(hidden)
    rng = seed_state(9)
    shared_step(
        state,
        hidden,
        5,
        np.zeros(5, np.int32),
        np.array([2], np.int32),
        1,
        0.1,
        rng,
        delta,
        workspace,
    )
    single = make_head(NegativeSampling)
    step, single_state = single.compiled_step()
    rng_single = seed_state(9)
    step(single_state, hidden[0].copy(), 2, 0.1, np.zeros(DIM, np.float32), rng_single)
    assert rng[0] == rng_single[0]
    rows, labels, owner, _ = workspace
    assert rows[0] == 2 and labels[0] == 1.0 and owner[0] == 0
    assert (owner[1 : 1 + head.negative] == SHARED).all()
