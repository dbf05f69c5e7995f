"""Distributed training on a real Ray, started by this module on the loopback address with
2 CPUs: 2 workers of 1 thread on the generated corpus."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import neighbour_purity, train_model

import embedtrain
from embedtrain.backend import NumpyOps
from embedtrain.cli import main
from embedtrain.distributed import (
    ClusterEpochs,
    ClusterStats,
    build_vocabulary_on,
    parameter_arrays,
)
from embedtrain.heads import resolved_settings
from embedtrain.model import Model
from embedtrain.ray_cluster import RayCluster
from embedtrain.training import run_training

ray = pytest.importorskip("ray")

FAST = {"dim": 20, "epochs": 3, "min_count": 1, "sample": 0.0, "threads": 1, "seed": 3}
CLUSTER = {"cluster": "ray", "workers": 2, "sync_words": 5_000}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (the workers inherit PYTHONPATH from this process)."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="WARNING",
    )
    yield ray
    ray.shutdown()


def test_workers_import_this_checkout(local_ray):
    @ray.remote(num_cpus=1)
    def where() -> str:
        import embedtrain as imported

        return imported.__file__

    assert ray.get(where.remote()) == embedtrain.__file__


def test_two_ray_workers_end_identical_and_as_good_as_one_process(local_ray, structured_corpus):
    settings = resolved_settings(model="skipgram", head="ns", **FAST, **CLUSTER)
    cluster = RayCluster(ray, [str(structured_corpus)], settings, allow_binary=False)
    try:
        vocab = build_vocabulary_on(cluster, settings, "corpus", quiet=True)
        model = Model(vocab, settings, NumpyOps())
        stats = ClusterStats()
        result = run_training(model, ClusterEpochs(cluster, model, stats), quiet=True)
        copies = cluster.broadcast("parameters", stats.restarts)
    finally:
        cluster.close()
    assert len(result.epochs) == 3 and model.words_done == 3 * model.epoch_words
    assert stats.restarts == 0 and len(stats.rounds) >= 12
    for copy in copies:  # every worker's matrices are the driver's, bit for bit
        for name, array in parameter_arrays(model).items():
            np.testing.assert_array_equal(copy[name], array)
    alone, _ = train_model(structured_corpus, model="skipgram", head="ns", **FAST)
    two = neighbour_purity(model.vocab.words, model.vectors)
    one = neighbour_purity(alone.vocab.words, alone.vectors)
    assert two >= one - 0.1 and two > 0.8, (two, one)  # margin: 0.1 of the neighbour slots


def _kill_worker_2(report) -> None:
    """After epoch 1, kill worker 2's process; Ray restarts it (no_restart=False)."""
    if report.epoch == 1:
        (name,) = [n for n in ray.util.list_named_actors() if n.endswith("-worker-2")]
        ray.kill(ray.get_actor(name), no_restart=False)


def test_a_killed_worker_is_restarted_and_the_run_completes(local_ray, structured_corpus, caplog):
    options = dict(FAST, model="cbow", head="hs", **CLUSTER)
    clean = embedtrain.train(str(structured_corpus), progress=False, **options)
    killed = embedtrain.train(
        str(structured_corpus), progress=False, callbacks=[_kill_worker_2], **options
    )
    assert "worker 2 lost" in caplog.text and "resuming from the checkpoint" in caplog.text
    assert len(killed.history) == 3
    np.testing.assert_array_equal(killed.vectors, clean.vectors)  # resumed: the same run
    alone, _ = train_model(structured_corpus, model="cbow", head="hs", **FAST)
    purity = neighbour_purity(killed.words, killed.vectors)
    assert purity >= neighbour_purity(alone.vocab.words, alone.vectors) - 0.1


def test_command_line_trains_on_the_cluster(local_ray, structured_corpus, tmp_path, capsys):
    output = tmp_path / "vectors.txt"
    flags = ["--cluster", "ray", "--workers", "2", "--threads", "1", "--sync-words", "5000"]
    code = main(["train", str(structured_corpus), "-o", str(output), "--quiet", *flags])
    assert code == 0, capsys.readouterr().err
    assert output.read_text().split("\n", 1)[0].split() == [str(76), "100"]


def test_a_cluster_too_small_is_one_clear_error(local_ray, structured_corpus, capsys):
    code = main(["train", str(structured_corpus), "--cluster", "ray", "--workers", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "the Ray cluster has 2 CPUs; 3 workers x 2 threads need 6" in err
    assert os.environ.get("NUMBA_NUM_THREADS") is None  # set inside the actors only
