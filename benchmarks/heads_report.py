"""Quality against training time for every output head, on one corpus, in one report.

Every requested head (default: every name in ``embedtrain.heads.HEADS``) trains on the same
text with the same settings (skip-gram, d=100, window 5, min_count 5, sample 1e-3 and the
rest of ``embedtrain.Settings``' defaults unless a flag or ``--set NAME=VALUE`` changes
them), one head after another in this process (never two at once, so the times compare),
through the public API with progress off.

Fixed-epoch regime (``--epochs E``): each epoch is one ``train()`` call whose callback
stops it at the epoch's end; the model is saved, evaluated and resumed from the file
(``resume=`` continues the same learning-rate schedule, over E epochs). Training time is
the sum of the epochs' ``EpochReport.seconds``, so reading and encoding the corpus again at
each resume, saving and evaluating are not counted. ``--verify-resume`` also trains each
head straight through and compares the two (bit-identical with ``--threads 1``). Before the
timed runs every head trains one epoch on a few thousand words, so that loading the
compiled kernels is not counted either.

Budget regime (``--budget T`` seconds): each head gets its own run of n = floor(T / s)
epochs, s being the mean epoch time of its fixed-epoch run, so that the learning rate decays
to ``min_lr`` within the budget: the schedule a user given T seconds would choose. When n
equals E the fixed-epoch run is that run and is reused; when one epoch takes longer than T
the head has no budget figure. The time of the run is measured, not assumed: the table
prints it, and it can exceed T by the machine's drift. Printed beside it, at no cost: the
quality at the last checkpoint of the fixed-epoch run within T (a point on the E-epoch
schedule, whose learning rate has not decayed there).

Scores are ``Embeddings.evaluate()`` on the input vectors: Google analogy accuracy (3CosAdd
among the 30,000 most frequent words), Spearman on WS-353 and SimLex-999. Held-out loss:
the last 1% of the corpus lines (``--held-out-share``, or ``--held-out-lines``) are left out of training; from
them, a seeded sample of (centre, context) pairs (``--held-out-pairs``; out-of-vocabulary
words dropped and windows reduced as in training, no subsampling) scores the mean
-log P(context | centre), with h the centre's input vector and o = W h over the whole
vocabulary (W the output vectors), in float64, for the heads whose output is a normalised
distribution (``Head.log_probabilities``: the full, spherical and Taylor softmax from o,
the adaptive softmax from its clusters); "n/a" for the others. Its value depends on the vocabulary, so it compares heads trained on the same
words only.

CORPUS is what ``embedtrain train`` reads (default: the shipped corpus). ``--max-words N``
uses its first N tokens (the held-out lines are the last of them); the O(D d) heads (``--slow-heads``, default ``softmax``) on at
most ``--slow-heads-max-words`` of those, as the table says.

Times compare only on an otherwise idle machine. On a shared one, OPENBLAS_NUM_THREADS=1
keeps the BLAS threads of the batched heads from spinning against the other work: on the
2-core development machine under outside load, 2-thread BLAS made the spherical head's
epochs 20 to 80 times slower and their times erratic.

    python -m benchmarks heads_report ../shared/corpora/bench17m.txt.xz --max-words 1000000 \\
        --budget 60 --table heads.md --plot heads.png --json heads.json
    python -m benchmarks heads_report --from-json heads.json --plot heads.png   # redraw, no training
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

import embedtrain
from benchmarks.common import (
    load_pyplot,
    publish,
    read_json,
    scores_of,
    sentences_of,
    settings_value,
    write_json,
)
from embedtrain.heads import HEADS, resolved_settings
from embedtrain.settings import Settings

WARM_UP_WORDS = 5_000
#: Elements of one float64 chunk of o = W h (32 MiB): the held-out loss never holds the
#: whole (pairs x D) output.
CHUNK_ELEMENTS = 1 << 22


@dataclass
class Checkpoint:
    """The model at the end of one epoch (or of a budget run)."""

    epoch: int
    seconds: float  # training seconds so far (the epochs' EpochReport.seconds)
    mean_loss: float  # the last epoch's mean training loss per example
    analogy: float
    ws353: float
    simlex: float
    held_out: float | None


@dataclass
class HeadResult:
    """One head's figures, as ``--json`` writes them."""

    head: str
    words: int  # corpus tokens per epoch (out-of-vocabulary ones included)
    vocab: int
    held_out_pairs: int  # pairs the held-out loss averages over
    checkpoints: list[Checkpoint] = field(default_factory=list)
    budget: Checkpoint | None = None  # the budget run's end; None: no run fits
    budget_reused: bool = False  # the budget run is the fixed-epoch run
    resume_check: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HeadResult:
        result = cls(**{f.name: values[f.name] for f in fields(cls)})
        result.checkpoints = [Checkpoint(**c) for c in result.checkpoints]
        result.budget = Checkpoint(**result.budget) if result.budget else None
        return result


