"""The shared step of negative sampling and hierarchical softmax (``--step shared``)
against float64 references written here from the definitions:

- a block (one skip-gram window: several inputs, one target): every score and gradient
  from the parameters before the block, each unit's row moved by the sum over the
  examples (the reference below);
- the per-example order (word2vec's): the same units, the rows updated after each
  example; the two differ by O(lr^2) only, which the tests measure;
- with one example, the shared step is the per-example step (same rng, same draws);
- without ``fresh`` a step reuses the previous step's draws (CBOW's shared draws).
"""

import itertools

import numpy as np
import pytest

from embedtrain.backend import NumpyOps
from embedtrain.heads.logistic_kernels import logistic_block, shared_workspace
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


def applies(a, row, target, noise_from) -> bool:
    """Unit ``a`` counts unless it is a noise draw (from ``noise_from`` on) that is the
    target itself."""
    return a < noise_from or row != target


def gradients(output, hidden, target, rows, labels, noise_from, lr):
    """lr * (label - sigmoid(score)) for every (example, unit), 0 where it does not apply."""
    grads = np.zeros((len(hidden), len(rows)))
    for i, h in enumerate(hidden):
        for a, (row, label) in enumerate(zip(rows, labels)):
            if applies(a, row, target, noise_from):
                grads[i, a] = lr * (label - table_sigmoid(float(h @ output[row])))
    return grads


def block_reference(output, hidden, target, rows, labels, noise_from, lr):
    """All gradients first, then every update: (new output, delta of each example)."""
    output = output.copy()
    grads = gradients(output, hidden, target, rows, labels, noise_from, lr)
    delta = grads @ output[rows]
    for a, row in enumerate(rows):
        output[row] += grads[:, a] @ hidden
    return output, delta


def sequential_reference(output, hidden, target, rows, labels, noise_from, lr):
    """word2vec's order: example by example, the rows updated before the next example."""
    output = output.copy()
    delta = np.zeros_like(hidden)
    for h, step in zip(hidden, delta):
        for a, (row, label) in enumerate(zip(rows, labels)):
            if applies(a, row, target, noise_from):
                g = lr * (label - table_sigmoid(float(h @ output[row])))
                step += g * output[row]
                output[row] += g * h
    return output, delta


def window(seed=0, examples=6):
    """A skip-gram window: ``examples`` context vectors, one target (word 3), its positive
    unit and four noise draws, one of them the target itself and two the same word."""
    rng = np.random.default_rng(seed)
    output = rng.normal(0, 0.4, (len(COUNTS), DIM))
    hidden = rng.normal(0, 0.4, (examples, DIM))
    rows = np.array([3, 3, 0, 5, 5])
    labels = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    return output, hidden, 3, rows, labels, 1


def compiled_block(output, hidden, target, rows, labels, noise_from, lr):
    output32 = output.astype(np.float32)
    hidden32 = hidden.astype(np.float32)
    _, _, grads = shared_workspace(len(hidden), len(rows))
    delta = np.empty_like(hidden32)
    loss = logistic_block(
        output32,
        hidden32,
        len(hidden),
        target,
        rows.astype(np.int64),
        labels.astype(np.float32),
        noise_from,
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
    output0, hidden, target, rows, labels, noise_from = case
    # The loss: -log sigmoid(+-score) summed over the units that apply (exact log).
    expected_loss = 0.0
    for h in hidden:
        for a, (row, label) in enumerate(zip(rows, labels)):
            if applies(a, row, target, noise_from):
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


def test_a_noise_draw_equal_to_the_target_is_skipped():
    """The window's draws [3, 0, 5, 5] for target 3: the draw 3 has no gradient, the
    positive unit 3 and the other draws do (5 twice, each a unit of its own)."""
    grads = gradients(*window(), 0.3)
    assert (grads != 0).all(axis=0).tolist() == [True, False, True, True, True]
    assert not grads[:, 1].any()


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
        shared_step, shared_state, workspace = shared.compiled_shared_step(1)
        delta = np.empty((1, DIM), dtype=np.float32)
        rng_b = seed_state(target)
        loss_b = shared_step(
            shared_state, hidden[None, :].copy(), 1, target, lr, rng_b, True, delta, workspace
        )
        assert rng_a[0] == rng_b[0]  # the same number of draws
        rows = workspace[0][: 1 + per_example.negative] if kind is NegativeSampling else []
        assert len(set(rows)) == len(rows)
        assert loss_b == pytest.approx(loss_a, rel=1e-5)
        np.testing.assert_allclose(delta[0], work, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(shared.output, per_example.output, rtol=1e-5, atol=1e-7)


def test_shared_negative_sampling_step_draws_once_per_block():
    """A window of five examples draws ``negative`` noise words once (the rng moves as
    for one example); a step that is not ``fresh`` draws nothing and meets the same
    noise words (CBOW's consecutive positions)."""
    head = make_head(NegativeSampling)
    shared_step, state, workspace = head.compiled_shared_step(5)
    hidden = np.random.default_rng(5).normal(0, 0.4, (5, DIM)).astype(np.float32)
    delta = np.empty_like(hidden)
    rng = seed_state(9)
    shared_step(state, hidden, 5, 2, 0.1, rng, True, delta, workspace)
    single = make_head(NegativeSampling)
    step, single_state = single.compiled_step()
    rng_single = seed_state(9)
    step(single_state, hidden[0].copy(), 2, 0.1, np.zeros(DIM, np.float32), rng_single)
    assert rng[0] == rng_single[0]
    rows, labels, _ = workspace
    assert rows[0] == 2 and labels[0] == 1.0 and (labels[1:] == 0.0).all()
    draws, state_after = rows[1:].copy(), rng[0]
    shared_step(state, hidden, 5, 4, 0.1, rng, False, delta, workspace)
    assert rng[0] == state_after
    assert rows[0] == 4
    np.testing.assert_array_equal(rows[1:], draws)


@pytest.mark.parametrize(
    ("head", "model", "expected"),
    [
        ("ns", "skipgram", "shared"),
        ("ns", "cbow", "per-example"),
        ("hs", "skipgram", "per-example"),
        ("hs", "cbow", "per-example"),
        ("lsh", "skipgram", "per-example"),
    ],
)
def test_default_step_is_the_measured_choice_and_an_explicit_one_stands(head, model, expected):
    from embedtrain.heads import HEADS

    kind = HEADS[head]
    assert kind.with_defaults(Settings(head=head, model=model)).step == expected
    if kind.has_shared_step:
        other = "per-example" if expected == "shared" else "shared"
        assert kind.with_defaults(Settings(head=head, model=model, step=other)).step == other
