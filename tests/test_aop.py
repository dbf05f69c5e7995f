"""Mem-AOP-GD (embedtrain.heads.aop): the selection policies, the three memories, the exact
case, and the dense heads that use it, against independent references."""

from __future__ import annotations

import numpy as np
import pytest

import embedtrain
from embedtrain.backend import NumpyOps
from embedtrain.heads import resolved_settings
from embedtrain.heads.aop import ApproximateOuterProduct

FAST = {"dim": 12, "epochs": 1, "min_count": 2, "device": "cpu", "model": "skipgram"}


def layer(slots, keep, policy="topk", memory="none", shape=(5, 4)):
    return ApproximateOuterProduct(NumpyOps(), shape, slots, keep, policy, memory, np.float64)


def one_hot_batch(scales_in, scales_out):
    """Slot i's product is scale_in[i] * scale_out[i] at W[0, i] and nowhere else, so the
    columns of the update show which slots were applied."""
    m = len(scales_in)
    inputs = np.diag(np.asarray(scales_in, dtype=np.float64))
    grads = np.zeros((m, 2))
    grads[:, 0] = scales_out
    return inputs, grads


def applied_slots(aop, inputs, grads, lr=1.0):
    weights = np.zeros((grads.shape[1], inputs.shape[1]))
    aop.apply(weights, inputs, grads, np.arange(inputs.shape[0]), lr)
    return set(np.flatnonzero(weights[0]).tolist())


def test_topk_applies_the_largest_norm_products_and_reports_the_rest():
    scales_in = [1.0, 3.0, 0.5, 2.0, 4.0, 0.1]
    scales_out = [2.0, 1.0, 1.0, 2.5, 0.2, 9.0]
    norms = np.multiply(scales_in, scales_out)  # 2, 3, 0.5, 5, 0.8, 0.9
    aop = layer(6, 2, "topk", "none", shape=(2, 6))
    assert applied_slots(aop, *one_hot_batch(scales_in, scales_out)) == {1, 3}
    assert aop.memory_share() == pytest.approx(1 - (3 + 5) / norms.sum(), rel=1e-12)


def test_update_applies_exactly_the_chosen_products():
    rng = np.random.default_rng(3)
    inputs, grads = rng.normal(size=(8, 4)), rng.normal(size=(8, 5))
    norms = np.linalg.norm(inputs, axis=1) * np.linalg.norm(grads, axis=1)
    chosen = np.argsort(-norms)[:3]
    weights = rng.normal(size=(5, 4))
    expected = weights - 0.3 * grads[chosen].T @ inputs[chosen]
    layer(8, 3, "topk", "none").apply(weights, inputs, grads, np.arange(8), 0.3)
    np.testing.assert_allclose(weights, expected, rtol=1e-13, atol=1e-15)


def successive_sampling_inclusion(p, k):
    """P(slot i among k drawn without replacement, each draw in proportion to p), by
    enumerating the ordered draws: the closed form the weighted policy must follow."""
    import itertools

    inclusion = np.zeros(len(p))
    for order in itertools.permutations(range(len(p)), k):
        chance, left = 1.0, 1.0
        for i in order:
            chance *= p[i] / left
            left -= p[i]
        inclusion[list(order)] += chance
    return inclusion


@pytest.mark.parametrize("keep", [1, 2])
def test_weighted_draws_in_proportion_to_the_squared_norm_product(keep):
    scales_in, scales_out = [1.0, 2.0, 1.0, 3.0], [1.0, 1.0, 0.5, 1.0]
    squared = np.multiply(scales_in, scales_out) ** 2
    expected = successive_sampling_inclusion(squared / squared.sum(), keep)
    aop = layer(4, keep, "weighted", "none", shape=(2, 4))
    draws = 4000
    counts = np.zeros(4)
    for seed in range(draws):
        aop.reseed(seed)
        counts[list(applied_slots(aop, *one_hot_batch(scales_in, scales_out)))] += 1
    spread = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(counts / draws - expected) < 4.5 * spread + 1e-12)


def test_random_draws_uniformly_and_skips_empty_slots():
    scales_in, scales_out = [1.0, 5.0, 0.0, 0.2, 1.0], [1.0, 1.0, 1.0, 3.0, 0.1]
    aop = layer(5, 2, "random", "none", shape=(2, 5))
    draws = 3000
    counts = np.zeros(5)
    for seed in range(draws):
        aop.reseed(seed)
        chosen = applied_slots(aop, *one_hot_batch(scales_in, scales_out))
        assert len(chosen) == 2
        counts[list(chosen)] += 1
    assert counts[2] == 0  # a zero product is never chosen over a real one
    expected = 2 / 4
    spread = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(counts[[0, 1, 3, 4]] / draws - expected) < 4.5 * spread)


