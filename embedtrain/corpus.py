"""Streaming corpus reader: files, directories, stdin, compressed input, in bounded memory.

A corpus is whitespace-separated tokens, one sentence per line. Lines are read in
fixed-size byte blocks (16 KiB), so a text8-style file with no newline at all never becomes
one giant string; sentences longer than ``max_sentence_length`` tokens are cut into
pieces, as gensim does.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Self

from embedtrain.errors import CorpusError
from embedtrain.settings import Settings

BLOCK_BYTES = 1 << 14  # small blocks keep each block's token objects in cache
DEFAULT_MAX_SENTENCE_LENGTH = Settings.max_sentence_length
STDIN = "-"
SENTENCES_PER_BLOCK = 4096  # in-memory sentences handed on per block
#: The corpus shipped with the package (WordNet 3.0 glosses; its copyright notice beside it).
SHIPPED_CORPUS = resources.files("embedtrain.corpora") / "wordnet-glosses.txt.xz"


class _BadByteCounter:
    """Codec error handler that replaces undecodable bytes with U+FFFD and counts them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, error: UnicodeDecodeError) -> tuple[str, int]:
        self.count += error.end - error.start
        return "\ufffd", error.end


_COUNTER = _BadByteCounter()
_ERROR_HANDLER = "embedtrain.count-replace"
codecs.register_error(_ERROR_HANDLER, _COUNTER)


def _open_binary(path: Path) -> BinaryIO:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    return open(path, "rb")


