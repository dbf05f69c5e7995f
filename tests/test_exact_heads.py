"""Exact full-vocabulary heads: the naive O(Dd) heads against finite differences, and the
factored O(d^2) heads against the naive ones, step for step, in float64."""

import numpy as np
import pytest
from conftest import numeric_gradient

from embedtrain.backend import NumpyOps, Ops
from embedtrain.heads import exact, factored_kernel, factored_state, resolved_settings
from embedtrain.heads.base import PADDING
from embedtrain.heads.exact import FactoredHead, NaiveHead
from embedtrain.heads.losses import (
    FullSoftmax,
    SphericalSoftmax,
    SquaredError,
    TaylorSoftmax,
    ZLoss,
)
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

D, DIM = 40, 6
VOCAB = Vocabulary([f"w{i}" for i in range(D)], np.arange(D, 0, -1) * 10, 10 * D * (D + 1) // 2)
ZLOSS_A, ZLOSS_B = 0.5, 2.0
LOSSES = {
    "spherical": lambda: SphericalSoftmax(1e-3),
    "squared": SquaredError,
    "taylor": TaylorSoftmax,
    "zloss": lambda: ZLoss(ZLOSS_A, ZLOSS_B),
    "softmax": FullSoftmax,
}
#: The spherical family: the losses with a factored O(d^2) form.
FAMILY = ["spherical", "squared", "taylor", "zloss"]


def relative(a, b):
    return float(
        np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300)
    )


def naive(loss, seed=0, feature=0.0):
    settings = Settings(dim=DIM, bias_feature=feature)
    return NaiveHead(loss, VOCAB, settings, NumpyOps(), seed, dtype=np.float64)


class DeviceLikeOps(Ops):
    """The generic backend copying to the host as a device does, so that the rules the
    array form runs on host copies must write their results back."""

    def to_host(self, array):
        return np.array(array)


#: The factored step's two implementations: the compiled CPU kernel (on the host backend),
#: and the array form a GPU runs (on the generic backend, here over NumPy).
PATHS = {"compiled": NumpyOps, "array": DeviceLikeOps}


def factored(loss, seed=0, backend=NumpyOps, parameters=None, feature=0.0):
    settings = Settings(dim=DIM, bias_feature=feature)
    return FactoredHead(
        loss, VOCAB, settings, backend(), seed, dtype=np.float64, parameters=parameters
    )


def batch(rng, m, k, repeat=True):
    """Hidden vectors and padded K-sparse targets with repeated words within and across rows."""
    hidden = rng.normal(0, 1.0, (m, DIM))
    targets = rng.integers(0, 8 if repeat else D, size=(m, k))
    targets[rng.random((m, k)) < 0.25] = PADDING
    targets[:, 0] = rng.integers(0, D, size=m)
    return hidden, targets


def reference_loss(loss_name, hidden, targets, weights, feature=0.0):
    """Plain float64 per-pair losses summed, straight from the definitions; with
    ``feature``, the output is o = W[:, :d] h + feature W[:, d] (a per-word bias)."""
    output = hidden @ weights[:, : hidden.shape[1]].T
    if feature:
        output = output + feature * weights[:, hidden.shape[1]]
    total = 0.0
    for j, row in enumerate(targets):
        for t in row[row != PADDING]:
            o = output[j]
            if loss_name == "squared":
                e = np.zeros(D)
                e[t] = 1.0
                total += ((o - e) ** 2).sum()
            elif loss_name == "spherical":
                total -= np.log((o[t] ** 2 + 1e-3) / ((o**2).sum() + D * 1e-3))
            elif loss_name == "taylor":
                taylor = 1.0 + o + o**2 / 2
                total -= np.log(taylor[t] / taylor.sum())
            elif loss_name == "zloss":
                z = (o[t] - o.mean()) / o.std()
                total += np.log1p(np.exp(ZLOSS_A * (ZLOSS_B - z))) / ZLOSS_A
            else:
                total -= o[t] - np.log(np.exp(o - o.max()).sum()) - o.max()
    return total


