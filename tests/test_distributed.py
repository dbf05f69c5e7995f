"""Distributed training without Ray: the merge rule, the round protocol and whole runs on
an in-process fake cluster (the workers are objects; a lost one is rebuilt as Ray would)."""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import pytest
from conftest import neighbour_purity, structured_sentences, train_model, write_corpus
from in_process_cluster import InProcessCluster

from embedtrain.backend import NumpyOps
from embedtrain.corpus import Corpus
from embedtrain.distributed import (
    ClusterEpochs,
    ClusterStats,
    RoundPlan,
    RowBlock,
    ShardSentences,
    ShardWorker,
    WorkerLost,
    build_vocabulary_on,
    job_rates,
    merge_deltas,
    parameter_arrays,
    row_delta,
)
from embedtrain.errors import SettingsError
from embedtrain.heads import resolved_settings
from embedtrain.model import Model
from embedtrain.settings import Settings
from embedtrain.training import run_training
from embedtrain.vocab import build_vocabulary

FAST = {"dim": 20, "epochs": 3, "min_count": 1, "sample": 0.0, "threads": 1, "seed": 3}


class FakeCluster(InProcessCluster):
    """The workers in this process (the tests' InProcessCluster); ``lose`` makes worker
    ``index`` die during its ``call``-th train_round: it is rebuilt from its arguments (a
    restart) and the call raises WorkerLost, as the Ray layer does."""

    def __init__(self, files: list[str], settings: Settings) -> None:
        super().__init__(files, settings)
        self.rounds = [0] * self.size
        self.losses: dict[int, int] = {}

    def lose(self, index: int, call: int) -> None:
        self.losses[index] = call

    def _call(self, index: int, method: str, arguments: tuple):
        if method == "train_round":
            self.rounds[index] += 1
            if self.losses.get(index) == self.rounds[index]:
                self.workers[index] = ShardWorker(*self.arguments[index])
                raise WorkerLost(index, "killed by the test")
        return super()._call(index, method, arguments)


def fake_run(corpus, cluster_setup=None, **options):
    """(model, result, stats, cluster) of a run on a FakeCluster, as train_on_cluster."""
    settings = resolved_settings(cluster="ray", **options)
    cluster = FakeCluster([str(corpus)], settings)
    if cluster_setup:
        cluster_setup(cluster)
    vocab = build_vocabulary_on(cluster, settings, str(corpus), quiet=True)
    model = Model(vocab, settings, NumpyOps())
    stats = ClusterStats()
    result = run_training(model, ClusterEpochs(cluster, model, stats), quiet=True)
    return model, result, stats, cluster


def merge_reference(master: np.ndarray, deltas: list[dict[int, np.ndarray]]) -> np.ndarray:
    """new = old + sum_i delta_i / n per row, in float64, row by row."""
    new = master.astype(np.float64)
    for row in range(master.shape[0]):
        holding = [d[row] for d in deltas if row in d]
        if holding:
            new[row] += sum(holding) / len(holding)
    return new