class Corpus:
    """A re-iterable view of a text corpus; each pass streams it from disk.

    ``source`` is a file, a directory (every file below it, recursively, in sorted
    order), ``-`` for stdin (spooled once to a temporary file so that it can be read
    once per epoch), or a list of files and directories read one after the other.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        max_sentence_length: int = DEFAULT_MAX_SENTENCE_LENGTH,
    ) -> None:
        self.max_sentence_length = max_sentence_length
        self.bad_bytes = 0
        self._spool: str | None = None
        sources = [source] if isinstance(source, str | os.PathLike) else list(source)
        if not sources:
            raise CorpusError("the corpus is an empty list of files")
        if [str(s) for s in sources] == [STDIN]:
            self._spool = _spool_stdin()
            self.files = [Path(self._spool)]
            self.name = "<stdin>"
        else:
            self.files = [f for s in sources for f in _list_files(Path(s))]
            more = f" and {len(sources) - 1} more" if len(sources) > 1 else ""
            self.name = f"{sources[0]}{more}"

    def close(self) -> None:
        """Remove the stdin spool file, if any."""
        if self._spool is not None:
            Path(self._spool).unlink(missing_ok=True)
            self._spool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sentence_blocks(self) -> Iterator[list[list[str]]]:
        """Yield lists of sentences (token lists), one list per block read."""
        before = _COUNTER.count
        try:
            for path in self.files:
                yield from self._file_blocks(path)
        finally:
            self.bad_bytes = _COUNTER.count - before

    def sentences(self) -> Iterator[list[str]]:
        """Yield sentences one by one (convenience for tests and small corpora)."""
        for block in self.sentence_blocks():
            yield from block

    def _file_blocks(self, path: Path) -> Iterator[list[list[str]]]:
        limit = self.max_sentence_length
        decoder = codecs.getincrementaldecoder("utf-8")(errors=_ERROR_HANDLER)
        pending: list[str] = []  # tokens of the line being read, not yet terminated
        partial = ""  # text after the last whitespace of the previous block
        try:
            with _open_binary(path) as stream:
                while True:
                    raw = stream.read(BLOCK_BYTES)
                    final = not raw
                    text = partial + decoder.decode(raw, final=final)
                    lines = text.split("\n")
                    partial = "" if final else lines.pop()
                    if not final and not lines:
                        # No newline in this block: keep only the unfinished last token.
                        cut = max(partial.rfind(" "), partial.rfind("\t"))
                        if cut >= 0:
                            pending.extend(partial[:cut].split())
                            partial = partial[cut + 1 :]
                    out: list[list[str]] = []
                    for line in lines:
                        pending.extend(line.split())
                        _flush(pending, out, limit, everything=True)
                        pending = []
                    _flush(pending, out, limit, everything=False)
                    if len(pending) >= limit:
                        pending = pending[(len(pending) // limit) * limit :]
                    if out:
                        yield out
                    if final:
                        return
        except OSError as exc:
            raise CorpusError(f"cannot read corpus {path}: {exc.strerror or exc}") from exc
        except (EOFError, lzma.LZMAError, gzip.BadGzipFile) as exc:
            raise CorpusError(
                f"cannot read corpus {path}: corrupt compressed data ({exc})"
            ) from exc


def _flush(tokens: list[str], out: list[list[str]], limit: int, everything: bool) -> None:
    """Append ``tokens`` to ``out`` in pieces of at most ``limit`` tokens.

    When ``everything`` is false only full pieces are emitted; the caller keeps the rest.
    """
    full = (len(tokens) // limit) * limit
    for start in range(0, full, limit):
        out.append(tokens[start : start + limit])
    if everything and full < len(tokens):
        out.append(tokens[full:])


def _list_files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
        if not files:
            raise CorpusError(f"corpus directory {source} contains no files")
        return files
    if not source.exists():
        raise CorpusError(f"corpus {source} does not exist")
    if not os.access(source, os.R_OK):
        raise CorpusError(f"corpus {source} is not readable")
    return [source]


def _spool_stdin() -> str:
    handle, name = tempfile.mkstemp(prefix="embedtrain-stdin-", suffix=".txt")
    try:
        with os.fdopen(handle, "wb") as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool, BLOCK_BYTES)
    except OSError as exc:
        Path(name).unlink(missing_ok=True)
        raise CorpusError(f"cannot spool stdin to a temporary file: {exc.strerror or exc}") from exc
    return name


class SentenceCorpus:
    """Sentences given in Python (gensim's ``sentences``): any re-iterable of token lists,
    each pass iterating it again; the same interface as :class:`Corpus`.

    A one-shot iterator (a generator) cannot be read once per epoch: ``spool=True`` copies
    it once to a temporary file (pickled blocks, deleted on :meth:`close`).
    """

    def __init__(
        self,
        sentences: Iterable[Sequence[str]],
        max_sentence_length: int = DEFAULT_MAX_SENTENCE_LENGTH,
        spool: bool = False,
    ) -> None:
        self.max_sentence_length = max_sentence_length
        self.bad_bytes = 0
        self.name = "<sentences>"
        self._sentences = sentences
        self._spool: Path | None = None
        if spool:
            self._spool = _spool_sentences(self._checked_blocks(sentences))
            self.name = "<sentence iterator>"

    def close(self) -> None:
        """Remove the spool file, if any."""
        if self._spool is not None:
            self._spool.unlink(missing_ok=True)
            self._spool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sentence_blocks(self) -> Iterator[list[list[str]]]:
        """Yield lists of sentences, cut to ``max_sentence_length`` tokens as files are."""
        if self._spool is None:
            yield from self._checked_blocks(self._sentences)
            return
        with open(self._spool, "rb") as spool:
            while True:
                try:
                    yield pickle.load(spool)
                except EOFError:
                    return

    def sentences(self) -> Iterator[list[str]]:
        for block in self.sentence_blocks():
            yield from block

    def _checked_blocks(self, sentences: Iterable[Sequence[str]]) -> Iterator[list[list[str]]]:
        limit = self.max_sentence_length
        out: list[list[str]] = []
        for number, sentence in enumerate(sentences, 1):
            tokens = _token_list(sentence, number)
            _flush(tokens, out, limit, everything=True)
            if len(out) >= SENTENCES_PER_BLOCK:
                yield out
                out = []
        if out:
            yield out


def _token_list(sentence: Any, number: int) -> list[str]:
    """A sentence as a list of str tokens, or :class:`CorpusError` saying what is wrong."""
    if isinstance(sentence, str | bytes):
        raise CorpusError(
            f"sentence {number} is a string, not a list of tokens "
            "(split it first, e.g. text.split())"
        )
    try:
        tokens = list(sentence)
    except TypeError:
        raise CorpusError(
            f"sentence {number} is a {type(sentence).__name__}, not a list of tokens"
        ) from None
    for token in tokens:
        if not isinstance(token, str):
            raise CorpusError(
                f"sentence {number} has a token of type {type(token).__name__}; tokens are str"
            )
    return tokens


def _spool_sentences(blocks: Iterator[list[list[str]]]) -> Path:
    handle, name = tempfile.mkstemp(prefix="embedtrain-sentences-", suffix=".pickle")
    try:
        with os.fdopen(handle, "wb") as spool:
            for block in blocks:
                pickle.dump(block, spool, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as exc:
        Path(name).unlink(missing_ok=True)
        raise CorpusError(f"cannot spool the sentences to a temporary file: {exc}") from exc
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def open_corpus(corpus: Any, max_sentence_length: int) -> Corpus | SentenceCorpus:
    """The corpus the API was given: None (the shipped corpus), a path, a list of paths,
    a re-iterable of token lists, or a one-shot iterator of them (spooled once)."""
    if corpus is None:
        return Corpus(str(SHIPPED_CORPUS), max_sentence_length)
    if isinstance(corpus, str | os.PathLike):
        return Corpus(corpus, max_sentence_length)
    if (
        isinstance(corpus, list | tuple)
        and corpus
        and all(isinstance(item, str | os.PathLike) for item in corpus)
    ):
        return Corpus(corpus, max_sentence_length)
    try:
        iterator = iter(corpus)
    except TypeError:
        raise CorpusError(
            f"a corpus is a path, a list of paths or an iterable of token lists, "
            f"not a {type(corpus).__name__}"
        ) from None
    return SentenceCorpus(corpus, max_sentence_length, spool=iterator is corpus)