@pytest.mark.parametrize("feature", [0.0, 1.5], ids=["no-bias", "bias-feature"])
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_naive_heads_match_finite_differences(loss_name, feature):
    rng = np.random.default_rng(3)
    head = naive(LOSSES[loss_name](), feature=feature)
    assert head.weights.shape == (D, DIM + (feature != 0))
    head.weights = rng.normal(0, 0.3, head.weights.shape)
    hidden, targets = batch(rng, 5, 4)
    hidden *= 0.5
    before = head.weights.copy()
    lr = 1e-3

    def loss_at(weights):
        return reference_loss(loss_name, hidden, targets, weights, feature)

    grad_h = numeric_gradient(lambda: loss_at(before), hidden)
    probe = before.copy()
    grad_w = numeric_gradient(lambda: loss_at(probe), probe)
    step = head.batch_step(hidden, targets, lr)
    assert step.lr == lr
    assert float(step.loss) == pytest.approx(loss_at(before), rel=1e-10)
    assert step.grad_hidden.shape == hidden.shape
    assert step.pairs == int((targets != PADDING).sum())
    assert relative(step.grad_hidden, grad_h) < 1e-7
    assert relative(head.weights, before - lr * grad_w) < 1e-9


def run_pair(
    loss_name, steps, lr, m, k, seed=0, scale=0.1, backend=NumpyOps, shape=None, feature=0.0
):
    """Drive a factored and a naive head with identical batches; return the worst
    relative differences in loss, hidden gradient and final W.

    Spherical softmax's target gradient -2 o / (o^2 + eps) amplifies rounding by up to
    1/eps per step where o ~ 0, so at large |h| and rate any two exact implementations
    drift apart chaotically (checked: the naive head against itself in another summation
    order does too); the comparisons run where the trajectory is well conditioned."""
    rng = np.random.default_rng(seed)
    fact = factored(LOSSES[loss_name](), backend=backend, feature=feature)
    ref = naive(LOSSES[loss_name](), feature=feature)
    assert relative(fact.state.weights(), ref.weights) == 0
    worst = {"loss": 0.0, "grad": 0.0}
    for _ in range(steps):
        hidden, targets = batch(rng, m, k)
        hidden *= scale
        if shape is not None:
            shape(hidden, targets, ref.weights)
        a = fact.batch_step(hidden, targets, lr)
        b = ref.batch_step(hidden, targets, lr)
        assert a.lr == pytest.approx(b.lr, rel=1e-9)
        assert a.pairs == b.pairs
        worst["loss"] = max(worst["loss"], abs(float(a.loss) - float(b.loss)) / abs(float(b.loss)))
        worst["grad"] = max(worst["grad"], relative(a.grad_hidden, b.grad_hidden))
    worst["weights"] = relative(fact.state.weights(), ref.weights)
    return worst, fact, ref


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("loss_name", FAMILY)
@pytest.mark.parametrize("k", [10, 1], ids=["skipgram-K-sparse", "cbow"])
@pytest.mark.parametrize("m", [4, 12], ids=["woodbury", "direct-inverse"])
def test_factored_matches_naive_after_many_steps(loss_name, k, m, path):
    worst, fact, _ = run_pair(loss_name, steps=250, lr=0.005, m=m, k=k, backend=PATHS[path])
    assert worst["loss"] < 1e-9 and worst["grad"] < 1e-9 and worst["weights"] < 1e-9, worst
    checks = fact.state.consistency()
    assert checks["gram"] < 1e-9 and checks["inverse"] < 1e-9, checks
    assert checks["column_sum"] < 1e-9, checks
    if loss_name in ("taylor", "zloss"):  # dL/ds != 0: the shared row r carries W's dense part
        assert np.abs(fact.state.shared_row).max() > 1e-5  # it starts at 0


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("loss_name", FAMILY)
def test_factored_matches_naive_with_a_bias_feature(loss_name, path):
    """The constant feature is one more column of W for the factored state: both forms
    still agree after many steps, and the bias column moves."""
    worst, fact, ref = run_pair(
        loss_name, steps=200, lr=0.005, m=4, k=10, backend=PATHS[path], feature=1.0
    )
    assert worst["loss"] < 1e-9 and worst["grad"] < 1e-9 and worst["weights"] < 1e-9, worst
    assert fact.output_vectors().shape == (D, DIM)
    np.testing.assert_array_equal(fact.output_vectors(), fact.state.weights()[:, :DIM])
    start = naive(LOSSES[loss_name](), feature=1.0).weights[:, DIM]
    assert np.abs(ref.weights[:, DIM] - start).max() > 3 * np.abs(start).max()


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("loss_name", ["spherical", "squared"])
def test_factored_matches_naive_with_empty_and_dominant_rows(loss_name, path):
    """An example without targets (weight g = 0) and, for spherical softmax, one whose
    huge q makes its weight g = K / (q + D eps) far below the others': the compiled
    step's Woodbury shortcut divides by sqrt(g) only where that is safe."""
    ratios = []

    def shape(hidden, targets, weights):
        targets[2] = PADDING
        hidden[1] *= 3000.0
        q = ((hidden @ weights.T) ** 2).sum(axis=1) + D * 1e-3
        counts = (targets != PADDING).sum(axis=1)
        grad_q = counts / q if loss_name == "spherical" else counts.astype(float)
        present = grad_q > 0
        ratios.append(np.sqrt(grad_q[present].max() / grad_q[present].min()))

    worst, _, _ = run_pair(
        loss_name, steps=60, lr=0.005, m=6, k=5, seed=4, backend=PATHS[path], shape=shape
    )
    assert worst["loss"] < 1e-9 and worst["grad"] < 1e-9 and worst["weights"] < 1e-9, worst
    if loss_name == "spherical":
        assert min(ratios) > 64  # the explicit form was taken for the dominant row


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("loss_name", FAMILY)
def test_stress_high_learning_rate_refolds_and_still_matches(loss_name, path, monkeypatch):
    monkeypatch.setattr(factored_state, "CONDITION_LIMIT", 10.0)
    # Past these rates (Taylor: past 100 steps at this one) the trajectory is chaotic:
    # the naive head against itself with the batch rows permuted drifts as far apart.
    lr, scale, steps = {
        "squared": (5.0, 1.0, 200),
        "spherical": (0.02, 0.1, 200),
        "taylor": (0.5, 1.0, 100),
        "zloss": (50.0, 1.0, 200),
    }[loss_name]
    worst, fact, ref = run_pair(
        loss_name, steps=steps, lr=lr, m=12, k=6, seed=1, scale=scale, backend=PATHS[path]
    )
    assert fact.state.refolds > 0
    assert fact.capped_steps > 0 and fact.capped_steps == ref.capped_steps
    assert worst["loss"] < 1e-9 and worst["grad"] < 1e-9 and worst["weights"] < 1e-9, worst
    assert fact.notices() and not fact.notices()  # reported once


