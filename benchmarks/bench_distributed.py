"""One process against Ray workers on this machine, and a scaling estimate for more.

    python -m benchmarks distributed ../shared/corpora/bench17m.txt.xz [--max-words N]

For skip-gram and CBOW with negative sampling, 5 epochs: 1 process x 2 threads against 2
Ray workers x 1 thread (a local Ray with 2 CPUs): training words/s (epoch time only; the
vocabulary, encoding and compilation are reported apart), Google analogies, WS-353 and
SimLex-999 (``Embeddings.evaluate``), and per round the bytes sent (deltas up, the merged
rows down to each worker). The runs alternate: skip-gram one process first, CBOW the
cluster first.

The scaling estimate for P = 2..64 workers takes the measured round costs at P = 2: each
worker's compute per round ``c`` (constant in P: every worker trains --sync-words words),
the fraction ``f`` of rows a worker changes per round (the union of P workers' rows is then
``1 - (1 - f)^P`` of the matrix, as if they touched rows independently), the bytes up per
worker, and the driver's merge time per byte. A round then takes
``c + bytes(P) * (merge per byte + 1 / bandwidth)``, with all bytes through the driver's
link (--bandwidth-gbit); the speedup over one worker is ``P c / round(P)``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import embedtrain
from benchmarks.common import scores_of, write_json, write_prefix
from embedtrain.distributed import ClusterStats, parameter_arrays
from embedtrain.embeddings import Embeddings
from embedtrain.heads import resolved_settings
from embedtrain.ray_cluster import import_ray, train_on_cluster
from embedtrain.settings import Settings

WORKER_COUNTS = (2, 4, 8, 16, 32, 64)


def training_speed(emb: Embeddings) -> float:
    """Words per second over the epochs (training time only)."""
    return sum(r.words for r in emb.history) / sum(r.seconds for r in emb.history)


def run_single(corpus: str, options: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    emb = embedtrain.train(corpus, progress=False, threads=2, **options)
    wall = time.perf_counter() - started
    return {"words_per_second": training_speed(emb), "wall_seconds": wall, **scores_of(emb)}


def run_cluster(corpus: str, options: dict[str, Any], sync_words: int) -> dict[str, Any]:
    settings = resolved_settings(
        cluster="ray", workers=2, threads=1, sync_words=sync_words, **options
    )
    stats = ClusterStats()
    started = time.perf_counter()
    model, _ = train_on_cluster(corpus, settings, quiet=True, stats=stats)
    wall = time.perf_counter() - started
    emb = Embeddings.from_model(model)
    rounds = stats.rounds
    n = len(rounds)
    rows = model.vectors.shape[0]
    changed = [sum(c) / len(c) / rows for r in rounds for c in r.rows_changed.values() if r.words]
    return {
        "words_per_second": training_speed(emb),
        "wall_seconds": wall,
        "compile_seconds": stats.compile_seconds,
        "rounds": n,
        "bytes_up_per_round": sum(r.bytes_up for r in rounds) / n,
        "bytes_down_per_round": sum(r.bytes_down for r in rounds) / n,
        "full_matrices_bytes": sum(a.nbytes for a in parameter_arrays(model).values()),
        "compute_seconds_per_round": sum(r.compute_seconds for r in rounds) / n,
        "round_seconds": sum(r.round_seconds for r in rounds) / n,
        "rows_changed_fraction": sum(changed) / max(len(changed), 1),
        **scores_of(emb),
    }


def scaling(measured: dict[str, Any], bandwidth_gbit: float) -> list[dict[str, float]]:
    """Round time and speedup for more workers, from the 2-worker round costs."""
    compute = measured["compute_seconds_per_round"]
    sync = max(measured["round_seconds"] - compute, 0.0)
    up = measured["bytes_up_per_round"] / 2
    down = measured["bytes_down_per_round"] / 2
    f = measured["rows_changed_fraction"]
    union_2 = 1 - (1 - f) ** 2
    per_byte = sync / max(2 * up + 2 * down, 1)
    link = bandwidth_gbit * 1e9 / 8
    rows = []
    for p in WORKER_COUNTS:
        union = 1 - (1 - f) ** p
        traffic = p * up + p * down * union / max(union_2, 1e-12)
        round_seconds = compute + traffic * (per_byte + 1 / link)
        rows.append(
            {
                "workers": p,
                "bytes_per_round": traffic,
                "round_seconds": round_seconds,
                "speedup": p * compute / round_seconds,
            }
        )
    return rows


def with_repeats(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """The first pass's figures with the median words/s over all passes (and each)."""
    speeds = [found["words_per_second"] for found in passes]
    return {**passes[0], "words_per_second": statistics.median(speeds), "passes": speeds}


