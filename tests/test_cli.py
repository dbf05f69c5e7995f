"""The command line, including every bad-input case: one line on stderr, exit code 2,
no traceback, nothing written."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import embedtrain
from embedtrain.cli import main
from embedtrain.heads import resolved_settings

FAST = ["--dim", "16", "--epochs", "1", "--threads", "1", "--device", "cpu", "--quiet"]


def train_process(corpus, out, *options):
    """``python -m embedtrain train CORPUS -o OUT OPTIONS...`` as a subprocess command."""
    return [
        sys.executable,
        "-m",
        "embedtrain",
        "train",
        str(corpus),
        "-o",
        str(out),
        *map(str, options),
    ]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(structured_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "v.txt"
    assert main(["train", str(structured_corpus), "-o", str(out), *FAST]) == 0
    return out


def test_train_eval_similar_analogy(capsys, trained, structured_corpus, tmp_path):
    code, out, _ = run_cli(capsys, "eval", trained, "--json")
    assert code == 0
    names = [s["name"] for s in json.loads(out)]
    assert names == ["questions-words.txt", "wordsim353.tsv", "simlex999.txt"]
    extra = tmp_path / "pairs.tsv"
    extra.write_text("cat\tdog\t9\ncat\tred\t1\ndog\tred\t1\nred\tblue\t9\n")
    analogies = tmp_path / "an.txt"
    analogies.write_text(": toy\ncat dog red blue\n")
    code, out, _ = run_cli(capsys, "eval", trained, "--similarity", extra, "--analogies", analogies)
    assert code == 0 and "pairs.tsv" in out and "an.txt" in out
    code, out, _ = run_cli(capsys, "similar", trained, "cat", "-n", "3")
    assert code == 0 and len(out.splitlines()) == 3
    code, out, _ = run_cli(capsys, "analogy", trained, "cat", "dog", "red", "-n", "2")
    assert code == 0 and len(out.splitlines()) == 2


def test_binary_output_and_model_file(capsys, structured_corpus, tmp_path):
    from gensim.models import KeyedVectors

    code, _, _ = run_cli(
        capsys,
        "train",
        structured_corpus,
        "-o",
        tmp_path / "v.bin",
        "--save-model",
        tmp_path / "m.npz",
        *FAST,
    )
    assert code == 0
    assert len(KeyedVectors.load_word2vec_format(str(tmp_path / "v.bin"), binary=True)) > 50
    assert (tmp_path / "m.npz").exists()
    code, _, _ = run_cli(
        capsys,
        "train",
        structured_corpus,
        "-o",
        tmp_path / "v2.txt",
        "--resume",
        tmp_path / "m.npz",
        "--epochs",
        "2",
        "--quiet",
    )
    assert code == 0 and (tmp_path / "v2.txt").exists()


@pytest.mark.parametrize("head", ["ns", "spherical"])
def test_save_output_vectors(capsys, structured_corpus, tmp_path, head):
    """--save-output writes the head's per-word output rows (syn1neg; W = V U) in the
    word order of the input vectors, the same values the model file holds."""
    import numpy as np
    from gensim.models import KeyedVectors

    import embedtrain

    outputs_path, model_path = tmp_path / "out.bin", tmp_path / "m.npz"
    args = ["train", structured_corpus, "-o", tmp_path / "v.txt", "--head", head, *FAST]
    code, _, _ = run_cli(capsys, *args, "--save-output", outputs_path, "--save-model", model_path)
    assert code == 0
    outputs = KeyedVectors.load_word2vec_format(str(outputs_path), binary=True)
    inputs = KeyedVectors.load_word2vec_format(str(tmp_path / "v.txt"))
    assert outputs.index_to_key == inputs.index_to_key
    expected = embedtrain.load(model_path).output_vectors  # W = V U for the factored head
    assert np.array_equal(outputs.vectors, expected)
    assert np.abs(outputs.vectors).max() > 0


def test_save_output_refused_for_hierarchical_softmax(capsys, structured_corpus, tmp_path):
    args = ["train", structured_corpus, "-o", tmp_path / "v.txt", "--head", "hs", *FAST]
    result = run_cli(capsys, *args, "--save-output", tmp_path / "out.txt")
    assert_usage_error(*result, "--save-output")
    assert not (tmp_path / "v.txt").exists() and not (tmp_path / "out.txt").exists()


def test_stdin_corpus(structured_corpus, tmp_path):
    out = tmp_path / "v.txt"
    with open(structured_corpus, "rb") as stdin:
        done = subprocess.run(
            train_process("-", out, *FAST),
            stdin=stdin,
            capture_output=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert out.exists()


def assert_usage_error(code, out, err, fragment):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("embedtrain: error:") and fragment in lines[0]
    assert "Traceback" not in err


def test_missing_corpus(capsys, tmp_path):
    result = run_cli(capsys, "train", tmp_path / "missing.txt", "-o", tmp_path / "v.txt", *FAST)
    assert_usage_error(*result, "does not exist")
    assert not (tmp_path / "v.txt").exists()


def test_empty_corpus(capsys, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    result = run_cli(capsys, "train", tmp_path / "empty.txt", "-o", tmp_path / "v.txt", *FAST)
    assert_usage_error(*result, "is empty")
    assert list(tmp_path.iterdir()) == [tmp_path / "empty.txt"]


def test_vocabulary_empty_after_min_count(capsys, tmp_path):
    (tmp_path / "c.txt").write_text("a b c\n")
    result = run_cli(capsys, "train", tmp_path / "c.txt", "-o", tmp_path / "v.txt", *FAST)
    assert_usage_error(*result, "vocabulary is empty")


def test_unreadable_corpus(capsys, tmp_path):
    bad = tmp_path / "c.xz"
    bad.write_bytes(b"\xfd7zXZ\x00 truncated")
    result = run_cli(capsys, "train", bad, "-o", tmp_path / "v.txt", *FAST)
    assert_usage_error(*result, "cannot read corpus")


@pytest.mark.parametrize(
    "option,value,fragment",
    [
        ("--dim", "0", "--dim"),
        ("--window", "0", "--window"),
        ("--negative", "-1", "--negative"),
        ("--lr", "-0.5", "--lr"),
        ("--head", "nonsense", "--head"),
        ("--epochs", "0", "--epochs"),
        ("--min-count", "0", "--min-count"),
        ("--threads", "0", "--threads"),
        ("--sample", "-1", "--sample"),
        ("--batch-size", "-1", "--batch-size"),
    ],
)
def test_invalid_parameters(capsys, structured_corpus, tmp_path, option, value, fragment):
    args = ["train", structured_corpus, "-o", tmp_path / "v.txt", *FAST, option, value]
    assert_usage_error(*run_cli(capsys, *args), fragment)
    assert not (tmp_path / "v.txt").exists()


def test_exact_heads_refuse_huge_minibatches(capsys, structured_corpus, tmp_path):
    args = ["train", structured_corpus, "-o", tmp_path / "v.txt", *FAST, "--head", "spherical"]
    assert_usage_error(*run_cli(capsys, *args, "--batch-size", "100000"), "--batch-size")
    assert run_cli(capsys, *args, "--batch-size", "4096")[0] == 0


def test_outputs_never_replace_inputs_or_each_other(capsys, structured_corpus, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(structured_corpus.read_bytes())
    before = corpus.read_bytes()
    result = run_cli(capsys, "train", corpus, "-o", corpus, *FAST)
    assert_usage_error(*result, "would overwrite corpus file")
    assert corpus.read_bytes() == before
    same = tmp_path / "v.txt"
    result = run_cli(capsys, "train", corpus, "-o", same, "--save-output", same, *FAST)
    assert_usage_error(*result, "name the same file")
    assert not same.exists()


@pytest.mark.parametrize("where", ["no/such/dir/v.txt", "."])
def test_unwritable_output(capsys, structured_corpus, tmp_path, where):
    result = run_cli(capsys, "train", structured_corpus, "-o", tmp_path / where, *FAST)
    assert_usage_error(*result, "cannot write")


@pytest.mark.parametrize("exact", ["factored", "naive"])
@pytest.mark.parametrize("model", ["cbow", "skipgram"])
def test_exact_head_divergence_is_one_line(capsys, structured_corpus, tmp_path, model, exact):
    """An absurd rate makes the spherical softmax's loss non-finite: the step leaves the
    linear algebra alone (which would raise on NaN) and training stops with a message."""
    out = tmp_path / "v.txt"
    args = ["train", structured_corpus, "-o", out, "--head", "spherical", *FAST]
    result = run_cli(capsys, *args, "--exact", exact, "--model", model, "--lr", "1e30")
    assert_usage_error(*result, "diverged")
    assert not out.exists()


def test_unknown_word(capsys, trained):
    assert_usage_error(*run_cli(capsys, "similar", trained, "zzzz"), "not in the vocabulary")
    assert_usage_error(
        *run_cli(capsys, "analogy", trained, "cat", "zzzz", "red"), "not in the vocabulary"
    )


def test_bad_vectors_file(capsys, tmp_path):
    (tmp_path / "v.txt").write_text("this is not\na vectors file\n")
    assert_usage_error(*run_cli(capsys, "eval", tmp_path / "v.txt"), "not a word2vec")
    assert_usage_error(*run_cli(capsys, "eval", tmp_path / "none.txt"), "does not exist")


def test_help_lists_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for option in [
        "--dim",
        "--window",
        "--negative",
        "--lr",
        "--min-lr",
        "--sample",
        "--device",
        "--resume",
    ]:
        assert option in out
    assert "(default: cbow)" in out
    flat = " ".join(out.split())
    assert "0.025 for ns, lsh, hs" in flat and "0.05 for taylor" in flat  # --lr 0: the head's rate


def test_lr_zero_is_the_heads_default_and_is_saved_explicitly():
    """lr = 0 stands for the head's rate, resolved once; the settings then hold the number
    (a resumed run, or a reader of ``.settings``, never sees the 0)."""
    assert resolved_settings().lr == 0.025
    assert resolved_settings(head="taylor").lr == 0.05
    assert resolved_settings(head="taylor", lr=0.2).lr == 0.2
    assert resolved_settings(head="squared", lr=0).lr == 0.025


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_saves_model_and_resumes(structured_corpus, tmp_path, stop):
    """Ctrl-C, kill/timeout/Slurm (SIGTERM) and a closed terminal (SIGHUP) alike."""
    out = tmp_path / "v.txt"
    command = train_process(
        structured_corpus,
        out,
        "--dim",
        "16",
        "--epochs",
        "400",
        "--threads",
        "1",
        "--device",
        "cpu",
    )
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    seen = b""
    deadline = time.time() + 120
    while b"epoch 2/400:" not in seen and time.time() < deadline:
        seen += process.stderr.read1(4096)
    process.send_signal(stop)
    _, err = process.communicate(timeout=120)
    err = (seen + err).decode()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    partial = tmp_path / "v.txt.partial.npz"
    assert partial.exists() and f"saved to {partial}" in err
    assert not out.exists()
    done = subprocess.run(
        train_process(structured_corpus, out, "--resume", partial, "--epochs", "3", "--quiet"),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.exists()


@pytest.mark.parametrize(
    "head,exact",
    [
        ("spherical", "factored"),
        ("squared", "factored"),
        ("squared", "naive"),
        ("taylor", "factored"),
        ("taylor", "naive"),
        ("zloss", "factored"),
        ("softmax", ""),
        ("adaptive", ""),
    ],
)
def test_exact_heads_on_the_shipped_corpus(capsys, tmp_path, head, exact):
    """Every exact head trains from the CLI on the shipped corpus (no corpus argument) and
    its vectors evaluate; --min-count 500 keeps the vocabulary, and the test, small."""
    out = tmp_path / "v.txt"
    code, _, _ = run_cli(
        capsys,
        "train",
        "-o",
        out,
        "--head",
        head,
        *(["--exact", exact] if exact else []),
        "--epochs",
        "1",
        "--min-count",
        "500",
        "--dim",
        "16",
        "--device",
        "cpu",
        "--quiet",
    )
    assert code == 0
    code, report, _ = run_cli(capsys, "eval", out, "--json")
    assert code == 0 and len(json.loads(report)) == 3


def test_a_signal_while_counting_leaves_nothing(structured_corpus, tmp_path):
    """SIGTERM during the vocabulary pass: one line, exit 130, no output, no temporary
    file (the spool and word-id files live in TMPDIR). The corpus (the generated one, 80
    times over: about 4M tokens) takes seconds to count, so the signal lands inside the
    pass even on a loaded machine."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    big = tmp_path / "corpus" / "big.txt"
    big.parent.mkdir()
    big.write_bytes(structured_corpus.read_bytes() * 80)
    out = tmp_path / "v.txt"
    command = [
        sys.executable,
        "-m",
        "embedtrain",
        "train",
        str(big),
        "-o",
        str(out),
        "--device",
        "cpu",
    ]
    environment = {**os.environ, "TMPDIR": str(scratch)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=environment)
    seen = b""
    deadline = time.time() + 120
    while b"vocabulary:" not in seen and time.time() < deadline:
        seen += process.stderr.read1(256)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    err = (seen + err).decode()
    assert process.returncode == 130, err
    assert "nothing was written" in err and "Traceback" not in err
    assert not out.exists() and list(scratch.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "tmp"]