@pytest.mark.parametrize("path", list(PATHS))
def test_inverse_refresh_restores_the_inverse_and_estimates_the_condition(path):
    """The refresh's one implementation, also where it runs on a host copy."""
    rng = np.random.default_rng(6)
    head = factored(SquaredError(), backend=PATHS[path])
    for _ in range(5):
        head.batch_step(*batch(rng, 12, 3), 0.05)
    state = head.state
    state.mix_inverse[...] = 0.0
    estimate = state.refresh_inverse()
    checks = state.consistency()
    assert checks["inverse"] < 1e-12
    assert checks["condition"] > 1.01 and estimate == pytest.approx(checks["condition"], rel=1e-3)


@pytest.mark.parametrize("loss_name", FAMILY)
def test_factored_matches_naive_at_small_steps(loss_name):
    """At a small rate the compiled step inverts the Woodbury matrix by its truncated
    series (checked against the exact inverse below); W still has to move."""
    lr = 1e-6 if loss_name == "spherical" else 1e-5
    worst, fact, ref = run_pair(loss_name, steps=250, lr=lr, m=4, k=10)
    assert worst["loss"] < 1e-9 and worst["grad"] < 1e-9 and worst["weights"] < 1e-9, worst
    assert fact.capped_steps == ref.capped_steps == 0 and not fact.notices()
    assert relative(ref.weights, naive(LOSSES[loss_name]()).weights) > 1e-4


