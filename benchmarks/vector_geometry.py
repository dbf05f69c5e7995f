"""Why do some vectors carry no similarity signal? Checks on one exported vector file.

Prints, for WordSim-353 and SimLex-999 (gensim's copies): Spearman correlation of the human
scores with cos and with |cos| (a sign-blind similarity: does a loss that is even in the
output leave related words pointing opposite ways?), the mean |cos| of the test pairs, the
leading singular values of the centred vectors (relative to the first: has the model
collapsed onto a few directions?), and the correlations after removing the top 1-10
principal directions.

    python -m benchmarks vector_geometry vectors.txt
"""

from __future__ import annotations

import argparse

import numpy as np
from gensim.models import KeyedVectors
from gensim.test.utils import datapath
from scipy.stats import spearmanr

SUITES = {"WS-353": "wordsim353.tsv", "SimLex-999": "simlex999.txt"}


def pairs_of(suite: str, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first word rows, second word rows, human scores) for the pairs in the vocabulary."""
    first, second, human = [], [], []
    with open(datapath(suite), encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                continue
            a, b, score = line.rstrip("\n").split("\t")[:3]
            a, b = a.lower(), b.lower()
            if a in index and b in index:
                first.append(index[a])
                second.append(index[b])
                human.append(float(score))
    return np.array(first), np.array(second), np.array(human)


def correlations(unit: np.ndarray, index: dict[str, int]) -> dict[str, tuple[float, float, float]]:
    """Per suite: (Spearman with cos, Spearman with |cos|, mean |cos|) for unit vectors."""
    result = {}
    for name, suite in SUITES.items():
        first, second, human = pairs_of(suite, index)
        cosine = (unit[first] * unit[second]).sum(axis=1)
        result[name] = (
            spearmanr(human, cosine)[0],
            spearmanr(human, np.abs(cosine))[0],
            float(np.abs(cosine).mean()),
        )
    return result


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vectors", help="word2vec text (.txt) or binary (.bin) vectors")
    args = parser.parse_args()
    vectors = KeyedVectors.load_word2vec_format(args.vectors, binary=args.vectors.endswith(".bin"))
    index = {word: row for row, word in enumerate(vectors.index_to_key)}
    raw = vectors.vectors.astype(np.float64)

    for name, (cos, abs_cos, mean_abs) in correlations(unit_rows(raw), index).items():
        print(f"{name}: Spearman cos {cos:.3f}, |cos| {abs_cos:.3f}; mean |cos| {mean_abs:.3f}")
    centred = raw - raw.mean(axis=0)
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    print("singular values / first:", " ".join(f"{v:.3f}" for v in singular[:6] / singular[0]))
    for top in (1, 2, 3, 5, 10):
        kept = centred - (centred @ directions[:top].T) @ directions[:top]
        scores = correlations(unit_rows(kept), index)
        line = "; ".join(f"{n} cos {c:.3f} |cos| {a:.3f}" for n, (c, a, _) in scores.items())
        print(f"top {top} directions removed: {line}")


if __name__ == "__main__":
    main()
