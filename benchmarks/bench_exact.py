"""Exact full-vocabulary heads: factored O(d^2) against naive O(Dd), and end to end.

Part 1 (``speedup``): time per example of one minibatch step of the factored spherical
and squared heads against their naive versions (explicit o = W h, W updated in place by
BLAS with beta = 1, same batch size), for D in {10k, 50k, 200k} and d in {100, 300}, in
one run, the two heads taking turns pass by pass, best of several passes; prints the
measured speedup next to the paper's D/(4d).
Batches are skip-gram-like: m examples, each with K = 10 context words drawn from a
Zipf distribution (so targets repeat within a batch).

Part 2 (``train``): end-to-end training time and quality on a corpus for the exact heads
next to skip-gram negative sampling (whole processes, as a user runs them), for the input
vectors and for the output vectors each run also writes (``--save-output``).

    python -m benchmarks exact speedup
    python -m benchmarks exact train ../shared/corpora/bench17m.txt.xz --configs sg-ns sg-spherical sg-squared
    python -m benchmarks exact train ../shared/corpora/bench17m.txt.xz --max-words 1000000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import (
    make_batches,
    plain_copy,
    scores_of,
    time_heads,
    timed_process,
    train_command,
    zipf_vocabulary,
)
from embedtrain.backend import NumpyOps
from embedtrain.heads import resolved_settings
from embedtrain.heads.exact import FactoredHead, NaiveHead
from embedtrain.heads.losses import SphericalSoftmax, SquaredError

LOSSES = {"spherical": lambda: SphericalSoftmax(1e-3), "squared": SquaredError}


def speedup(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    print(f"minibatch m={args.batch}, K<=10 targets per example, float32 V/W, float64 d x d state")
    print(
        "| loss | D | d | naive us/example | factored us/example | speedup | D/(4d) | speedup / (D/4d) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for dim in args.dims:
        for vocab_size in args.vocab_sizes:
            vocab = zipf_vocabulary(vocab_size)
            naive_batches = make_batches(rng, vocab_size, dim, args.batch, 10, args.naive_steps)
            factored_batches = make_batches(
                rng, vocab_size, dim, args.batch, 10, args.factored_steps
            )
            for name, loss in LOSSES.items():
                settings = resolved_settings(dim=dim, head=name)
                naive, factored = time_heads(
                    [
                        (NaiveHead(loss(), vocab, settings, NumpyOps(), 0), naive_batches),
                        (FactoredHead(loss(), vocab, settings, NumpyOps(), 0), factored_batches),
                    ],
                    1e-3,
                    args.repeats,
                )
                ideal = vocab_size / (4 * dim)
                print(
                    f"| {name} | {vocab_size:,} | {dim} | {naive * 1e6:,.1f} | {factored * 1e6:,.2f} "
                    f"| {naive / factored:,.0f}x | {ideal:,.0f} | {naive / factored / ideal:.2f} |",
                    flush=True,
                )


TRAIN_CONFIGS = {
    "sg-ns": ["--model", "skipgram", "--head", "ns"],
    "sg-spherical": ["--model", "skipgram", "--head", "spherical"],
    "sg-squared": ["--model", "skipgram", "--head", "squared"],
    "sg-softmax": ["--model", "skipgram", "--head", "softmax"],
}


def prefix_of(corpus: Path, words: int) -> int:
    """Cut the plain-text ``corpus`` in place after the line holding word number ``words``."""
    kept, seen = [], 0
    with open(corpus, encoding="utf-8") as lines:
        for line in lines:
            kept.append(line)
            seen += len(line.split())
            if seen >= words:
                break
    corpus.write_text("".join(kept), encoding="utf-8")
    return seen


def train(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="embedtrain-exact-") as scratch:
        corpus, tokens = plain_copy(args.corpus, Path(scratch), 1)
        if args.max_words:
            tokens = prefix_of(corpus, args.max_words)
        print(f"corpus {args.corpus} (first {tokens:,} tokens), {args.epochs} epochs, d=100")
        print("| head | epochs | seconds | words/s | Google analogy % | WS-353 | SimLex-999 |")
        print("|---|---|---|---|---|---|---|")
        for name in args.configs:
            out = Path(scratch) / f"{name}.bin"
            outputs = Path(scratch) / f"{name}.output.bin"
            epochs = args.epochs
            command = train_command(
                corpus,
                out,
                "--epochs",
                str(epochs),
                "--device",
                "cpu",
                "--save-output",
                str(outputs),
                *TRAIN_CONFIGS[name],
                *args.extra,
            )
            seconds, _ = timed_process(command)
            rows = [(name, f"{seconds:,.0f}", f"{tokens * epochs / seconds:,.0f}", out)]
            rows.append((f"{name}, output vectors", "same run", "same run", outputs))
            for label, elapsed, speed, vectors in rows:
                s = scores_of(vectors)
                print(
                    f"| {label} | {epochs} | {elapsed} | {speed} | {s['analogy'] * 100:.1f} "
                    f"| {s['ws353']:.3f} | {s['simlex']:.3f} |",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("speedup")
    p.add_argument("--vocab-sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    p.add_argument("--dims", type=int, nargs="+", default=[100, 300])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--naive-steps", type=int, default=10)
    p.add_argument("--factored-steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5, help="timed passes per head (best kept)")
    p.set_defaults(run=speedup)
    p = commands.add_parser("train")
    p.add_argument("corpus", type=Path)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--max-words", type=int, default=0, help="train on a prefix of this many words")
    p.add_argument("--configs", nargs="+", choices=list(TRAIN_CONFIGS), default=list(TRAIN_CONFIGS))
    p.add_argument("extra", nargs="*", help="extra options for embedtrain train (after --)")
    p.set_defaults(run=train)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
