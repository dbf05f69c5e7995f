"""The backend and the GPU code path, exercised on NumPy (no GPU needed)."""

import logging
import sys
import types

import numpy as np
import pytest
from conftest import neighbour_purity

from embedtrain import backend
from embedtrain.backend import CupyOps, NumpyOps, Ops, select_ops
from embedtrain.cli import main
from embedtrain.errors import GpuUnavailable
from embedtrain.heads import resolved_settings

#: The generic backend (the array forms) and the host backend (compiled overrides).
BACKENDS = pytest.mark.parametrize("backend", [Ops, NumpyOps], ids=["generic", "numpy"])


@BACKENDS
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_add_accumulates_duplicates(backend, dtype):
    target = np.zeros((4, 2), dtype=dtype)
    backend().scatter_add(target, np.array([1, 1, 3, 1]), np.ones((4, 2)))
    np.testing.assert_array_equal(target[:, 0], [0, 3, 0, 1])


def fake_cupy(device_count=1, broken=False):
    """A stand-in for CuPy backed by NumPy: lets CupyOps run without a GPU."""
    cupy = types.ModuleType("cupy")
    cupy.__getattr__ = lambda name: getattr(np, name)
    cupy.asnumpy = np.asarray
    cupy.synchronized = 0

    class Stream:
        @staticmethod
        def synchronize():
            cupy.synchronized += 1

    def count():
        if broken:
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return device_count

    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=count),
        Stream=types.SimpleNamespace(null=Stream),
    )
    cupy.get_default_memory_pool = lambda: types.SimpleNamespace(free_all_blocks=lambda: None)
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = np.add.at
    return cupy, cupyx


@pytest.fixture
def with_fake_cupy(monkeypatch):
    def install(**kwargs):
        cupy, cupyx = fake_cupy(**kwargs)
        monkeypatch.setitem(sys.modules, "cupy", cupy)
        monkeypatch.setitem(sys.modules, "cupyx", cupyx)
        return cupy

    return install


def test_gpu_backend_with_fake_cupy(with_fake_cupy):
    cupy = with_fake_cupy()
    ops = select_ops("gpu")
    assert isinstance(ops, CupyOps) and not ops.runs_compiled_kernels
    target = ops.xp.zeros(3)
    ops.scatter_add(target, np.array([2, 2]), np.ones(2))
    assert ops.to_host(target).tolist() == [0, 0, 2]
    ops.synchronize()
    ops.release_memory()
    assert cupy.synchronized == 1


def test_cupy_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(GpuUnavailable, match=r"pip install 'embedtrain\[gpu\]'"):
        backend.gpu_ops()


def test_cupy_without_device(with_fake_cupy):
    with_fake_cupy(broken=True)
    with pytest.raises(GpuUnavailable, match="no working CUDA device"):
        backend.gpu_ops()
    with_fake_cupy(device_count=0)
    with pytest.raises(GpuUnavailable, match="finds no CUDA device"):
        backend.gpu_ops()


