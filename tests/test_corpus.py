import bz2
import gzip
import lzma

import pytest

from embedtrain import corpus as corpus_module
from embedtrain.corpus import Corpus
from embedtrain.errors import CorpusError

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


def test_stdin_is_spooled_and_rereadable(tmp_path, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TEXT.encode())))
    with Corpus("-") as reader:
        assert list(reader.sentences()) == SENTENCES
        assert list(reader.sentences()) == SENTENCES
        spool = reader.files[0]
    assert not spool.exists()