@pytest.mark.parametrize("signed", [False, True], ids=["positive-g", "mixed-sign-g"])
@pytest.mark.parametrize(
    "dtype,target_shrink,tolerance,fewer_terms",
    [
        (np.float64, 1e-9, 1e-15, 1),  # the series I + N
        (np.float64, 1e-5, 1e-15, 2),  # (I + N)(I + N^2)
        (np.float64, 0.3, 1e-13, 4),  # Cholesky (general inverse with mixed signs)
        (np.float32, 1e-4, 3e-7, 1),
        (np.float32, 1e-2, 3e-7, 2),
        (np.float32, 0.3, 3e-6, 4),
    ],
)
def test_woodbury_inverse_is_exact_to_rounding(
    dtype, target_shrink, tolerance, fewer_terms, signed
):
    """(I - N)^-1 for N = diag(root) H H^T diag(root sign), with ``shrink`` the Gershgorin
    bound the step passes: the series where it is short enough, the factorisation
    otherwise. The series with ``fewer_terms`` (the next shorter choice) would fail.
    Mixed signs: a loss whose dL/dq is negative for some examples (the Z-loss)."""
    m = 8
    rng = np.random.default_rng(5)
    hidden = rng.normal(0, 1, (m, DIM))
    gram = hidden @ hidden.T
    root = rng.random(m) + 0.5
    sign = np.where(rng.random(m) < 0.5, -1.0, 1.0) if signed else np.ones(m)
    weighted = np.abs(gram * root[:, None] * root[None, :]).sum(axis=1).max()
    root *= np.sqrt(target_shrink / weighted)
    series = root[:, None] * gram * (root * sign)[None, :]
    shrink = float(np.abs(series).sum(axis=1).max())
    pair_products = np.zeros((m, 3 * m), dtype=dtype)
    pair_products[:, :m] = gram
    scratch = np.empty((3 * m, m), dtype=dtype)
    result = factored_kernel._woodbury_inverse(pair_products, root, sign, signed, shrink, scratch)
    exact_inverse = np.linalg.inv(np.eye(m) - series)
    assert relative(result, exact_inverse) < tolerance
    shorter = sum(np.linalg.matrix_power(series, k) for k in range(fewer_terms))
    assert relative(shorter, exact_inverse) > 10 * tolerance


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("m", [4, 12], ids=["woodbury", "direct-inverse"])
def test_zloss_with_mixed_sign_dq_matches_naive(path, m):
    """The Z-loss's dL/dq = sum_t sigmoid(a (b - z_t)) z_t / (2 D sigma^2) is negative for
    an example whose targets score below the mean: U grows along its hidden vector, and
    the Woodbury system is no longer symmetric. The batches here have both signs."""
    signs = []

    def shape(hidden, targets, weights):
        output = hidden @ weights.T
        z = (output - output.mean(axis=1, keepdims=True)) / output.std(axis=1, keepdims=True)
        present = targets != PADDING
        pull = 1.0 / (1.0 + np.exp(-ZLOSS_A * (ZLOSS_B - np.take_along_axis(z, targets, 1))))
        signs.append(np.sign((pull * np.take_along_axis(z, targets, 1) * present).sum(axis=1)))

    worst, fact, _ = run_pair(
        "zloss", steps=200, lr=0.05, m=m, k=4, seed=2, scale=1.0, backend=PATHS[path], shape=shape
    )
    assert worst["loss"] < 1e-9 and worst["grad"] < 1e-9 and worst["weights"] < 1e-9, worst
    mixed = sum(1 for s in signs if (s < 0).any() and (s > 0).any())
    assert mixed > 100, mixed
    assert fact.state.consistency()["inverse"] < 1e-9


