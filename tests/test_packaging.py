"""A wheel (what ``pip install .`` installs) carries the shipped corpus and its notice,
and trains on it from outside the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_install_trains_on_the_shipped_corpus(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("embedtrain-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "embedtrain/corpora/wordnet-glosses.txt.xz" in names
    assert "embedtrain/corpora/wordnet-glosses.COPYRIGHT" in names
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    environment = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    located = subprocess.run(
        [sys.executable, "-c", "import embedtrain; print(embedtrain.__file__)"],
        cwd=elsewhere,
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    )
    assert located.stdout.startswith(str(site))  # the wheel's copy, not the source tree
    options = ["--epochs", "1", "--dim", "8", "--max-final-vocab", "500", "--quiet"]
    subprocess.run(
        [sys.executable, "-m", "embedtrain", "train", "-o", "v.txt", *options],
        cwd=elsewhere,
        env=environment,
        check=True,
        capture_output=True,
    )
    header = (elsewhere / "v.txt").read_text().split("\n", 1)[0]
    assert header == "500 8"