@pytest.mark.parametrize("policy", ["topk", "weighted", "random"])
def test_exact_memory_applied_plus_pending_is_the_exact_sum(policy):
    """After every step, W minus the pending residual is W0 minus every product so far."""
    rng = np.random.default_rng(5)
    slots, shape = 8, (6, 4)
    aop = layer(slots, 3, policy, "exact", shape=shape)
    aop.reseed(11)
    weights = rng.normal(size=shape)
    exact = weights.copy()
    for step in range(9):
        rows = slots if step % 3 else 5  # a short last minibatch too
        inputs, grads = rng.normal(size=(rows, 4)), rng.normal(size=(rows, 6))
        lr = 0.05 / (1 + step)
        aop.apply(weights, inputs, grads, np.arange(rows), lr)
        exact -= lr * grads.T @ inputs
        np.testing.assert_allclose(weights - aop.state["residual"], exact, rtol=1e-12, atol=1e-13)


def reference_factor_memory(steps, slots, keep, shape):
    """The authors' Mem-AOP-GD (LinearMem) written out slot by slot, top-k policy."""
    memory_in, memory_out = np.zeros((slots, shape[1])), np.zeros((slots, shape[0]))
    update = np.zeros(shape)
    for inputs, grads, lr in steps:
        a = memory_in.copy()
        b = memory_out.copy()
        for i in range(inputs.shape[0]):
            a[i] += np.sqrt(lr) * inputs[i]
            b[i] += np.sqrt(lr) * grads[i]
        score = [np.linalg.norm(a[i]) * np.linalg.norm(b[i]) for i in range(slots)]
        chosen = sorted(range(slots), key=lambda i: -score[i])[:keep]
        for i in chosen:
            update -= np.outer(b[i], a[i])
            a[i] = 0.0
            b[i] = 0.0
        memory_in, memory_out = a, b
    return update, memory_in, memory_out


def test_factor_memory_follows_the_authors_algorithm():
    rng = np.random.default_rng(7)
    slots, keep, shape = 6, 2, (3, 5)
    steps = [
        (rng.normal(size=(slots, 5)), rng.normal(size=(slots, 3)), 0.1 * (1 + i)) for i in range(6)
    ]
    aop = layer(slots, keep, "topk", "factors", shape=shape)
    weights = np.zeros(shape)
    for inputs, grads, lr in steps:
        aop.apply(weights, inputs, grads, np.arange(slots), lr)
    update, memory_in, memory_out = reference_factor_memory(steps, slots, keep, shape)
    np.testing.assert_allclose(weights, update, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(aop.state["memory_in"], memory_in, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(aop.state["memory_out"], memory_out, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("head", ["softmax", "adaptive"])
@pytest.mark.parametrize("keep", [16, 40])
def test_k_at_least_the_batch_is_the_exact_head_bit_for_bit(structured_corpus, head, keep):
    options = {**FAST, "head": head, "batch_size": 16, "seed": 3}
    if head == "adaptive":
        options["cutoffs"] = "10,30"
    exact = embedtrain.train(structured_corpus, progress=False, **options)
    same = embedtrain.train(structured_corpus, progress=False, aop_k=keep, **options)
    np.testing.assert_array_equal(same.vectors, exact.vectors)
    np.testing.assert_array_equal(same.output_vectors, exact.output_vectors)


def test_small_k_changes_training_and_reports_its_memory(structured_corpus):
    options = {**FAST, "head": "softmax", "batch_size": 16, "seed": 3}
    exact = embedtrain.train(structured_corpus, progress=False, **options)
    approximate = embedtrain.train(structured_corpus, progress=False, aop_k=4, **options)
    assert not np.array_equal(approximate.vectors, exact.vectors)
    summary = approximate.history[-1].head_summary
    assert summary.startswith("aop: ") and "left in memory (K = 4, topk, factors)" in summary
    share = float(summary.split("% ")[0].removeprefix("aop: "))
    assert 0 < share < 100
    assert exact.history[-1].head_summary == ""


@pytest.mark.parametrize("head,exact_form", [("ns", "factored"), ("squared", "factored")])
def test_heads_without_dense_updates_refuse_aop(head, exact_form):
    with pytest.raises(embedtrain.SettingsError, match="--aop-k"):
        resolved_settings(head=head, exact=exact_form, aop_k=8)
    resolved_settings(head="squared", exact="naive", aop_k=8)


@pytest.mark.parametrize(
    "option,value",
    [("aop_k", -1), ("aop_policy", "largest"), ("aop_memory", "all")],
)
def test_nonsense_aop_options_are_refused(option, value):
    with pytest.raises(embedtrain.SettingsError, match=option.replace("_", "-")):
        resolved_settings(head="softmax", **{option: value})
