"""What the merge rule and the workers' learning rate do to the vectors (quality only).

    python eval/distributed_rates.py ../shared/corpora/bench17m.txt.xz --max-words 6000000 \\
        --models skipgram,cbow --out eval/results/distributed_rates.md

The workers run one after the other in this process (``InProcessCluster``: no Ray, the
same ShardWorker and driver as ``--cluster``, so the same arithmetic), one thread each,
against one process with 2 threads, on the corpus' first ``--max-words`` tokens, 3 epochs. A variant is
``rule:sync_words:scale:workers``:

- ``rule``: ``mean`` (the shipped merge, new = old + sum_i delta_i / n, n the workers that
  changed the row) or ``sum`` (new = old + sum_i delta_i);
- ``scale``: the workers' rate as a multiple of the scheduled rate, or ``workers`` (the
  shipped rule: the round's active workers, :func:`embedtrain.distributed.job_rates`).

The ablations swap ``distributed.merge_deltas`` and ``distributed.job_rates`` for the run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import embedtrain
from embedtrain import distributed
from embedtrain.backend import NumpyOps
from embedtrain.distributed import ClusterEpochs, InProcessCluster, RowBlock, build_vocabulary_on
from embedtrain.embeddings import Embeddings
from embedtrain.heads import resolved_settings
from embedtrain.model import Model
from embedtrain.training import run_training

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heads_report import scores_of, write_prefix

DEFAULT_VARIANTS = (
    "mean:500000:workers:2,mean:500000:1:2,sum:500000:1:2,mean:50000:1:2,sum:50000:1:2,"
    "mean:100000:workers:2,mean:500000:workers:4,mean:500000:2:4,mean:500000:1:4"
)
SHIPPED_MERGE = distributed.merge_deltas
SHIPPED_RATES = distributed.job_rates


def merge_sum(master: np.ndarray, deltas: Sequence[RowBlock]) -> RowBlock:
    """new = old + sum_i delta_i: every worker's step applied in full."""
    ids = [delta.row_ids() for delta in deltas]
    for held, delta in zip(ids, deltas, strict=True):
        master[held] += delta.row_values()
    union = np.unique(np.concatenate(ids))
    return RowBlock.of(union, master[union])


def rates_times(scale: float):
    """job_rates with the schedule times ``scale`` instead of the active workers."""

    def rates(settings, plan, local_start, words):
        start, end = SHIPPED_RATES(settings, plan, local_start, words)
        return start * scale / plan.active_workers, end * scale / plan.active_workers

    return rates


def run_variant(corpus: str, options: dict[str, Any], variant: str) -> dict[str, float]:
    rule, sync, scale, workers = variant.split(":")
    distributed.merge_deltas = {"mean": SHIPPED_MERGE, "sum": merge_sum}[rule]
    distributed.job_rates = SHIPPED_RATES if scale == "workers" else rates_times(float(scale))
    try:
        settings = resolved_settings(
            cluster="ray",  # a cluster run's settings (ShardWorker requires them), no Ray
            workers=int(workers),
            threads=1,
            sync_words=int(sync),
            **options,
        )
        cluster = InProcessCluster([corpus], settings)
        vocab = build_vocabulary_on(cluster, settings, corpus, True)
        model = Model(vocab, settings, NumpyOps())
        run_training(model, ClusterEpochs(cluster, model), quiet=True)
    finally:
        distributed.merge_deltas, distributed.job_rates = SHIPPED_MERGE, SHIPPED_RATES
    return scores_of(Embeddings.from_model(model))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus")
    p.add_argument("--max-words", type=int, default=6_000_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--models", default="skipgram,cbow")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated")
    p.add_argument("--out", type=Path, help="also write the Markdown table")
    args = p.parse_args()
    lines = [
        f"{args.corpus}, first {args.max_words:,} tokens, {args.epochs} epochs, ns, seed 1",
        "",
        "| model | run | merge | words per round | rate x | analogy | WS-353 | SimLex |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="distributed-rates-") as scratch:
        corpus = str(Path(scratch) / "prefix.txt")
        write_prefix(args.corpus, args.max_words, Path(corpus))
        for model in args.models.split(","):
            options = {"model": model, "head": "ns", "epochs": args.epochs, "seed": 1}
            single = scores_of(embedtrain.train(corpus, progress=False, threads=2, **options))
            rows = [("1 process x 2 threads", "", "", "", single)]
            for variant in args.variants.split(","):
                rule, sync, scale, workers = variant.split(":")
                found = run_variant(corpus, options, variant)
                rows.append((f"{workers} workers x 1 thread", rule, f"{int(sync):,}", scale, found))
                print(variant, found, file=sys.stderr, flush=True)
            for run, rule, sync, scale, s in rows:
                lines.append(
                    f"| {model} | {run} | {rule} | {sync} | {scale} | {s['analogy']:.1%} | "
                    f"{s['ws353']:.3f} | {s['simlex']:.3f} |"
                )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
