import errno
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors

from embedtrain.atomic import atomic_write, check_writable
from embedtrain.errors import OutputError
from embedtrain.export import save_word2vec

WORDS = ["the", "cat", "naïve", "x"]


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_round_trip_through_gensim(tmp_path, binary):
    vectors = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    path = tmp_path / ("v.bin" if binary else "v.txt")
    save_word2vec(path, WORDS, vectors, binary=binary)
    loaded = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert loaded.index_to_key == WORDS
    np.testing.assert_array_equal(loaded.vectors, vectors)  # exact, text included


def test_output_gets_the_usual_file_mode(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        save_word2vec(tmp_path / "v.txt", WORDS, np.zeros((4, 2), dtype=np.float32), binary=False)
    finally:
        os.umask(mask)
    assert (tmp_path / "v.txt").stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(OutputError, match="No space left"), atomic_write(target) as out:
        out.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_interrupted_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as out:
        out.write(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_replacing_keeps_the_old_permission_bits(tmp_path):
    target = tmp_path / "private.txt"
    target.write_text("old")
    target.chmod(0o600)
    save_word2vec(target, WORDS, np.zeros((4, 2), dtype=np.float32), binary=False)
    assert target.stat().st_mode & 0o777 == 0o600
    assert target.read_text().startswith("4 2\n")


def test_a_symlink_target_is_replaced_through_the_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with atomic_write(link) as out:
        out.write(b"new")
    assert link.is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]


def test_fifo_and_character_devices_are_streamed_not_replaced(tmp_path):
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    with atomic_write(fifo) as out:
        out.write(b"through the pipe")
    reader.join(timeout=10)
    assert received == [b"through the pipe"]
    assert fifo.is_fifo()
    # A terminal of our own, not /dev/null: were the code wrong, devpts refuses to create
    # files, where /dev/null (as root) would be replaced for the whole machine.
    controller, terminal = os.openpty()
    try:
        name = os.ttyname(terminal)
        with atomic_write(name) as out:
            out.write(b"to the terminal")
        assert os.read(controller, 100).startswith(b"to the terminal")
        assert Path(name).is_char_device()
    finally:
        os.close(controller)
        os.close(terminal)


def test_stdout_target(capsysbinary):
    with atomic_write("-") as out:
        out.write(b"on stdout")
    assert capsysbinary.readouterr().out == b"on stdout"


@pytest.mark.parametrize(
    "where,fragment",
    [
        ("", "empty"),
        ("/proc/embedtrain-vectors.txt", "cannot write"),
        ("/sys/embedtrain-vectors.txt", "cannot write"),
        ("no/such/dir/v.txt", "does not exist"),
        (".", "is a directory"),
    ],
)
def test_check_writable_refuses_what_the_write_would_fail_on(where, fragment):
    with pytest.raises(OutputError, match=fragment):
        check_writable(where)


def test_long_names_write(tmp_path):
    """A 250-character name is legal; its temporary name must be too."""
    target = tmp_path / ("v" * 246 + ".txt")
    check_writable(target)
    save_word2vec(target, WORDS, np.zeros((4, 2), dtype=np.float32), binary=False)
    assert target.read_text().startswith("4 2\n")
    assert len(list(tmp_path.iterdir())) == 1


def test_binary_layout_byte_for_byte(tmp_path):
    """word2vec.c's binary format: "V d\\n", then per word its UTF-8 bytes, a space, d
    little-endian float32 and a newline. Written out by hand here."""
    import struct

    vectors = np.array([[1.0, -2.5], [0.125, 3.0]], dtype=np.float32)
    path = tmp_path / "v.bin"
    save_word2vec(path, ["a", "naïve"], vectors, binary=True)
    expected = (
        b"2 2\n"
        + b"a "
        + struct.pack("<2f", 1.0, -2.5)
        + b"\n"
        + "naïve".encode()
        + b" "
        + struct.pack("<2f", 0.125, 3.0)
        + b"\n"
    )
    assert path.read_bytes() == expected


def test_text_layout_byte_for_byte(tmp_path):
    vectors = np.array([[1.0, -2.5], [0.1, 3.0]], dtype=np.float32)
    path = tmp_path / "v.txt"
    save_word2vec(path, ["a", "naïve"], vectors, binary=False)
    # %.9g of float32(0.1) is 0.100000001: nine significant digits round-trip float32
    assert path.read_bytes() == "2 2\na 1 -2.5\nnaïve 0.100000001 3\n".encode()


def test_the_data_is_synced_before_the_rename(tmp_path, monkeypatch):
    """A crash right after the rename must not leave an empty file: fsync comes first,
    on the temporary file."""
    import os

    import embedtrain.atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        embedtrain.atomic.os, "fsync", lambda fd: events.append(("fsync", fd)) or real_fsync(fd)
    )
    monkeypatch.setattr(
        embedtrain.atomic.os,
        "replace",
        lambda a, b: events.append(("replace", Path(a).name)) or real_replace(a, b),
    )
    with atomic_write(tmp_path / "out.txt") as out:
        out.write(b"data")
        descriptor = out.fileno()
    assert [kind for kind, _ in events] == ["fsync", "replace"]
    assert events[0][1] == descriptor and events[1][1].endswith(".tmp")
