import bz2
import gzip
import io
import lzma
import os
import sys
import threading
from collections import Counter

import numpy as np
import pytest

from embedtrain import corpus as corpus_module
from embedtrain.batching import SENTENCE_END, EncodedCorpus, prefetch
from embedtrain.corpus import MAX_BAD_BYTE_SHARE, TEXT_CHECK_BYTES, Corpus, open_corpus
from embedtrain.errors import CorpusError
from embedtrain.heads import resolved_settings

TEXT = "the cat sat\non the mat\n\nthe end"
SENTENCES = [["the", "cat", "sat"], ["on", "the", "mat"], ["the", "end"]]


@pytest.mark.parametrize(
    "suffix,opener", [(".txt", open), (".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)]
)
def test_compressed_files_read_transparently(tmp_path, suffix, opener):
    path = tmp_path / f"c{suffix}"
    with opener(path, "wb") as out:
        out.write(TEXT.encode())
    assert list(Corpus(path).sentences()) == SENTENCES


def test_directory_is_read_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("third\n")
    (tmp_path / "a.txt").write_text("first\n")
    (tmp_path / "b" / "a.txt").write_text("second\n")
    assert list(Corpus(tmp_path).sentences()) == [["first"], ["second"], ["third"]]


def test_text8_style_single_line_is_cut_and_read_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "BLOCK_BYTES", 7)  # tokens straddle block borders
    words = [f"w{i}" for i in range(2500)]
    path = tmp_path / "text8"
    path.write_text(" ".join(words))  # no newline at all
    sentences = list(Corpus(path, max_sentence_length=1000).sentences())
    assert [len(s) for s in sentences] == [1000, 1000, 500]
    assert [w for s in sentences for w in s] == words


def test_long_lines_are_cut_like_gensim(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a b c d e\nf g\n")
    assert list(Corpus(path, max_sentence_length=2).sentences()) == [
        ["a", "b"],
        ["c", "d"],
        ["e"],
        ["f", "g"],
    ]


def test_undecodable_bytes_are_replaced_and_counted(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good \xff\xfeword\nfine\n")
    reader = Corpus(path)
    sentences = list(reader.sentences())
    assert sentences == [["good", "\ufffd\ufffdword"], ["fine"]]
    assert reader.bad_bytes == 2


def test_missing_corpus_is_a_usage_error(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        Corpus(tmp_path / "nope.txt")


def test_corrupt_compressed_file_is_a_usage_error(tmp_path):
    path = tmp_path / "c.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(CorpusError, match="cannot read corpus"):
        list(Corpus(path).sentences())


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_stdin_is_spooled_and_rereadable(monkeypatch):
    _stdin(monkeypatch, TEXT.encode())
    with Corpus("-") as reader:
        assert list(reader.sentences()) == SENTENCES
        assert list(reader.sentences()) == SENTENCES


# Binary input is refused while the first blocks are read.

RANDOM = np.random.default_rng(0).bytes(100_000)


def _refused(reader: Corpus, name: str) -> str:
    """The refusal's message, checking that it came before any block was handed on."""
    blocks = reader.sentence_blocks()
    with pytest.raises(CorpusError) as error:
        next(blocks)
    message = str(error.value)
    assert name in message and "--allow-binary" in message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "data,reason",
    [
        (RANDOM, "NUL"),
        (RANDOM.replace(b"\0", b"\1"), "not UTF-8"),  # no NUL: the share of bad bytes
        (gzip.compress(TEXT.encode() * 1000, mtime=0), "name the file *.gz"),
        (lzma.compress(TEXT.encode() * 1000), "name the file *.xz"),
        (bz2.compress(TEXT.encode() * 1000), "name the file *.bz2"),
        (b"text\0with one NUL\n", "NUL"),
    ],
    ids=["random", "random-without-nul", "gzip", "xz", "bzip2", "one-nul"],
)
def test_binary_files_are_refused_before_training(tmp_path, data, reason):
    path = tmp_path / "c.txt"
    path.write_bytes(data)
    assert reason in _refused(Corpus(path), str(path))


def test_an_executable_is_refused():
    assert "NUL" in _refused(Corpus(sys.executable), sys.executable)


def test_gzip_on_stdin_is_refused_before_it_is_spooled(monkeypatch):
    _stdin(monkeypatch, gzip.compress(TEXT.encode(), mtime=0))
    with pytest.raises(CorpusError, match=r"<stdin> is not text: it is compressed data"):
        Corpus("-")


def test_allow_binary_reads_anything(tmp_path, monkeypatch):
    path = tmp_path / "c.bin"
    path.write_bytes(RANDOM)
    reader = open_corpus(path, 1000, allow_binary=True)
    tokens = [w for s in reader.sentences() for w in s]
    oracle = RANDOM.decode("utf-8", errors="replace").split()
    assert len(tokens) == len(oracle)
    assert reader.bad_bytes > 10_000
    _stdin(monkeypatch, RANDOM)
    with Corpus("-", allow_binary=True) as piped:
        assert len([w for s in piped.sentences() for w in s]) == len(oracle)


def test_share_of_bad_bytes_is_judged_on_the_first_block_only(tmp_path):
    """Text with up to the allowed share of bad bytes in its first 64 KiB is read (the bad
    bytes replaced and counted); one more bad byte is refused; bad bytes after the first
    64 KiB are never judged."""
    allowed = int(MAX_BAD_BYTE_SHARE * TEXT_CHECK_BYTES)
    text = bytearray(b"word " * (TEXT_CHECK_BYTES // 5) + b"tail\n")
    for i in range(allowed):
        text[5 * i + 1] = 0xFF  # "w\xffrd"
    path = tmp_path / "c.txt"
    path.write_bytes(bytes(text) + b"\xff" * 10_000)
    reader = Corpus(path)
    tokens = [w for s in reader.sentences() for w in s]
    assert len(tokens) == TEXT_CHECK_BYTES // 5 + 2
    assert reader.bad_bytes == allowed + 10_000
    text[5 * allowed + 1] = 0xFF
    path.write_bytes(text)
    assert f"{allowed + 1:,} of its first" in _refused(Corpus(path), str(path))


def test_compressed_files_are_judged_after_decompression(tmp_path):
    path = tmp_path / "c.gz"
    path.write_bytes(gzip.compress(RANDOM))
    assert "NUL" in _refused(Corpus(path), str(path))


# Sources that can be read only once are spooled.


def test_a_fifo_is_spooled_and_rereadable(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as out:
            out.write(TEXT.encode())

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        reader = Corpus(fifo)
        writer.join(timeout=10)
        assert not writer.is_alive(), "the FIFO was not read when the corpus was opened"
    finally:
        if writer.is_alive():  # release the blocked writer rather than hang
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    with reader:
        assert list(reader.sentences()) == SENTENCES
        assert list(reader.sentences()) == SENTENCES


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="no /dev/fd")
def test_a_dev_fd_pipe_is_spooled_and_rereadable():
    """What the shell passes for ``embedtrain train <(cat c.txt)``."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, TEXT.encode())
        os.close(write_end)
        with Corpus(f"/dev/fd/{read_end}") as reader:
            assert list(reader.sentences()) == SENTENCES
            assert list(reader.sentences()) == SENTENCES
    finally:
        os.close(read_end)


# Reading is linear in the length of a token.

MIXED = (
    "the  cat\tsat\r\non the\u3000mat\xa0here \n\n\u2028naïve café 日本語 "
    + "x" * 300
    + " end\n   \n"
    + " ".join(f"w{i}" for i in range(40))
    + "\n"
    + "y" * 200
)


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("limit", [3, 10_000])
def test_tokens_and_cuts_equal_str_split_at_any_block_size(
    tmp_path, monkeypatch, block_bytes, limit
):
    monkeypatch.setattr(corpus_module, "BLOCK_BYTES", block_bytes)
    path = tmp_path / "c.txt"
    path.write_text(MIXED, encoding="utf-8")
    oracle = []
    for line in MIXED.split("\n"):
        tokens = line.split()
        oracle += [tokens[i : i + limit] for i in range(0, len(tokens), limit)]
    assert list(Corpus(path, max_sentence_length=limit).sentences()) == oracle


def test_a_long_token_is_copied_once(tmp_path, monkeypatch):
    """A 4 MB line without whitespace is read in 256 blocks; its text is copied into the
    token once (one join of all its pieces), not once per block as a quadratic reader does."""
    joined: list[int] = []

    def counting_join(pieces: list[str]) -> str:
        joined.append(sum(map(len, pieces)))
        return "".join(pieces)

    monkeypatch.setattr(corpus_module, "_join", counting_join)
    token = "x" * (4 << 20)
    path = tmp_path / "c.txt"
    path.write_text(f"{token}\nend\n")
    sentences = list(Corpus(path).sentences())
    assert sentences == [[token], ["end"]]
    assert joined == [len(token)]


# Temporary files never outlive the process.


def test_temporary_files_are_unlinked_at_once_and_training_reads_every_word(tmp_path, monkeypatch):
    from embedtrain.engines import choose_engine
    from embedtrain.model import Model
    from embedtrain.training import LocalEpochs, run_training, scan_vocabulary

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    lines = [f"w{i % 7} w{i % 11} w{i % 13} once{i}" for i in range(3000)]
    _stdin(monkeypatch, "\n".join(lines).encode())
    counts = Counter(" ".join(lines).split())
    oracle = [[w for w in line.split() if counts[w] >= 2] for line in lines]

    settings = resolved_settings(dim=8, epochs=2, threads=1, min_count=2, sample=0, seed=1)
    engine, ops = choose_engine(settings)
    with Corpus("-") as corpus:
        model = Model(scan_vocabulary(corpus, settings, quiet=True), settings, ops)
        encoded = EncodedCorpus(corpus, model.vocab)
        try:
            assert list(temporary.iterdir()) == []
            for _ in range(2):  # once per epoch, read in a background thread
                ids = np.concatenate(list(prefetch(encoded.jobs(job_words=1000))))
                decoded: list[list[str]] = [[]]
                for i in ids:
                    if i == SENTENCE_END:
                        decoded.append([])
                    else:
                        decoded[-1].append(model.vocab.words[i])
                assert decoded[:-1] == oracle
            result = run_training(model, LocalEpochs(model, encoded, engine), quiet=True)
        finally:
            encoded.close()
    assert [e.words for e in result.epochs] == [sum(map(len, oracle))] * 2
    assert list(temporary.iterdir()) == []


@pytest.mark.parametrize(
    "suffix,compress", [(".gz", gzip.compress), (".xz", lzma.compress), (".bz2", bz2.compress)]
)
def test_a_truncated_compressed_stream_is_a_corpus_error(tmp_path, suffix, compress):
    """A stream cut short (a download that stopped) is an error, not a silently shorter
    corpus: every complete stream above reads whole."""
    data = ("the cat sat on the mat\n" * 5000).encode()
    path = tmp_path / f"c.txt{suffix}"
    path.write_bytes(compress(data)[:-30])
    with pytest.raises(CorpusError, match="cannot read corpus"):
        list(Corpus(path).sentences())


@pytest.mark.parametrize(
    "tail,bad",
    [(b"\xc3", 1), (b"\xe2\x82", 2), (b"\xf0\x9f\x98", 3), (b"\xe2\x82 x", 2)],
    ids=["2-byte cut after 1", "3-byte cut after 2", "4-byte cut after 3", "cut mid-line"],
)
def test_a_cut_multibyte_sequence_counts_its_bytes(tmp_path, tail, bad):
    """The warning counts undecodable bytes, not decoding errors: a 3-byte sequence cut
    after 2 bytes is one error of 2 bytes."""
    path = tmp_path / "cut.txt"
    path.write_bytes("naïve words here\n".encode() * 400 + tail)
    reader = Corpus(path)
    list(reader.sentences())
    assert reader.bad_bytes == bad


def test_a_corrupted_gzip_stream_is_a_corpus_error(tmp_path):
    """A flipped byte inside the deflate data is a zlib error, not a traceback."""
    data = bytearray(gzip.compress(("the cat sat on the mat\n" * 5000).encode()))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "c.txt.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match="cannot read corpus"):
        list(Corpus(path).sentences())
