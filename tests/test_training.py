"""End-to-end training on a generated corpus whose groups share contexts: both engines
and all four sparse configurations must recover the groups as nearest neighbours."""

import numpy as np
import pytest
from conftest import neighbour_purity, train_model

from embedtrain.backend import NumpyOps
from embedtrain.corpus import Corpus
from embedtrain.model import Model
from embedtrain.training import LocalEpochs, encode_corpus, run_training


def run(corpus_path, engine="compiled", **overrides):
    # The generated corpus has ~80 words: every row repeats many times per minibatch, so
    # the batched engine takes small minibatches here (summed gradients, exact SGD).
    options = {"dim": 24, "epochs": 3, "threads": 1, "sample": 0, "batch_size": 16}
    return train_model(corpus_path, engine=engine, device="cpu", **{**options, **overrides})


@pytest.mark.parametrize("model_kind", ["skipgram", "cbow"])
@pytest.mark.parametrize("head", ["ns", "hs"])
@pytest.mark.parametrize("engine", ["compiled", "batched"])
def test_learns_groups(structured_corpus, model_kind, head, engine):
    model, result = run(structured_corpus, engine=engine, model=model_kind, head=head)
    purity = neighbour_purity(model.vocab.words, model.host_vectors())
    assert purity >= 0.9, purity
    losses = [e.mean_loss for e in result.epochs]
    assert losses[-1] < losses[0]
    assert all(e.examples > 0 for e in result.epochs)


def test_batched_engine_learns_as_well_as_compiled(structured_corpus):
    """The stated margin: neighbour purity within 0.05 and final loss within 15%."""
    compiled, r1 = run(structured_corpus, model="skipgram", head="ns", epochs=2)
    batched, r2 = run(structured_corpus, engine="batched", model="skipgram", head="ns", epochs=2)
    p1 = neighbour_purity(compiled.vocab.words, compiled.host_vectors())
    p2 = neighbour_purity(batched.vocab.words, batched.host_vectors())
    assert abs(p1 - p2) <= 0.05
    assert r2.epochs[-1].mean_loss == pytest.approx(r1.epochs[-1].mean_loss, rel=0.15)


def test_deterministic_with_one_thread(structured_corpus):
    a, _ = run(structured_corpus, epochs=1, sample=1e-3)
    b, _ = run(structured_corpus, epochs=1, sample=1e-3)
    c, _ = run(structured_corpus, epochs=1, sample=1e-3, seed=7)
    np.testing.assert_array_equal(a.host_vectors(), b.host_vectors())
    assert not np.array_equal(a.host_vectors(), c.host_vectors())


def test_two_threads_train_too(structured_corpus):
    model, _ = run(structured_corpus, threads=2)
    assert neighbour_purity(model.vocab.words, model.host_vectors()) >= 0.9


def test_save_load_resume_continues_schedule(structured_corpus, tmp_path):
    model, _ = run(structured_corpus, epochs=1)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = Model.load(path, NumpyOps())
    np.testing.assert_array_equal(loaded.host_vectors(), model.host_vectors())
    np.testing.assert_array_equal(
        loaded.head.parameters()["output"], model.head.parameters()["output"]
    )
    assert loaded.vocab.words == model.vocab.words
    assert loaded.words_done == model.words_done == model.vocab.retained_words
    loaded.settings.epochs = 2
    with Corpus(structured_corpus) as corpus:
        encoded = encode_corpus(corpus, loaded.vocab, quiet=True)
        result = run_training(loaded, LocalEpochs(loaded, encoded, "compiled"), quiet=True)
        encoded.close()
    assert [e.epoch for e in result.epochs] == [2]
    assert loaded.words_done == 2 * model.vocab.retained_words


def test_divergence_stops_with_a_message(structured_corpus):
    from embedtrain.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="diverged"):
        run(structured_corpus, engine="batched", lr=1e30, epochs=1)


def test_learning_rate_decays_linearly_over_the_whole_run(monkeypatch, tmp_path):
    """Every job's rates, recorded: the first starts at lr, the last ends at min_lr,
    consecutive jobs meet, and each rate is lr - (lr - min_lr) * words done / all words of
    all epochs (so the second epoch starts half way, not back at lr)."""
    from conftest import structured_sentences, write_corpus

    from embedtrain import training

    seen = []

    class RecordingEngine:
        workers = 1

        def run_job(self, job, lr_start, lr_end, seed):
            seen.append((lr_start, lr_end, int((job >= 0).sum())))
            return 0.0, 1

    monkeypatch.setattr(training, "make_engine", lambda *args: RecordingEngine())
    corpus = write_corpus(tmp_path / "c.txt", structured_sentences(20_000, seed=1))
    lr, min_lr, epochs = 0.05, 0.001, 3
    model, _ = train_model(corpus, epochs=epochs, lr=lr, min_lr=min_lr, threads=1)
    total = sum(words for _, _, words in seen)
    assert total == epochs * model.epoch_words and len(seen) >= 3 * epochs
    done = 0
    for lr_start, lr_end, words in seen:
        assert lr_start == pytest.approx(lr - (lr - min_lr) * done / total, rel=1e-12)
        done += words
        assert lr_end == pytest.approx(lr - (lr - min_lr) * done / total, rel=1e-12)
    assert seen[0][0] == lr and seen[-1][1] == pytest.approx(min_lr, rel=1e-12)
    second_epoch = next(i for i in range(len(seen)) if sum(w for *_, w in seen[:i]) == total // 3)
    assert seen[second_epoch][0] == pytest.approx(lr - (lr - min_lr) / 3, rel=1e-12)


def test_job_seeds_differ_for_every_seed_and_position():
    """No two (seed, job position) pairs share a job seed: seed s at position p + 1 must
    not repeat seed s + 1 at position p, as a plain sum would."""
    from embedtrain.training import job_seed

    seeds = {job_seed(s, p) for s in range(100) for p in (0, 1, 50_000, 100_000)}
    assert len(seeds) == 400
    assert all(0 <= value < 2**64 for value in seeds)


def test_every_callback_sees_the_epoch_even_after_one_stops(structured_corpus):
    calls = []

    def stop(report):
        calls.append(("stop", report.epoch))
        return False

    def watch(report):
        calls.append(("watch", report.epoch))

    _, result = run(structured_corpus, epochs=3, callbacks=[stop, watch])
    assert calls == [("stop", 1), ("watch", 1)]
    assert result.stopped_early and [e.epoch for e in result.epochs] == [1]
