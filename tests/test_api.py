"""The Python API: embedtrain.train / load and Embeddings, checked against gensim's own
KeyedVectors, against the command line, and against itself (same options, same vectors)."""

from __future__ import annotations

import logging
import os
import signal
import sys

import numpy as np
import pytest
from conftest import GROUPS, structured_sentences, write_corpus

import embedtrain
from embedtrain.backend import CupyOps, NumpyOps
from embedtrain.cli import main
from embedtrain.engines import choose_engine
from embedtrain.heads import resolved_settings

#: Small, fast and deterministic: one thread, the compiled engine, the generated corpus.
FAST = {"dim": 16, "epochs": 2, "threads": 1, "seed": 1, "sample": 0, "min_count": 2}
SENTENCES = structured_sentences(1500, seed=3)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("api") / "c.txt", SENTENCES)


@pytest.fixture(scope="module")
def trained(corpus_file):
    return embedtrain.train(corpus_file, progress=False, model="skipgram", **FAST)


def test_file_sentences_and_generator_give_identical_vectors(corpus_file, trained):
    """The same text as a file, a list of token lists and a one-shot generator (spooled):
    the same vocabulary, the same stream of word ids, so the same vectors, bit for bit."""
    from_list = embedtrain.train(SENTENCES, progress=False, model="skipgram", **FAST)
    generator = (list(s) for s in SENTENCES)
    from_generator = embedtrain.train(generator, progress=False, model="skipgram", **FAST)
    for other in (from_list, from_generator):
        assert other.words == trained.words
        np.testing.assert_array_equal(other.vectors, trained.vectors)


def test_a_list_of_paths_is_one_corpus(tmp_path, corpus_file):
    half = len(SENTENCES) // 2
    first = write_corpus(tmp_path / "a.txt", SENTENCES[:half])
    second = write_corpus(tmp_path / "b.txt", SENTENCES[half:])
    joined = embedtrain.train([first, second], progress=False, model="skipgram", **FAST)
    whole = embedtrain.train(str(corpus_file), progress=False, model="skipgram", **FAST)
    np.testing.assert_array_equal(joined.vectors, whole.vectors)


def test_cli_and_api_give_identical_vectors(corpus_file, trained, tmp_path):
    out = tmp_path / "v.txt"
    args = ["train", str(corpus_file), "-o", str(out), "--quiet", "--model", "skipgram"]
    for name, value in FAST.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    assert main(args) == 0
    loaded = embedtrain.load(out)  # %.9g text round-trips float32 exactly
    assert loaded.words == trained.words
    np.testing.assert_array_equal(loaded.vectors, trained.vectors)


def test_embeddings_members(trained):
    words = trained.words
    assert len(trained) == len(words) and trained.vectors.shape == (len(words), FAST["dim"])
    assert trained.vectors.dtype == np.float32
    counts = trained._model.vocab.counts
    assert (np.diff(counts) <= 0).all()  # frequency order
    assert "cat" in trained and "no-such-word" not in trained
    np.testing.assert_array_equal(trained["cat"], trained.vectors[words.index("cat")])
    with pytest.raises(embedtrain.UnknownWord, match="no-such-word"):
        trained["no-such-word"]
    with pytest.raises(KeyError):  # an UnknownWord is a KeyError, as a dict's
        trained.most_similar("no-such-word")
    assert trained.settings.model == "skipgram" and trained.settings.dim == FAST["dim"]
    assert [r.epoch for r in trained.history] == [1, 2]
    assert all(r.words_per_second > 0 and r.mean_loss > 0 for r in trained.history)
    assert trained.output_vectors.shape == trained.vectors.shape  # ns: syn1neg


def test_neighbours_and_analogies_agree_with_gensim(trained):
    """gensim's KeyedVectors of the same vectors is the oracle for both queries."""
    gensim = trained.keyed_vectors()
    assert list(gensim.index_to_key) == trained.words
    ours = trained.most_similar("cat", n=5)
    theirs = gensim.most_similar("cat", topn=5)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5)
    assert trained.most_similar(trained["cat"], n=1)[0][0] == "cat"  # a vector: itself first
    ours = trained.analogy("cat", "dog", "red", n=5)
    theirs = gensim.most_similar(positive=["dog", "red"], negative=["cat"], topn=5)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5)


def test_neighbours_recover_the_generated_groups(trained):
    hits = [w in GROUPS["animal"] for w, _ in trained.most_similar("cat", n=3)]
    assert sum(hits) >= 2


