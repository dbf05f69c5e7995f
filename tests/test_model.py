"""Model files: what a damaged or forged file does. Every array is checked against the
header before any kernel sees it, and every failure is a ModelFileError with one line."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import structured_sentences

import embedtrain
from embedtrain.backend import NumpyOps
from embedtrain.heads import resolved_settings
from embedtrain.model import Model

OPTIONS = {"dim": 8, "epochs": 1, "threads": 1, "sample": 0, "min_count": 2, "progress": False}


@pytest.fixture(scope="module", params=["ns", "hs", "squared"])
def saved(request, tmp_path_factory):
    """A real model file of each head kind (the factored head saves V, [Q; U; U^-T])."""
    emb = embedtrain.train(structured_sentences(300), head=request.param, **OPTIONS)
    path = tmp_path_factory.mktemp("model") / "m.npz"
    emb.save(path)
    return path


def arrays_of(path):
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def forged(tmp_path, arrays, **changes):
    """A copy of a model with some arrays replaced (a header dict is re-encoded)."""
    arrays = {**arrays, **changes}
    if isinstance(arrays["header"], dict):
        arrays["header"] = np.array(json.dumps(arrays["header"]))
    path = tmp_path / "forged.npz"
    np.savez(path, **arrays)
    return path


def header_of(arrays):
    return json.loads(str(arrays["header"]))


def check_refused(path, fragment=None):
    with pytest.raises(embedtrain.ModelFileError, match=fragment) as caught:
        Model.load(path, NumpyOps())
    message = str(caught.value)
    assert "\n" not in message and "allow_pickle" not in message
    with pytest.raises(embedtrain.ModelFileError):
        embedtrain.load(path)


def test_a_saved_model_loads(saved):
    model = Model.load(saved, NumpyOps())
    assert np.isfinite(model.host_vectors()).all()


@pytest.mark.parametrize("size", [0, 10, 100, 1000, -100])
def test_truncated_files(saved, tmp_path, size):
    data = saved.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[:size])
    check_refused(path)


def test_flipped_bits_anywhere(saved, tmp_path):
    """Every 97th byte flipped in turn: a CRC, a header or an array breaks, never a crash."""
    data = bytearray(saved.read_bytes())
    path = tmp_path / "flipped.npz"
    survived = 0
    for position in range(0, len(data), max(len(data) // 40, 1)):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        path.write_bytes(bytes(flipped))
        try:
            Model.load(path, NumpyOps())
            survived += 1  # e.g. a flipped byte in a zip comment or padding
        except embedtrain.ModelFileError:
            pass
    assert survived < 40


def test_header_without_settings_or_with_bad_ones(saved, tmp_path):
    arrays = arrays_of(saved)
    header = header_of(arrays)
    check_refused(forged(tmp_path, arrays, header={**header, "settings": None}))
    del header["settings"]
    check_refused(forged(tmp_path, arrays, header=header), "settings")
    header = header_of(arrays)
    header["settings"]["dim"] = -3
    check_refused(forged(tmp_path, arrays, header=header), "dim")


@pytest.mark.parametrize(
    "name,change",
    [
        ("vectors", lambda a: a[:-1]),  # fewer rows than words: the abort of the report
        ("vectors", lambda a: a[:, :-1]),  # a column-count mismatch trained silently
        ("vectors", lambda a: a.astype(object).astype(str)),
        ("vectors", lambda a: np.where(a == a.flat[0], np.nan, a)),
        ("counts", lambda a: -a),
        ("counts", lambda a: a[:-1]),
        ("counts", lambda a: a.astype(np.float64)),
        ("head.output", lambda a: a[:3]),  # a short output matrix segfaulted
        ("head.basis", lambda a: a[:3]),
        ("head.matrices", lambda a: a * np.inf),
        ("head.upkeep", lambda a: a[:1]),
    ],
)
def test_arrays_that_do_not_match_the_header(saved, tmp_path, name, change):
    arrays = arrays_of(saved)
    if name not in arrays:
        pytest.skip(f"this head saves no {name}")
    check_refused(forged(tmp_path, arrays, **{name: change(arrays[name])}), "damaged")


def test_missing_and_extra_arrays(saved, tmp_path):
    arrays = arrays_of(saved)
    head_arrays = [name for name in arrays if name.startswith("head.")]
    reduced = {k: v for k, v in arrays.items() if k != head_arrays[0]}
    path = tmp_path / "reduced.npz"
    np.savez(path, **reduced)
    check_refused(path, "head arrays")
    check_refused(forged(tmp_path, arrays, **{"head.extra": np.zeros(3)}), "head arrays")
    reduced = {k: v for k, v in arrays.items() if k != "words"}
    np.savez(path, **reduced)
    check_refused(path, "no 'words'")


def test_not_a_model_at_all(tmp_path):
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    check_refused(single, "not a model saved by embedtrain")
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("readme.txt", "hello")
    check_refused(archive, "not an embedtrain model")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, header=np.array([{"a": 1}], dtype=object))
    check_refused(pickled, "not an embedtrain model")


@pytest.mark.parametrize(
    "options,width",
    [
        ({"head": "ns"}, 1 / 50),  # gensim 4's initialisation
        ({"head": "taylor"}, 1 / 50),
        ({"head": "zloss"}, 3 / 50**0.5),  # scale-free in h: an expected norm of sqrt(3)
        ({"head": "ns", "init_norm": 2.0}, 2.0 * (3 / 50) ** 0.5),
    ],
)
def test_fresh_input_vectors_are_uniform_in_the_heads_range(options, width):
    """Uniform in [-w, w): 50,000 draws at d = 50 reach within 1% of both ends, and the
    mean squared norm is d w^2 / 3 (within 2%, 5 standard errors)."""
    from embedtrain.vocab import Vocabulary

    counts = np.full(1000, 5)
    vocab = Vocabulary([f"w{i}" for i in range(1000)], counts, 5000)
    settings = resolved_settings(dim=50, **options)
    vectors = Model(vocab, settings, NumpyOps()).host_vectors()
    assert vectors.min() >= -width and vectors.max() < width
    assert vectors.min() < -0.99 * width and vectors.max() > 0.99 * width
    squared_norm = (vectors.astype(np.float64) ** 2).sum(axis=1).mean()
    assert squared_norm == pytest.approx(50 * width**2 / 3, rel=0.02)


def test_a_finished_model_resumed_with_the_same_epochs_is_unchanged(tmp_path):
    sentences = structured_sentences(300)
    emb = embedtrain.train(sentences, head="ns", **{**OPTIONS, "epochs": 2})
    path = tmp_path / "m.npz"
    emb.save(path)
    again = embedtrain.train(sentences, resume=path, epochs=2, progress=False)
    np.testing.assert_array_equal(again.vectors, emb.vectors)
    assert [r.epoch for r in again.history] == [1, 2]


def test_a_forged_history_is_refused(saved, tmp_path):
    arrays = arrays_of(saved)
    header = header_of(arrays)
    check_refused(forged(tmp_path, arrays, header={**header, "history": [1]}))


def test_a_format_2_factored_model_continues_exactly(tmp_path):
    """Format 2 saved the factored state as [Q; U; U^-T]; format 3 adds the shared row r
    and the column sums c = W^T 1. An old file loads with r = 0 and c computed from V U,
    and resuming it trains exactly what resuming the format-3 file does."""
    sentences = structured_sentences(300)
    options = {**OPTIONS, "epochs": 2, "head": "squared", "model": "skipgram"}
    stopped = embedtrain.train(sentences, callbacks=[lambda report: False], **options)
    current = tmp_path / "current.npz"
    stopped.save(current)
    arrays = arrays_of(current)
    matrices = arrays["head.matrices"]
    dim = matrices.shape[1]
    assert not matrices[2 * dim].any()  # squared error never moves r (dL/ds = 0)
    old = np.concatenate([matrices[: 2 * dim], matrices[2 * dim + 2 :]])
    header = {**header_of(arrays), "format": 2}
    legacy = forged(tmp_path, arrays, header=header, **{"head.matrices": old})
    upgraded = Model.load(legacy, NumpyOps()).head.state.matrices
    unchanged = np.arange(3 * dim + 2) != 2 * dim + 1
    np.testing.assert_array_equal(upgraded[unchanged], matrices[unchanged])
    # c recomputed against c tracked through float32 products: close, not equal
    np.testing.assert_allclose(upgraded[2 * dim + 1], matrices[2 * dim + 1], rtol=1e-4)
    resumed_old = embedtrain.train(sentences, resume=legacy, progress=False)
    resumed_new = embedtrain.train(sentences, resume=current, progress=False)
    np.testing.assert_allclose(resumed_old.vectors, resumed_new.vectors, rtol=1e-5, atol=1e-6)
    assert len(resumed_old.history) == 2