def test_a_signal_while_writing_finishes_every_output(capsys, structured_corpus, tmp_path):
    """Ctrl-C after training, while -o is being written: every output is still written,
    then exit 130 with a line that says so (the finished model is never thrown away)."""
    import embedtrain.embeddings

    real = embedtrain.embeddings.Embeddings.save_vectors

    def interrupted_save(self, path, binary=None):
        os.kill(os.getpid(), signal.SIGINT)
        real(self, path, binary)

    out, model = tmp_path / "v.txt", tmp_path / "m.npz"
    patch = pytest.MonkeyPatch()
    patch.setattr(embedtrain.embeddings.Embeddings, "save_vectors", interrupted_save)
    try:
        code, _, err = run_cli(
            capsys, "train", structured_corpus, "-o", out, "--save-model", model, *FAST
        )
    finally:
        patch.undo()
    assert code == 130 and "every output was written" in err
    assert out.read_text().startswith(f"{len(out.read_text().splitlines()) - 1} ")
    assert embedtrain.load(model).words == embedtrain.load(out).words


def test_vectors_to_stdout(structured_corpus, tmp_path):
    """-o - writes the vectors to stdout; everything else goes to stderr."""
    command = train_process(structured_corpus, "-", "--dim", "8", "--epochs", "1")
    done = subprocess.run(command, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0] == f"{len(lines) - 1} 8"
    assert "epoch 1/1" in done.stderr.decode()
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("option", ["-o", "--save-model", "--save-output"])
def test_outputs_never_replace_a_file_of_a_directory_corpus(
    capsys, structured_corpus, tmp_path, option
):
    corpus = tmp_path / "d"
    (corpus / "sub").mkdir(parents=True)
    inside = corpus / "sub" / "a.txt"
    inside.write_bytes(structured_corpus.read_bytes())
    args = ["train", corpus, "-o", tmp_path / "v.txt", *FAST]
    if option == "-o":
        args[3] = inside
    else:
        args += [option, inside]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "would overwrite corpus file" in err
    assert inside.read_bytes() == structured_corpus.read_bytes()


