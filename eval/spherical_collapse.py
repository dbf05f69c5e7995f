"""Why do the spherical softmax's word vectors collapse? A one-factor-at-a-time sweep.

Trains skip-gram with ``--head spherical`` through the public API (``embedtrain.train``,
threads=1, seed=1, one run at a time) on the first ``--words`` tokens of a corpus, and for
each variant prints WS-353 and SimLex-999 Spearman (with cos and with |cos|, on the pairs
inside the vocabulary; gensim's copies, as ``eval/vector_geometry.py``), Google analogy %
(``Embeddings.evaluate``), the share of the centred variance in the top singular value of
the input vectors and of the output vectors W, the mean training loss per epoch, and how
many minibatches the stability cap slowed (the head's "learning rate reduced" notice).
Squared error and negative sampling run too, as reference rows.

Variants change one thing from the default (epsilon 1e-3, output init N(0, 0.01^2),
lr 0.025, stability cap 0.5): epsilon, the learning rate (options), and the module
constants ``embedtrain.heads.exact.OUTPUT_INIT_STD`` and ``STABILITY_CAP``, which have no
option and are monkeypatched here for one run (the tables say so). Nothing in
``embedtrain/`` is changed.

Instruments (also monkeypatched, read-only): ``embedtrain.api.run_training`` is wrapped
to see the model, and its head's ``batch_step`` to take checkpoints after 1, 3, 10, ...
minibatches (the input vectors' top singular share, the batch's q = |o|^2 against D eps,
its target outputs o_c^2 against eps, WS-353 with cos and |cos|); epoch callbacks take
the rest. For the runs named in :data:`DETAILED`, every checkpoint is printed, and an
offline analysis runs on (centre, context) pairs drawn from the corpus as the trainer
draws them: the model's loss next to the best unigram (bias-only) model's, the gain from an optimal per-word output bias b (o = W h + b,
fitted by full-batch Adam with W and h fixed), the loss of the input vectors reduced to
their mean plus the top direction, what the top direction correlates with, and the sign
pattern of related pairs. Last, the spherical runs' input vectors with each word's sign
fixed post hoc (the loss is even in every h_w), scored with plain cos.

    PYTHONPATH=. python eval/spherical_collapse.py ../shared/corpora/bench17m.txt.xz \\
        --words 1000000 --epochs 3
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import lzma
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

import embedtrain
from embedtrain import api
from embedtrain.heads import exact

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vector_geometry import SUITES, correlations, pairs_of, unit_rows

#: Minibatch counts after which the head's step is observed (0: the initial state).
BATCH_CHECKPOINTS = (0, 1, 3, 10, 30, 100, 300, 1000, 3000)
#: Runs whose every checkpoint is printed and which get the offline analysis.
DETAILED = ("default", "epsilon 0.1", "lr 0.0025")
#: At an epoch's end q = |W h|^2 is averaged over this many most frequent words.
FREQUENT = 2000


@dataclass
class Variant:
    """One training run: options for ``embedtrain.train`` and module constants to patch."""

    name: str
    how: str  # "default", "option" or "patched exact.NAME"
    head: str = "spherical"
    options: dict[str, Any] = field(default_factory=dict)
    patches: dict[str, float] = field(default_factory=dict)


#: The defaults this study varied one at a time (epsilon's default is 0.1 since, as its
#: result; the rate is the spherical head's default, 0.025).
STUDIED_DEFAULTS = {"epsilon": 1e-3, "lr": 0.025}


def patched_variants(constant: str, values: tuple[float, ...]) -> list[Variant]:
    """One run per value of a module constant of ``embedtrain.heads.exact``."""
    return [
        Variant(f"{constant} {value:g}", f"patched exact.{constant}", patches={constant: value})
        for value in values
    ]


def variants() -> list[Variant]:
    """The default, then one factor at a time, then the reference heads."""
    runs = [Variant("default (eps 1e-3, init 0.01, lr 0.025, cap 0.5)", "default")]
    for eps in (1e-1, 1e-2, 1e-5):
        runs.append(Variant(f"epsilon {eps:g}", "option", options={"epsilon": eps}))
    runs += patched_variants("OUTPUT_INIT_STD", (0.001, 0.1))
    for lr in (0.0025, 0.1):
        runs.append(Variant(f"lr {lr:g}", "option", options={"lr": lr}))
    runs += patched_variants("STABILITY_CAP", (0.1, 0.9))
    runs.append(Variant("epsilon 1 (extra)", "option", options={"epsilon": 1.0}))
    runs.append(
        Variant(
            "epsilon 0.1 and lr 0.0025 (extra, two factors)",
            "option",
            options={"epsilon": 0.1, "lr": 0.0025},
        )
    )
    runs.append(Variant("squared error (reference)", "option", head="squared"))
    runs.append(Variant("negative sampling (reference)", "option", head="ns"))
    return runs


def corpus_prefix(source: Path, words: int, target: Path) -> int:
    """Write the first ``words`` tokens of ``source`` (``.xz`` or plain) to ``target``,
    whole lines except the last; returns the number written."""
    opener = lzma.open if source.suffix == ".xz" else open
    written = 0
    with opener(source, "rt", encoding="utf-8") as lines, open(target, "w") as out:
        for line in lines:
            tokens = line.split()
            if written + len(tokens) >= words:
                tokens = tokens[: words - written]
            out.write(" ".join(tokens) + "\n")
            written += len(tokens)
            if written >= words:
                break
    return written


def top_share(vectors: np.ndarray) -> float:
    """Share of the centred variance in the top singular value: s_1^2 / sum s_i^2."""
    centred = vectors.astype(np.float64) - vectors.mean(axis=0, dtype=np.float64)
    singular = np.linalg.svd(centred, compute_uv=False)
    return float(singular[0] ** 2 / (singular**2).sum())


@dataclass
class Checkpoint:
    """The state after ``batches`` minibatches (or at an epoch's end)."""

    label: str
    batches: int
    share_input: float
    share_output: float
    ws_cos: float
    ws_abs: float
    mean_q: float = math.nan  # over the observed batch's examples (epoch: FREQUENT words)
    median_target_sq: float = math.nan  # o_c^2 over its (example, target) pairs
    input_norm: float = math.nan  # mean |h| over the vocabulary
    output_norm: float = math.nan  # mean |W_c| over the vocabulary


class Probe:
    """Sees the model of the run in progress (``api.run_training`` wrapped) and observes
    its head's minibatch steps at :data:`BATCH_CHECKPOINTS`."""

    def __init__(self, index: dict[str, int]) -> None:
        self.index = index
        self.model: Any = None
        self.batches = 0
        self.checkpoints: list[Checkpoint] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[Probe]:
        original = api.run_training

        def run_training(model, *args, **kwargs):
            self.model = model
            self.index = {word: row for row, word in enumerate(model.vocab.words)}
            if hasattr(model.head, "state"):  # the factored exact heads: observe steps
                self._wrap_steps(model.head)
            return original(model, *args, **kwargs)

        api.run_training = run_training
        try:
            yield self
        finally:
            api.run_training = original

    def _wrap_steps(self, head: Any) -> None:
        step = head.batch_step

        def batch_step(hidden, targets, lr):
            if self.batches in BATCH_CHECKPOINTS:
                label = "init" if self.batches == 0 else f"{self.batches} batches"
                self.checkpoints.append(self.observe(label, hidden, targets))
            self.batches += 1
            return step(hidden, targets, lr)

        head.batch_step = batch_step

    def observe(self, label: str, hidden: Any = None, targets: Any = None) -> Checkpoint:
        model = self.model
        vectors = model.host_vectors().astype(np.float64)
        output = model.head.output_vectors()
        output = None if output is None else output.astype(np.float64)
        ws = correlations(unit_rows(vectors), self.index)["WS-353"]
        point = Checkpoint(
            label,
            self.batches,
            top_share(vectors),
            math.nan if output is None else top_share(output),
            ws[0],
            ws[1],
            input_norm=float(np.linalg.norm(vectors, axis=1).mean()),
            output_norm=math.nan
            if output is None
            else float(np.linalg.norm(output, axis=1).mean()),
        )
        if hidden is None and output is not None:  # an epoch's end: the frequent words' q
            hidden = vectors[:FREQUENT]
            point.mean_q = float(((hidden @ output.T) ** 2).sum(axis=1).mean())
        elif hidden is not None and output is not None:
            outputs = np.asarray(hidden, dtype=np.float64) @ output.T  # (m, D)
            present = targets >= 0
            rows = np.where(present, targets, 0)
            scores = np.take_along_axis(outputs, rows, axis=1)[present]
            point.mean_q = float((outputs**2).sum(axis=1).mean())
            point.median_target_sq = float(np.median(scores**2))
        return point

    def epoch_callback(self, report: Any) -> None:
        self.checkpoints.append(self.observe(f"epoch {report.epoch}"))


@dataclass
class Result:
    variant: Variant
    scores: dict[str, tuple[float, float, float]]
    analogy: float
    share_input: float
    share_output: float
    losses: list[float]
    capped: int
    batches: int
    notices: list[str]
    seconds: float
    vocab_size: int
    checkpoints: list[Checkpoint]
    embeddings: Any


class Notices(logging.Handler):
    """Collects the ``embedtrain`` logger's warnings (the stability-cap notice)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def patched(patches: dict[str, float]) -> Iterator[None]:
    """Set module constants of :mod:`embedtrain.heads.exact` for one run."""
    saved = {name: getattr(exact, name) for name in patches}
    try:
        for name, value in patches.items():
            setattr(exact, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(exact, name, value)


def run(variant: Variant, corpus: Path, epochs: int) -> Result:
    probe = Probe({})
    handler = Notices()
    logger = logging.getLogger("embedtrain")
    logger.addHandler(handler)
    options = {
        "head": variant.head,
        "model": "skipgram",
        "epochs": epochs,
        "threads": 1,
        "seed": 1,
        **(STUDIED_DEFAULTS if variant.head == "spherical" else {}),
        **variant.options,
    }
    started = time.perf_counter()
    try:
        with patched(variant.patches), probe.installed():
            embeddings = embedtrain.train(
                str(corpus), progress=False, callbacks=[probe.epoch_callback], **options
            )
    finally:
        logger.removeHandler(handler)
    seconds = time.perf_counter() - started
    vectors = embeddings.vectors.astype(np.float64)
    output = embeddings.output_vectors
    index = {word: row for row, word in enumerate(embeddings.words)}
    evaluation = embeddings.evaluate()
    head = probe.model.head
    return Result(
        variant,
        correlations(unit_rows(vectors), index),
        100.0 * float(evaluation["questions-words.txt"]["score"]),
        top_share(vectors),
        math.nan if output is None else top_share(output),
        [report.mean_loss for report in embeddings.history],
        int(getattr(head, "capped_steps", 0)),
        probe.batches,
        handler.messages,
        seconds,
        len(embeddings.words),
        probe.checkpoints,
        embeddings,
    )


def sign_fixed(vectors: np.ndarray) -> np.ndarray:
    """Each input vector flipped to the side of the first principal axis (through the
    origin): the loss is even in every h_w, so a word's sign is arbitrary; this picks one."""
    raw = vectors.astype(np.float64)
    _, _, directions = np.linalg.svd(raw, full_matrices=False)
    signs = np.where(raw @ directions[0] < 0, -1.0, 1.0)
    return raw * signs[:, None]


def sign_fixed_table(results: list[Result]) -> str:
    """The spherical runs' input vectors with the per-word sign fixed post hoc."""
    lines = [
        "| variant | WS-353 cos | SimLex cos | analogy % | (as trained: WS-353 cos, abs cos) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        fixed = sign_fixed(r.embeddings.vectors)
        index = {word: row for row, word in enumerate(r.embeddings.words)}
        scores = correlations(unit_rows(fixed), index)
        analogy = embedtrain.Embeddings(r.embeddings.words, fixed).evaluate()
        ws = r.scores["WS-353"]
        lines.append(
            f"| {r.variant.name} | {scores['WS-353'][0]:.3f} | {scores['SimLex-999'][0]:.3f} | "
            f"{100.0 * float(analogy['questions-words.txt']['score']):.1f} | "
            f"{ws[0]:.3f}, {ws[1]:.3f} |"
        )
    return "\n".join(lines)


def results_table(results: list[Result]) -> str:
    header = (
        "| variant | how | WS-353 cos | WS-353 abs cos | SimLex cos | SimLex abs cos | "
        "analogy % | top SV share, input | top SV share, W | mean loss per epoch | "
        "lr capped (minibatches) | mean abs h, abs W_c at the end | q / (D eps) at the end | s |"
    )
    lines = [header, "|" + "---|" * 14]
    for r in results:
        ws, simlex = r.scores["WS-353"], r.scores["SimLex-999"]
        losses = " / ".join(f"{loss:.4g}" for loss in r.losses)
        capped = f"{r.capped:,} of {r.batches:,}" if r.variant.head != "ns" else "n/a"
        end = r.checkpoints[-1]
        epsilon = r.embeddings.settings.epsilon
        ratio = (
            f"{end.mean_q / (r.vocab_size * epsilon):.3g}" if r.variant.head == "spherical" else ""
        )
        lines.append(
            f"| {r.variant.name} | {r.variant.how} | {ws[0]:.3f} | {ws[1]:.3f} | "
            f"{simlex[0]:.3f} | {simlex[1]:.3f} | {r.analogy:.1f} | {r.share_input:.3f} | "
            f"{r.share_output:.3f} | {losses} | {capped} | {end.input_norm:.3g}, "
            f"{end.output_norm:.3g} | {ratio} | {r.seconds:.0f} |"
        )
    return "\n".join(lines)


def timeline_table(results: list[Result]) -> str:
    """Top singular share of the input vectors at each checkpoint, one row per run."""
    labels: list[str] = []
    for r in results:
        for point in r.checkpoints:
            if point.label not in labels:
                labels.append(point.label)
    lines = ["| variant | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for r in results:
        shares = {point.label: point.share_input for point in r.checkpoints}
        cells = [f"{shares[label]:.3f}" if label in shares else "" for label in labels]
        lines.append(f"| {r.variant.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_table(result: Result, epsilon: float | None) -> str:
    """Every checkpoint of one run: geometry, q against D eps, o_c^2 against eps (None:
    not the spherical softmax, no eps)."""

    def ratio(value: float, scale: float) -> str:
        return "" if epsilon is None else f"{value / scale:.3g}"

    d_eps = result.vocab_size * (epsilon or 0.0)
    lines = [
        (
            "| checkpoint | top SV share, input | top SV share, W | WS-353 cos | WS-353 abs cos | "
            "mean abs h | mean abs W_c | mean q | q / (D eps) | median o_c^2 | o_c^2 / eps |"
        ),
        "|" + "---|" * 11,
    ]
    for p in result.checkpoints:
        lines.append(
            f"| {p.label} | {p.share_input:.3f} | {p.share_output:.3f} | {p.ws_cos:.3f} | "
            f"{p.ws_abs:.3f} | {p.input_norm:.3g} | {p.output_norm:.3g} | {p.mean_q:.3g} | "
            f"{ratio(p.mean_q, d_eps)} | {p.median_target_sq:.3g} | "
            f"{ratio(p.median_target_sq, epsilon or 1.0)} |"
        )
    return "\n".join(lines)


# --- offline analysis of a trained spherical model -------------------------------------


def sample_pairs(
    corpus: Path, model: Any, centres: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(centre word, context word) pairs as the trainer draws them: subsampled first, then
    a randomly reduced window inside the sentence; ``centres`` centre positions."""
    settings = model.settings
    index = {word: row for row, word in enumerate(model.vocab.words)}
    keep = model.vocab.keep_probabilities(settings.sample)
    ids: list[int] = []
    sentence: list[int] = []
    with open(corpus, encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            for token in line.split():
                row = index.get(token)
                if row is not None and rng.random() < keep[row]:
                    ids.append(row)
                    sentence.append(number)
    word = np.array(ids)
    where = np.array(sentence)
    chosen = rng.choice(len(word), size=centres, replace=False)
    first, second = [], []
    for position in chosen:
        half = settings.window - int(rng.integers(0, settings.window))
        for offset in range(-half, half + 1):
            other = position + offset
            if offset and 0 <= other < len(word) and where[other] == where[position]:
                first.append(word[position])
                second.append(word[other])
    return np.array(first), np.array(second)


def spherical_losses(
    outputs: np.ndarray, example: np.ndarray, context: np.ndarray, epsilon: float
) -> np.ndarray:
    """-log P(c | h) per pair for outputs (n, D); ``example`` indexes its rows."""
    norm = (outputs**2).sum(axis=1) + outputs.shape[1] * epsilon
    target = outputs[example, context] ** 2 + epsilon
    return np.log(norm[example]) - np.log(target)


def fit_bias(
    outputs: np.ndarray,
    example: np.ndarray,
    context: np.ndarray,
    epsilon: float,
    unigram: np.ndarray,
    steps: int = 300,
) -> tuple[np.ndarray, float]:
    """A per-word output bias b for o = outputs + b (outputs fixed): the best of the
    starts b = s R sqrt(unigram) (R = the rms of |o|, s in 0..30; s large approaches the
    unigram model when R is well above sqrt(D eps)), then full-batch Adam. Returns (b, the
    mean loss with it): an upper bound on the optimum's loss (the problem is not convex)."""
    n, vocab = outputs.shape
    counts = np.bincount(example, minlength=n).astype(np.float64)  # pairs per example
    scale = math.sqrt(float((outputs**2).sum(axis=1).mean()))
    starts = [s * scale * np.sqrt(unigram) for s in (0.0, 0.3, 1.0, 3.0, 10.0, 30.0)]
    losses = [spherical_losses(outputs + b, example, context, epsilon).mean() for b in starts]
    bias = starts[int(np.argmin(losses))].copy()
    moment = np.zeros(vocab)
    second = np.zeros(vocab)
    rate = 0.02 * max(float(np.abs(outputs).mean()), float(np.abs(bias).mean()))
    pairs = len(example)
    best = (float(min(losses)), bias.copy())
    for step in range(1, steps + 1):
        shifted = outputs + bias
        norm = (shifted**2).sum(axis=1) + vocab * epsilon
        score = shifted[example, context]
        loss = float((np.log(norm[example]) - np.log(score**2 + epsilon)).mean())
        if loss < best[0]:
            best = (loss, bias.copy())
        # dL/do = sum over an example's pairs of 2 o / norm, minus 2 o_c / (o_c^2 + eps) e_c
        grad = (2.0 * counts / norm) @ shifted
        np.subtract.at(grad, context, 2.0 * score / (score**2 + epsilon))
        grad /= pairs
        moment = 0.9 * moment + 0.1 * grad
        second = 0.999 * second + 0.001 * grad**2
        bias -= rate * (moment / (1 - 0.9**step)) / (np.sqrt(second / (1 - 0.999**step)) + 1e-12)
    final = float(spherical_losses(outputs + bias, example, context, epsilon).mean())
    return (bias, final) if final < best[0] else (best[1], best[0])


def offline_analysis(result: Result, corpus: Path, centres: int = 1500) -> str:
    """Loss decomposition, optimal output bias, the top direction and the sign pattern."""
    embeddings = result.embeddings
    model = embeddings._model
    epsilon = model.settings.epsilon
    rng = np.random.default_rng(7)
    first, second = sample_pairs(corpus, model, centres, rng)
    words, example = np.unique(first, return_inverse=True)
    hidden = embeddings.vectors.astype(np.float64)
    weights = embeddings.output_vectors.astype(np.float64)
    vocab = weights.shape[0]
    counts = model.vocab.counts.astype(np.float64)
    keep = model.vocab.keep_probabilities(model.settings.sample).astype(np.float64)
    lines = [
        (
            f"Offline, {len(first):,} (centre, context) pairs from {len(words):,} distinct centre "
            f"words (D = {vocab:,}, eps = {epsilon:g}, D eps = {vocab * epsilon:g}):"
        ),
        "",
        "| model of P(c given centre) | mean -log P per pair (nats) |",
        "|---|---|",
    ]

    def loss_of(h: np.ndarray, bias: np.ndarray | float = 0.0) -> float:
        outputs = h[words] @ weights.T + bias
        return float(spherical_losses(outputs, example, second, epsilon).mean())

    trained = loss_of(hidden)
    unigram = counts * keep / (counts * keep).sum()
    lines.append(f"| trained model, o = W h | {trained:.4f} |")
    lines.append(
        "| unigram: P(c) = count x keep probability, normalised (a bias-only model, "
        f"o = b, reaches it) | {float(-np.log(unigram[second]).mean()):.4f} |"
    )
    lines.append(f"| uniform, 1/D | {math.log(vocab):.4f} |")
    flips = np.where(rng.random(len(hidden)) < 0.5, -1.0, 1.0)
    lines.append(
        "| trained model, the sign of a random half of the input vectors flipped "
        f"(P is even in each h_w) | {loss_of(hidden * flips[:, None]):.4f} |"
    )
    bias, with_bias = fit_bias(hidden[words] @ weights.T, example, second, epsilon, unigram)
    lines.append(f"| trained model + optimal per-word output bias b (fitted) | {with_bias:.4f} |")
    mean = hidden.mean(axis=0)
    centred = hidden - mean
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    top = directions[0]
    along = centred @ top
    rank_one = mean + np.outer(along, top)
    lines.append(
        f"| input vectors replaced by mean + top direction (one scalar per word) | "
        f"{loss_of(rank_one):.4f} |"
    )
    without = hidden - np.outer(along, top)
    lines.append(f"| input vectors with the top direction removed | {loss_of(without):.4f} |")
    _, without_bias = fit_bias(without[words] @ weights.T, example, second, epsilon, unigram)
    lines.append(f"| top direction removed + optimal output bias | {without_bias:.4f} |")

    # What the top direction carries.
    log_count = np.log(counts)
    output_mean = weights @ mean  # o_c for the mean input vector: a shared, bias-like output
    output_top = weights @ top
    lines += [
        "",
        (
            "What the top direction u1 of the centred input vectors carries (Spearman over the "
            "vocabulary):"
        ),
        "",
        (
            f"- projection of h_w on u1 against log count(w): "
            f"{spearmanr(along, log_count)[0]:.3f}; |projection| against log count: "
            f"{spearmanr(np.abs(along), log_count)[0]:.3f}"
        ),
        (
            f"- |W_c . mean(h)| against log count(c): "
            f"{spearmanr(np.abs(output_mean), log_count)[0]:.3f}; |W_c . u1| against log count(c): "
            f"{spearmanr(np.abs(output_top), log_count)[0]:.3f}; |W_c| against log count(c): "
            f"{spearmanr(np.linalg.norm(weights, axis=1), log_count)[0]:.3f}"
        ),
        (
            f"- the fitted bias b_c^2 against the unigram probability: "
            f"{spearmanr(bias**2, unigram)[0]:.3f}"
        ),
        "- singular values of the centred input vectors / the first: "
        + " ".join(f"{v:.3f}" for v in singular[:6] / singular[0]),
        "",
    ]
    lines += sign_pattern(embeddings)
    return "\n".join(lines)


def sign_pattern(embeddings: Any) -> list[str]:
    """Related against unrelated test pairs: mean |cos| and share of negative cos, raw and
    centred input vectors (a sign-blind loss could leave related words |cos| large with a
    random sign)."""
    index = {word: row for row, word in enumerate(embeddings.words)}
    raw = embeddings.vectors.astype(np.float64)
    lines = [
        (
            "| vectors | suite | pairs: related (top quarter by human score) / unrelated "
            "(bottom quarter) | mean cos | mean abs cos | share cos < 0 | Spearman(cos, abs cos) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for label, vectors in (("raw", raw), ("centred", raw - raw.mean(axis=0))):
        unit = unit_rows(vectors)
        for suite, path in SUITES.items():
            first, second, human = pairs_of(path, index)
            cosine = (unit[first] * unit[second]).sum(axis=1)
            low, high = np.quantile(human, [0.25, 0.75])
            rho = spearmanr(cosine, np.abs(cosine))[0]
            for name, mask in (("related", human >= high), ("unrelated", human <= low)):
                part = cosine[mask]
                lines.append(
                    f"| {label} | {suite} | {name} ({mask.sum()}) | {part.mean():.3f} | "
                    f"{np.abs(part).mean():.3f} | {(part < 0).mean():.2f} | {rho:.3f} |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="text or .xz corpus (its prefix is used)")
    parser.add_argument("--words", type=int, default=1_000_000, help="prefix length in tokens")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only variants whose name contains one of these"
    )
    args = parser.parse_args()
    runs = variants()
    if args.only:
        runs = [v for v in runs if any(part in v.name for part in args.only)]
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as scratch:
        corpus = Path(scratch) / "prefix.txt"
        written = corpus_prefix(args.corpus, args.words, corpus)
        print(
            f"corpus: first {written:,} tokens of {args.corpus}; {args.epochs} epochs; "
            "skip-gram, d = 100, window 5, threads 1, seed 1",
            flush=True,
        )
        for variant in runs:
            result = run(variant, corpus, args.epochs)
            results.append(result)
            ws = result.scores["WS-353"]
            print(
                f"{variant.name}: WS-353 {ws[0]:.3f} (abs {ws[1]:.3f}), top share "
                f"{result.share_input:.3f}, loss {result.losses}, {result.seconds:.0f} s; "
                f"notices: {result.notices}",
                flush=True,
            )
        print("\n## Variants\n")
        print(results_table(results))
        spherical = [r for r in results if r.variant.head in ("spherical", "squared")]
        print("\n## Top singular share of the input vectors during training\n")
        print(timeline_table(spherical))
        for r in spherical:
            if r.variant.name.startswith(DETAILED) or r.variant.head == "squared":
                epsilon = r.embeddings.settings.epsilon
                print(f"\n## Checkpoints: {r.variant.name}\n")
                print(detail_table(r, epsilon if r.variant.head == "spherical" else None))
        print("\n## Per-word sign fixed post hoc (spherical runs)\n")
        print(sign_fixed_table([r for r in results if r.variant.head == "spherical"]))
        for r in results:
            if r.variant.head == "spherical" and r.variant.name.startswith(DETAILED):
                print(f"\n## Offline analysis: {r.variant.name}\n")
                print(offline_analysis(r, corpus))
        for r in results:
            if r.variant.head == "squared":
                print(f"\n## Sign pattern: {r.variant.name}\n")
                print("\n".join(sign_pattern(r.embeddings)))


if __name__ == "__main__":
    main()
