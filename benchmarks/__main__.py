"""One entry point for every benchmark and study.

    python -m benchmarks --list                      # every benchmark, one line each
    python -m benchmarks NAME [ARGS...]              # run one (ARGS: NAME --help)
    python -m benchmarks NAME --quick [ARGS...]      # a smoke run: tiny corpus, seconds
    python -m benchmarks --save FILE NAME [ARGS...]  # also keep its stdout in FILE

``--quick`` runs the benchmark on the first 20,000 tokens of the shipped corpus (or on tiny
synthetic minibatches) with few steps, writing its result files to a temporary directory:
it checks that the benchmark runs, not what it measures. ``--save`` writes what the
benchmark prints to FILE, headed by its provenance (command, commit, date, machine,
threads, library versions), for the benchmarks that report on stdout only.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import ROOT, shipped_corpus_prefix, write_markdown


@dataclass(frozen=True)
class Benchmark:
    module: str
    about: str
    #: the arguments of a quick run, given a scratch directory and a small corpus file
    quick: Callable[[Path, Path], list[str]]
    #: Python packages it needs beyond the base install (its quick run skips without them)
    needs: tuple[str, ...] = ()


def _trained_vectors(scratch: Path, corpus: Path) -> Path:
    import embedtrain

    out = scratch / "vectors.txt"
    embedtrain.train(
        str(corpus), model="skipgram", dim=16, epochs=1, min_count=2, progress=False
    ).save_vectors(str(out))
    return out


BENCHMARKS: dict[str, Benchmark] = {
    "compare_gensim": Benchmark(
        "compare_gensim",
        "embedtrain against gensim's Word2Vec: words/s, peak RSS and quality, whole processes",
        lambda s, c: [str(c), "--configs", "sg-ns", "--epochs", "1", "--json", str(s / "g.json")],
        needs=("gensim",),
    ),
    "step": Benchmark(
        "bench_step",
        "the compiled engine's shared and per-example steps alternated in one process: "
        "words/s, ratio, time and GFLOP/s per example",
        lambda s, c: [str(c), "--tokens", "20000", "--rounds", "1", "--dim", "16"],
    ),
    "compare_commits": Benchmark(
        "compare_commits",
        "two source trees of embedtrain timed on the same corpus prefix, alternating",
        lambda s, c: [
            str(ROOT),
            str(ROOT),
            str(c),
            "--tokens",
            "5000",
            "--rounds",
            "1",
            "--",
            "--epochs",
            "1",
            "--dim",
            "16",
        ],
    ),
    "exact": Benchmark(
        "bench_exact",
        "exact heads: factored O(d^2) step against the naive O(Dd) one (speedup), end to end "
        "(train)",
        lambda s, c: [
            "speedup",
            "--vocab-sizes",
            "2000",
            "--dims",
            "16",
            "--naive-steps",
            "2",
            "--factored-steps",
            "4",
            "--repeats",
            "1",
        ],
    ),
    "adaptive": Benchmark(
        "bench_adaptive",
        "adaptive softmax against the full softmax: time per example of one minibatch step",
        lambda s, c: ["--vocab-sizes", "2000", "--dims", "16", "--steps", "2", "--repeats", "1"],
    ),
    "aop": Benchmark(
        "bench_aop",
        "Mem-AOP-GD: K x policy x memory grid on the softmax and adaptive heads",
        lambda s, c: [
            str(c),
            "--max-words",
            "5000",
            "--heads",
            "softmax",
            "--keeps",
            "64",
            "16",
            "--policies",
            "topk",
            "--memories",
            "factors",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--json",
            str(s / "aop.json"),
            "--table",
            str(s / "aop.md"),
        ],
    ),
    "lsh": Benchmark(
        "bench_lsh",
        "LSH negative sampling against ns: quality per epoch and per second, sampling cost",
        lambda s, c: [
            str(c),
            "--epochs",
            "1",
            "--models",
            "sg",
            "--only",
            "lsh-label",
            "--sampling-examples",
            "1000",
            "--json",
            str(s / "lsh.json"),
            "--table",
            str(s / "lsh.md"),
        ],
    ),
    "gpu": Benchmark(
        "bench_gpu",
        "compiled CPU engine against the batched engine on NumPy (and CuPy where a GPU works)",
        lambda s, c: [str(c), "--vocab-size", "2000", "--dims", "16", "--batch", "64"],
    ),
    "distributed": Benchmark(
        "bench_distributed",
        "one process against Ray workers: words/s, quality, bytes per round, scaling estimate",
        lambda s, c: [
            str(c),
            "--max-words",
            "5000",
            "--epochs",
            "1",
            "--models",
            "skipgram",
            "--out",
            str(s / "distributed.json"),
        ],
        needs=("ray",),
    ),
    "heads_report": Benchmark(
        "heads_report",
        "every head on one corpus: quality against training time, held-out loss, picture",
        lambda s, c: [
            str(c),
            "--heads",
            "ns",
            "--epochs",
            "1",
            "--held-out-pairs",
            "100",
            "--json",
            str(s / "heads.json"),
            "--table",
            str(s / "heads.md"),
        ],
    ),
    "zloss_scale": Benchmark(
        "zloss_scale",
        "the Z-loss's input scale, bias feature, a and b swept on a corpus prefix",
        lambda s, c: [str(c), "--words", "3000", "--epochs", "1", "--out", str(s / "z.md")],
    ),
    "vector_geometry": Benchmark(
        "vector_geometry",
        "geometry of a vector file: singular values, |cos| against cos on the similarity sets",
        lambda s, c: [str(_trained_vectors(s, c))],
    ),
}


def _list() -> None:
    width = max(map(len, BENCHMARKS))
    for name, bench in BENCHMARKS.items():
        print(f"{name:<{width}}  {bench.about}")


def missing(name: str) -> list[str]:
    """The packages benchmark ``name`` needs that are not installed."""
    return [p for p in BENCHMARKS[name].needs if importlib.util.find_spec(p) is None]


def run(name: str, args: list[str], *, quick: bool = False, save: Path | None = None) -> None:
    """Run benchmark ``name`` with ``args`` (its own command line)."""
    bench = BENCHMARKS[name]
    module = importlib.import_module(f"benchmarks.{bench.module}")
    with contextlib.ExitStack() as stack:
        if quick:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-quick-")))
            args = [*bench.quick(scratch, shipped_corpus_prefix(scratch)), *args]
        saved_argv = sys.argv
        sys.argv = [f"benchmarks {name}", *args]
        stack.callback(setattr, sys, "argv", saved_argv)
        if save is None:
            module.main()
            return
        captured = io.StringIO()

        class Tee(io.TextIOBase):
            def write(self, text: str) -> int:
                captured.write(text)
                return sys.__stdout__.write(text)

        with contextlib.redirect_stdout(Tee()):
            module.main()
        write_markdown(save, captured.getvalue())


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        _list()
        return
    if argv[0] == "--list":
        _list()
        return
    save = None
    if argv[0] == "--save":
        if len(argv) < 3:
            sys.exit("benchmarks: --save FILE NAME [ARGS...]")
        save, argv = Path(argv[1]), argv[2:]
    name, args = argv[0], argv[1:]
    if name not in BENCHMARKS:
        sys.exit(f"benchmarks: no benchmark {name!r}; python -m benchmarks --list names them")
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    if quick and (absent := missing(name)):
        print(f"benchmarks: {name} --quick skipped: needs {', '.join(absent)}")
        return
    run(name, args, quick=quick, save=save)


if __name__ == "__main__":
    main()
