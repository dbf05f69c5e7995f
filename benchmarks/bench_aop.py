"""Mem-AOP-GD on the dense heads: time per output-layer step, training loss against time
and examples, and the vectors' quality, for every K x policy x memory, in one run.

On the first ``--max-words`` tokens of CORPUS (default 1M of bench17m), skip-gram, d = 100,
minibatch 64, for each head in ``--heads`` (softmax, adaptive):

1. Step timing: each configuration's :meth:`Head.batch_step` on the same minibatches (the
   prefix's vocabulary, Zipf-drawn K-sparse targets as ``benchmarks/bench_exact.py``), the
   configurations taking turns pass by pass (this machine drifts 20-30% over minutes);
   the best pass of ``--repeats`` is kept.
2. Training: one ``embedtrain.train`` run per configuration (``--epochs``, one thread,
   seeded), the exact head first and again last, to bracket the machine's drift. The
   engine's jobs are timed as they finish (the script wraps the engine that
   ``run_training`` builds), giving the training loss against seconds and examples; the
   final vectors are scored (Google analogy, WS-353, SimLex-999). Every configuration
   trains on the same text in the same order, so the loss over the last tenth of the
   examples (the same stretch of text for all) compares them; the epoch's mean, and a
   curve against time, mix text of different difficulty.

    python -m benchmarks aop ../shared/corpora/bench17m.txt.xz \\
        --json benchmarks/results/aop.json --table benchmarks/results/aop.md --plot benchmarks/results/aop.png
    python -m benchmarks aop --from-json benchmarks/results/aop.json --plot benchmarks/results/aop.png

Run it alone on the machine (no tests or other timing beside it).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import embedtrain
from benchmarks.common import (
    load_pyplot,
    make_batches,
    publish,
    read_json,
    scores_of,
    time_heads,
    write_json,
    write_prefix,
)
from embedtrain import training
from embedtrain.backend import NumpyOps
from embedtrain.corpus import Corpus
from embedtrain.heads import resolved_settings

BASE = {"model": "skipgram", "dim": 100, "batch_size": 64, "device": "cpu", "threads": 1}


def configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The exact head (aop_k 0) and every K < batch size x policy x memory."""
    grid = itertools.product(
        [k for k in args.keeps if 0 < k < BASE["batch_size"]], args.policies, args.memories
    )
    return [{"aop_k": 0}] + [
        {"aop_k": k, "aop_policy": policy, "aop_memory": memory} for k, policy, memory in grid
    ]


def label(config: dict[str, Any]) -> str:
    if not config["aop_k"]:
        return "exact"
    return f"K={config['aop_k']} {config['aop_policy']} {config['aop_memory']}"


def step_times(
    head: str, prefix: Path, configs: list[dict[str, Any]], args: argparse.Namespace
) -> list[float]:
    """Milliseconds per minibatch step of each configuration's head."""
    settings = resolved_settings(head=head, **BASE)
    with Corpus(prefix) as corpus:
        vocab = training.scan_vocabulary(corpus, settings, quiet=True)
    ops = NumpyOps()
    batches = make_batches(
        np.random.default_rng(0), len(vocab), BASE["dim"], BASE["batch_size"], 10, args.steps
    )
    runs = []
    for config in configs:
        configured = resolved_settings(head=head, **BASE, **config)
        settled = configured.head_class.settle(configured, vocab, ops)
        runs.append((settled.head_class.create(vocab, settled, ops, 1), batches))
    per_example = time_heads(runs, 1e-4, args.repeats)
    return [1e3 * t * BASE["batch_size"] for t in per_example]


def timed_engines(record: list[tuple[float, float, int]]) -> Callable:
    """A ``make_engine`` whose engine appends (seconds, loss, examples) per finished job."""
    real_make_engine = training.make_engine
    started = time.perf_counter()

    def make_engine(model, keep, engine_name):
        engine = real_make_engine(model, keep, engine_name)
        run_job = engine.run_job

        def timed(job, lr_start, lr_end, seed):
            loss, examples = run_job(job, lr_start, lr_end, seed)
            record.append((time.perf_counter() - started, loss, examples))
            return loss, examples

        engine.run_job = timed
        return engine

    return make_engine


def train_one(head: str, prefix: Path, config: dict[str, Any], args) -> dict[str, Any]:
    """Train one configuration; its curve, time, final scores and memory summary."""
    record: list[tuple[float, float, int]] = []
    real_make_engine = training.make_engine
    training.make_engine = timed_engines(record)
    result = {"head": head, "label": label(config), **config, "curve": record}
    try:
        emb = embedtrain.train(
            prefix, progress=False, head=head, epochs=args.epochs, seed=1, **BASE, **config
        )
    except embedtrain.TrainingDiverged as exc:
        record[:] = [c for c in record if np.isfinite(c[1])]
        seconds = record[-1][0] if record else 0.0
        return result | {"diverged": str(exc), "seconds": seconds, "final_loss": None}
    finally:
        training.make_engine = real_make_engine
    return result | {
        "seconds": sum(r.seconds for r in emb.history),
        "final_loss": emb.history[-1].mean_loss,
        "memory": emb.history[-1].head_summary,
        **scores_of(emb),
    }


