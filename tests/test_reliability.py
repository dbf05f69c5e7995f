"""Bad input and faults, by class: every input path and output kind, absurd values, memory
that cannot suffice, signals at start-up and while waiting. Each ends in one line naming
the real cause and the right exit code, or works as a gensim user expects."""

import bz2
import gzip
import lzma
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from gensim.models import KeyedVectors

import embedtrain
from embedtrain.cli import main
from embedtrain.heads import resolved_settings

FAST = ["--dim", "8", "--epochs", "1", "--threads", "1", "--device", "cpu", "--quiet"]
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code, err, fragment):
    assert code == 2, err
    assert err.startswith("embedtrain: error:") and err.count("\n") == 1, err
    assert fragment in err, err


@pytest.fixture(scope="module")
def model(structured_corpus):
    return embedtrain.train(str(structured_corpus), dim=8, epochs=1, threads=1, progress=False)


@pytest.mark.parametrize("name", ["v.txt.gz", "v.bin.gz", "v.txt.bz2", "v.bin.xz"])
def test_compressed_vectors_round_trip(capsys, structured_corpus, tmp_path, name):
    """-o by extension, as gensim: compressed for real, read back by similar, eval, load
    and gensim's own loader."""
    out = tmp_path / name
    code, _, err = run_cli(capsys, "train", structured_corpus, "-o", out, *FAST)
    assert code == 0, err
    suffix = out.suffix
    with OPENERS[suffix](out, "rb") as stream:
        header = stream.readline().split()
    assert len(header) == 2 and int(header[1]) == 8
    binary = ".bin" in name
    gensim_view = KeyedVectors.load_word2vec_format(str(out), binary=binary)
    loaded = embedtrain.load(out)
    np.testing.assert_array_equal(loaded.vectors, gensim_view.vectors)
    assert loaded.words == list(gensim_view.index_to_key)
    code, report, err = run_cli(capsys, "similar", out, loaded.words[3], "-n", "2")
    assert code == 0 and len(report.splitlines()) == 2, err
    code, report, err = run_cli(capsys, "eval", out, "--json")
    assert code == 0, err


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--head", "ns", "--cutoffs", "100,1000"], "--cutoffs applies to the adaptive head"),
        (["--head", "softmax", "--lsh-bits", "3"], "--lsh-bits applies to the lsh head"),
        (["--head", "hs", "--negative", "3"], "--negative applies to the ns and lsh heads"),
        (["--head", "ns", "--epsilon", "0.5"], "--epsilon applies to the spherical head"),
        (["--head", "taylor", "--zloss-b", "3"], "--zloss-b applies to the zloss head"),
        (["--head", "softmax", "--exact", "naive"], "--exact applies to the exact heads"),
        (["--head", "ns", "--aop-policy", "random"], "--aop-policy applies to the dense heads"),
        (["--workers", "3"], "--workers applies to --cluster runs only"),
    ],
)
def test_an_option_another_head_takes_is_refused(
    capsys, structured_corpus, tmp_path, options, fragment
):
    code, _, err = run_cli(capsys, "train", structured_corpus, "-o", tmp_path / "v.txt", *options)
    one_line_error(code, err, fragment)
    assert not (tmp_path / "v.txt").exists()


def test_options_a_head_takes_are_accepted():
    for options in [
        {"head": "adaptive", "cutoffs": "10,30", "div_value": 2.0, "aop_policy": "random"},
        {"head": "lsh", "negative": 3, "lsh_bits": 3},
        {"head": "spherical", "epsilon": 0.5, "exact": "naive", "aop_memory": "none"},
        {"head": "zloss", "zloss_a": 2.0, "bias_feature": 0.0},
        {"cluster": "ray", "workers": 3, "sync_words": 1000},
    ]:
        assert resolved_settings(**options).head == options.get("head", "ns")


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--dim", "100000000000000000000", "--dim must be <= 100,000"),
        ("--bias-feature", "1e30", "--bias-feature must be in 0..1000"),
        ("--init-norm", "1e30", "--init-norm must be <= 1000"),
        ("--epsilon", "1e300", "--epsilon must be <= 1e+06"),
        ("--div-value", "1e300", "--div-value must be in 1..1000"),
        ("--lsh-tables", "100000000", "--lsh-tables must be <= 1,000"),
        ("--window", "1000000", "--window must be <= 10,000"),
        ("--threads", "100000", "--threads must be <= 1,024"),
    ],
)
def test_absurd_values_are_refused_up_front(
    capsys, structured_corpus, tmp_path, option, value, fragment
):
    head = {"--bias-feature": "taylor", "--epsilon": "spherical", "--div-value": "adaptive"}
    head_option = ["--head", head.get(option, "lsh" if option == "--lsh-tables" else "ns")]
    code, _, err = run_cli(
        capsys, "train", structured_corpus, "-o", tmp_path / "v.txt", *head_option, option, value
    )
    one_line_error(code, err, fragment)