def test_binary_corpus_refused_unless_allowed(capsys, tmp_path):
    binary = tmp_path / "b.dat"
    binary.write_bytes(bytes(range(256)) * 400)
    code, _, err = run_cli(capsys, "train", binary, "-o", tmp_path / "v.txt", *FAST)
    assert code == 2 and "is not text" in err and "--allow-binary" in err
    code, _, err = run_cli(
        capsys,
        "train",
        binary,
        "-o",
        tmp_path / "v.txt",
        "--min-count",
        "1",
        "--allow-binary",
        *FAST,
    )
    assert code == 0, err


def test_eval_warns_about_non_finite_vectors(capsys, tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("3 2\nking 1 0\nqueen nan 1\nman inf 0\n")
    code, _, err = run_cli(capsys, "eval", path)
    assert code == 0 and "2 of 3 vectors have NaN or infinite values" in err


@pytest.mark.parametrize("damage", ["empty", "truncated", "text"])
def test_a_damaged_resume_file_is_one_line(capsys, structured_corpus, tmp_path, damage):
    model = tmp_path / "m.npz"
    assert (
        main(
            [
                "train",
                str(structured_corpus),
                "-o",
                str(tmp_path / "v.txt"),
                "--save-model",
                str(model),
                *FAST,
            ]
        )
        == 0
    )
    data = model.read_bytes()
    model.write_bytes(
        {"empty": b"", "truncated": data[: len(data) // 2], "text": b"3 2\na 1 2\n"}[damage]
    )
    result = run_cli(
        capsys, "train", structured_corpus, "-o", tmp_path / "w.txt", "--resume", model, "--quiet"
    )
    assert_usage_error(*result, str(model))
    assert not (tmp_path / "w.txt").exists()


def test_a_memory_limit_too_low_to_load_numba_is_one_line(tmp_path):
    """Under ``ulimit -v`` too small for LLVM, loading Numba fails: one line, exit 2."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (300 * 2**20, 300 * 2**20))

    command = [sys.executable, "-m", "embedtrain", "train", "-o", str(tmp_path / "v.txt")]
    done = subprocess.run(command, capture_output=True, preexec_fn=limit, timeout=120, check=False)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.startswith("embedtrain: error:") and len(err.strip().splitlines()) == 1, err


def test_the_partial_model_path_is_checked_before_training(capsys, structured_corpus, tmp_path):
    """Where an interrupted run would save its model must be writable before training."""
    out = tmp_path / "v.txt"
    (tmp_path / "v.txt.partial.npz").mkdir()
    result = run_cli(capsys, "train", structured_corpus, "-o", out, *FAST)
    assert_usage_error(*result, "v.txt.partial.npz")
    assert not out.exists()


def test_a_long_output_name_trains(capsys, structured_corpus, tmp_path):
    """A 250-character name is legal; so must be the partial model's name derived from it."""
    out = tmp_path / ("v" * 246 + ".txt")
    code, _, err = run_cli(capsys, "train", structured_corpus, "-o", out, *FAST)
    assert code == 0, err
    assert out.read_text().split("\n", 1)[0].endswith(" 16")


def test_resuming_word2vec_vectors_says_why_not(capsys, trained, structured_corpus, tmp_path):
    result = run_cli(
        capsys, "train", structured_corpus, "-o", tmp_path / "w.txt", "--resume", trained
    )
    assert_usage_error(*result, "cannot be resumed")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"no section header\na b c d\n", "not an analogy file"),
        (bytes(range(256)) * 20, "is not text: it contains NUL bytes"),
    ],
    ids=["no-sections", "binary"],
)
def test_a_bad_analogy_file_is_one_line(capsys, trained, tmp_path, content, fragment):
    bad = tmp_path / "analogies.txt"
    bad.write_bytes(content)
    result = run_cli(capsys, "eval", trained, "--analogies", bad)
    assert_usage_error(*result, fragment)


