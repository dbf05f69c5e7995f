"""Negative sampling and hierarchical softmax: batched steps against a float64
finite-difference reference, and the compiled per-example steps against the batched."""

import numpy as np
import pytest
from conftest import numeric_gradient

from embedtrain.backend import NumpyOps
from embedtrain.heads.base import PADDING
from embedtrain.heads.sparse import HierarchicalSoftmax, NegativeSampling
from embedtrain.rng import seed_state
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

DIM = 5
COUNTS = np.array([40, 30, 20, 10, 6, 5, 3])
VOCAB = Vocabulary([f"w{i}" for i in range(len(COUNTS))], COUNTS, int(COUNTS.sum()))
# Repeated rows and repeated targets inside one batch, and padding.
TARGETS = np.array([[0, 3, 3, PADDING], [3, PADDING, PADDING, PADDING], [6, 0, 1, 2]])


def make_head(kind, seed=0):
    head = kind(VOCAB, Settings(dim=DIM, negative=3), NumpyOps(), seed=seed)
    rng = np.random.default_rng(seed)
    head.output = rng.normal(0, 0.5, head.output.shape)  # float64 reference precision
    return head


def frozen_units(head):
    """Make the head's unit selection deterministic (fixed noise draws)."""
    rows, labels, mask = {}, {}, {}
    original = head._units

    def units(words):
        key = tuple(words.tolist())
        if key not in rows:
            rows[key], labels[key], mask[key] = original(words)
        return rows[key], labels[key], mask[key]

    head._units = units
    return head


def reference_loss(head, hidden, output):
    example, slot = np.nonzero(TARGETS != PADDING)
    rows, labels, mask = head._units(TARGETS[example, slot])
    scores = np.einsum("pd,prd->pr", hidden[example], output[rows])
    signed = np.where(labels > 0.5, -scores, scores)
    return float((np.logaddexp(0, signed) * mask).sum())


@pytest.mark.parametrize("kind", [NegativeSampling, HierarchicalSoftmax])
def test_batch_step_matches_finite_differences(kind):
    head = frozen_units(make_head(kind))
    rng = np.random.default_rng(1)
    hidden = rng.normal(0, 0.7, (len(TARGETS), DIM))
    before = head.output.copy()
    loss_ref = reference_loss(head, hidden, before)
    grad_hidden_ref = numeric_gradient(lambda: reference_loss(head, hidden, before), hidden)
    probe = before.copy()
    grad_output_ref = numeric_gradient(lambda: reference_loss(head, hidden, probe), probe)
    lr = 0.05
    step = head.batch_step(hidden, TARGETS, lr)
    loss, pairs, grad_hidden = step.loss, step.pairs, step.grad_hidden
    assert step.lr == lr
    assert pairs == int((TARGETS != PADDING).sum())
    assert float(loss) == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(grad_hidden, grad_hidden_ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(head.output, before - lr * grad_output_ref, rtol=1e-6, atol=1e-8)


def test_negative_draws_equal_to_target_are_masked():
    head = make_head(NegativeSampling)
    words = np.zeros(5000, dtype=np.int64)  # word 0 is the most likely noise word
    rows, labels, mask = head._units(words)
    assert (mask[:, 1:][rows[:, 1:] == 0] == 0).all()
    assert (mask[:, 1:][rows[:, 1:] != 0] == 1).all()
    assert (labels[:, 0] == 1).all() and (labels[:, 1:] == 0).all()


def compiled_update(head, state, hidden, target, lr):
    step, _ = head.compiled_step()
    work = np.zeros(DIM, dtype=np.float32)
    loss = step(state, hidden.astype(np.float32), target, lr, work, seed_state(0))
    return loss, work


@pytest.mark.parametrize("kind", [NegativeSampling, HierarchicalSoftmax])
def test_compiled_step_agrees_with_batched_step(kind):
    """Same example through both paths (NS: positive unit only, so no random draws);
    the compiled step uses word2vec's sigmoid table, hence the looser tolerance."""
    head = make_head(kind)
    head.output = (head.output * 0.5).astype(np.float32)
    rng = np.random.default_rng(2)
    hidden = rng.normal(0, 0.5, DIM).astype(np.float32)
    target, lr = 4, 0.1
    compiled_output = head.output.copy()
    _, state = head.compiled_step()
    state = state._replace(output=compiled_output)
    if kind is NegativeSampling:
        state = state._replace(negative=0)
        head._units = lambda words: tuple(a[:, :1] for a in NegativeSampling._units(head, words))
    loss_c, work = compiled_update(head, state, hidden, target, lr)
    step = head.batch_step(hidden[None, :].astype(np.float64), np.array([[target]]), lr)
    loss_b, grad = step.loss, step.grad_hidden
    assert loss_c == pytest.approx(float(loss_b), abs=1e-2)
    np.testing.assert_allclose(work, -lr * grad[0], atol=2e-3 * lr)
    np.testing.assert_allclose(compiled_output, head.output, atol=2e-3 * lr)


def test_compiled_negative_sampling_skips_draws_equal_to_the_target():
    """A noise distribution with almost all its mass on the target (counts 10^12, 1, 1):
    the five draws are the target itself and must all be skipped, so after one step from
    zero output rows only the positive unit moved the target's row, by
    lr (1 - sigmoid(0)) h with word2vec's table (its cell nearest 0 is at 0.006)."""
    counts = np.array([10**12, 1, 1])
    vocab = Vocabulary(["a", "b", "c"], counts, int(counts.sum()))
    head = NegativeSampling(vocab, Settings(dim=DIM, negative=5), NumpyOps(), seed=0)
    step, state = head.compiled_step()
    hidden = np.array([0.5, -1.0, 0.25, 2.0, -0.75], dtype=np.float32)
    lr = 0.1
    for seed in range(20):
        head.output[...] = 0.0
        work = np.zeros(DIM, dtype=np.float32)
        step(state, hidden, 0, lr, work, seed_state(seed))
        sigmoid = 1.0 / (1.0 + np.exp(-0.006))
        np.testing.assert_allclose(head.output[0], lr * (1 - sigmoid) * hidden, rtol=1e-6)
        assert not head.output[1:].any()
        assert not work.any()  # the target's row was zero when it was read