@dataclass
class Corpora:
    """The texts one report trains on, in a scratch directory, and the held-out lines."""

    train: Path
    train_words: int
    held_out: list[list[str]]
    slow: Path  # the slow heads' prefix of ``train`` (all of it if that is shorter)
    slow_words: int
    warm_up: Path

    def for_head(self, head: str, slow_heads: list[str]) -> tuple[Path, int]:
        return (
            (self.slow, self.slow_words) if head in slow_heads else (self.train, self.train_words)
        )


def split_corpus(args: argparse.Namespace, scratch: Path) -> Corpora:
    """Cut the first ``--max-words`` tokens (at a line's end), hold out the last lines,
    and write the training text, the slow heads' prefix and the warm-up text."""
    prefix = scratch / "prefix.txt"
    lines = words = 0
    with open(prefix, "w", encoding="utf-8") as out:
        for sentence in sentences_of(args.corpus):
            if args.max_words and words >= args.max_words:
                break
            out.write(" ".join(sentence) + "\n")
            lines += 1
            words += len(sentence)
    held = args.held_out_lines
    if held is None:
        held = max(1, round(lines * args.held_out_share))
    if held >= lines:
        sys.exit(f"heads_report: {held:,} held-out lines leave nothing of {lines:,} to train on")
    paths = {name: scratch / f"{name}.txt" for name in ("train", "slow", "warm_up")}
    counts = dict.fromkeys(paths, 0)
    held_out: list[list[str]] = []
    limits = {"train": math.inf, "slow": args.slow_heads_max_words, "warm_up": WARM_UP_WORDS}
    with ExitStack() as files:
        source = files.enter_context(open(prefix, encoding="utf-8"))
        outs = {n: files.enter_context(open(p, "w", encoding="utf-8")) for n, p in paths.items()}
        for number, line in enumerate(source):
            if number >= lines - held:
                held_out.append(line.split())
                continue
            for name, out in outs.items():
                if counts[name] < limits[name]:
                    out.write(line)
                    counts[name] += len(line.split())
    prefix.unlink()
    return Corpora(
        paths["train"], counts["train"], held_out, paths["slow"], counts["slow"], paths["warm_up"]
    )


