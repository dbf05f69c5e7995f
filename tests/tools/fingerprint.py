"""Did a restructuring change what training computes? Trains every head, engine and model
with ``--threads 1 --seed 1`` (deterministic) on a small corpus and records a hash of the
vectors and the loss of each epoch; two records, from two source trees, are compared.

    PYTHONPATH=/tmp/before python tests/tools/fingerprint.py CORPUS --out before.json
    python tests/tools/fingerprint.py CORPUS --out after.json
    python tests/tools/fingerprint.py --compare before.json after.json

``--compare`` prints, per run, whether the vectors are bit-identical and the largest
relative difference of the epochs' losses, and exits 1 if any vectors differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

#: Every head on the batched engine, the compiled ones on both, the naive exact form and
#: Mem-AOP-GD, for skip-gram and CBOW.
RUNS = [
    {"model": model, **run}
    for model in ("skipgram", "cbow")
    for run in [
        *(
            {"head": head, "engine": engine}
            for head in ("ns", "lsh", "hs")
            for engine in ("compiled", "batched")
        ),
        *(
            {"head": head, "engine": "batched"}
            for head in ("spherical", "squared", "taylor", "zloss", "softmax", "adaptive")
        ),
        {"head": "spherical", "engine": "batched", "exact": "naive"},
        {"head": "softmax", "engine": "batched", "aop_k": 8},
    ]
]
COMMON = {"threads": 1, "seed": 1, "dim": 16, "epochs": 2, "min_count": 2, "device": "cpu"}


def record(corpus: str) -> dict[str, dict]:
    import embedtrain

    records = {}
    for run in RUNS:
        emb = embedtrain.train(corpus, progress=False, **COMMON, **run)
        key = "-".join(str(value) for value in run.values())
        records[key] = {
            "vectors": hashlib.sha256(emb.vectors.tobytes()).hexdigest(),
            "losses": [report.loss for report in emb.history],
        }
        print(key, records[key]["vectors"][:12], flush=True)
    return records


def compare(before: dict[str, dict], after: dict[str, dict]) -> bool:
    identical = True
    for key, old in before.items():
        new = after.get(key)
        if new is None:
            print(f"{key:36} missing")
            identical = False
            continue
        same = old["vectors"] == new["vectors"]
        identical &= same
        drift = max(abs(a - b) / abs(a) for a, b in zip(old["losses"], new["losses"], strict=True))
        state = "bit-identical" if same else "DIFFERENT"
        print(f"{key:36} vectors {state:13} loss max relative difference {drift:.1e}")
    return identical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(path.read_text()) for path in args.compare)
        return 0 if compare(before, after) else 1
    if not args.corpus or not args.out:
        parser.error("give a corpus and --out, or --compare BEFORE AFTER")
    args.out.write_text(json.dumps(record(args.corpus), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