def trailing_losses(curve: list) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, mean loss per example over the trailing tenth of the run's examples)."""
    if not curve:
        return np.zeros(0), np.zeros(0)
    seconds = np.array([c[0] for c in curve])
    losses = np.cumsum([c[1] for c in curve])
    examples = np.cumsum([c[2] for c in curve])
    window = examples[-1] / 10
    start = np.searchsorted(examples, examples - window, side="left")
    before_loss = np.where(start > 0, losses[np.maximum(start - 1, 0)], 0.0)
    before_examples = np.where(start > 0, examples[np.maximum(start - 1, 0)], 0)
    mean = (losses - before_loss) / np.maximum(examples - before_examples, 1)
    mean[examples < window] = np.inf  # no full window yet
    return seconds, mean


def describe(result: dict[str, Any]) -> str:
    if result.get("diverged"):
        return f"{result['head']} {result['label']}: {result['diverged']}"
    return (
        f"{result['head']} {result['label']}: {result['seconds']:.0f} s, loss "
        f"{result['final_loss']:.4f}, analogy {100 * result['analogy']:.1f}%, "
        f"WS-353 {result['ws353']:.3f}, SimLex {result['simlex']:.3f}; {result['memory']}"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time and train every configuration; with ``--json``, the report is written after
    every run, and a run already in that file (same head and label) is not repeated."""
    configs = configurations(args)
    report: dict[str, Any] = {"corpus": args.corpus, "epochs": args.epochs, "heads": {}}
    if args.json and args.json.exists():
        report = read_json(args.json)
    with tempfile.TemporaryDirectory() as scratch:
        prefix = Path(scratch) / "prefix.txt"
        report["words"] = write_prefix(args.corpus, args.max_words, prefix)
        warm = Path(scratch) / "warm.txt"
        write_prefix(args.corpus, 5_000, warm)
        for head in args.heads:
            embedtrain.train(warm, progress=False, head=head, epochs=1, min_count=1, **BASE)
            figures = report["heads"].get(head)
            if figures is None or figures["configs"] != configs:
                times = step_times(head, prefix, configs, args)
                for config, ms in zip(configs, times):
                    print(f"{head} {label(config)}: {ms:.2f} ms per step", flush=True)
                figures = {"step_ms": times, "configs": configs, "runs": []}
                report["heads"][head] = figures
            for config in [*configs, configs[0]][len(figures["runs"]) :]:
                result = train_one(head, prefix, config, args)
                print(describe(result), flush=True)
                figures["runs"].append(result)
                if args.json:
                    write_json(args.json, report)
    return report


def summarise(report: dict[str, Any]) -> None:
    """Add each run's loss over the last tenth of its examples: the same stretch of text
    for every configuration (one seeded schedule over the same corpus), so the losses
    compare, where the epoch's mean (and a curve against time) mixes text of different
    difficulty."""
    for figures in report["heads"].values():
        for result in figures["runs"]:
            _, mean = trailing_losses(result["curve"])
            last = float(mean[-1]) if mean.size and not result.get("diverged") else None
            result["last_tenth_loss"] = last


def table(report: dict[str, Any]) -> str:
    lines = [
        (
            f"{report['words']:,} tokens of {Path(report['corpus']).name}, skip-gram, "
            f"d = 100, minibatch 64, {report['epochs']} epoch(s), 1 thread."
        ),
        "",
    ]
    for head, figures in report["heads"].items():
        step = dict(zip(map(label, figures["configs"]), figures["step_ms"]))
        exact_last = figures["runs"][0]["last_tenth_loss"]
        lines += [
            (
                f"**{head}** (exact run again at the end: "
                f"{figures['runs'][-1]['seconds']:.0f} s, loss "
                f"{figures['runs'][-1]['final_loss']:.4f})"
            ),
            "",
            (
                "| K / policy / memory | ms per step | vs exact | train s | final loss | "
                "last tenth's loss (vs exact) | analogy % | WS-353 | SimLex | left in memory |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for result in figures["runs"][:-1]:
            if result.get("diverged"):
                lines.append(
                    f"| {result['label']} | {step[result['label']]:.2f} | "
                    f"{step['exact'] / step[result['label']]:.2f}x | diverged "
                    + (
                        f"after {len(result['curve'])} jobs ({result['seconds']:.0f} s)"
                        if result["curve"]
                        else "in its first job"
                    )
                    + " | - | - | - | - | - | - |"
                )
                continue
            last = result["last_tenth_loss"]
            versus = last - exact_last
            share = result["memory"].split("% ")[0].removeprefix("aop: ")
            lines.append(
                f"| {result['label']} | {step[result['label']]:.2f} | "
                f"{step['exact'] / step[result['label']]:.2f}x | {result['seconds']:.0f} | "
                f"{result['final_loss']:.4f} | {last:.4f} ({versus:+.4f}) | "
                f"{100 * result['analogy']:.1f} | {result['ws353']:.3f} | "
                f"{result['simlex']:.3f} | {share + ' %' if share else '-'} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Per head, the training loss (trailing tenth) against seconds and against examples;
    colour by K, line style by memory, one panel row per policy; the scale is that of the
    runs that did not diverge."""
    plt = load_pyplot()
    heads = list(report["heads"])
    policies = sorted(
        {r.get("aop_policy", "") for f in report["heads"].values() for r in f["runs"]} - {""}
    )
    figure, axes = plt.subplots(
        len(heads) * len(policies),
        2,
        figsize=(14, 4 * len(heads) * len(policies)),
        constrained_layout=True,
        squeeze=False,
    )
    styles = {"factors": "-", "exact": ":", "none": "--"}
    keeps = sorted({r["aop_k"] for f in report["heads"].values() for r in f["runs"]} - {0})
    colours = {k: f"C{i + 1}" for i, k in enumerate(keeps)}
    for h, head in enumerate(heads):
        runs = report["heads"][head]["runs"][:-1]
        for p, policy in enumerate(policies):
            row = axes[h * len(policies) + p]
            for result in runs:
                if result["aop_k"] and result["aop_policy"] != policy:
                    continue
                seconds, mean = trailing_losses(result["curve"])
                examples = np.cumsum([c[2] for c in result["curve"]])
                shown = np.isfinite(mean)
                colour = colours.get(result["aop_k"], "black")
                style = styles.get(result.get("aop_memory"), "-")
                width = 2.5 if not result["aop_k"] else 1.2
                row[0].plot(
                    seconds[shown],
                    mean[shown],
                    style,
                    color=colour,
                    lw=width,
                    label=result["label"],
                )
                row[1].plot(examples[shown], mean[shown], style, color=colour, lw=width)
            settled = [trailing_losses(r["curve"])[1] for r in runs if not r.get("diverged")]
            finite = np.concatenate([m[np.isfinite(m)] for m in settled])
            for axis in row:  # a diverging run leaves the plot upwards, not rescales it
                axis.set_ylim(finite.min() - 0.1, finite.max() + 0.3)
            row[0].set_title(f"{head}, {policy}: loss against time")
            row[1].set_title(f"{head}, {policy}: loss against examples")
            row[0].set_xlabel("seconds")
            row[1].set_xlabel("examples")
            for axis in row:
                axis.set_ylabel("mean loss (trailing tenth)")
                axis.grid(True, alpha=0.3)
            row[0].legend(fontsize=7, ncol=2)
    figure.suptitle(
        f"Mem-AOP-GD, {report['words']:,} tokens of {Path(report['corpus']).name}: "
        "colour = K (black: exact), line = memory (solid factors, dotted exact, dashed none)"
    )
    figure.savefig(path, dpi=90)
    plt.close(figure)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", default="../shared/corpora/bench17m.txt.xz")
    parser.add_argument("--max-words", type=int, default=1_000_000)
    parser.add_argument("--heads", nargs="+", default=["softmax", "adaptive"])
    parser.add_argument("--keeps", type=int, nargs="+", default=[64, 32, 16, 8])
    parser.add_argument("--policies", nargs="+", default=["topk", "weighted", "random"])
    parser.add_argument("--memories", nargs="+", default=["factors", "exact", "none"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20, help="minibatches per timing pass")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes (best kept)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--from-json", type=Path, help="redraw from a saved report")
    parser.add_argument("--steps-only", action="store_true", help="the step timing alone")
    return parser.parse_args()


def steps_only(args: argparse.Namespace) -> None:
    """The step timing alone, every head and configuration, as a table."""
    configs = configurations(args)
    lines = [
        "| head | " + " | ".join(map(label, configs)) + " |",
        "|---|" + "---|" * len(configs),
    ]
    with tempfile.TemporaryDirectory() as scratch:
        prefix = Path(scratch) / "prefix.txt"
        write_prefix(args.corpus, args.max_words, prefix)
        for head in args.heads:
            times = step_times(head, prefix, configs, args)
            lines.append(f"| {head} ms | " + " | ".join(f"{t:.2f}" for t in times) + " |")
            lines.append(
                f"| {head} vs exact | " + " | ".join(f"{times[0] / t:.2f}x" for t in times) + " |"
            )
    text = "\n".join(lines)
    publish(text, args.table)


def main() -> None:
    args = parse_args()
    if args.steps_only:
        steps_only(args)
        return
    if args.from_json:
        report = read_json(args.from_json)
    else:
        report = run(args)
    summarise(report)
    if args.json and not args.from_json:
        write_json(args.json, report)
    text = table(report)
    publish(text, args.table)
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
