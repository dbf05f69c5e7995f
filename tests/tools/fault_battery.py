"""A battery of bad inputs, faults and signals against the command line, as a careful user
and a QA engineer would try them. Each case runs ``python -m embedtrain ...`` as a process
and is judged clean when:

- the exit code is the expected one (0 done, 2 refused, 130 interrupted);
- no traceback, and a failure says why in one ``embedtrain: error: ...`` line;
- nothing is left behind: no temporary file in TMPDIR or beside the outputs;
- inputs are intact (the corpus, a resumed model), and a refused run writes no output.

    python tests/tools/fault_battery.py                 # all cases, one line each, then the count
    python tests/tools/fault_battery.py --only resume   # cases whose name contains "resume"

It prints ``clean N / M``; failing cases are listed with what went wrong.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import lzma
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SMALL = ["--dim", "8", "--epochs", "1", "--min-count", "1", "--threads", "1", "--quiet"]
WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "dog", "ran", "in", "park", "birds"]


@dataclass
class Case:
    name: str
    args: list[str]
    expect: tuple[int, ...] = (2,)
    stdin: bytes | None = None
    setup: Callable[[Path], None] | None = None  # prepares files in the case's directory
    protected: list[str] = field(default_factory=list)  # files that must stay as they were
    absent: list[str] = field(default_factory=list)  # files that must not exist after
    signal_after: tuple[bytes, int] | None = None  # (stderr text to wait for, signal)
    reader: str | None = None  # a FIFO to drain while the case runs
    signal_delay: float = 0.0  # seconds between seeing the marker and sending the signal
    close_stdin: bool = False  # run with file descriptor 0 closed
    address_space: int | None = None  # bytes: ulimit -v for the case


def text_corpus(path: Path, lines: int = 3000, seed: int = 0) -> None:
    rng = random.Random(seed)
    path.write_text(
        "".join(" ".join(rng.choice(WORDS) for _ in range(12)) + "\n" for _ in range(lines))
    )


def setup_all(directory: Path) -> None:
    """The files every case may refer to, built once per case directory."""
    text_corpus(directory / "c.txt")
    data = (directory / "c.txt").read_bytes()
    (directory / "c.txt.gz").write_bytes(gzip.compress(data))
    (directory / "c.txt.xz").write_bytes(lzma.compress(data))
    (directory / "c.txt.bz2").write_bytes(bz2.compress(data))
    (directory / "cut.txt.gz").write_bytes(gzip.compress(data)[:-40])
    (directory / "cut.txt.xz").write_bytes(lzma.compress(data)[:-40])
    (directory / "cut.txt.bz2").write_bytes(bz2.compress(data)[:-40])
    (directory / "garbage.txt.gz").write_bytes(b"\x1f\x8b" + os.urandom(2000))
    (directory / "gzip-no-suffix.txt").write_bytes(gzip.compress(data))
    (directory / "random.bin.txt").write_bytes(random.Random(1).randbytes(200_000))
    (directory / "nul.txt").write_bytes(data[:5000] + b"\x00" * 100 + data[5000:])
    (directory / "latin1.txt").write_bytes(("caf\xe9 na\xefve " * 3000).encode("latin-1"))
    (directory / "some-bad-bytes.txt").write_bytes(data + b"\xff\xfe tail words\n")
    (directory / "cut-utf8.txt").write_bytes(("naïve caf\u00e9 " * 4000).encode() + b"\xc3")
    (directory / "empty.txt").write_bytes(b"")
    (directory / "spaces.txt").write_text("   \n\t\n  \n")
    (directory / "one-word.txt").write_text("x" * 3_000_000)
    (directory / "rare.txt").write_text("a b c d e f g\n")
    (directory / "emptydir").mkdir()
    (directory / "corpusdir" / "sub").mkdir(parents=True)
    (directory / "corpusdir" / "sub" / "a.txt").write_bytes(data)
    (directory / "longline.txt").write_text(" ".join(WORDS * 3000) + "\n")
    (directory / "loop").symlink_to(directory / "loop")
    (directory / "outdir").mkdir()
    os.mkfifo(directory / "nobody-reads.fifo")


def setup_models(directory: Path) -> None:
    """A real model and vectors to resume from, evaluate or damage."""
    run(["train", "c.txt", "-o", "v.txt", "--save-model", "m.npz", *SMALL], directory)
    run(
        ["train", "c.txt", "-o", "hs.txt", "--head", "hs", "--save-model", "hs.npz", *SMALL],
        directory,
    )
    model = (directory / "m.npz").read_bytes()
    (directory / "m-cut.npz").write_bytes(model[: len(model) // 2])
    (directory / "m-empty.npz").write_bytes(b"")
    flipped = bytearray(model)
    flipped[len(flipped) // 3] ^= 0xFF
    (directory / "m-flipped.npz").write_bytes(bytes(flipped))
    (directory / "v-nan.txt").write_text("2 2\nthe nan 1\ncat 1 inf\n")
    (directory / "v-ragged.txt").write_text("2 3\nthe 1 2 3\ncat 1 2\n")
    (directory / "v-header.txt").write_text("nonsense header\nthe 1 2\n")
    (directory / "v-huge-header.txt").write_text("1000000000000 100\nthe 1 2\n")
    (directory / "binary.tsv").write_bytes(bytes(range(256)) * 64)
    for name in ("v.txt.gz", "v.bin.gz", "v.txt.bz2", "v.bin.xz"):
        run(["train", "c.txt", "-o", name, *SMALL], directory)
    forge_models(directory)


def forge_models(directory: Path) -> None:
    import json

    import numpy as np

    with np.load(directory / "m.npz") as data:
        arrays = {name: data[name] for name in data.files}
    header = json.loads(str(arrays["header"]))

    def save(name: str, **changes) -> None:
        np.savez(directory / name, **{**arrays, **changes})

    save("m-fewer-rows.npz", vectors=arrays["vectors"][:-3])
    save("m-columns.npz", vectors=arrays["vectors"][:, :-1])
    save("m-short-output.npz", **{"head.output": arrays["head.output"][:2]})
    save("m-nan.npz", vectors=arrays["vectors"] * np.nan)
    save("m-negative-counts.npz", counts=-arrays["counts"])
    no_settings = {k: v for k, v in header.items() if k != "settings"}
    save("m-no-settings.npz", header=np.array(json.dumps(no_settings)))
    save("m-format.npz", header=np.array(json.dumps({**header, "format": 99})))


def linked_output(directory: Path) -> None:
    (directory / "real.txt").write_text("old")
    (directory / "link.txt").symlink_to(directory / "real.txt")


def cases() -> list[Case]:
    train = ["train"]
    c = ["c.txt", "-o", "outdir/v.txt"]
    every = []
    # --- corpora -------------------------------------------------------------------------
    every += [
        Case("corpus: plain text", [*train, *c, *SMALL], (0,)),
        Case("corpus: .gz", [*train, "c.txt.gz", "-o", "outdir/v.txt", *SMALL], (0,)),
        Case("corpus: .xz", [*train, "c.txt.xz", "-o", "outdir/v.txt", *SMALL], (0,)),
        Case("corpus: .bz2", [*train, "c.txt.bz2", "-o", "outdir/v.txt", *SMALL], (0,)),
        Case("corpus: directory", [*train, "corpusdir", "-o", "outdir/v.txt", *SMALL], (0,)),
        Case("corpus: missing", [*train, "nope.txt", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: empty file", [*train, "empty.txt", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: whitespace only", [*train, "spaces.txt", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: empty directory", [*train, "emptydir", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: truncated .gz", [*train, "cut.txt.gz", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: truncated .xz", [*train, "cut.txt.xz", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: truncated .bz2", [*train, "cut.txt.bz2", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: garbage .gz", [*train, "garbage.txt.gz", "-o", "outdir/v.txt", *SMALL]),
        Case(
            "corpus: gzip bytes without suffix",
            [*train, "gzip-no-suffix.txt", "-o", "outdir/v.txt", *SMALL],
        ),
        Case("corpus: random bytes", [*train, "random.bin.txt", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: NUL bytes", [*train, "nul.txt", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: a program", [*train, sys.executable, "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: latin-1 text", [*train, "latin1.txt", "-o", "outdir/v.txt", *SMALL]),
        Case(
            "corpus: binary allowed",
            [*train, "random.bin.txt", "-o", "outdir/v.txt", "--allow-binary", *SMALL],
            (0,),
        ),
        Case(
            "corpus: a few bad bytes",
            [*train, "some-bad-bytes.txt", "-o", "outdir/v.txt", *SMALL],
            (0,),
        ),
        Case("corpus: cut UTF-8", [*train, "cut-utf8.txt", "-o", "outdir/v.txt", *SMALL], (0,)),
        Case("corpus: 3 MB word", [*train, "one-word.txt", "-o", "outdir/v.txt", *SMALL], (0,)),
        Case("corpus: long line", [*train, "longline.txt", "-o", "outdir/v.txt", *SMALL], (0,)),
        Case("corpus: rare words only", [*train, "rare.txt", "-o", "outdir/v.txt"]),
        Case("corpus: symlink loop", [*train, "loop", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: /dev/null", [*train, "/dev/null", "-o", "outdir/v.txt", *SMALL]),
        Case("corpus: /dev/zero", [*train, "/dev/zero", "-o", "outdir/v.txt", *SMALL]),
        Case(
            "corpus: a closed descriptor",
            [*train, "/proc/self/fd/99", "-o", "outdir/v.txt", *SMALL],
        ),
        Case(
            "stdin: text", [*train, "-", "-o", "outdir/v.txt", *SMALL], (0,), stdin=b"a b c\n" * 500
        ),
        Case("stdin: empty", [*train, "-", "-o", "outdir/v.txt", *SMALL], stdin=b""),
        Case(
            "stdin: binary", [*train, "-", "-o", "outdir/v.txt", *SMALL], stdin=os.urandom(100_000)
        ),
        Case(
            "stdin: gzip bytes",
            [*train, "-", "-o", "outdir/v.txt", *SMALL],
            stdin=gzip.compress(b"a b c\n" * 500),
        ),
    ]
    # --- parameters ------------------------------------------------------------------------
    for option, values in {
        "--dim": ["0", "-1", "abc", "1e9"],
        "--window": ["0", "-2"],
        "--negative": ["-1"],
        "--min-count": ["0", "-5"],
        "--sample": ["-0.1", "nan"],
        "--epochs": ["0", "-1"],
        "--lr": ["-0.1", "nan", "inf"],
        "--min-lr": ["-1", "1"],
        "--threads": ["0", "-1"],
        "--seed": ["-1"],
        "--batch-size": ["-1"],
        "--epsilon": ["0", "-1"],
        "--zloss-a": ["0", "-1"],
        "--init-norm": ["0", "-1", "inf"],
        "--max-vocab-size": ["0"],
        "--max-final-vocab": ["0"],
        "--head": ["bogus"],
        "--model": ["bogus"],
        "--exact": ["bogus"],
        "--device": ["tpu"],
        "--engine": ["bogus"],
    }.items():
        for value in values:
            every.append(Case(f"option: {option} {value}", [*train, *c, *SMALL, option, value]))
    every += [
        Case("option: --seed 2**70", [*train, *c, *SMALL, "--seed", str(2**70)], (0, 2)),
        Case("option: --seed 1.85e7", [*train, *c, *SMALL, "--seed", "18500000"], (0,)),
        Case("option: unknown flag", [*train, *c, "--dimension", "5"]),
        Case("option: --head ns --negative 0", [*train, *c, *SMALL, "--negative", "0"]),
        Case(
            "option: --engine compiled --head squared",
            [*train, *c, *SMALL, "--engine", "compiled", "--head", "squared"],
        ),
        Case("option: --device gpu without a GPU", [*train, *c, *SMALL, "--device", "gpu"], (0, 2)),
        Case(
            "option: exact head huge batch",
            [*train, *c, *SMALL, "--head", "squared", "--batch-size", "100000"],
        ),
        Case(
            "option: divergence (ns)", [*train, *c, *SMALL, "--engine", "batched", "--lr", "1e30"]
        ),
        Case(
            "option: spherical at lr 1e30",
            [*train, *c, *SMALL, "--head", "spherical", "--lr", "1e30"],
            (0, 2),
        ),
        Case(
            "option: squared at lr 1e30 is capped",
            [*train, *c, *SMALL, "--head", "squared", "--lr", "1e30"],
            (0,),
        ),
        Case("option: no command", []),
        Case("option: bogus command", ["fly"]),
    ]
    # --- outputs -----------------------------------------------------------------------------
    every += [
        Case("output: empty name", [*train, "c.txt", "-o", "", *SMALL]),
        Case("output: /proc", [*train, "c.txt", "-o", "/proc/embedtrain-v.txt", *SMALL]),
        Case("output: /sys", [*train, "c.txt", "-o", "/sys/embedtrain-v.txt", *SMALL]),
        Case("output: a directory", [*train, "c.txt", "-o", "outdir", *SMALL]),
        Case("output: missing directory", [*train, "c.txt", "-o", "no/dir/v.txt", *SMALL]),
        Case(
            "output: 255-char name",
            [*train, "c.txt", "-o", "outdir/" + "v" * 251 + ".txt", *SMALL],
            (0,),
        ),
        Case(
            "output: 256-char name", [*train, "c.txt", "-o", "outdir/" + "v" * 252 + ".txt", *SMALL]
        ),
        Case("output: /dev/stdout", [*train, "c.txt", "-o", "/dev/stdout", *SMALL], (0,)),
        Case("output: stdout", [*train, "c.txt", "-o", "-", *SMALL], (0,), absent=["-"]),
        Case(
            "output: replaces the corpus",
            [*train, "c.txt", "-o", "c.txt", *SMALL],
            protected=["c.txt"],
        ),
        Case(
            "output: replaces a file of a directory corpus",
            [*train, "corpusdir", "-o", "corpusdir/sub/a.txt", *SMALL],
            protected=["corpusdir/sub/a.txt"],
        ),
        Case(
            "output: --save-model replaces a directory corpus file",
            [
                *train,
                "corpusdir",
                "-o",
                "outdir/v.txt",
                "--save-model",
                "corpusdir/sub/a.txt",
                *SMALL,
            ],
            protected=["corpusdir/sub/a.txt"],
        ),
        Case(
            "output: -o and --save-output the same",
            [*train, *c, "--save-output", "outdir/v.txt", *SMALL],
        ),
        Case(
            "output: --save-output for hs",
            [*train, *c, "--head", "hs", "--save-output", "outdir/o.txt", *SMALL],
        ),
        Case(
            "output: through a symlink",
            [*train, "c.txt", "-o", "link.txt", *SMALL],
            (0,),
            setup=linked_output,
        ),
        Case(
            "output: a FIFO",
            [*train, "c.txt", "-o", "out.fifo", *SMALL],
            (0,),
            setup=lambda d: os.mkfifo(d / "out.fifo"),
            reader="out.fifo",
        ),
    ]
    # --- resume --------------------------------------------------------------------------
    r = [*train, *c, "--quiet", "--resume"]
    every += [
        Case("resume: a good model", [*r, "m.npz", "--epochs", "2"], (0,), protected=["m.npz"]),
        Case("resume: missing", [*r, "nope.npz"]),
        Case("resume: empty", [*r, "m-empty.npz"], protected=["m-empty.npz"]),
        Case("resume: truncated", [*r, "m-cut.npz"], protected=["m-cut.npz"]),
        Case("resume: flipped byte", [*r, "m-flipped.npz"], protected=["m-flipped.npz"]),
        Case("resume: word2vec text", [*r, "v.txt"], protected=["v.txt"]),
        Case("resume: the corpus", [*r, "c.txt"], protected=["c.txt"]),
        Case("resume: fewer rows", [*r, "m-fewer-rows.npz"]),
        Case("resume: column mismatch", [*r, "m-columns.npz"]),
        Case("resume: short output", [*r, "m-short-output.npz"]),
        Case("resume: NaN vectors", [*r, "m-nan.npz"]),
        Case("resume: negative counts", [*r, "m-negative-counts.npz"]),
        Case("resume: header without settings", [*r, "m-no-settings.npz"]),
        Case("resume: unknown format", [*r, "m-format.npz"]),
        Case("resume: conflicting --dim", [*r, "m.npz", "--dim", "50"]),
        Case("resume: conflicting --head", [*r, "m.npz", "--head", "hs"]),
        Case("resume: fewer epochs", [*r, "m.npz", "--epochs", "1"], (0, 2)),
        Case(
            "resume: another corpus",
            [
                *train,
                "corpusdir",
                "-o",
                "outdir/v.txt",
                "--quiet",
                "--resume",
                "m.npz",
                "--epochs",
                "2",
            ],
            (0, 2),
        ),
    ]
    # --- eval, similar, analogy ----------------------------------------------------------------
    every += [
        Case("eval: good vectors", ["eval", "v.txt"], (0,)),
        Case("eval: missing", ["eval", "nope.txt"]),
        Case("eval: binary file", ["eval", "random.bin.txt"]),
        Case("eval: empty", ["eval", "empty.txt"]),
        Case("eval: NaN vectors", ["eval", "v-nan.txt"], (0,)),
        Case("eval: ragged rows", ["eval", "v-ragged.txt"]),
        Case("eval: bad header", ["eval", "v-header.txt"]),
        Case("eval: a model file", ["eval", "m.npz"]),
        Case("eval: --restrict-vocab 0", ["eval", "v.txt", "--restrict-vocab", "0"]),
        Case("eval: missing analogies file", ["eval", "v.txt", "--analogies", "nope.txt"]),
        Case("similar: good", ["similar", "v.txt", "cat"], (0,)),
        Case("similar: unknown word", ["similar", "v.txt", "zebra"]),
        Case("similar: -n 0", ["similar", "v.txt", "cat", "-n", "0"]),
        Case("analogy: unknown word", ["analogy", "v.txt", "cat", "dog", "zebra"]),
    ]
    # --- signals -------------------------------------------------------------------------
    long_run = [
        *train,
        "c.txt",
        "-o",
        "outdir/v.txt",
        "--dim",
        "8",
        "--min-count",
        "1",
        "--threads",
        "1",
        "--epochs",
        "2000",
    ]
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        every.append(
            Case(
                f"signal: {signal.Signals(number).name} during training",
                long_run,
                (130,),
                signal_after=(b"epoch 2/2000", number),
                absent=["outdir/v.txt"],
            )
        )
    every.append(
        Case(
            "signal: SIGTERM while counting",
            [*train, "one-word.txt", "-o", "outdir/v.txt", "--min-count", "1"],
            (130, 0),
            signal_after=(b"vocabulary", signal.SIGTERM),
        )
    )
    every += reliability_cases()
    return every


def reliability_cases() -> list[Case]:
    """The second round's classes: compressed vectors through every reader, options another
    head takes, absurd values, memory that cannot suffice, input paths that are not files,
    a closed stdin, an empty output name, a FIFO nobody reads, signals at start-up and
    while a cluster starts."""
    every = []
    for name in ("v.txt.gz", "v.bin.gz", "v.txt.bz2", "v.bin.xz"):
        every += [
            Case(
                f"compressed: train -o {name}",
                ["train", "c.txt", "-o", f"outdir/{name}", *SMALL],
                (0,),
            ),
            Case(f"compressed: similar {name}", ["similar", name, "the"], (0,)),
            Case(f"compressed: eval {name}", ["eval", name], (0,)),
        ]
    for head, option, value in [
        ("ns", "--cutoffs", "100,1000"),
        ("softmax", "--lsh-bits", "3"),
        ("hs", "--negative", "3"),
        ("ns", "--epsilon", "0.5"),
        ("taylor", "--zloss-a", "2"),
        ("softmax", "--exact", "naive"),
        ("ns", "--aop-policy", "random"),
        ("ns", "--bias-feature", "1"),
        ("ns", "--workers", "3"),
    ]:
        every.append(
            Case(
                f"options: {option} with --head {head}",
                ["train", "c.txt", "-o", "outdir/v.txt", "--head", head, option, value, *SMALL],
            )
        )
    for option, value, head in [
        ("--dim", "100000000000000000000", "ns"),
        ("--div-value", "1e300", "adaptive"),
        ("--bias-feature", "1e30", "taylor"),
        ("--init-norm", "1e30", "ns"),
        ("--epsilon", "1e300", "spherical"),
        ("--lsh-tables", "100000000", "lsh"),
        ("--window", "1000000000", "ns"),
        ("--threads", "100000", "ns"),
        ("--workers", "1000000", "ns"),
    ]:
        extra = ["--cluster", "ray"] if option == "--workers" else []
        every.append(
            Case(
                f"absurd: {option} {value}",
                ["train", "c.txt", "-o", "outdir/v.txt", "--head", head, option, value, *extra],
            )
        )
    every += [
        Case(
            "memory: ulimit -v below the model (--dim 300)",
            ["train", "-o", "outdir/v.txt", "--dim", "300"],  # the shipped corpus: 27,010 words
            address_space=650 * 2**20,
        ),
        Case(
            "memory: a vectors header claiming 10^12 rows", ["similar", "v-huge-header.txt", "the"]
        ),
        Case("inputs: similar on a directory", ["similar", "outdir", "the"]),
        Case("inputs: eval on a directory", ["eval", "outdir"]),
        Case("inputs: analogy on a missing file", ["analogy", "nope.txt", "a", "b", "c"]),
        Case("inputs: eval --similarity binary", ["eval", "v.txt", "--similarity", "binary.tsv"]),
        Case("inputs: eval --analogies binary", ["eval", "v.txt", "--analogies", "binary.tsv"]),
        Case("inputs: eval --similarity directory", ["eval", "v.txt", "--similarity", "outdir"]),
        Case(
            "inputs: eval --analogies a FIFO", ["eval", "v.txt", "--analogies", "nobody-reads.fifo"]
        ),
        Case("inputs: similar on NaN vectors warns", ["similar", "v-nan.txt", "the"], (0,)),
        Case(
            "inputs: closed stdin", ["train", "-", "-o", "outdir/v.txt", *SMALL], close_stdin=True
        ),
        Case("outputs: -o ''", ["train", "c.txt", "-o", "", *SMALL]),
        Case(
            "outputs: --save-model ''",
            ["train", "c.txt", "-o", "outdir/v.txt", "--save-model", "", *SMALL],
        ),
    ]
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        name = signal.Signals(number).name
        every += [
            Case(
                f"signal: {name} while -o is a FIFO nobody reads",
                ["train", "c.txt", "-o", "nobody-reads.fifo", "--dim", "8", "--epochs", "1"],
                (130,),
                signal_after=(b"epoch 1/1: loss", number),
                signal_delay=1.0,
            ),
            Case(
                f"signal: {name} while the libraries load",
                ["train", "c.txt", "-o", "outdir/v.txt", *SMALL],
                (130, -number),
                signal_after=(b"", number),
                signal_delay=0.3,
                absent=["outdir/v.txt"],
            ),
        ]
    every.append(
        Case(
            "signal: SIGTERM while a local Ray starts",
            [
                "train",
                "c.txt",
                "-o",
                "outdir/v.txt",
                "--cluster",
                "ray",
                "--workers",
                "2",
                "--threads",
                "1",
                *SMALL,
            ],
            (130,),
            signal_after=(b"", signal.SIGTERM),
            signal_delay=4.0,
            absent=["outdir/v.txt"],
        )
    )
    return every


#: A case still running after this long hangs (every case here takes seconds).
TIMEOUT = 120
HUNG = -999


def run(args: list[str], directory: Path, stdin: bytes | None = None, env=None):
    """The finished process, or one with returncode HUNG if it ran past TIMEOUT."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "embedtrain", *args],
            cwd=directory,
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=TIMEOUT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        return subprocess.CompletedProcess(args, HUNG, expired.stdout or b"", expired.stderr or b"")


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def judge(case: Case, directory: Path) -> list[str]:
    """Run one case in ``directory``; return what went wrong (empty: clean)."""
    scratch = directory / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch)}
    before = {name: digest(directory / name) for name in case.protected}
    outputs_before = set(os.listdir(directory / "outdir"))
    if case.setup:
        case.setup(directory)
    drain = None
    if case.reader:
        drain = subprocess.Popen(["cat", str(directory / case.reader)], stdout=subprocess.DEVNULL)
    command = [sys.executable, "-m", "embedtrain", *case.args]
    if case.signal_after:
        marker, number = case.signal_after
        process = subprocess.Popen(
            command, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        seen = b""
        deadline = time.time() + 300
        while marker not in seen and time.time() < deadline and process.poll() is None:
            seen += process.stderr.read1(256)
        time.sleep(case.signal_delay)
        process.send_signal(number)
        try:
            _, err = process.communicate(timeout=TIMEOUT)
            code = process.returncode
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
            code = HUNG
        err = seen + err
    elif case.close_stdin or case.address_space:
        limit = case.address_space

        def prepare() -> None:
            if case.close_stdin:
                os.close(0)
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        try:
            done = subprocess.run(
                command,
                cwd=directory,
                env=env,
                capture_output=True,
                stdin=None if case.close_stdin else subprocess.DEVNULL,
                preexec_fn=prepare,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            done = subprocess.CompletedProcess(command, HUNG, b"", expired.stderr or b"")
        code, err = done.returncode, done.stderr
    else:
        done = run(case.args, directory, case.stdin, env)
        code, err = done.returncode, done.stderr
    if drain:
        drain.kill()
    problems = []
    text = err.decode(errors="replace")
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    if code == HUNG:
        problems.append(f"hung (killed after {TIMEOUT} s)")
    elif code not in case.expect:
        problems.append(f"exit {code}, expected {case.expect}")
    if "Traceback" in text:
        problems.append("traceback")
    if code not in (0, 130):
        errors = [line for line in lines if line.startswith("embedtrain: error:")]
        if len(errors) != 1 or not lines or not lines[-1].startswith("embedtrain:"):
            problems.append(f"not one error line: {lines[-3:]}")
    leftovers = list(scratch.iterdir()) + [p for p in directory.rglob(".*.tmp") if p.is_file()]
    if leftovers:
        problems.append(f"left behind: {[p.name for p in leftovers]}")
        for p in leftovers:
            p.unlink()
    for name, value in before.items():
        if digest(directory / name) != value:
            problems.append(f"{name} was changed")
    if code == 2:
        new = set(os.listdir(directory / "outdir")) - outputs_before
        if new:
            problems.append(f"a refused run wrote {sorted(new)}")
    for name in case.absent:
        if (directory / name).exists():
            problems.append(f"{name} exists")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args()
    selected = [case for case in cases() if args.only in case.name]
    with tempfile.TemporaryDirectory(prefix="embedtrain-battery-") as root:
        base = Path(root) / "base"
        base.mkdir()
        setup_all(base)
        setup_models(base)
        clean = 0
        for number, case in enumerate(selected, 1):
            directory = Path(root) / f"case{number}"
            subprocess.run(["cp", "-a", str(base), str(directory)], check=True)
            problems = judge(case, directory)
            clean += not problems
            mark = "ok  " if not problems else "FAIL"
            print(
                f"{mark} {case.name}" + (f": {'; '.join(problems)}" if problems else ""), flush=True
            )
            subprocess.run(["rm", "-rf", str(directory)], check=True)
        print(f"\nclean {clean} / {len(selected)}")


if __name__ == "__main__":
    main()