def test_a_model_larger_than_the_address_space_limit_is_one_line(tmp_path):
    """ulimit -v too small for the model (not for the libraries): refused by the memory
    check in one line naming the limit, where a compiled library would abort."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (650 * 2**20, 650 * 2**20))

    command = [sys.executable, "-m", "embedtrain", "train", "-o", str(tmp_path / "v.txt")]
    command += ["--dim", "300", "--epochs", "1", "--quiet"]
    done = subprocess.run(command, capture_output=True, preexec_fn=limit, timeout=300, check=False)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "ulimit -v" in err and "--dim" in err and len(err.strip().splitlines()) == 1, err


def test_a_vectors_header_claiming_too_much_names_the_header(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("1000000000000 100\nking 1 0\n")
    with pytest.raises(embedtrain.ModelFileError, match="header claims 1,000,000,000,000"):
        embedtrain.load(path)


@pytest.mark.parametrize("command", ["similar", "eval", "analogy"])
def test_vectors_inputs_name_the_real_cause(capsys, tmp_path, command):
    words = {"similar": ["king"], "analogy": ["a", "b", "c"], "eval": []}[command]
    code, _, err = run_cli(capsys, command, tmp_path, *words)
    one_line_error(code, err, "is a directory")
    code, _, err = run_cli(capsys, command, tmp_path / "missing.txt", *words)
    one_line_error(code, err, "does not exist")


@pytest.mark.parametrize("flag", ["--analogies", "--similarity"])
def test_evaluation_files_that_are_not_text_or_not_files(capsys, model, tmp_path, flag):
    vectors = tmp_path / "v.txt"
    model.save_vectors(vectors)
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    code, _, err = run_cli(capsys, "eval", vectors, flag, binary)
    one_line_error(code, err, "is not text")
    code, _, err = run_cli(capsys, "eval", vectors, flag, tmp_path)
    one_line_error(code, err, "is a directory")


def test_similar_and_analogy_warn_about_non_finite_vectors(capsys, tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("4 2\nking 1 0\nqueen nan 1\nman inf 0\nwoman 0 1\n")
    for argv in (["similar", path, "king"], ["analogy", path, "man", "king", "woman"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 0 and "2 of 4 vectors have NaN or infinite values" in err


def test_an_empty_output_name_is_refused_before_training(capsys, structured_corpus):
    code, _, err = run_cli(capsys, "train", structured_corpus, "-o", "")
    one_line_error(code, err, "-o names no file")


def test_a_closed_stdin_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "embedtrain", "train", "-", "-o", str(tmp_path / "v.txt")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.close(0),
    )
    err = done.stderr.decode()
    assert done.returncode == 2 and "standard input is closed" in err, err
    assert "Traceback" not in err


def test_sentences_given_as_strings_are_explained(tmp_path):
    with pytest.raises(embedtrain.CorpusError, match=r"looks like a sentence.*s\.split\(\)"):
        embedtrain.train(["the cat sat on the mat", "a dog ran"], progress=False)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_fifo_output_without_a_reader_stays_stoppable(structured_corpus, tmp_path, stop):
    """Waiting for a reader is fine; being deaf to Ctrl-C and SIGTERM is not. The signal
    comes a second after the last epoch's summary: the process is then waiting."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "embedtrain", "train", str(structured_corpus)]
    command += ["-o", str(fifo), "--dim", "8", "--epochs", "1", "--threads", "1"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, cwd=tmp_path)
    seen = b""
    deadline = time.time() + 120
    while b"epoch 1/1: loss" not in seen and time.time() < deadline and process.poll() is None:
        seen += process.stderr.read1(256)
    time.sleep(1.0)
    process.send_signal(stop)
    _, err = process.communicate(timeout=30)
    err = (seen + err).decode()
    assert process.returncode == 130, err
    assert "waited for a reader" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


@pytest.mark.parametrize("library", ["_multiarray_umath", "llvmlite", "_dynfunc"])
def test_ctrl_c_while_the_libraries_load_is_quiet(tmp_path, library):
    """SIGINT once the process has mapped NumPy's, LLVM's or Numba's shared library (so
    inside the start-up imports): one line, exit 130 (or death by SIGINT, which a shell
    reports as 130 too), no traceback, nothing written. (A signal during the interpreter's
    own start-up, before any of embedtrain runs, is Python's to report.)"""
    command = [sys.executable, "-m", "embedtrain", "train", "-o", str(tmp_path / "v.txt")]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and not _has_mapped(process.pid, library):
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    err = err.decode()
    assert process.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "embedtrain: interrupted; nothing was written", err
    assert list(tmp_path.iterdir()) == []


def _has_mapped(pid: int, library: str) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return library in maps.read()
    except OSError:
        return False


def test_a_local_ray_is_refused_more_threads_than_the_machine_can_run(monkeypatch):
    from embedtrain import ray_cluster

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    ray_cluster.check_local_cpus(8)
    with pytest.raises(embedtrain.ClusterError, match="this machine has 2 CPUs"):
        ray_cluster.check_local_cpus(9)
