"""Why the Z-loss learned nothing, and the defaults that fixed it: a sweep on a prefix.

The Z-loss standardises the outputs, z = (o - mean) / std, so it ignores the scale of the
hidden vector h: dL/dh ~ 1/|h|, and an SGD step turns h's direction by about lr/|h|^2.
From gensim's initial norm (1/sqrt(3d), 0.058 at d = 100) the first updates throw each
input vector to a norm of tens along its first contexts, where it then hardly moves. This
script trains skip-gram ``--head zloss`` on the first ``--words`` tokens through the
public API (threads 1, seed 1, one run at a time) for each variant, one setting changed
at a time from the earlier defaults or from today's, and prints Google analogy %, WS-353 and SimLex-999
(``Embeddings.evaluate``), the input vectors' median and largest norm after training, and
the mean loss per epoch. Negative sampling and the Taylor softmax run as reference rows.

    python -m benchmarks zloss_scale ../shared/corpora/bench17m.txt.xz --out benchmarks/results/zloss_scale.md
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import embedtrain
from benchmarks.common import scores_of, write_markdown, write_prefix
from embedtrain.heads import resolved_settings

#: gensim's initial norm at d = 100 (uniform in [-1/d, 1/d)): every head's but the Z-loss's.
GENSIM_NORM = resolved_settings(head="ns").init_norm
#: The earlier defaults: gensim's initial norm, no bias feature, a = 0.1, b = 10.
BEFORE = {"init_norm": GENSIM_NORM, "bias_feature": 0.0, "zloss_a": 0.1, "zloss_b": 10.0}
#: Today's defaults (the head's), pinned so that the table outlives a change of them.
NOW = {"init_norm": math.sqrt(3), "bias_feature": 1.0, "zloss_a": 1.0, "zloss_b": 10.0}
#: (label, options): one change at a time, from the earlier defaults, then from today's.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("before: gensim's norm 0.058, no bias, a 0.1, b 10", BEFORE),
    ("init norm 0.58 (10x)", {**BEFORE, "init_norm": 10 * GENSIM_NORM}),
    ("init norm 1.15 (20x)", {**BEFORE, "init_norm": 20 * GENSIM_NORM}),
    ("init norm 1.73 = sqrt 3 (30x)", {**BEFORE, "init_norm": math.sqrt(3)}),
    ("init norm 2.89 (50x)", {**BEFORE, "init_norm": 50 * GENSIM_NORM}),
    ("init norm 5.77 (100x)", {**BEFORE, "init_norm": 100 * GENSIM_NORM}),
    ("sqrt 3, lr 0.0125", {**BEFORE, "init_norm": math.sqrt(3), "lr": 0.0125}),
    ("sqrt 3, lr 0.05", {**BEFORE, "init_norm": math.sqrt(3), "lr": 0.05}),
    ("sqrt 3, bias feature 1", {**BEFORE, "init_norm": math.sqrt(3), "bias_feature": 1.0}),
    ("sqrt 3, bias feature 3", {**BEFORE, "init_norm": math.sqrt(3), "bias_feature": 3.0}),
    ("now: sqrt 3, bias 1, a 1, b 10", NOW),
    ("now, a 0.3", {**NOW, "zloss_a": 0.3}),
    ("now, a 3", {**NOW, "zloss_a": 3.0}),
    ("now, b 5", {**NOW, "zloss_b": 5.0}),
    ("now, b 20", {**NOW, "zloss_b": 20.0}),
    ("now, b 0 (the authors' timing example: a 1, b 0)", {**NOW, "zloss_b": 0.0}),
]
REFERENCES: list[tuple[str, dict[str, Any]]] = [
    ("ns", {"head": "ns"}),
    ("taylor", {"head": "taylor"}),
]


def run(prefix: Path, options: dict[str, Any], epochs: int) -> dict[str, Any]:
    emb = embedtrain.train(
        str(prefix), model="skipgram", epochs=epochs, threads=1, seed=1, progress=False,
        **options,
    )  # fmt: skip
    norms = np.linalg.norm(emb.vectors, axis=1)
    return {
        **scores_of(emb),
        "median_norm": float(np.median(norms)),
        "max_norm": float(norms.max()),
        "losses": [report.mean_loss for report in emb.history],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("--words", type=int, default=2_000_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    title = (
        f"Skip-gram, d = 100, {args.epochs} epochs, the first {args.words:,} tokens of "
        f"{Path(args.corpus).name}, threads 1, seed 1 (`python -m benchmarks zloss_scale`)."
    )
    lines = [
        title,
        "",
        "| run | analogy % | WS-353 | SimLex-999 | input norms: median, max | loss per epoch |",
        "|---|---:|---:|---:|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="embedtrain-zloss-") as scratch:
        prefix = Path(scratch) / "prefix.txt"
        write_prefix(args.corpus, args.words, prefix)
        rows = [(label, {"head": "zloss", **options}) for label, options in VARIANTS]
        for label, options in rows + REFERENCES:
            result = run(prefix, options, args.epochs)
            losses = ", ".join(f"{loss:.3f}" for loss in result["losses"])
            line = (
                f"| {label} | {100 * result['analogy']:.1f} | {result['ws353']:.3f} | "
                f"{result['simlex']:.3f} | {result['median_norm']:.3g}, "
                f"{result['max_norm']:.3g} | {losses} |"
            )
            lines.append(line)
            print(line, flush=True)
    if args.out:
        write_markdown(args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