def test_a_closed_stdout_is_not_a_traceback(structured_corpus):
    """``embedtrain train -o - | head -1``: the reader leaves early."""
    command = train_process(structured_corpus, "-", "--dim", "8", "--epochs", "1", "--quiet")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert "Traceback" not in err.decode() and process.returncode in (0, 2)


def test_adaptive_prints_its_cutoffs_and_keeps_them_for_resume(capsys, tmp_path):
    """The cutoffs the cost model chose are printed with the shortlist's share of the
    tokens, saved in the model's settings, and the output vectors are written."""
    model = tmp_path / "m.npz"
    code, _, err = run_cli(
        capsys,
        *("train", "-o", tmp_path / "v.txt", "--head", "adaptive", "--cutoffs", "300,1000"),
        *("--epochs", "1", "--min-count", "50", "--dim", "16", "--device", "cpu"),
        *("--save-model", model, "--save-output", tmp_path / "out.txt"),
    )
    assert code == 0
    assert "adaptive softmax: cutoffs 300,1000 (given): shortlist of 300 words holds" in err
    assert "tail of 700 words in 4 dimensions" in err
    emb = embedtrain.load(model)
    assert emb.settings.cutoffs == "300,1000"
    assert len((tmp_path / "out.txt").read_text().splitlines()) == len(emb) + 1
    code, _, err = run_cli(
        capsys, "train", "-o", tmp_path / "v.txt", "--head", "adaptive", "--cutoffs", "9,3"
    )
    assert code == 2 and "--cutoffs must be increasing" in err


