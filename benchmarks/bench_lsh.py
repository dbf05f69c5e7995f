"""LSH negative sampling against word2vec's count**0.75 noise, on one corpus, in one run.

For skip-gram and CBOW, three configurations with the same number of negatives train
side by side: ``ns`` (the alias table), ``lsh`` with ``--lsh-mode embedding`` and with
``--lsh-mode label`` (plus ``--corrections`` to add the log-Q corrected variants). Every
configuration trains ``--epochs`` epochs, one ``train()`` call each (a callback stops it at
the epoch's end; the model is saved and resumed, which continues the same schedule
exactly), and the configurations alternate epoch by epoch, so a drift in the machine's load
touches all alike. Training time is the sum of the epochs' ``EpochReport.seconds``.

Reported per configuration: words/s, Google analogy accuracy, WS-353 and SimLex-999
Spearman (``Embeddings.evaluate()``) after the last epoch, and the quality "at ns's time":
the last epoch checkpoint of an LSH run whose training time is within the ns run's total
(a point on the E-epoch schedule, whose learning rate has not decayed there). Then the
sampling cost alone: the mean time to draw one example's negatives from the final model's
LSH tables (hidden vectors and targets drawn from the corpus' unigram distribution),
against the alias table's, in compiled loops on one thread.

    python -m benchmarks lsh ../shared/corpora/bench17m.txt.xz --models sg --only lsh-label \\
        --vary lsh_bits=8 --json benchmarks/results/lsh_sg_rehash.json --table benchmarks/results/lsh_sg_rehash.md
    python -m benchmarks lsh ../shared/corpora/bench17m.txt.xz --max-words 200000 --epochs 1
    python -m benchmarks lsh ../shared/corpora/bench17m.txt.xz --models sg --only lsh-label \\
        --epochs 3 --set lsh_rehash=500000 --vary lsh_bits=4,8 --vary lsh_tables=5,20 \\
        --vary lsh_rehash=100000,2000000 --json benchmarks/results/lsh_sweep.json \\
        --table benchmarks/results/lsh_sweep.md

README.md gives the command behind each committed table in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

import embedtrain
from benchmarks.common import (
    SCORES,
    publish,
    scores_of,
    settings_value,
    write_json,
    write_prefix,
)
from embedtrain.heads import resolved_settings
from embedtrain.heads.lsh import LshNegativeSampling
from embedtrain.heads.lsh_kernels import draw_negatives
from embedtrain.rng import seed_state, uniform
from embedtrain.settings import Settings
from embedtrain.vocab import alias_table

MODELS = {"sg": "skipgram", "cbow": "cbow"}


def configurations(
    corrections: bool, hashes: list[str], varied: list[tuple[str, list]]
) -> dict[str, dict[str, Any]]:
    """Each configuration's name and head options (the first hash family unnamed); each
    ``(setting, values)`` of ``varied`` adds every LSH configuration again with the setting
    at each value, one setting at a time (named ``<configuration> setting=value``)."""
    found: dict[str, dict[str, Any]] = {"ns": {"head": "ns"}}
    for mode in ("embedding", "label"):
        for index, family in enumerate(hashes):
            name = f"lsh-{mode}" + (f"-{family}" if index else "")
            found[name] = {"head": "lsh", "lsh_mode": mode, "lsh_hash": family}
            if corrections:
                found[f"{name}-logq"] = {**found[name], "lsh_correction": "logq"}
    lsh = [name for name, options in found.items() if options["head"] == "lsh"]
    for setting, values in varied:
        for name in lsh:
            for value in values:
                found[f"{name} {setting}={value}"] = {**found[name], setting: value}
    return found


def train_alternating(
    corpus: Path, options: dict[str, dict[str, Any]], epochs: int, scratch: Path
) -> dict[str, list[dict[str, Any]]]:
    """Every configuration's checkpoints (epoch, seconds, words, scores, top-up notices),
    training one epoch of each in turn."""
    checkpoints: dict[str, list[dict[str, Any]]] = {name: [] for name in options}
    for epoch in range(1, epochs + 1):
        for name, settings in options.items():
            saved = scratch / f"{name}.npz"
            resume = {"resume": saved} if epoch > 1 else settings
            emb = embedtrain.train(
                str(corpus), progress=False, callbacks=[lambda report: False], **resume
            )
            history = emb.history
            done = {
                "epoch": len(history),
                "seconds": sum(r.seconds for r in history),
                "words": sum(r.words for r in history),
                "mean_loss": history[-1].mean_loss,
                **scores_of(emb),
            }
            checkpoints[name].append(done)
            print(f"  {name} epoch {epoch}/{epochs}: {json.dumps(done)}", file=sys.stderr)
            if epoch < epochs:
                emb.save(saved)
            else:
                checkpoints[name][-1]["model"] = emb
                saved.unlink(missing_ok=True)
    return checkpoints


@njit(nogil=True)
def _alias_loop(probability, alias, examples, negative, rng) -> int:
    """Draw ``examples`` x ``negative`` words from the alias table (a checksum returned)."""
    checksum = 0
    size = probability.shape[0]
    for _ in range(examples):
        for _ in range(negative):
            u = uniform(rng) * size
            bucket = int(u)
            checksum += bucket if u - bucket < probability[bucket] else alias[bucket]
    return checksum


@njit(nogil=True)
def _lsh_loop(state, hiddens, targets, negative, rng) -> int:
    """Draw one example's negatives from the LSH tables for each (hidden, target)."""
    negatives = np.empty(negative, dtype=np.int64)
    shifts = np.empty(negative, dtype=np.float64)
    checksum = 0
    for j in range(targets.shape[0]):
        draw_negatives(state, hiddens[j], targets[j], rng, negatives, shifts)
        checksum += negatives.sum()
    return checksum


