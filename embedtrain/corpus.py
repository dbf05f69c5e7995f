"""Streaming corpus reader: files, directories, stdin, compressed input, in bounded memory.

A corpus is whitespace-separated tokens, one sentence per line. Lines are read in
fixed-size byte blocks (16 KiB), so a text8-style file with no newline at all never becomes
one giant string; sentences longer than ``max_sentence_length`` tokens are cut into
pieces, as gensim does. Input that is clearly not text is refused before it is trained on,
and sources that can be read only once are spooled to a temporary file that has no name.
"""

from __future__ import annotations

import codecs
import io
import lzma
import os
import pickle
import re
import shutil
import stat
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Any, BinaryIO, Self

from embedtrain import compression
from embedtrain.errors import CorpusError
from embedtrain.settings import Settings

BLOCK_BYTES = 1 << 14  # small blocks keep each block's token objects in cache
DEFAULT_MAX_SENTENCE_LENGTH = Settings.max_sentence_length
STDIN = "-"
SENTENCES_PER_BLOCK = 4096  # in-memory sentences handed on per block
SHIPPED_CORPUS_NAME = "wordnet-glosses.txt.xz"


def shipped_corpus() -> Path:
    """The corpus shipped with the package (WordNet 3.0 glosses; its copyright notice
    beside it), installed as package data."""
    try:
        return Path(str(resources.files("embedtrain.corpora") / SHIPPED_CORPUS_NAME))
    except ModuleNotFoundError:
        raise CorpusError(
            "the shipped corpus is not installed (pip install -e . or pip install .)"
        ) from None


#: The binary check looks at the first 64 KiB of each file (after decompression): enough
#: to see a binary's or compressed stream's bytes, and cheap even for many small files.
TEXT_CHECK_BYTES = 1 << 16
#: More than 1% undecodable bytes is not UTF-8 text: real text with a stray Latin-1 byte
#: or two stays far below, while 10% (an executable) to 45% (compressed data, random
#: bytes) of binary data is not UTF-8. Latin-1 text (about 2% and more) is refused too:
#: its accented words would be mangled; convert it to UTF-8 first.
MAX_BAD_BYTE_SHARE = 0.01
#: The share is taken over at least 4 KiB, so that a few stray bytes in a tiny file are
#: not a high share of it.
_MIN_JUDGED_BYTES = 1 << 12
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # how surrogateescape decodes a bad byte


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


class _Spool:
    """A source that can be read only once (stdin, a FIFO, a ``/dev/fd`` pipe, a device),
    copied once to a temporary file that is unlinked as soon as it exists, so that nothing
    is left behind even if the process is killed; each pass reads the open descriptor."""

    def __init__(self, name: str, file: IO[bytes]) -> None:
        self.name = name
        self.file = file

    def __str__(self) -> str:
        return self.name

    def open(self) -> BinaryIO:
        return io.BufferedReader(_DescriptorReader(self.file.fileno()))

    def close(self) -> None:
        self.file.close()


class _DescriptorReader(io.RawIOBase):
    """Reads an open descriptor from its start with ``os.pread``: each reader keeps its own
    offset, so passes (and threads) never move each other's position."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self._descriptor, len(buffer), self._offset)
        buffer[: len(data)] = data
        self._offset += len(data)
        return len(data)


def _open_binary(source: Path | _Spool) -> BinaryIO:
    """The source's bytes, decompressed when its name ends in .gz, .bz2 or .xz."""
    if isinstance(source, _Spool):
        decompress = compression.opener(source)
        stream = source.open()
        return decompress(stream) if decompress else stream
    return compression.open_read(source)


def _check_text(head: bytes, name: str) -> None:
    """Refuse ``head`` (a file's first bytes) unless it looks like UTF-8 text."""
    reason = text_problem(head)
    if reason is not None:
        raise CorpusError(
            f"corpus {name} is not text: {reason}; --allow-binary (allow_binary=True) reads "
            "it anyway"
        )