def test_auto_falls_back_to_cpu_and_says_so(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with caplog.at_level(logging.INFO, logger="embedtrain"):
        ops = select_ops("auto")
    assert isinstance(ops, NumpyOps)
    assert [r.getMessage().count("training on the CPU") for r in caplog.records] == [1]


def test_cli_device_gpu_without_cupy(monkeypatch, capsys, structured_corpus, tmp_path):
    monkeypatch.setitem(sys.modules, "cupy", None)
    code = main(
        [
            "train",
            str(structured_corpus),
            "-o",
            str(tmp_path / "v.txt"),
            "--device",
            "gpu",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "embedtrain[gpu]" in err[0]
    assert not (tmp_path / "v.txt").exists()


@pytest.mark.parametrize("head", ["ns", "hs", "squared"])
def test_cli_batched_engine_on_the_cpu(structured_corpus, tmp_path, head):
    """``--engine batched --device cpu``: the minibatch engine end to end on the host."""
    from gensim.models import KeyedVectors

    out = tmp_path / "v.txt"
    args = [
        "train",
        str(structured_corpus),
        "-o",
        str(out),
        "--device",
        "cpu",
        "--engine",
        "batched",
        "--quiet",
        "--model",
        "skipgram",
        "--head",
        head,
        "--dim",
        "24",
        "--epochs",
        "3",
        "--sample",
        "0",
        "--batch-size",
        "16",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    vectors = KeyedVectors.load_word2vec_format(str(out))
    assert neighbour_purity(vectors.index_to_key, vectors.vectors) >= 0.9


def test_training_through_cupy_ops_on_fake_cupy(with_fake_cupy, structured_corpus):
    """The whole batched engine through CupyOps (fake CuPy on NumPy)."""
    from conftest import train_model

    from embedtrain.engines import choose_engine

    with_fake_cupy()
    options = {
        "model": "cbow",
        "head": "ns",
        "dim": 24,
        "epochs": 3,
        "sample": 0,
        "batch_size": 16,
        "threads": 1,
    }
    engine, ops = choose_engine(resolved_settings(device="gpu", **options))
    assert engine == "batched" and isinstance(ops, CupyOps)
    model, _ = train_model(structured_corpus, device="gpu", **options)
    assert isinstance(model.ops, CupyOps)
    assert neighbour_purity(model.vocab.words, model.host_vectors()) >= 0.9


@BACKENDS
def test_sparse_gram_matches_dense_with_repeats(backend):
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 6, 40)
    columns = rng.integers(0, 5, 40)  # many repeated coordinates and shared columns
    values = rng.normal(size=40)
    dense = np.zeros((6, 5))
    np.add.at(dense, (rows, columns), values)
    np.testing.assert_allclose(
        backend().sparse_gram(rows, columns, values, 6), dense @ dense.T, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_products_and_in_place_accumulation(dtype):
    """Operands C-ordered or transposed, result C-ordered, ``out`` updated in place."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 4)).astype(dtype)
    b = rng.normal(size=(4, 5)).astype(dtype)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for left, right in ((a, b), (a.T.copy().T, b), (a, b.T.copy().T)):
        product = NumpyOps().gemm(left, right)
        assert product.flags.c_contiguous and product.dtype == dtype
        np.testing.assert_allclose(product, a @ b, rtol=tolerance, atol=tolerance)
    out = rng.normal(size=(5, 6)).astype(dtype)
    expected = out - 0.5 * b.T @ a.T
    returned = NumpyOps().gemm(b.T, a.T, out=out, alpha=-0.5)
    assert returned is out
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    with pytest.raises(ValueError):
        NumpyOps().gemm(b.T, a.T, out=np.zeros((6, 5), dtype=dtype).T)


def test_gemm_into_another_precision_still_accumulates():
    out = np.ones((2, 2), dtype=np.float64)
    NumpyOps().gemm(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), out=out)
    np.testing.assert_allclose(out, np.ones((2, 2)) + np.eye(2))


@BACKENDS
def test_solve_spd_and_scaled_scatter(backend):
    rng = np.random.default_rng(1)
    h = rng.normal(size=(8, 5))
    matrix = np.eye(8) + h @ h.T
    rhs = rng.normal(size=(8, 3))
    np.testing.assert_allclose(
        backend().solve_spd(matrix, rhs), np.linalg.solve(matrix, rhs), atol=1e-10
    )
    target = np.zeros((4, 3))
    sources = rng.normal(size=(2, 3))
    backend().scatter_add_scaled(
        target, np.array([1, 1, 3]), np.array([2.0, 1.0, -1.0]), sources, np.array([0, 1, 1])
    )
    np.testing.assert_allclose(target[1], 2 * sources[0] + sources[1])
    np.testing.assert_allclose(target[3], -sources[1])


def test_exact_head_through_cupy_ops_matches_numpy(with_fake_cupy):
    """The factored head on the CuPy code paths (fake CuPy) gives the NumPy results."""
    from embedtrain.heads.exact import FactoredHead
    from embedtrain.heads.losses import SphericalSoftmax
    from embedtrain.settings import Settings
    from embedtrain.vocab import Vocabulary

    with_fake_cupy()
    vocab = Vocabulary([f"w{i}" for i in range(30)], np.arange(30, 0, -1), 465)
    heads = [
        FactoredHead(
            SphericalSoftmax(1e-3),
            vocab,
            Settings(dim=6, bias_feature=0.0),
            ops,
            0,
            dtype=np.float64,
        )
        for ops in (NumpyOps(), select_ops("gpu"))
    ]
    rng = np.random.default_rng(2)
    for _ in range(20):
        hidden = rng.normal(0, 0.1, (5, 6))
        targets = rng.integers(0, 6, (5, 4))
        steps = [head.batch_step(hidden, targets, 0.01) for head in heads]
        np.testing.assert_allclose(steps[0].grad_hidden, steps[1].grad_hidden, rtol=1e-10)
    np.testing.assert_allclose(heads[0].state.weights(), heads[1].state.weights(), rtol=1e-10)
