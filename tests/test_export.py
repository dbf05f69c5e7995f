import errno

import numpy as np
import pytest
from gensim.models import KeyedVectors

from embedtrain.atomic import atomic_write
from embedtrain.errors import OutputError
from embedtrain.export import save_word2vec

WORDS = ["the", "cat", "naïve", "x"]


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_round_trip_through_gensim(tmp_path, binary):
    vectors = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    path = tmp_path / ("v.bin" if binary else "v.txt")
    save_word2vec(path, WORDS, vectors, binary=binary)
    loaded = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert loaded.index_to_key == WORDS
    np.testing.assert_array_equal(loaded.vectors, vectors)  # exact, text included


def test_output_gets_the_usual_file_mode(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        save_word2vec(tmp_path / "v.txt", WORDS, np.zeros((4, 2), dtype=np.float32), binary=False)
    finally:
        os.umask(mask)
    assert (tmp_path / "v.txt").stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(OutputError, match="No space left"), atomic_write(target) as out:
        out.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_interrupted_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as out:
        out.write(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