def held_out_pairs(
    lines: list[list[str]], emb: embedtrain.Embeddings, window: int, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of ``count`` (centre, context) id pairs from ``lines``: OOV words
    dropped, each centre's window reduced to 1..``window`` at random, as in training."""
    index = {word: i for i, word in enumerate(emb.words)}
    ids, sentence = [], []
    for number, line in enumerate(lines):
        kept = [index[w] for w in line if w in index]
        ids.extend(kept)
        sentence.extend([number] * len(kept))
    ids_array, sentence_array = np.array(ids, dtype=np.int64), np.array(sentence)
    rng = np.random.default_rng(seed)
    reach = rng.integers(1, window + 1, size=len(ids_array))
    centres, contexts = [], []
    positions = np.arange(len(ids_array))
    for offset in [k for k in range(-window, window + 1) if k]:
        other = positions + offset
        valid = (other >= 0) & (other < len(ids_array)) & (abs(offset) <= reach)
        valid[valid] &= sentence_array[other[valid]] == sentence_array[valid]
        centres.append(ids_array[valid])
        contexts.append(ids_array[other[valid]])
    centre, context = np.concatenate(centres), np.concatenate(contexts)
    chosen = np.sort(rng.choice(len(centre), size=min(count, len(centre)), replace=False))
    return centre[chosen], context[chosen]


@dataclass
class HeldOut:
    """The held-out lines and their pair sample, drawn once per vocabulary (so every head
    trained on the same words is scored on the same pairs)."""

    lines: list[list[str]]
    count: int
    seed: int
    drawn: dict[tuple, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def pairs(self, emb: embedtrain.Embeddings) -> tuple[np.ndarray, np.ndarray]:
        window = emb.settings.window
        key = (tuple(emb.words), window)
        if key not in self.drawn:
            self.drawn[key] = held_out_pairs(self.lines, emb, window, self.count, self.seed)
        return self.drawn[key]


def held_out_loss(emb: embedtrain.Embeddings, pairs: tuple[np.ndarray, np.ndarray]) -> float | None:
    """Mean -log P(context | centre) over ``pairs`` under the head's own distribution
    (``Head.log_probabilities``); None where the head defines none (or there are no
    pairs)."""
    centre, context = pairs
    step = max(1, CHUNK_ELEMENTS // len(emb.words))
    total = 0.0
    for start in range(0, len(centre), step):
        log_p = emb.log_probabilities(centre[start : start + step])
        if log_p is None:
            return None
        total -= float(np.take_along_axis(log_p, context[start : start + step, None], 1).sum())
    return total / len(centre) if len(centre) else None


def checkpoint(emb: embedtrain.Embeddings, held_out: HeldOut) -> Checkpoint:
    """Score the model as it stands."""
    return Checkpoint(
        epoch=len(emb.history),
        seconds=sum(report.seconds for report in emb.history),
        mean_loss=emb.history[-1].mean_loss,
        **scores_of(emb),
        held_out=held_out_loss(emb, held_out.pairs(emb)),
    )


def run_fixed(
    head: str,
    corpus: Path,
    options: dict[str, Any],
    held_out: HeldOut,
    epochs: int,
    scratch: Path,
) -> tuple[list[Checkpoint], embedtrain.Embeddings]:
    """Train ``epochs`` epochs one ``train()`` call each (stopped by a callback at the
    epoch's end, saved, resumed), scoring every epoch."""
    saved = scratch / f"{head}.npz"
    checkpoints: list[Checkpoint] = []
    emb = None
    while emb is None or len(emb.history) < epochs:
        emb = embedtrain.train(
            str(corpus),
            progress=False,
            callbacks=[lambda report: False],
            **({"resume": saved} if emb else options),
        )
        done = checkpoint(emb, held_out)
        checkpoints.append(done)
        log(head, f"epoch {done.epoch}/{epochs}", done)
        if done.epoch < epochs:
            emb.save(saved)
    saved.unlink(missing_ok=True)
    return checkpoints, emb


def verify_resume(
    emb: embedtrain.Embeddings, corpus: Path, options: dict[str, Any]
) -> dict[str, Any]:
    """Train straight through and compare with the resumed epochs' model."""
    straight = embedtrain.train(str(corpus), progress=False, **options)
    losses = [(a.mean_loss, b.mean_loss) for a, b in zip(emb.history, straight.history)]
    check = {
        "identical": bool(
            np.array_equal(emb.vectors, straight.vectors)
            and all(a == b for a, b in losses)
            and _same_or_none(emb.output_vectors, straight.output_vectors)
        ),
        "max_vector_difference": float(np.abs(emb.vectors - straight.vectors).max()),
        "max_loss_relative_difference": max(abs(a - b) / max(abs(b), 1e-300) for a, b in losses),
        "straight_seconds": sum(report.seconds for report in straight.history),
        "resumed_seconds": sum(report.seconds for report in emb.history),
    }
    print(f"  {options['head']} resume check: {json.dumps(check)}", file=sys.stderr, flush=True)
    return check


def _same_or_none(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is None and b is None or a is not None and b is not None and np.array_equal(a, b)


def run_budget(
    result: HeadResult,
    corpus: Path,
    options: dict[str, Any],
    held_out: HeldOut,
    budget: float,
) -> None:
    """The budget run: as many epochs as the fixed-epoch run's speed fits into the budget,
    so that the learning-rate schedule ends within it."""
    last = result.checkpoints[-1]
    epochs = math.floor(budget / (last.seconds / last.epoch))
    if epochs == 0:
        print(
            f"  {result.head} budget: one epoch takes longer than {budget:g} s",
            file=sys.stderr,
        )
        return
    if epochs == last.epoch:
        result.budget, result.budget_reused = last, True
        return
    emb = embedtrain.train(str(corpus), progress=False, **{**options, "epochs": epochs})
    result.budget = checkpoint(emb, held_out)
    log(result.head, f"budget {budget:g} s: {epochs} epochs", result.budget)


def log(head: str, what: str, c: Checkpoint) -> None:
    print(
        f"  {head} {what}: {c.seconds:.1f} s of training, loss {c.mean_loss:.4f}, "
        f"analogy {percent(c.analogy)} %, WS-353 {number(c.ws353)}, "
        f"SimLex-999 {number(c.simlex)}, held-out {number(c.held_out)}",
        file=sys.stderr,
        flush=True,
    )


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 100:.1f}"


def curve_at(checkpoints: list[Checkpoint], seconds: float) -> Checkpoint | None:
    """The last checkpoint reached within ``seconds`` of training."""
    within = [c for c in checkpoints if c.seconds <= seconds]
    return within[-1] if within else None


def scores(c: Checkpoint | None) -> list[str]:
    """The analogy, WS-353, SimLex-999 and held-out cells of a checkpoint (blank: none)."""
    if c is None:
        return [""] * 4
    return [percent(c.analogy), number(c.ws353), number(c.simlex), number(c.held_out)]


def row(*cells: object) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def table(report: dict[str, Any]) -> str:
    """The Markdown report: the fixed-epoch table, then the budget table if there is one."""
    results = [HeadResult.from_dict(r) for r in report["heads"]]
    epochs, budget, whole = report["epochs"], report["budget"], report["train_words"]
    quality = ["analogy %", "WS-353", "SimLex-999", "held-out loss"]
    header = ["head", "corpus words", "vocabulary", "epochs", "training s", "words/s"]
    header += ["training loss", *quality]
    lines = [
        (
            f"Corpus {report['corpus']}: {whole:,} tokens trained on, "
            f"{report['held_out_lines']:,} lines held out ({report['held_out_words']:,} tokens); "
            f"settings {json.dumps(report['options'])}."
        ),
        "",
        f"Fixed {epochs} epochs (save, evaluate, resume at each epoch's end; training time only):",
        "",
        row(*header),
        row(*["---"] * len(header)),
    ]
    for r in results:
        last = r.checkpoints[-1]
        words = f"{r.words:,}" + (" (prefix)" if r.words < whole else "")
        speed = f"{r.words * last.epoch / last.seconds:,.0f}"
        lines.append(
            row(
                r.head,
                words,
                f"{r.vocab:,}",
                last.epoch,
                f"{last.seconds:,.1f}",
                speed,
                f"{last.mean_loss:.4f}",
                *scores(last),
            )
        )
    lines += [
        "",
        (
            "Held-out loss: mean -log P(context | centre) over a seeded sample of held-out "
            "pairs, where the head's output is a normalised distribution (n/a otherwise); it "
            "compares heads with the same vocabulary only. Words/s: corpus tokens x epochs / "
            "training s."
        ),
    ]
    scored = [r for r in results if r.checkpoints[-1].held_out is not None]
    if scored:
        lines.append(
            "Held-out pairs: " + ", ".join(f"{r.head} {r.held_out_pairs:,}" for r in scored) + "."
        )
    if any(r.words < whole for r in results):
        lines.append(
            f"(prefix): the first {report['slow_heads_max_words']:,} tokens "
            f"(--slow-heads-max-words), for the O(D d) heads {', '.join(report['slow_heads'])}."
        )
    for r in results:
        if check := r.resume_check:
            lines.append(
                f"Resume check, {r.head}: "
                f"{'bit-identical to' if check['identical'] else 'differs from'} a straight run "
                f"(max |vector difference| {check['max_vector_difference']:.3g}; "
                f"{check['straight_seconds']:.1f} s straight, {check['resumed_seconds']:.1f} s "
                "resumed)."
            )
    if budget is None:
        return "\n".join(lines)
    header = ["head", "own run: epochs", "training s", *quality]
    header += [f"{epochs}-epoch run within {budget:g} s: epoch", "training s", *quality[:3]]
    lines += [
        "",
        (
            f"Budget {budget:g} s of training. Own run: floor({budget:g} s / the fixed run's "
            "mean epoch time) epochs, so that its learning rate decays within them (the fixed "
            f"run itself where that is {epochs}); its measured time shown, '(over)' past the "
            f"budget. Beside it, read off the fixed {epochs}-epoch run: its last checkpoint "
            f"within {budget:g} s (where its learning rate has not decayed)."
        ),
        "",
        row(*header),
        row(*["---"] * len(header)),
    ]
    for r in results:
        own, read = r.budget, curve_at(r.checkpoints, budget)
        if own is None:
            cells = ["none (one epoch > budget)", "", *scores(None)]
        else:
            reused = " (= fixed run)" if r.budget_reused else ""
            over = " (over)" if own.seconds > budget else ""
            cells = [f"{own.epoch}{reused}", f"{own.seconds:,.1f}{over}", *scores(own)]
        if read is None:
            cells += ["none", "", *scores(None)[:3]]
        else:
            cells += [read.epoch, f"{read.seconds:,.1f}", *scores(read)[:3]]
        lines.append(row(r.head, *cells))
    return "\n".join(lines)


def seconds_label(value: float, _: int) -> str:
    """Tick labels 0.1, 0.2, 0.5, 1, 2, 5, 10, ... (matplotlib's would read 2x10^0)."""
    return f"{value:g}" if f"{value:e}"[0] in "125" else ""


def plot(report: dict[str, Any], path: Path) -> None:
    """Three panels of quality against training time: a line per head, a marker per
    checkpoint; the budget runs as stars, the budget as a dashed line."""
    plt = load_pyplot()
    from matplotlib import ticker

    figure, axes = plt.subplots(1, 3, figsize=(16, 6), layout="constrained")
    panels = [
        ("analogy", "Google analogy %", 100.0),
        ("ws353", "WS-353 Spearman", 1.0),
        ("simlex", "SimLex-999 Spearman", 1.0),
    ]
    for index, raw in enumerate(report["heads"]):
        result = HeadResult.from_dict(raw)
        colour = f"C{index}"
        times = [c.seconds for c in result.checkpoints]
        label = result.head
        if result.words < report["train_words"]:
            label += f" (first {result.words:,} tokens)"
        for axis, (key, _, scale) in zip(axes, panels):
            values = [getattr(c, key) * scale for c in result.checkpoints]
            axis.plot(times, values, "o-", color=colour, label=label)
            if result.budget:
                budget_value = getattr(result.budget, key) * scale
                axis.plot(result.budget.seconds, budget_value, "*", color=colour, markersize=14)
    for axis, (_, title, _) in zip(axes, panels):
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(seconds_label))
        axis.xaxis.set_minor_formatter(ticker.FuncFormatter(seconds_label))
        axis.set_xlabel("training seconds (log scale)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        if report["budget"]:
            axis.axvline(report["budget"], color="grey", linestyle="--", linewidth=1)
    if report["budget"]:
        label = f"budget run ({report['budget']:g} s)"
        axes[0].plot([], [], "*", color="grey", markersize=14, label=label)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(  # below the panels, where it hides no point
        handles, labels, title="head (o: epoch ends)", loc="outside lower center", ncols=5
    )
    figure.suptitle(
        f"{Path(report['corpus']).name}, {report['train_words']:,} tokens, "
        f"{report['epochs']} epochs, checkpoint at each epoch's end"
    )
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse_args() -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus", nargs="?", help="text file or directory (default: shipped)")
    parser.add_argument("--heads", nargs="+", choices=list(HEADS), default=list(HEADS))
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--budget", type=float, help="seconds of training per head")
    parser.add_argument("--model", choices=["skipgram", "cbow"], default="skipgram")
    parser.add_argument("--dim", type=int, default=defaults.dim)
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--min-count", type=int, default=defaults.min_count)
    parser.add_argument("--sample", type=float, default=defaults.sample)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--min-lr", type=float, default=defaults.min_lr)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other Settings field (e.g. epsilon=1e-2, device=cpu); repeatable",
    )
    parser.add_argument("--max-words", type=int, help="train on the first N tokens")
    parser.add_argument("--slow-heads", nargs="*", default=["softmax"])
    parser.add_argument("--slow-heads-max-words", type=int, default=1_000_000)
    parser.add_argument("--held-out-lines", type=int, help="default: --held-out-share")
    parser.add_argument("--held-out-share", type=float, default=0.01, help="of the lines")
    parser.add_argument("--held-out-pairs", type=int, default=5_000)
    parser.add_argument(
        "--verify-resume",
        action="store_true",
        help="also train each head straight through and compare",
    )
    parser.add_argument("--table", type=Path, help="also write the Markdown table here")
    parser.add_argument("--plot", type=Path, help="PNG of quality against training time")
    parser.add_argument("--json", type=Path, help="raw checkpoints (written after each head)")
    parser.add_argument("--from-json", type=Path, help="report from a --json dump, no training")
    return parser.parse_args()


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The ``train()`` options every head shares."""
    names = ("model", "dim", "window", "min_count", "sample", "lr", "min_lr", "threads", "seed")
    options = {name: getattr(args, name) for name in names} | {"epochs": args.epochs}
    for item in args.set:
        name, equals, value = item.partition("=")
        if not equals:
            sys.exit(f"heads_report: --set takes NAME=VALUE, not {item!r}")
        options[name.replace("-", "_")] = settings_value(value)
    return options


def train_all(args: argparse.Namespace) -> dict[str, Any]:
    """Train and score every head in turn; the report as ``--json`` writes it."""
    options = options_of(args)
    for head in args.heads:  # refuse bad settings before reading the corpus
        resolved_settings(**options, head=head)
    with tempfile.TemporaryDirectory(prefix="embedtrain-heads-") as name:
        scratch = Path(name)
        corpora = split_corpus(args, scratch)
        held_out = HeldOut(corpora.held_out, args.held_out_pairs, args.seed)
        report: dict[str, Any] = {
            "corpus": args.corpus or "shipped corpus",
            "train_words": corpora.train_words,
            "held_out_lines": len(corpora.held_out),
            "held_out_words": sum(map(len, corpora.held_out)),
            "slow_heads": args.slow_heads,
            "slow_heads_max_words": args.slow_heads_max_words,
            "options": options,
            "epochs": args.epochs,
            "budget": args.budget,
            "heads": [],
        }
        print(f"{corpora.train_words:,} tokens to train on; warming up", file=sys.stderr)
        for head in args.heads:
            warm = {**options, "head": head, "epochs": 1, "min_count": 1}
            embedtrain.train(str(corpora.warm_up), progress=False, **warm)
        for head in args.heads:
            corpus, words = corpora.for_head(head, args.slow_heads)
            head_options = {**options, "head": head}
            print(f"{head}: {words:,} tokens", file=sys.stderr, flush=True)
            checkpoints, emb = run_fixed(head, corpus, head_options, held_out, args.epochs, scratch)
            pairs = len(held_out.pairs(emb)[0])
            result = HeadResult(head, words, len(emb), pairs, checkpoints)
            if args.verify_resume:
                result.resume_check = verify_resume(emb, corpus, head_options)
            if args.budget:
                run_budget(result, corpus, head_options, held_out, args.budget)
            report["heads"].append(asdict(result))
            if args.json:
                write_json(args.json, report)
    return report


def main() -> None:
    args = parse_args()
    if args.plot:
        load_pyplot()  # fail before training, not after it
    if args.from_json:
        report = read_json(args.from_json)
    else:
        try:
            report = train_all(args)
        except embedtrain.EmbedtrainError as exc:
            sys.exit(f"heads_report: {exc}")
    text = table(report)
    publish(text, args.table)
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