def text_problem(head: bytes) -> str | None:
    """Why ``head`` (a file's first bytes) is not UTF-8 text, or None if it looks like it."""
    suffix = next((s for magic, s in compression.MAGIC.items() if head.startswith(magic)), None)
    bad = len(_ESCAPED_BYTE.findall(head.decode("utf-8", errors="surrogateescape")))
    if suffix is not None and (b"\0" in head or bad):
        reason = f"it is compressed data (decompress it, or name the file *{suffix})"
    elif b"\0" in head:
        reason = "it contains NUL bytes (binary data or UTF-16 text)"
    elif bad > MAX_BAD_BYTE_SHARE * max(len(head), _MIN_JUDGED_BYTES):
        reason = (
            f"{bad:,} of its first {len(head):,} bytes are not UTF-8 (if it is text in another "
            "encoding, convert it: iconv -f latin1 -t utf-8)"
        )
    else:
        return None
    return reason


class Corpus:
    """A re-iterable view of a text corpus; each pass streams it from disk.

    ``source`` is a file, a directory (every file below it, recursively, in sorted
    order), ``-`` for stdin, or a list of files and directories read one after the other.
    Stdin and any other source that can be read only once (a FIFO, a ``/dev/fd`` pipe, a
    device) are spooled once to a temporary file, so that they can be read once per epoch.
    Data that is clearly not text (NUL bytes, much that is not UTF-8) raises
    :class:`CorpusError` while the first blocks are read, unless ``allow_binary``.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        max_sentence_length: int = DEFAULT_MAX_SENTENCE_LENGTH,
        allow_binary: bool = False,
    ) -> None:
        self.max_sentence_length = max_sentence_length
        self.allow_binary = allow_binary
        self.bad_bytes = 0
        sources = [source] if isinstance(source, str | os.PathLike) else list(source)
        if not sources:
            raise CorpusError("the corpus is an empty list of files")
        self.files: list[Path | _Spool] = []
        try:
            if [str(s) for s in sources] == [STDIN]:
                if sys.stdin is None or sys.stdin.closed:
                    raise CorpusError(
                        "standard input is closed: pipe text into it, or give a corpus file"
                    )
                self.files.append(_spool("<stdin>", sys.stdin.buffer, allow_binary))
                self.name = "<stdin>"
            else:
                for s in sources:
                    self.files.extend(_list_files(Path(s), allow_binary))
                more = f" and {len(sources) - 1} more" if len(sources) > 1 else ""
                self.name = f"{sources[0]}{more}"
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the spool files, if any (they have no name: nothing is left on disk)."""
        for source in self.files:
            if isinstance(source, _Spool):
                source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sentence_blocks(self) -> Iterator[list[list[str]]]:
        """Yield lists of sentences (token lists), one list per block read."""
        before = _COUNTER.count
        try:
            for source in self.files:
                yield from self._file_blocks(source)
        finally:
            self.bad_bytes = _COUNTER.count - before

    def sentences(self) -> Iterator[list[str]]:
        """Yield sentences one by one (convenience for tests and small corpora)."""
        for block in self.sentence_blocks():
            yield from block

    def _file_blocks(self, source: Path | _Spool) -> Iterator[list[list[str]]]:
        reader = _LineReader(self.max_sentence_length)
        try:
            with _open_binary(source) as stream:
                head = stream.read(TEXT_CHECK_BYTES)
                if not self.allow_binary:
                    _check_text(head, str(source))
                for start in range(0, len(head), BLOCK_BYTES):
                    if out := reader.feed(head[start : start + BLOCK_BYTES]):
                        yield out
                while raw := stream.read(BLOCK_BYTES):
                    if out := reader.feed(raw):
                        yield out
                if out := reader.finish():
                    yield out
        except OSError as exc:
            raise CorpusError(f"cannot read corpus {source}: {exc.strerror or exc}") from exc
        except (EOFError, lzma.LZMAError, zlib.error) as exc:  # gzip's BadGzipFile is an OSError
            raise CorpusError(
                f"cannot read corpus {source}: corrupt compressed data ({exc})"
            ) from exc