def test_evaluate_reports_the_cli_figures(trained, tmp_path, capsys):
    """The same figures as ``embedtrain eval --json`` on the saved vectors."""
    import json

    results = trained.evaluate()
    assert set(results) == {"questions-words.txt", "wordsim353.tsv", "simlex999.txt"}
    assert results["questions-words.txt"]["task"] == "analogy"
    assert results["wordsim353.tsv"]["task"] == "similarity"
    path = tmp_path / "v.txt"
    trained.save_vectors(path)
    capsys.readouterr()
    assert main(["eval", str(path), "--json"]) == 0
    printed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    for name, row in results.items():
        for key in ("score", "coverage"):
            assert row[key] == pytest.approx(printed[name][key], nan_ok=True), (name, key)


@pytest.mark.parametrize("name", ["v.txt", "v.bin"])
def test_save_vectors_loads_in_gensim(trained, tmp_path, name):
    from gensim.models import KeyedVectors

    path = tmp_path / name
    trained.save_vectors(path)
    loaded = KeyedVectors.load_word2vec_format(str(path), binary=name.endswith(".bin"))
    assert list(loaded.index_to_key) == trained.words
    np.testing.assert_array_equal(loaded.vectors, trained.vectors)
    forced = tmp_path / "forced.txt"
    trained.save_vectors(forced, binary=True)  # the flag wins over the name
    binary = KeyedVectors.load_word2vec_format(str(forced), binary=True)
    np.testing.assert_array_equal(binary.vectors, trained.vectors)


def test_save_load_resume(corpus_file, trained, tmp_path):
    """A model saved after 2 of 3 epochs (a callback stopped it) and resumed equals one
    uninterrupted 3-epoch run: schedule, seeds and parameters all continue (one thread:
    the run is deterministic). Extending a finished run adds epochs to its history."""
    options = {**FAST, "epochs": 3, "model": "skipgram"}
    stopped = embedtrain.train(
        corpus_file, progress=False, callbacks=[lambda r: r.epoch < 2], **options
    )
    path = tmp_path / "m.npz"
    stopped.save(path)
    loaded = embedtrain.load(path)
    np.testing.assert_array_equal(loaded.vectors, stopped.vectors)
    np.testing.assert_array_equal(loaded.output_vectors, stopped.output_vectors)
    assert [r.epoch for r in loaded.history] == [1, 2]
    resumed = embedtrain.train(corpus_file, progress=False, resume=path)
    whole = embedtrain.train(corpus_file, progress=False, **options)
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    np.testing.assert_array_equal(resumed.vectors, whole.vectors)
    trained.save(path)
    extended = embedtrain.train(corpus_file, progress=False, resume=path, epochs=3)
    assert [r.epoch for r in extended.history] == [1, 2, 3]
    assert extended.settings.epochs == 3


def test_resume_keeps_the_saved_settings(corpus_file, trained, tmp_path):
    path = tmp_path / "m.npz"
    trained.save(path)
    with pytest.raises(embedtrain.SettingsError, match="dim"):
        embedtrain.train(corpus_file, progress=False, resume=path, dim=50)


def test_word2vec_vectors_are_not_resumable(corpus_file, trained, tmp_path):
    path = tmp_path / "v.txt"
    trained.save_vectors(path)
    loaded = embedtrain.load(path)
    assert loaded.settings is None and loaded.output_vectors is None and loaded.history == []
    with pytest.raises(embedtrain.ModelFileError, match="not a model"):
        loaded.save(tmp_path / "m.npz")
    with pytest.raises(embedtrain.ModelFileError, match="cannot be resumed"):
        embedtrain.train(corpus_file, progress=False, resume=path)


def test_hierarchical_softmax_has_no_output_vectors(corpus_file):
    emb = embedtrain.train(corpus_file, progress=False, head="hs", **FAST)
    assert emb.output_vectors is None


@pytest.mark.parametrize("how", ["returns False", "raises StopTraining"])
def test_a_callback_stops_training_early(corpus_file, how):
    seen = []

    def stop_after_first(report):
        seen.append(report.epoch)
        if how == "raises StopTraining":
            raise embedtrain.StopTraining
        return False

    emb = embedtrain.train(
        corpus_file, progress=False, callbacks=[stop_after_first], **{**FAST, "epochs": 4}
    )
    assert seen == [1] and [r.epoch for r in emb.history] == [1]
    assert emb._model.words_done == emb.history[0].words