def test_aop_reports_its_memory_in_the_epoch_summary(capsys, tmp_path):
    """--aop-k on the shipped corpus: the epoch line says how much of the outer products'
    norm was left in memory; a head without dense updates refuses the option."""
    code, _, err = run_cli(
        capsys,
        *("train", "-o", tmp_path / "v.txt", "--head", "softmax", "--aop-k", "8"),
        *("--aop-policy", "weighted", "--epochs", "1", "--min-count", "500", "--dim", "16"),
        *("--device", "cpu"),
    )
    assert code == 0
    assert "% of the weight-gradient outer products' norm left in memory (K = 8, weighted" in err
    code, _, err = run_cli(capsys, "train", "-o", tmp_path / "v.txt", "--aop-k", "8")
    assert code == 2 and "--aop-k: the ns head has no dense weight-gradient product" in err


def test_every_training_option_is_a_flag_generated_from_its_field():
    """Options are declared once: each Settings field's help, choices and type make its
    flag, and an absent flag is None (the default, or a resumed model's setting)."""
    from embedtrain.cli import build_parser
    from embedtrain.settings import OPTIONS

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    flags = {action.dest: action for action in commands.choices["train"]._actions}
    for spec in OPTIONS:
        if not spec.metadata["command_line"]:
            assert spec.name not in flags
            continue
        action = flags[spec.name]
        assert action.option_strings == [f"--{spec.name.replace('_', '-')}"]
        assert action.default is None
        assert action.help.startswith(spec.metadata["help"].split("{")[0])
        assert tuple(action.choices or ()) == spec.metadata["choices"]
        assert action.type is {"int": int, "float": float, "str": str}[spec.type.split(" | ")[0]]