class _LineReader:
    """Turns a file's byte blocks into sentences, in time linear in the file's size.

    A token may span many blocks (a file with no whitespace at all is one token): its
    pieces are kept in a list and joined once when it ends, never re-concatenated per block.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors=_ERROR_HANDLER)
        self.pending: list[str] = []  # tokens of the line being read, not yet terminated
        self.pieces: list[str] = []  # the unfinished token at the end of the text read

    def feed(self, raw: bytes) -> list[list[str]]:
        """The sentences completed (or cut at ``limit`` tokens) by the next block."""
        return self._sentences(self.decoder.decode(raw), final=False)

    def finish(self) -> list[list[str]]:
        """The sentences left at the end of the file."""
        return self._sentences(self.decoder.decode(b"", final=True), final=True)

    def _sentences(self, text: str, final: bool) -> list[list[str]]:
        out: list[list[str]] = []
        lines = text.split("\n") if text else []
        for number, line in enumerate(lines, 1):
            open_end = not final and number == len(lines)  # the line goes on in the next block
            tokens = line.split()
            joins = bool(self.pieces) and line[:1] != "" and not line[0].isspace()
            goes_on = open_end and line[-1:] != "" and not line[-1].isspace()
            if joins and goes_on and len(tokens) == 1:  # no whitespace in the whole line
                self.pieces.append(line)
                continue
            if joins:
                tokens[0] = _join([*self.pieces, tokens[0]])
            elif self.pieces:
                self.pending.append(_join(self.pieces))
            self.pieces = [tokens.pop()] if goes_on else []
            self.pending.extend(tokens)
            if not open_end:
                _flush(self.pending, out, self.limit, everything=True)
                self.pending = []
        if not final:
            _flush(self.pending, out, self.limit, everything=False)
            del self.pending[: len(self.pending) // self.limit * self.limit]
            return out
        if self.pieces:
            self.pending.append(_join(self.pieces))
        _flush(self.pending, out, self.limit, everything=True)
        return out


def _join(pieces: list[str]) -> str:
    """A token from its pieces: the one place where a long token's text is copied."""
    return "".join(pieces)