def test_a_signal_interrupts_with_the_model_so_far(corpus_file, tmp_path):
    """SIGTERM after epoch 1: TrainingInterrupted carries the model after epoch 1, and
    resuming it gives the vectors of an uninterrupted run."""

    def terminate(report):
        if report.epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    options = {**FAST, "epochs": 3}
    with pytest.raises(embedtrain.TrainingInterrupted) as caught:
        embedtrain.train(corpus_file, progress=False, callbacks=[terminate], **options)
    partial = caught.value.embeddings
    assert [r.epoch for r in partial.history] == [1]
    path = tmp_path / "partial.npz"
    partial.save(path)
    resumed = embedtrain.train(corpus_file, progress=False, resume=path)
    whole = embedtrain.train(corpus_file, progress=False, **options)
    np.testing.assert_array_equal(resumed.vectors, whole.vectors)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


@pytest.mark.parametrize(
    "corpus,options,error,fragment",
    [
        ("no/such/file.txt", {}, embedtrain.CorpusError, "does not exist"),
        ([["a", "b"]], {"dim": 0}, embedtrain.SettingsError, "--dim must be positive"),
        ([["a"]], {"lr": 0.01, "min_lr": 0.02}, embedtrain.SettingsError, "--min-lr"),
        ([["a"]], {"ns_exponent": float("nan")}, embedtrain.SettingsError, "finite"),
        ([["a", "b"]], {"dim": "ten"}, embedtrain.SettingsError, "integer"),
        ([["a", "b"]], {"dimension": 5}, embedtrain.SettingsError, "unknown option"),
        ([["a", "b"]], {"head": "nope"}, embedtrain.SettingsError, "--head"),
        ([["a", "b"]], {"min_count": 5}, embedtrain.CorpusError, "vocabulary is empty"),
        (["the cat sat", "on the mat"], {}, embedtrain.CorpusError, "does not exist"),
        ([["a", "b"], "c d"], {"min_count": 1}, embedtrain.CorpusError, "is a string"),
        ([["a", 3]], {"min_count": 1}, embedtrain.CorpusError, "token of type int"),
        ([], {}, embedtrain.CorpusError, "empty"),
        (42, {}, embedtrain.CorpusError, "not a int"),
        ([["a"]], {"engine": "compiled", "head": "squared"}, embedtrain.SettingsError, "compiled"),
        ([["a"]], {"bias_feature": 1.0}, embedtrain.SettingsError, "the ns head has no output"),
        ([["a"]], {"head": "taylor", "bias_feature": -1}, embedtrain.SettingsError, "in 0..1000"),
        ([["a"]], {"init_norm": 0.0}, embedtrain.SettingsError, "--init-norm must be positive"),
        ([["a"]], {"init_norm": float("inf")}, embedtrain.SettingsError, "finite"),
    ],
)
def test_bad_input_raises_documented_exceptions(corpus, options, error, fragment):
    with pytest.raises(error, match=fragment) as caught:
        embedtrain.train(corpus, progress=False, **options)
    assert isinstance(caught.value, embedtrain.EmbedtrainError)


def test_errors_in_load(tmp_path):
    with pytest.raises(embedtrain.ModelFileError, match="does not exist"):
        embedtrain.load(tmp_path / "nothing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(embedtrain.ModelFileError):
        embedtrain.load(garbage)


def test_library_never_prints_without_progress(corpus_file, capsys):
    embedtrain.train(corpus_file, progress=False, **FAST)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# --- the engine rule: one function decides, every case -------------------------------


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)


@pytest.mark.parametrize(
    "engine,device,head,chosen",
    [
        ("auto", "cpu", "ns", "compiled"),
        ("auto", "cpu", "hs", "compiled"),
        ("auto", "auto", "ns", "compiled"),  # no GPU here: the CPU
        ("auto", "cpu", "squared", "batched"),
        ("auto", "cpu", "softmax", "batched"),
        ("compiled", "auto", "ns", "compiled"),
        ("batched", "cpu", "ns", "batched"),
        ("batched", "auto", "hs", "batched"),
    ],
)
def test_engine_rule_on_the_cpu(no_cupy, engine, device, head, chosen):
    name, ops = choose_engine(resolved_settings(engine=engine, device=device, head=head))
    assert name == chosen and isinstance(ops, NumpyOps)


