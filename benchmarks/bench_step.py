"""The compiled engine's two update forms (``--step shared`` and ``per-example``) side by
side in one process, alternating, on a corpus prefix: training words/s of each, their
ratio, and a profile of the step (time per example, floating-point work per example and
the rate it reaches).

    python -m benchmarks step ../shared/corpora/bench17m.txt.xz --tokens 2000000 --threads 1

Each round trains every configuration once in each form (the order alternating between
rounds); the first round of each pair is preceded by a small warm-up run that compiles
the drivers, so the times are training only (the epoch's own clock, without the
vocabulary pass). The work counted per example is the step's dense arithmetic: for each
output unit, one d-long dot product, one update of the input's gradient and one of the
unit's row (6 d floating-point operations), over the units the example meets (1 +
negative for ns, the target's code length for hs).
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import tempfile
from pathlib import Path

import embedtrain
from benchmarks.common import publish, scores_of, write_json, write_prefix

CONFIGS = {
    "sg-ns": ("skipgram", "ns"),
    "cbow-ns": ("cbow", "ns"),
    "sg-hs": ("skipgram", "hs"),
    "cbow-hs": ("cbow", "hs"),
}
FORMS = ("shared", "per-example")


def train_once(
    corpus: Path, config: str, form: str, threads: int, epochs: int, dim: int, quality: bool
) -> dict:
    model, head = CONFIGS[config]
    vectors = embedtrain.train(
        str(corpus),
        model=model,
        head=head,
        step=form,
        threads=threads,
        epochs=epochs,
        dim=dim,
        progress=False,
    )
    history = vectors.history[-epochs:]
    return {
        "seconds": sum(report.seconds for report in history),
        "words": sum(report.words for report in history),
        "examples": sum(report.examples for report in history),
        "counts": vectors.model.vocab.counts,
        **(scores_of(vectors) if quality else {}),
    }


def units_per_example(counts, head: str, negative: int = 5) -> float:
    """Output units an example meets: 1 + negative (ns); for hs the Huffman code length
    weighted by frequency, which is the sum of the inner nodes' weights over the total."""
    if head == "ns":
        return 1.0 + negative
    weights = [int(c) for c in counts]
    heapq.heapify(weights)
    inner = 0
    while len(weights) > 1:
        merged = heapq.heappop(weights) + heapq.heappop(weights)
        inner += merged
        heapq.heappush(weights, merged)
    return inner / sum(int(c) for c in counts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("corpus", nargs="?", help="a corpus file (default: the shipped corpus)")
    parser.add_argument("--tokens", type=int, default=2_000_000, help="corpus prefix")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["sg-ns", "cbow-ns"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--quality",
        action="store_true",
        help="also evaluate every run's vectors (Google analogies, WS-353, SimLex-999)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--table", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()

    results: dict[str, dict[str, list[dict]]] = {c: {f: [] for f in FORMS} for c in args.configs}
    with tempfile.TemporaryDirectory(prefix="embedtrain-step-") as scratch:
        corpus = Path(scratch) / "prefix.txt"
        tokens = write_prefix(args.corpus, args.tokens, corpus)
        warm = Path(scratch) / "warm.txt"
        write_prefix(args.corpus, 5_000, warm)
        for config in args.configs:
            for form in FORMS:  # compile each driver once, outside the timed runs
                train_once(warm, config, form, args.threads, 1, args.dim, False)
        for round_ in range(args.rounds):
            for config in args.configs:
                order = FORMS if round_ % 2 == 0 else FORMS[::-1]
                for form in order:
                    run = train_once(
                        corpus, config, form, args.threads, args.epochs, args.dim, args.quality
                    )
                    results[config][form].append(run)
                    scores = (
                        f", analogy {run['analogy']:.3f}, WS-353 {run['ws353']:.3f}, "
                        f"SimLex {run['simlex']:.3f}"
                        if args.quality
                        else ""
                    )
                    print(
                        f"round {round_ + 1} {config} {form}: {run['seconds']:.2f} s, "
                        f"{run['words'] / run['seconds']:,.0f} words/s{scores}",
                        flush=True,
                    )

    lines = [
        (
            f"Corpus: {tokens:,} tokens, {args.epochs} epoch(s), {args.threads} thread(s), "
            f"d={args.dim}, {args.rounds} rounds alternating; medians."
        ),
        "",
        (
            "| config | words/s shared | words/s per-example | shared / per-example "
            "| ns per example (shared / per-example) | units per example | GFLOP/s (shared / "
            "per-example) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    if args.quality:
        lines[-2] += " analogy % (shared / per-example) | WS-353 | SimLex-999 |"
        lines[-1] += "---|---|---|"
    report = []
    for config in args.configs:
        head = CONFIGS[config][1]
        row = {"config": config}
        for form in FORMS:
            runs = results[config][form]
            seconds = statistics.median(r["seconds"] for r in runs)
            words = runs[0]["words"]
            examples = runs[0]["examples"]
            units = units_per_example(runs[0]["counts"], head)
            row[form] = {
                "seconds": seconds,
                "words_per_s": words / seconds,
                "ns_per_example": seconds / examples * 1e9,
                "units_per_example": units,
                "gflops": examples * units * 6 * args.dim / seconds / 1e9,
                "all_seconds": [r["seconds"] for r in runs],
                **{
                    name: statistics.mean(r[name] for r in runs)
                    for name in ("analogy", "ws353", "simlex")
                    if args.quality
                },
            }
        a, b = row["shared"], row["per-example"]
        lines.append(
            f"| {config} | {a['words_per_s']:,.0f} | {b['words_per_s']:,.0f} "
            f"| {a['words_per_s'] / b['words_per_s']:.2f}x "
            f"| {a['ns_per_example']:.0f} / {b['ns_per_example']:.0f} "
            f"| {a['units_per_example']:.1f} | {a['gflops']:.1f} / {b['gflops']:.1f} |"
        )
        if args.quality:
            lines[-1] += (
                f" {a['analogy'] * 100:.1f} / {b['analogy'] * 100:.1f} "
                f"| {a['ws353']:.3f} / {b['ws353']:.3f} | {a['simlex']:.3f} / {b['simlex']:.3f} |"
            )
        report.append(row)
    text = "\n".join(lines)
    publish(text, args.table)
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