def sampling_cost(emb: embedtrain.Embeddings, settings: Settings, examples: int) -> dict:
    """Nanoseconds per example to draw ``negative`` noise words: alias table, and the LSH
    tables of the trained model (rebuilt from its output vectors), queries drawn from the
    unigram distribution (embedding mode: the query word's input vector)."""
    model = emb.model
    head = model.head
    assert isinstance(head, LshNegativeSampling)
    head.compiled_step()  # marks the tables in use
    head.start_job(model.words_done + settings.lsh_rehash)  # a rebuild past the last one
    _, state = head.compiled_step()
    noise = alias_table(model.vocab.noise_distribution(settings.ns_exponent))
    rng = np.random.default_rng(0)
    unigram = model.vocab.counts / model.vocab.counts.sum()
    targets = rng.choice(len(unigram), size=examples, p=unigram).astype(np.int64)
    hiddens = model.vectors[rng.choice(len(unigram), size=examples, p=unigram)]
    negative = settings.negative
    _alias_loop(noise.probability, noise.alias, 10, negative, seed_state(1))
    _lsh_loop(state, hiddens[:10], targets[:10], negative, seed_state(1))
    start = time.perf_counter()
    _alias_loop(noise.probability, noise.alias, examples, negative, seed_state(2))
    alias = time.perf_counter() - start
    start = time.perf_counter()
    _lsh_loop(state, hiddens, targets, negative, seed_state(2))
    lsh = time.perf_counter() - start
    return {"alias_ns": alias / examples * 1e9, "lsh_ns": lsh / examples * 1e9}


