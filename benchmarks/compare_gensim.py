"""Side-by-side speed, memory and quality of embedtrain and gensim on one corpus.

Each tool runs as a whole process (vocabulary, training, saving: what a user waits
for), the two alternating per configuration, with the same settings: d=100, window 5,
sample 1e-3, min_count 5, 5 epochs, negative 5 or hierarchical softmax, 2 threads vs
2 workers, gensim in its fastest input mode (``corpus_file`` on a decompressed copy,
which embedtrain reads too). Words/s counts every corpus token of every epoch.

    python -m benchmarks compare_gensim ../shared/corpora/bench17m.txt.xz
    python -m benchmarks compare_gensim CORPUS --repeat-corpus 3   # memory on a 3x corpus
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import plain_copy, scores_of, timed_process, train_command, write_json

CONFIGS = {
    "sg-ns": ("skipgram", "ns"),
    "cbow-ns": ("cbow", "ns"),
    "sg-hs": ("skipgram", "hs"),
    "cbow-hs": ("cbow", "hs"),
}
HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--repeat-corpus",
        type=int,
        default=1,
        help="train on N concatenated copies; min_count is scaled by N so the "
        "vocabulary stays the same",
    )
    parser.add_argument(
        "--gensim-input",
        choices=["corpus_file", "iterable"],
        default="corpus_file",
        help="gensim's input mode: corpus_file (fastest; each worker's learning rate "
        "falls only 1/threads of the way per epoch) or iterable (LineSentence; the nominal "
        "linear schedule)",
    )
    parser.add_argument(
        "--embedtrain-args",
        default="",
        help="extra options for embedtrain's train command, e.g. '--step per-example'",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    min_count = 5 * args.repeat_corpus
    rows = []
    with tempfile.TemporaryDirectory(prefix="embedtrain-bench-") as scratch:
        directory = Path(scratch)
        corpus, tokens = plain_copy(args.corpus, directory, args.repeat_corpus)
        print(
            f"corpus {args.corpus} x{args.repeat_corpus}: {tokens:,} tokens; "
            f"min_count {min_count}, {args.epochs} epochs, {args.threads} threads, "
            f"gensim input {args.gensim_input}, embedtrain extra {args.embedtrain_args!r}",
            flush=True,
        )
        for i, name in enumerate(args.configs):
            model, head = CONFIGS[name]
            ours_out, theirs_out = directory / f"ours-{name}.bin", directory / f"gensim-{name}.bin"
            ours = train_command(
                corpus,
                ours_out,
                "--model",
                model,
                "--head",
                head,
                "--threads",
                str(args.threads),
                "--epochs",
                str(args.epochs),
                "--min-count",
                str(min_count),
                "--device",
                "cpu",
                *args.embedtrain_args.split(),
            )
            theirs = [
                sys.executable,
                str(HERE / "gensim_worker.py"),
                str(corpus),
                str(theirs_out),
                str(int(model == "skipgram")),
                str(int(head == "hs")),
                str(5 if head == "ns" else 0),
                str(min_count),
                str(args.epochs),
                str(args.threads),
                args.gensim_input,
            ]
            runs = [("embedtrain", ours, ours_out), ("gensim", theirs, theirs_out)]
            if i % 2:
                runs.reverse()
            result = {"config": name}
            for tool, command, out in runs:
                seconds, rss = timed_process(command)
                result[tool] = {
                    "seconds": seconds,
                    "words_per_s": tokens * args.epochs / seconds,
                    "peak_rss_mib": rss,
                    **scores_of(out),
                }
                print(
                    f"  {name} {tool}: {seconds:.1f} s, {rss:.0f} MiB, "
                    + json.dumps({k: round(v, 4) for k, v in result[tool].items()}),
                    flush=True,
                )
            rows.append(result)
    print()
    print(
        "| config | embedtrain words/s | gensim words/s | ratio | peak RSS MiB (ours / gensim) "
        "| analogy % (ours / gensim) | WS-353 (ours / gensim) | SimLex-999 (ours / gensim) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["embedtrain"], r["gensim"]
        print(
            f"| {r['config']} | {a['words_per_s']:,.0f} | {b['words_per_s']:,.0f} "
            f"| {a['words_per_s'] / b['words_per_s']:.2f}x "
            f"| {a['peak_rss_mib']:.0f} / {b['peak_rss_mib']:.0f} "
            f"| {a['analogy'] * 100:.1f} / {b['analogy'] * 100:.1f} "
            f"| {a['ws353']:.3f} / {b['ws353']:.3f} | {a['simlex']:.3f} / {b['simlex']:.3f} |"
        )
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
