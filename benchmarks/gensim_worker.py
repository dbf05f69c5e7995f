"""Train gensim's Word2Vec as the baseline of compare_gensim.py (one process per run).

Usage: python -m benchmarks.gensim_worker CORPUS_FILE OUT.bin SG HS NEGATIVE MIN_COUNT EPOCHS WORKERS
"""

import sys

from gensim.models import Word2Vec


def main() -> None:
    corpus, out, sg, hs, negative, min_count, epochs, workers = sys.argv[1:9]
    model = Word2Vec(
        corpus_file=corpus,
        vector_size=100,
        window=5,
        sample=1e-3,
        sg=int(sg),
        hs=int(hs),
        negative=int(negative),
        min_count=int(min_count),
        epochs=int(epochs),
        workers=int(workers),
        seed=1,
    )
    model.wv.save_word2vec_format(out, binary=True)


if __name__ == "__main__":
    main()