def test_merge_rule_divides_each_row_by_the_workers_that_changed_it():
    rng = np.random.default_rng(0)
    master = rng.normal(size=(8, 3)).astype(np.float32)
    # row 0-1: all three workers (a dense prefix); 3: two; 5, 7: one each; 2, 4, 6: none
    touched = [[0, 1, 3, 5], [0, 1, 3], [0, 1, 7]]
    deltas = [{r: rng.normal(size=3) for r in rows} for rows in touched]
    blocks = [
        RowBlock.of(np.array(sorted(d)), np.stack([d[r] for r in sorted(d)]).astype(np.float32))
        for d in deltas
    ]
    expected = merge_reference(
        master, [{r: v.astype(np.float32) for r, v in d.items()} for d in deltas]
    )
    update = merge_deltas(master, blocks)
    np.testing.assert_allclose(master, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(update.row_ids(), [0, 1, 3, 5, 7])
    np.testing.assert_array_equal(update.row_values(), master[[0, 1, 3, 5, 7]])
    assert update.prefix.shape == (2, 3)  # rows 0, 1 go dense, without row numbers
    untouched = [2, 4, 6]
    np.testing.assert_array_equal(master[untouched], expected[untouched].astype(np.float32))


def test_one_worker_alone_gets_its_whole_delta_and_none_merges_nothing():
    master = np.zeros((4, 2), dtype=np.float32)
    block = RowBlock.of(np.array([2]), np.array([[1.0, -2.0]], dtype=np.float32))
    merge_deltas(master, [block, RowBlock.of(np.array([], dtype=np.int64), np.zeros((0, 2)))])
    np.testing.assert_array_equal(master, [[0, 0], [0, 0], [1, -2], [0, 0]])
    assert merge_deltas(master, []).row_ids().size == 0


def test_row_delta_sends_the_changed_rows_and_their_bytes():
    snapshot = np.arange(12, dtype=np.float32).reshape(6, 2)
    current = snapshot.copy()
    current[[0, 1, 4]] += 0.5
    block = row_delta(current, snapshot)
    np.testing.assert_array_equal(block.row_ids(), [0, 1, 4])
    np.testing.assert_array_equal(block.row_values(), np.full((3, 2), 0.5))
    assert block.nbytes == 2 * 2 * 4 + 1 * 8 + 1 * 2 * 4  # dense 0-1; row 4 with its id


def test_learning_rate_follows_the_global_word_count():
    settings = resolved_settings(lr=0.1, min_lr=0.0)
    plan = RoundPlan(global_start=4_000, active_workers=4, total_words=100_000)
    # a worker 1,000 words into the round: the 4 workers have trained 4,000 words since 4,000
    # and each trains at 4 times the rate, so that the mean of 4 deltas is one process's step
    start, end = job_rates(settings, plan, 1_000, 500)
    assert start == pytest.approx(4 * 0.1 * (1 - 8_000 / 100_000))
    assert end == pytest.approx(4 * 0.1 * (1 - 10_000 / 100_000))


def test_shards_partition_the_sentences(tmp_path):
    sentences = structured_sentences(1001, seed=4)
    path = write_corpus(tmp_path / "c.txt", sentences)
    with Corpus(path) as corpus:
        shards = [list(ShardSentences(corpus, i, 3).sentence_blocks()) for i in range(3)]
    mine = [[s for block in shard for s in block] for shard in shards]
    assert [len(m) for m in mine] == [334, 334, 333]
    assert mine[1] == sentences[1::3]


def test_vocabulary_counted_on_shards_is_the_single_process_one(structured_corpus):
    settings = resolved_settings(cluster="ray", workers=3, min_count=2)
    cluster = FakeCluster([str(structured_corpus)], settings)
    vocab = build_vocabulary_on(cluster, settings, "c", quiet=True)
    with Corpus(structured_corpus) as corpus:
        reference = build_vocabulary(corpus.sentence_blocks(), 2)
    assert vocab.words == reference.words
    np.testing.assert_array_equal(vocab.counts, reference.counts)
    assert (
        vocab.total_words
        == reference.total_words
        == sum(Counter(w for s in structured_sentences() for w in s).values())
    )


@pytest.mark.parametrize(
    "model, head", [("skipgram", "ns"), ("cbow", "ns"), ("skipgram", "hs"), ("cbow", "hs")]
)
def test_two_fake_workers_train_identical_copies_as_well_as_one_process(
    structured_corpus, model, head
):
    options = dict(FAST, model=model, head=head)
    trained, result, stats, cluster = fake_run(
        structured_corpus, workers=2, sync_words=5_000, **options
    )
    assert trained.words_done == trained.epoch_words * 3 and len(result.epochs) == 3
    assert len(stats.rounds) >= 3 * 5  # ~27,000 words per shard and epoch in 5,000-word rounds
    for worker in cluster.workers:
        copies = worker.parameters(1 if stats.restarts else 0)
        for name, array in parameter_arrays(trained).items():
            np.testing.assert_array_equal(copies[name], array)
    alone, _ = train_model(structured_corpus, **options)
    two = neighbour_purity(trained.vocab.words, trained.vectors)
    one = neighbour_purity(alone.vocab.words, alone.vectors)
    assert two >= one - 0.1, (two, one)  # margin: 0.1 of the 90 neighbour slots
    assert two > 0.8


def test_a_worker_lost_mid_epoch_resumes_from_the_epoch_checkpoint(structured_corpus, caplog):
    options = dict(FAST, workers=2, sync_words=5_000)
    clean, _, clean_stats, _ = fake_run(structured_corpus, **options)
    per_epoch = len(clean_stats.rounds) // 3
    assert per_epoch >= 4
    # worker 2 dies in its 3rd round of epoch 2, after 2 merged rounds of that epoch
    lost, result, stats, cluster = fake_run(
        structured_corpus, cluster_setup=lambda c: c.lose(1, call=per_epoch + 3), **options
    )
    assert stats.restarts == 1 and len(result.epochs) == 3
    assert f"resuming from the checkpoint at {clean.epoch_words:,} words" in caplog.text
    assert len(stats.rounds) == len(clean_stats.rounds) + 2  # those 2 again, not epoch 1
    np.testing.assert_array_equal(lost.vectors, clean.vectors)  # same seeds: the same run
    np.testing.assert_array_equal(lost.head.output, clean.head.output)
    np.testing.assert_array_equal(cluster.workers[1].parameters(1)["vectors"], lost.vectors)


@pytest.mark.parametrize("head", ["softmax", "spherical", "adaptive", "lsh"])
def test_cluster_refuses_heads_whose_copies_do_not_merge_by_row(head):
    with pytest.raises(SettingsError, match="--cluster trains the ns and hs heads only"):
        resolved_settings(cluster="ray", head=head)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cluster": "spark"}, "--cluster must be"),
        ({"cluster": "ray", "workers": 0}, "--workers must be in 1..10,000"),
        ({"cluster": "ray", "sync_words": 0}, "--sync-words must be in 1..1,000,000,000,000"),
    ],
)
def test_cluster_settings_are_checked(options, message):
    with pytest.raises(SettingsError, match=message):
        resolved_settings(**options)


def test_without_ray_the_cluster_option_says_how_to_install_it(
    monkeypatch, structured_corpus, capsys
):
    import embedtrain
    from embedtrain.cli import main
    from embedtrain.errors import ClusterError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ClusterError, match=r"pip install 'embedtrain\[distributed\]'"):
        embedtrain.train(str(structured_corpus), cluster="ray", progress=False)
    assert main(["train", str(structured_corpus), "--cluster", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'embedtrain[distributed]'" in err


def test_cluster_refuses_sentences_held_in_memory():
    import embedtrain

    with pytest.raises(SettingsError, match="files every worker can open"):
        embedtrain.train(structured_sentences(50), cluster="ray", progress=False)