def test_engine_rule_with_a_gpu(monkeypatch):
    from test_backend import fake_cupy

    cupy, cupyx = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    for engine, device in [("auto", "auto"), ("auto", "gpu"), ("batched", "auto")]:
        name, ops = choose_engine(resolved_settings(engine=engine, device=device, head="ns"))
        assert name == "batched" and isinstance(ops, CupyOps)
    name, ops = choose_engine(resolved_settings(engine="compiled", device="auto", head="ns"))
    assert name == "compiled" and isinstance(ops, NumpyOps)
    with pytest.raises(embedtrain.SettingsError, match="runs on the CPU"):
        choose_engine(resolved_settings(engine="compiled", device="gpu", head="ns"))
    # A cluster's workers run the compiled engine on their CPU even where a GPU is usable.
    name, ops = choose_engine(resolved_settings(cluster="ray", head="ns"))
    assert name == "compiled" and isinstance(ops, NumpyOps)
    for refused in [{"engine": "batched"}, {"device": "gpu"}]:
        with pytest.raises(embedtrain.SettingsError, match="compiled engine on the CPU"):
            choose_engine(resolved_settings(cluster="ray", head="ns", **refused))


def test_gpu_fallback_is_logged_not_printed(no_cupy, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="embedtrain"):
        choose_engine(resolved_settings(device="auto"))
    assert "training on the CPU" in caplog.text
    assert capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory):
    """About 4 jobs of 50,000 words per epoch, so a run can stop inside an epoch."""
    sentences = structured_sentences(20_000, seed=5)
    return write_corpus(tmp_path_factory.mktemp("long") / "long.txt", sentences)


def stop_inside_the_first_epoch(monkeypatch):
    """Stop as a signal would, deterministically: the flag rises while the second job is
    handed out, so the run stops after two jobs of epoch 1."""
    import contextlib
    import threading

    from embedtrain import training

    flag = threading.Event()
    handed_out = []
    real_job_words = training.job_words

    def counting(job):
        handed_out.append(job.size)
        if len(handed_out) == 2:
            flag.set()
        return real_job_words(job)

    monkeypatch.setattr(training, "job_words", counting)
    monkeypatch.setattr(training, "signals_set_flag", lambda: contextlib.nullcontext(flag))


@pytest.mark.parametrize(
    "options",
    [
        {"head": "ns", "engine": "compiled"},
        {"head": "hs", "engine": "compiled", "model": "cbow"},
        {"head": "ns", "engine": "batched", "batch_size": 16},
        {"head": "squared", "batch_size": 16},
        {"head": "spherical", "batch_size": 16, "model": "cbow"},
        {"head": "softmax", "batch_size": 16},
        {"head": "taylor", "batch_size": 16},
        {"head": "zloss", "batch_size": 16, "model": "cbow"},
        {"head": "adaptive", "batch_size": 16, "cutoffs": "5,20"},
        {"head": "softmax", "batch_size": 16, "aop_k": 4, "aop_policy": "weighted"},
        {
            "head": "adaptive",
            "batch_size": 16,
            "cutoffs": "5,20",
            "aop_k": 3,
            "aop_policy": "random",
            "aop_memory": "exact",
        },
        {"head": "lsh", "engine": "compiled", "lsh_rehash": 30_000},
        {"head": "lsh", "engine": "batched", "batch_size": 16, "lsh_mode": "label"},
    ],
    ids=[
        "ns-compiled",
        "hs-cbow-compiled",
        "ns-batched",
        "squared",
        "spherical-cbow",
        "softmax",
        "taylor",
        "zloss-cbow",
        "adaptive",
        "softmax-aop-factors",
        "adaptive-aop-exact",
        "lsh-compiled",
        "lsh-label-batched",
    ],
)
def test_resume_inside_an_epoch_is_exact(monkeypatch, long_corpus, tmp_path, options):
    """Interrupted after 2 jobs of epoch 1, saved, resumed: bit-identical to the straight
    run (one thread; the job seeds follow the job's position, not a job counter)."""
    settings = {**FAST, "epochs": 2, "device": "cpu", "model": "skipgram", **options}
    with monkeypatch.context() as patch:
        stop_inside_the_first_epoch(patch)
        with pytest.raises(embedtrain.TrainingInterrupted) as caught:
            embedtrain.train(long_corpus, progress=False, **settings)
    partial = caught.value.embeddings
    epoch_words = partial._model.words_done
    assert 0 < epoch_words and len(partial.history) == 1
    path = tmp_path / "partial.npz"
    partial.save(path)
    resumed = embedtrain.train(long_corpus, progress=False, resume=path)
    straight = embedtrain.train(long_corpus, progress=False, **settings)
    np.testing.assert_array_equal(resumed.vectors, straight.vectors)
    if straight.output_vectors is not None:
        np.testing.assert_array_equal(resumed.output_vectors, straight.output_vectors)


def test_any_seed_trains(corpus_file):
    """Seeds far beyond 32 bits (word2vec's and gensim's range) are valid everywhere."""
    for seed in (2**31, 18_500_000, 2**63 + 5):
        emb = embedtrain.train(corpus_file, progress=False, **{**FAST, "seed": seed})
        assert np.isfinite(emb.vectors).all()