def test_stable_rate_keeps_the_multiplicative_factor_positive():
    rng = np.random.default_rng(0)
    hidden = rng.normal(0, 3, (20, DIM))
    grad_q = rng.random(20) + 0.5
    cap = exact.STABILITY_CAP
    lr, shrink = factored_kernel.stable_rate(hidden @ hidden.T, np.sqrt(grad_q), 10.0, cap)
    assert shrink == cap
    factor = np.eye(DIM) - 2 * lr * hidden.T @ (grad_q[:, None] * hidden)
    assert lr < 10.0
    assert np.linalg.eigvalsh(factor).min() >= 1 - cap - 1e-9
    small = hidden * 1e-6
    assert factored_kernel.stable_rate(small @ small.T, np.sqrt(grad_q), 0.01, cap)[0] == 0.01


def test_spherical_output_never_starts_at_zero():
    head = factored(SphericalSoftmax(1e-3))
    assert np.abs(head.state.weights()).min() > 0
    hidden = np.full((1, DIM), 0.1)
    step = head.batch_step(hidden, np.array([[3]]), 0.1)
    assert np.abs(step.grad_hidden).max() > 0


def test_save_and_load_keep_weights():
    rng = np.random.default_rng(0)
    head = factored(SquaredError())
    for _ in range(5):
        head.batch_step(*batch(rng, 4, 3), 0.05)
    saved = head.parameters()
    other = factored(SquaredError(), seed=9, parameters=saved)
    assert relative(other.state.weights(), head.state.weights()) < 1e-12
    assert other.state.consistency()["gram"] < 1e-12


@pytest.mark.parametrize("head,purity", [("spherical", 0.6), ("squared", 0.9)])
def test_exact_heads_learn_structure_end_to_end(structured_corpus, head, purity):
    """Training through the batched engine recovers the generated groups (chance: 0.2).
    Spherical softmax is even in o, so words sharing contexts may point opposite ways;
    its threshold is lower."""
    from conftest import neighbour_purity, train_model

    model, _ = train_model(
        structured_corpus, model="skipgram", head=head, dim=24, epochs=3, sample=0, batch_size=16
    )
    assert neighbour_purity(model.vocab.words, model.host_vectors()) >= purity
    assert model.head.state.consistency()["gram"] < 1e-3


@pytest.mark.parametrize("form", ["factored", "naive"])
def test_a_capped_step_halves_the_largest_eigenvalue_at_most(form):
    """The stated bound, not the constant: a step too large is cut to the rate at which
    2 lr lambda_max(H^T diag(dL/dq) H) = 1/2, so the factor I - S^T S on W keeps every
    eigenvalue >= 1/2. Squared error: dL/dq = the number of targets of the example."""
    rng = np.random.default_rng(4)
    hidden = rng.normal(0, 2.0, (6, DIM))
    targets = np.array([[1, 2, PADDING], [3, PADDING, PADDING], [0, 4, 5]] * 2)
    head = factored(SquaredError()) if form == "factored" else naive(SquaredError())
    step = head.batch_step(hidden, targets, 100.0)
    count = (targets != PADDING).sum(axis=1)
    largest = np.linalg.eigvalsh(hidden.T @ (count[:, None] * hidden))[-1]
    assert step.lr < 100.0
    assert 2 * step.lr * largest == pytest.approx(0.5, rel=1e-9)
    assert len(head.notices()) == 1 and head.notices() == []  # reported once, then cleared


