"""Train gensim's Word2Vec as the baseline of compare_gensim.py (one process per run).

Usage: python -m benchmarks.gensim_worker CORPUS_FILE OUT.bin SG HS NEGATIVE MIN_COUNT EPOCHS
WORKERS [INPUT]

INPUT is ``corpus_file`` (the default: gensim's fastest mode, whose per-worker progress
keeps the learning rate higher than the nominal schedule) or ``iterable`` (a
``LineSentence`` stream: the nominal linear schedule, as word2vec.c and embedtrain).
"""

import sys

from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence


def main() -> None:
    corpus, out, sg, hs, negative, min_count, epochs, workers = sys.argv[1:9]
    source = sys.argv[9] if len(sys.argv) > 9 else "corpus_file"
    given = (
        {"corpus_file": corpus} if source == "corpus_file" else {"sentences": LineSentence(corpus)}
    )
    model = Word2Vec(
        **given,
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