def _flush(tokens: list[str], out: list[list[str]], limit: int, everything: bool) -> None:
    """Append ``tokens`` to ``out`` in pieces of at most ``limit`` tokens.

    When ``everything`` is false only full pieces are emitted; the caller keeps the rest.
    """
    full = (len(tokens) // limit) * limit
    for start in range(0, full, limit):
        out.append(tokens[start : start + limit])
    if everything and full < len(tokens):
        out.append(tokens[full:])


def corpus_files(source: str | os.PathLike) -> list[Path]:
    """The files on disk a path corpus reads (none for stdin or a pipe): what an output
    must never replace."""
    path = Path(source)
    if str(source) == STDIN or not path.exists():
        return []
    if path.is_dir():
        return _directory_files(path)
    return [path] if path.is_file() else []


def _directory_files(source: Path) -> list[Path]:
    """Every file below a directory corpus, recursively, in sorted order."""
    return sorted(p for p in source.rglob("*") if p.is_file())


def _list_files(source: Path, allow_binary: bool) -> list[Path | _Spool]:
    """The files to read for ``source``; one that can be read only once is spooled."""
    if source.is_dir():
        files: list[Path | _Spool] = list(_directory_files(source))
        if not files:
            raise CorpusError(f"corpus directory {source} contains no files")
        return files
    if not source.exists():
        hint = ""
        if " " in str(source).strip():
            hint = (
                ": it looks like a sentence, and strings are taken as file names; give "
                "sentences as lists of tokens, e.g. [s.split() for s in sentences]"
            )
        raise CorpusError(f"corpus {source} does not exist{hint}")
    if not os.access(source, os.R_OK):
        raise CorpusError(f"corpus {source} is not readable")
    if stat.S_ISREG(source.stat().st_mode):
        return [source]
    try:
        with open(source, "rb") as stream:
            return [_spool(str(source), stream, allow_binary)]
    except OSError as exc:  # opening it: _spool tells its own errors
        raise CorpusError(f"cannot read corpus {source}: {exc.strerror or exc}") from exc


def _spool(name: str, stream: BinaryIO, allow_binary: bool) -> _Spool:
    """Copy a one-shot stream to an unlinked temporary file. Its first bytes are checked
    before the rest is copied (unless compressed or ``allow_binary``), so that an endless
    binary source such as a device is refused before it fills the disk."""
    try:
        head = stream.read(TEXT_CHECK_BYTES)
        if not allow_binary and compression.opener(name) is None:
            _check_text(head, name)
        spool = tempfile.TemporaryFile(prefix="embedtrain-spool-")  # noqa: SIM115 -- kept open
        try:
            spool.write(head)
            shutil.copyfileobj(stream, spool, BLOCK_BYTES)
            spool.flush()
        except BaseException:
            spool.close()
            raise
    except OSError as exc:
        raise CorpusError(
            f"cannot spool {name} to a temporary file: {exc.strerror or exc}"
        ) from exc
    return _Spool(name, spool)


class SentenceCorpus:
    """Sentences given in Python (gensim's ``sentences``): any re-iterable of token lists,
    each pass iterating it again; the same interface as :class:`Corpus`.

    A one-shot iterator (a generator) cannot be read once per epoch: ``spool=True`` copies
    it once to a temporary file (pickled blocks; unlinked at once, closed on :meth:`close`).
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
        self._spool: _Spool | None = None
        if spool:
            self._spool = _spool_sentences(self._checked_blocks(sentences))
            self.name = "<sentence iterator>"

    def close(self) -> None:
        """Close the spool file, if any (it has no name: nothing is left on disk)."""
        if self._spool is not None:
            self._spool.close()
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
        with self._spool.open() as spool:
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


def _spool_sentences(blocks: Iterator[list[list[str]]]) -> _Spool:
    spool = tempfile.TemporaryFile(prefix="embedtrain-sentences-")  # noqa: SIM115 -- kept open
    try:
        for block in blocks:
            pickle.dump(block, spool, protocol=pickle.HIGHEST_PROTOCOL)
        spool.flush()
    except OSError as exc:
        spool.close()
        raise CorpusError(f"cannot spool the sentences to a temporary file: {exc}") from exc
    except BaseException:
        spool.close()
        raise
    return _Spool("<sentence iterator>", spool)


def names_files(corpus: Any) -> bool:
    """Whether the API's ``corpus`` names files (or stdin, ``-``): a path or a non-empty
    list of them, rather than sentences."""
    if isinstance(corpus, str | os.PathLike):
        return True
    return (
        isinstance(corpus, list | tuple)
        and bool(corpus)
        and all(isinstance(item, str | os.PathLike) for item in corpus)
    )


def open_corpus(
    corpus: Any, max_sentence_length: int, allow_binary: bool = False
) -> Corpus | SentenceCorpus:
    """The corpus the API was given: None (the shipped corpus), a path, a list of paths,
    a re-iterable of token lists, or a one-shot iterator of them (spooled once).
    ``allow_binary`` reads files that do not look like text (see :class:`Corpus`)."""
    if corpus is None:
        return Corpus(shipped_corpus(), max_sentence_length)
    if names_files(corpus):
        return Corpus(corpus, max_sentence_length, allow_binary)
    try:
        iterator = iter(corpus)
    except TypeError:
        raise CorpusError(
            f"a corpus is a path, a list of paths or an iterable of token lists, "
            f"not a {type(corpus).__name__}"
        ) from None
    return SentenceCorpus(corpus, max_sentence_length, spool=iterator is corpus)