def test_resume_refuses_fewer_epochs_and_another_corpus(corpus_file, trained, tmp_path):
    path = tmp_path / "m.npz"
    trained.save(path)  # 2 epochs done
    with pytest.raises(embedtrain.SettingsError, match="at least 2"):
        embedtrain.train(corpus_file, progress=False, resume=path, epochs=1)
    other = write_corpus(tmp_path / "other.txt", SENTENCES[: len(SENTENCES) // 2])
    with pytest.raises(embedtrain.CorpusError, match="same corpus"):
        embedtrain.train(other, progress=False, resume=path, epochs=3)


def test_neighbour_counts_are_checked():
    emb = embedtrain.Embeddings(["a", "b", "c"], np.eye(3, dtype=np.float32))
    assert [w for w, _ in emb.most_similar("a", n=5)] == ["b", "c"]  # fewer than asked
    with pytest.raises(embedtrain.SettingsError, match="positive"):
        emb.most_similar("a", n=0)
    with pytest.raises(ValueError, match="shape"):
        emb.most_similar(np.ones(4))


def test_replaced_bytes_are_reported_once(tmp_path, caplog):
    """Three stray bytes in real text (well under the share that means binary): trained,
    and one warning counts them."""
    path = tmp_path / "c.txt"
    text = "".join(" ".join(s) + "\n" for s in SENTENCES).encode()
    path.write_bytes(text[:5000] + b"\xff\xfe\xfd" + text[5000:])
    with caplog.at_level(logging.WARNING, logger="embedtrain"):
        embedtrain.train(path, progress=False, **FAST)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["3 undecodable bytes in the corpus were replaced"]


def test_a_zero_vector_has_similarity_zero_not_nan():
    emb = embedtrain.Embeddings(["z", "a", "b"], np.array([[0, 0], [1, 0], [0, 1]], np.float32))
    answers = dict(emb.most_similar("a", n=2))
    assert answers == {"z": 0.0, "b": 0.0}
    assert all(np.isfinite(s) for _, s in emb.most_similar("z", n=2))


def test_a_signal_during_the_last_job_is_not_an_interruption(monkeypatch, long_corpus):
    """The stop flag rises while the run's very last job is handed out: that job finishes
    the run, so it returns normally (the CLI then writes every output)."""
    import contextlib
    import threading

    from embedtrain import training

    settings = {**FAST, "epochs": 1, "device": "cpu"}
    counted = []
    real_job_words = training.job_words

    def count(job):
        counted.append(job.size)
        return real_job_words(job)

    with monkeypatch.context() as patch:
        patch.setattr(training, "job_words", count)
        embedtrain.train(long_corpus, progress=False, **settings)
    jobs = len(counted)
    flag = threading.Event()
    handed_out = []

    def last_one_signals(job):
        handed_out.append(job.size)
        if len(handed_out) == jobs:
            flag.set()
        return real_job_words(job)

    monkeypatch.setattr(training, "job_words", last_one_signals)
    monkeypatch.setattr(training, "signals_set_flag", lambda: contextlib.nullcontext(flag))
    emb = embedtrain.train(long_corpus, progress=False, **settings)
    assert flag.is_set() and [r.epoch for r in emb.history] == [1]


def test_log_probabilities_are_the_heads_distribution_or_none(structured_corpus, tmp_path):
    """Held-out log-loss through the public API: each row a distribution over the words,
    the head's own (the model's log_probabilities); None where the head defines none, and
    for word2vec vectors, which carry no head."""
    options = {"dim": 8, "epochs": 1, "threads": 1, "progress": False}
    emb = embedtrain.train(str(structured_corpus), head="softmax", **options)
    log_p = emb.log_probabilities([0, 3, 5])
    assert log_p.shape == (3, len(emb)) and log_p.dtype == np.float64
    np.testing.assert_allclose(np.exp(log_p).sum(axis=1), 1.0, atol=1e-12)
    hidden = emb.vectors[[0, 3, 5]].astype(np.float64)
    expected = emb.model.head.log_probabilities(hidden)
    np.testing.assert_allclose(log_p, expected, rtol=1e-12)
    assert (
        embedtrain.train(str(structured_corpus), head="ns", **options).log_probabilities([0])
        is None
    )
    emb.save_vectors(tmp_path / "v.txt")
    loaded = embedtrain.load(tmp_path / "v.txt")
    assert loaded.model is None and loaded.log_probabilities([0]) is None
