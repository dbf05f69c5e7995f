"""Adaptive softmax against the full softmax: time per example of one minibatch step.

For D in {10k, 50k, 200k} and d in {100, 300}, in one run: the full softmax head
(``--head softmax``: o = W h for the whole vocabulary, W updated by BLAS) and the adaptive
head with the cutoffs its cost model chooses for a Zipf vocabulary of that size, on the
same skip-gram-like minibatches (m examples, up to K = 10 Zipf-drawn targets each, so
targets repeat), on the host backend. The two heads take turns pass by pass (this
machine's speed drifts by 20-30% over minutes); the best of several passes is kept.

    python -m benchmarks adaptive
    python -m benchmarks adaptive --vocab-sizes 50000 --dims 100

``--fixed-cost`` measures the constant of the cost model (``adaptive.BACKEND_COSTS``): the time
one tail cluster adds to a step when a single example has a target in it (its few array
operations, almost no arithmetic), in multiply-adds at the rate of the head's product.

    python -m benchmarks adaptive --fixed-cost
    python -m benchmarks adaptive --compiled-softmax   # a compiled form of the softmax

End to end (held-out log-loss, analogy, WS-353, SimLex-999 next to ``softmax`` and ``ns``)
is ``benchmarks/heads_report.py`` on the first 2M tokens of bench17m with 5% of the lines held
out (the README gives the command).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from benchmarks.common import make_batches, time_heads, zipf_vocabulary
from embedtrain.backend import NumpyOps
from embedtrain.heads.adaptive import AdaptiveSoftmax
from embedtrain.heads.exact import NaiveHead
from embedtrain.heads.losses import FullSoftmax
from embedtrain.settings import Settings


def fixed_cost(repeats: int) -> None:
    """Seconds a one-row tail cluster adds to a step, and the multiply-adds of the head's
    product in the same time (best of ``repeats`` alternating passes of 200 steps)."""
    import time

    ops = NumpyOps()
    dim, m, vocab_size = 100, 64, 50_000
    vocab = zipf_vocabulary(vocab_size)
    settings = Settings(head="adaptive", dim=dim, model="skipgram", cutoffs="2000,10000")
    head = AdaptiveSoftmax(vocab, settings, ops, 0)
    rng = np.random.default_rng(0)
    hidden = rng.normal(0, 0.1, (m, dim)).astype(np.float32)
    shortlist_only = rng.integers(0, 2000, (m, 6)).astype(np.int32)
    one_tail = shortlist_only.copy()
    one_tail[0, 0] = 5000  # one example with one target in the first tail
    best = {"base": float("inf"), "tail": float("inf"), "gemm": float("inf")}
    weights = head.weights["head"]
    for _ in range(repeats + 1):
        for name, targets in (("base", shortlist_only), ("tail", one_tail)):
            started = time.perf_counter()
            for _ in range(200):
                head.batch_step(hidden, targets, 0.0)
            best[name] = min(best[name], (time.perf_counter() - started) / 200)
        started = time.perf_counter()
        for _ in range(200):
            ops.gemm(hidden, weights.T)
        best["gemm"] = min(best["gemm"], (time.perf_counter() - started) / 200)
    rate = m * weights.shape[0] * dim / best["gemm"]
    extra = best["tail"] - best["base"]
    print(
        f"step without tail targets {best['base'] * 1e6:,.0f} us, with one "
        f"{best['tail'] * 1e6:,.0f} us: a cluster's fixed cost {extra * 1e6:,.0f} us; "
        f"head product {m}x{dim}x{weights.shape[0]} at {rate / 1e9:,.2f} G multiply-adds/s: "
        f"fixed cost = {extra * rate:,.0f} multiply-adds"
    )


def compiled_softmax(repeats: int) -> None:
    """The adaptive step's elementwise softmax (its largest cost after the products) as
    one fused Numba loop against the array form's NumPy calls, on the same scores."""
    import time

    from numba import njit

    from embedtrain.heads.base import softmax_loss

    @njit(fastmath=True)
    def fused(scores, rows, columns):
        m, n = scores.shape
        count = np.zeros(m)
        for r in rows:
            count[r] += 1.0
        loss = 0.0
        for j in range(m):
            peak = scores[j, 0]
            for i in range(n):
                peak = max(peak, scores[j, i])
            total = np.float32(0.0)
            for i in range(n):
                scores[j, i] = np.exp(scores[j, i] - peak)
                total += scores[j, i]
            loss += count[j] * (np.log(total) + peak)
            scale = np.float32(count[j] / total)
            for i in range(n):
                scores[j, i] *= scale
        for k in range(rows.shape[0]):
            scores[rows[k], columns[k]] -= 1.0
        return loss

    ops = NumpyOps()
    rng = np.random.default_rng(0)
    for n in (2_000, 40_000):
        base = rng.normal(0, 1, (64, n)).astype(np.float32)
        rows, columns = np.repeat(np.arange(64), 2), rng.integers(0, n, 128)
        fused(base.copy(), rows, columns)
        best = {"numpy": float("inf"), "numba": float("inf")}
        for _ in range(repeats):
            for name in ("numpy", "numba"):
                started = time.perf_counter()
                for _ in range(20):
                    if name == "numpy":
                        softmax_loss(ops, base, rows, columns)
                    else:
                        fused(base.copy(), rows, columns)
                best[name] = min(best[name], (time.perf_counter() - started) / 20)
        print(
            f"64 x {n:,} scores: NumPy {best['numpy'] * 1e6:,.0f} us, fused Numba "
            f"{best['numba'] * 1e6:,.0f} us ({best['numba'] / best['numpy']:.2f}x the time)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="minibatches per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per head")
    parser.add_argument(
        "--fixed-cost", action="store_true", help="measure the cost model's fixed cost per cluster"
    )
    parser.add_argument(
        "--compiled-softmax", action="store_true", help="a fused Numba softmax against NumPy's"
    )
    args = parser.parse_args()
    if args.fixed_cost:
        fixed_cost(args.repeats)
        return
    if args.compiled_softmax:
        compiled_softmax(args.repeats)
        return
    rng = np.random.default_rng(0)
    ops = NumpyOps()
    print(f"minibatch m={args.batch}, K<=10 Zipf targets per example, float32, host backend")
    print("| D | d | cutoffs (cost model) | softmax us/example | adaptive us/example | speedup |")
    print("|---|---|---|---|---|---|")
    for dim in args.dims:
        for vocab_size in args.vocab_sizes:
            vocab = zipf_vocabulary(vocab_size)
            settings = Settings(dim=dim, model="skipgram", batch_size=args.batch)
            adaptive = AdaptiveSoftmax.settle(replace(settings, head="adaptive"), vocab, ops)
            batches = make_batches(rng, vocab_size, dim, args.batch, 10, args.steps)
            softmax_head = NaiveHead(
                FullSoftmax(), vocab, replace(settings, head="softmax"), ops, 0
            )
            softmax, fast = time_heads(
                [
                    (softmax_head, batches),
                    (AdaptiveSoftmax(vocab, adaptive, ops, 0), batches),
                ],
                1e-3,
                args.repeats,
            )
            print(
                f"| {vocab_size:,} | {dim} | {adaptive.cutoffs} | {softmax * 1e6:,.1f} "
                f"| {fast * 1e6:,.1f} | {softmax / fast:,.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