def table(report: dict[str, Any]) -> str:
    lines = [
        (
            "| model | run | words/s (median) | each pass | analogy | WS-353 | SimLex | wall s | "
            "up / down per round |"
        ),
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for model, runs in report["runs"].items():
        for name, r in runs.items():
            traffic = (
                f"{r['bytes_up_per_round'] / 1e6:.1f} MB / {r['bytes_down_per_round'] / 1e6:.1f} MB"
                if "rounds" in r
                else ""
            )
            passes = ", ".join(f"{speed:,.0f}" for speed in r["passes"])
            lines.append(
                f"| {model} | {name} | {r['words_per_second']:,.0f} | {passes} | {r['analogy']:.1%} | "
                f"{r['ws353']:.3f} | {r['simlex']:.3f} | {r['wall_seconds']:.0f} | {traffic} |"
            )
    for model, rows in report["scaling"].items():
        lines += ["", f"Scaling estimate, {model} ({report['bandwidth_gbit']} Gbit/s driver link):"]
        lines += ["| workers | MB per round | round s | speedup |", "|---:|---:|---:|---:|"]
        lines += [
            f"| {r['workers']} | {r['bytes_per_round'] / 1e6:.1f} | {r['round_seconds']:.3f} | "
            f"{r['speedup']:.1f} |"
            for r in rows
        ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus", help="text corpus (.xz/.gz/.bz2 read transparently)")
    p.add_argument("--max-words", type=int, help="train on the first N words only (a smoke test)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--sync-words", type=int, default=Settings().sync_words)
    p.add_argument("--bandwidth-gbit", type=float, default=10.0, help="for the estimate")
    p.add_argument("--models", default="skipgram,cbow")
    p.add_argument(
        "--repeats", type=int, default=1, help="passes of each pair, alternating their order"
    )
    p.add_argument("--out", type=Path, help="also write the report as JSON")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    ray = import_ray()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="WARNING")  # fmt: skip
    report: dict[str, Any] = {"runs": {}, "scaling": {}, "bandwidth_gbit": args.bandwidth_gbit}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as scratch:
        corpus = args.corpus
        if args.max_words:
            corpus = str(Path(scratch) / "prefix.txt")
            write_prefix(args.corpus, args.max_words, Path(corpus))
        for index, model in enumerate(args.models.split(",")):
            options = {"model": model, "head": "ns", "epochs": args.epochs}
            runs = {
                "1 process x 2 threads": (run_single, (corpus, options)),
                "2 workers x 1 thread": (run_cluster, (corpus, options, args.sync_words)),
            }
            found: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
            for repeat in range(args.repeats):
                # Every other pass runs the cluster first (A B, B A): a drift in the
                # machine's speed over the run touches both alike.
                for name in list(runs)[:: -1 if (index + repeat) % 2 else 1]:
                    print(f"{model}: {name} (pass {repeat + 1}) ...", file=sys.stderr)
                    function, arguments = runs[name]
                    found[name].append(function(*arguments))
            report["runs"][model] = {name: with_repeats(found[name]) for name in runs}
            cluster = report["runs"][model]["2 workers x 1 thread"]
            report["scaling"][model] = scaling(cluster, args.bandwidth_gbit)
            print(
                f"{model}: compile per worker {cluster['compile_seconds']} s, "
                f"{cluster['rounds']} rounds, {cluster['round_seconds']:.3f} s per round "
                f"({cluster['compute_seconds_per_round']:.3f} s training)",
                file=sys.stderr,
            )
    ray.shutdown()
    print(table(report))
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()
