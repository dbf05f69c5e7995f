"""Did a change make training slower? Two source trees of embedtrain (e.g. a worktree of
the commit before and this one) train the same corpus prefix as whole processes,
alternating, several rounds; prints each time and the ratio of the medians.

    git worktree add /tmp/before HEAD~3
    python -m benchmarks compare_commits /tmp/before . ../shared/corpora/bench17m.txt.xz \\
        --tokens 4000000 --rounds 3 -- --model skipgram --head ns --epochs 1

The options after ``--`` go to ``embedtrain train`` for both trees.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import plain_copy


def prefix(corpus: Path, directory: Path, tokens: int) -> Path:
    """The corpus's first lines holding about ``tokens`` tokens, decompressed."""
    whole, _ = plain_copy(corpus, directory, 1)
    target = directory / "prefix.txt"
    count = 0
    with open(whole, "rb") as lines, open(target, "wb") as out:
        for line in lines:
            out.write(line)
            count += len(line.split())
            if count >= tokens:
                break
    whole.unlink()
    return target


def timed(tree: Path, corpus: Path, out: Path, options: list[str]) -> float:
    command = [sys.executable, "-m", "embedtrain", "train", str(corpus), "-o", str(out)]
    environment = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    started = time.perf_counter()
    subprocess.run([*command, "--quiet", *options], env=environment, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--tokens", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    options = argv[split + 1 :]
    times: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="embedtrain-ab-") as scratch:
        corpus = prefix(args.corpus, Path(scratch), args.tokens)
        for round_number in range(args.rounds):
            order = ("before", "after") if round_number % 2 == 0 else ("after", "before")
            for name in order:
                tree = args.before if name == "before" else args.after
                seconds = timed(tree, corpus, Path(scratch) / "v.bin", options)
                times[name].append(seconds)
                print(f"round {round_number + 1} {name}: {seconds:.2f} s", flush=True)
    before, after = (statistics.median(times[k]) for k in ("before", "after"))
    print(f"median before {before:.2f} s, after {after:.2f} s: after/before {after / before:.3f}")


if __name__ == "__main__":
    main()
