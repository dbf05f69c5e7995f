"""Side-by-side speed, memory and quality of embedtrain and gensim on one corpus.

Each tool runs as a whole process (vocabulary, training, saving: what a user waits
for), the two alternating per configuration, with the same settings: d=100, window 5,
sample 1e-3, min_count 5, 5 epochs, negative 5 or hierarchical softmax, 2 threads vs
2 workers, gensim in its fastest input mode (``corpus_file`` on a decompressed copy,
which embedtrain reads too). Words/s counts every corpus token of every epoch.

    python eval/compare_gensim.py ../shared/corpora/bench17m.txt.xz
    python eval/compare_gensim.py CORPUS --repeat-corpus 3   # memory on a 3x corpus
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from embedtrain.evaluate import evaluate, load_vectors

CONFIGS = {
    "sg-ns": ("skipgram", "ns"),
    "cbow-ns": ("cbow", "ns"),
    "sg-hs": ("skipgram", "hs"),
    "cbow-hs": ("cbow", "hs"),
}
HERE = Path(__file__).resolve().parent


def timed_process(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak RSS in MiB) of that process alone."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(
            f"failed ({process.returncode}): {' '.join(command)}\n{process.stderr.read().decode()}"
        )
    return seconds, usage.ru_maxrss / 1024.0


def train_command(corpus: Path, out: Path, *options: str) -> list[str]:
    """The ``embedtrain train`` process every benchmark times (quiet, vectors as .bin)."""
    return [
        sys.executable,
        "-m",
        "embedtrain",
        "train",
        str(corpus),
        "-o",
        str(out),
        "--quiet",
        *options,
    ]


def plain_copy(corpus: Path, directory: Path, repeat: int) -> tuple[Path, int]:
    """Decompressed (and optionally repeated) copy of the corpus; returns (path, tokens)."""
    target = directory / "corpus.txt"
    opener = lzma.open if corpus.suffix == ".xz" else open
    with open(target, "wb") as out:
        for _ in range(repeat):
            with opener(corpus, "rb") as source:
                shutil.copyfileobj(source, out, 1 << 20)
    tokens = 0
    with open(target, "rb") as lines:
        for line in lines:
            tokens += len(line.split())
    return target, tokens


def scores_of(path: Path) -> dict[str, float]:
    found = {s.name: s.score for s in evaluate(load_vectors(path))}
    return {
        "analogy": found["questions-words.txt"],
        "ws353": found["wordsim353.tsv"],
        "simlex": found["simlex999.txt"],
    }


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
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    min_count = 5 * args.repeat_corpus
    rows = []
    with tempfile.TemporaryDirectory(prefix="embedtrain-bench-") as scratch:
        directory = Path(scratch)
        corpus, tokens = plain_copy(args.corpus, directory, args.repeat_corpus)
        print(
            f"corpus {args.corpus} x{args.repeat_corpus}: {tokens:,} tokens; "
            f"min_count {min_count}, {args.epochs} epochs, {args.threads} threads",
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
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