def summary(checkpoints: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    """The final figures and the last checkpoint within ``budget`` seconds."""
    last = checkpoints[-1]
    within = [c for c in checkpoints if c["seconds"] <= budget * 1.0001]
    at_budget = within[-1] if within else None
    return {
        "words_per_second": last["words"] / max(last["seconds"], 1e-9),
        "seconds": last["seconds"],
        **{key: last[key] for key in SCORES},
        "at_ns_time": (
            {key: at_budget[key] for key in ("epoch", "seconds", *SCORES)} if at_budget else None
        ),
        "checkpoints": [{k: v for k, v in c.items() if k != "model"} for c in checkpoints],
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        (
            f"Corpus {report['corpus']} ({report['words']:,} words), {report['epochs']} epochs, "
            f"{report['threads']} threads, {report['negative']} negatives, settings "
            f"{json.dumps(report['settings'])}"
        ),
        "",
        (
            "| model | sampler | words/s | analogy | WS-353 | SimLex-999 | at ns's time: epoch, "
            "analogy, WS-353 | sampling ns/example (alias) |"
        ),
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for model, results in report["results"].items():
        for name, r in results.items():
            at = r["at_ns_time"]
            at_text = f"{at['epoch']}, {at['analogy']:.1%}, {at['ws353']:.3f}" if at else "none"
            cost = r.get("sampling")
            cost_text = f"{cost['lsh_ns']:,.0f} ({cost['alias_ns']:,.0f})" if cost else "alias"
            lines.append(
                f"| {model} | {name} | {r['words_per_second']:,.0f} | {r['analogy']:.1%} | "
                f"{r['ws353']:.3f} | {r['simlex']:.3f} | {at_text} | {cost_text} |"
            )
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    defaults = Settings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus", help="what embedtrain train reads")
    p.add_argument("--max-words", type=int, default=0, help="train on the first N tokens")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--threads", type=int, default=2, help="this machine's cores (default: 2)")
    p.add_argument("--negative", type=int, default=defaults.negative)
    p.add_argument("--models", default="sg,cbow", help="comma-separated: sg, cbow")
    p.add_argument("--corrections", action="store_true", help="also the logq variants")
    p.add_argument(
        "--hashes", default="simhash", help="comma-separated hash families: simhash, dwta"
    )
    p.add_argument(
        "--only",
        help="comma-separated configuration names to keep (and ns, and their --vary variants)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a further setting for every run, e.g. lsh_bits=8 (repeatable)",
    )
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="also each LSH configuration with setting NAME at each value, e.g. "
        "lsh_bits=4,8 (repeatable; one setting varied at a time)",
    )
    p.add_argument("--sampling-examples", type=int, default=200_000)
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("--table", type=Path, help="write the Markdown table")
    return p.parse_args()


def setting_value(text: str) -> tuple[str, int | float | str]:
    name, _, value = text.partition("=")
    return name, settings_value(value)


def setting_values(text: str) -> tuple[str, list[int | float | str]]:
    name, _, values = text.partition("=")
    return name, [settings_value(value) for value in values.split(",")]


def main() -> None:
    args = parse_args()
    extra = dict(setting_value(text) for text in args.set)
    varied = [setting_values(text) for text in args.vary]
    report: dict[str, Any] = {
        "corpus": args.corpus,
        "epochs": args.epochs,
        "threads": args.threads,
        "negative": args.negative,
        "settings": extra,
        "results": {},
    }
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        prefix = scratch / "corpus.txt"
        report["words"] = write_prefix(args.corpus, args.max_words, prefix)
        for key in args.models.split(","):
            common = {
                "model": MODELS[key],
                "epochs": args.epochs,
                "threads": args.threads,
                "negative": args.negative,
                "device": "cpu",
                **extra,
            }
            kept = args.only.split(",") if args.only else None
            options = {
                n: {**common, **o}
                for n, o in configurations(args.corrections, args.hashes.split(","), varied).items()
                if kept is None or n == "ns" or n.split(" ")[0] in kept
            }
            print(f"{key}: {', '.join(options)}", file=sys.stderr)
            checkpoints = train_alternating(prefix, options, args.epochs, scratch)
            budget = checkpoints["ns"][-1]["seconds"]
            results = {}
            for name, found in checkpoints.items():
                results[name] = summary(found, budget)
                if options[name]["head"] == "lsh":
                    settings = resolved_settings(**options[name])
                    cost = sampling_cost(found[-1]["model"], settings, args.sampling_examples)
                    results[name]["sampling"] = cost
            report["results"][key] = results
    text = table(report)
    publish(text, args.table)
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
