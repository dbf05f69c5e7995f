"""GPU path against the CPU path, in one run.

1. Words/s of whole training runs (SG-NS, CBOW-NS, SG-HS): the compiled CPU engine
   (``--device cpu --engine compiled``), the batched engine on the CPU
   (``--device cpu --engine batched``), and the batched engine on a real GPU
   (``--device gpu``) when one works.
2. Pairs/s of one minibatch step of the exact heads (factored spherical and squared,
   naive softmax) on the CPU backend and, when available, on the GPU.

Without a working GPU it says so and measures only the CPU columns.

    python -m benchmarks gpu                       # shipped corpus
    python -m benchmarks gpu ../shared/corpora/bench17m.txt.xz --epochs 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    make_batches,
    plain_copy,
    timed_process,
    train_command,
    zipf_vocabulary,
)
from embedtrain.backend import NumpyOps, Ops, gpu_ops
from embedtrain.corpus import shipped_corpus
from embedtrain.errors import GpuUnavailable
from embedtrain.heads import resolved_settings

CONFIGS = {
    "sg-ns": ["--model", "skipgram", "--head", "ns"],
    "cbow-ns": ["--model", "cbow", "--head", "ns"],
    "sg-hs": ["--model", "skipgram", "--head", "hs"],
}
EXACT = ("spherical", "squared", "softmax")


def words_per_second(
    corpus: Path,
    tokens: int,
    epochs: int,
    options: list[str],
    device: str,
    engine: str,
    scratch: Path,
) -> float:
    command = train_command(
        corpus,
        scratch / "v.bin",
        "--epochs",
        str(epochs),
        "--device",
        device,
        "--engine",
        engine,
        *options,
    )
    try:
        seconds, _ = timed_process(command)
    except SystemExit as failure:  # a diverged or failed run: report it, keep measuring
        print(f"  ({' '.join(options)} on {device}: {str(failure).splitlines()[-1]})")
        return float("nan")
    return tokens * epochs / seconds


def pairs_per_second(ops: Ops, name: str, vocab_size: int, dim: int, m: int, steps: int) -> float:
    vocab = zipf_vocabulary(vocab_size)
    settings = resolved_settings(dim=dim, head=name)
    head = settings.head_class.create(vocab, settings, ops, 0)
    batches = [
        (ops.asarray(h), ops.asarray(t))
        for h, t in make_batches(np.random.default_rng(0), vocab_size, dim, m, 10, steps + 1)
    ]
    head.batch_step(*batches[0], 1e-3)
    ops.synchronize()
    started = time.perf_counter()
    pairs = 0
    for hidden, targets in batches[1:]:
        pairs += head.batch_step(hidden, targets, 1e-3).pairs
    ops.synchronize()
    return pairs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus", type=Path, nargs="?", default=shipped_corpus())
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--vocab-size", type=int, default=50_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 1024])
    args = parser.parse_args()
    try:
        gpu = gpu_ops()
        print(
            f"GPU found: measuring CuPy ({gpu.xp.cuda.runtime.getDeviceProperties(0)['name'].decode()})"
        )
    except GpuUnavailable as exc:
        gpu = None
        print(f"NO GPU FOUND ({exc}): GPU columns are not measured; CPU columns only.")

    with tempfile.TemporaryDirectory(prefix="embedtrain-gpu-") as scratch:
        corpus, tokens = plain_copy(args.corpus, Path(scratch), 1)
        print(
            f"\ncorpus {args.corpus}: {tokens:,} tokens, {args.epochs} epoch(s), d=100, whole processes"
        )
        print(
            "| config | compiled CPU words/s | batched CPU words/s | batched / compiled | GPU words/s | GPU / compiled |"
        )
        print("|---|---|---|---|---|---|")
        for name, options in CONFIGS.items():
            compiled = words_per_second(
                corpus, tokens, args.epochs, options, "cpu", "compiled", Path(scratch)
            )
            batched = words_per_second(
                corpus, tokens, args.epochs, options, "cpu", "batched", Path(scratch)
            )
            on_gpu = (
                words_per_second(
                    corpus, tokens, args.epochs, options, "gpu", "batched", Path(scratch)
                )
                if gpu
                else None
            )
            gpu_cells = (
                f"{on_gpu:,.0f} | {on_gpu / compiled:.2f}x" if on_gpu else "not measured | -"
            )
            print(
                f"| {name} | {compiled:,.0f} | {batched:,.0f} | {batched / compiled:.2f}x | {gpu_cells} |",
                flush=True,
            )

    print(f"\nexact heads, one minibatch step, D={args.vocab_size:,}, K<=10 targets per example")
    print("| head | d | m | CPU pairs/s | GPU pairs/s | GPU / CPU |")
    print("|---|---|---|---|---|---|")
    for dim in args.dims:
        for m in args.batch:
            for name in EXACT:
                steps = 5 if name == "softmax" else 50
                cpu = pairs_per_second(NumpyOps(), name, args.vocab_size, dim, m, steps)
                fast = pairs_per_second(gpu, name, args.vocab_size, dim, m, steps) if gpu else None
                cells = f"{fast:,.0f} | {fast / cpu:.1f}x" if fast else "not measured | -"
                print(f"| {name} | {dim} | {m} | {cpu:,.0f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