def test_the_condition_bound_grows_by_the_shrink_of_each_step():
    """A step whose factor has eigenvalues in [1 - lambda, 1 + mu] can raise cond(U) by at
    most (1 + mu) / (1 - lambda): from 1, a step with lambda = 1/2 gives 2, another 1/2
    gives 4, and one with lambda = mu = 1/2 (signed dL/dq) multiplies by 3."""
    head = factored(SquaredError())
    head.state.advance(0.5, False)
    assert head.state.condition_bound == 2.0
    head.state.advance(0.5, False)
    assert head.state.condition_bound == 4.0
    head.state.advance(0.5, True)
    assert head.state.condition_bound == 12.0


@pytest.mark.parametrize("path", list(PATHS))
def test_factored_matches_naive_when_the_batch_size_changes(path):
    """The compiled step's workspace grows for a larger minibatch (4, then 12 > d, then 4
    again): each step still matches the naive head."""
    rng = np.random.default_rng(8)
    fact = factored(SquaredError(), backend=PATHS[path])
    ref = naive(SquaredError())
    for m in (4, 12, 4, 12, 4):
        hidden, targets = batch(rng, m, 3)
        a = fact.batch_step(hidden * 0.1, targets, 0.01)
        b = ref.batch_step(hidden * 0.1, targets, 0.01)
        assert relative(a.grad_hidden, b.grad_hidden) < 1e-9
        assert abs(float(a.loss) - float(b.loss)) < 1e-9 * abs(float(b.loss))
    assert relative(fact.state.weights(), ref.weights) < 1e-9


@pytest.mark.parametrize("feature", [0.0, 2.0], ids=["no-bias", "bias-feature"])
@pytest.mark.parametrize("loss_name", ["spherical", "taylor", "softmax"])
@pytest.mark.parametrize("form", ["factored", "naive"])
def test_log_probabilities_are_the_heads_distribution(loss_name, form, feature):
    """What evaluation scores (held-out log-loss): normalised, and for one target each,
    -log p equals the loss the training step reports (lr 0) and the definition's."""
    if form == "factored" and loss_name == "softmax":
        pytest.skip("the full softmax has no factored form")
    rng = np.random.default_rng(9)
    loss = LOSSES[loss_name]()
    head = (factored if form == "factored" else naive)(loss, feature=feature)
    weights = head._weights().astype(np.float64)
    if feature:  # a bias that matters: W's last column away from its small start
        weights[:, DIM] = rng.normal(0, 1.0, D)
        head._start(weights.copy())
    hidden = rng.normal(0, 1.0, (5, DIM))
    log_p = head.log_probabilities(hidden)
    np.testing.assert_allclose(np.exp(log_p).sum(axis=1), 1.0, atol=1e-12)
    targets = np.array([[3], [0], [17], [39], [3]])
    expected = reference_loss(loss_name, hidden, targets, weights, feature)
    assert -np.take_along_axis(log_p, targets, 1).sum() == pytest.approx(expected, rel=1e-12)
    assert float(head.batch_step(hidden, targets, 0.0).loss) == pytest.approx(expected, rel=1e-9)


def test_losses_that_are_not_distributions_say_so():
    for loss in (SquaredError(), ZLoss(ZLOSS_A, ZLOSS_B)):
        with pytest.raises(NotImplementedError):
            naive(loss).log_probabilities(np.zeros((1, DIM)))


def test_bias_feature_defaults_per_head_and_for_models_saved_without_it():
    """The Taylor softmax and the Z-loss take the constant feature unless told otherwise
    (measured better); the other heads do not; a model saved before the option existed
    had none."""
    for head in ("taylor", "zloss"):
        settings = resolved_settings(head=head)
        assert settings.bias_feature == 1.0
        assert FactoredHead.parameter_shapes(D, settings)["basis"] == (D, settings.dim + 1)
        assert resolved_settings(head=head, bias_feature=0).bias_feature == 0
    for head in ("spherical", "squared", "softmax", "ns"):
        assert resolved_settings(head=head).bias_feature == 0.0
    saved = resolved_settings(head="taylor").to_dict()
    del saved["bias_feature"]
    assert Settings.from_dict(saved).bias_feature == 0.0
