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
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Self

from embedtrain.errors import UsageError

BLOCK_BYTES = 1 << 14  # small blocks keep each block's token objects in cache
DEFAULT_MAX_SENTENCE_LENGTH = 10_000
STDIN = "-"


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
    order) or ``-`` for stdin (spooled once to a temporary file so that it can be
    read once per epoch).
    """

    def __init__(
        self,
        source: str | os.PathLike,
        max_sentence_length: int = DEFAULT_MAX_SENTENCE_LENGTH,
    ) -> None:
        if max_sentence_length <= 0:
            raise UsageError("max_sentence_length must be positive")
        self.max_sentence_length = max_sentence_length
        self.bad_bytes = 0
        self._spool: str | None = None
        if str(source) == STDIN:
            self._spool = _spool_stdin()
            self.files = [Path(self._spool)]
            self.name = "<stdin>"
        else:
            self.files = _list_files(Path(source))
            self.name = str(source)

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
            raise UsageError(f"cannot read corpus {path}: {exc.strerror or exc}") from exc
        except (EOFError, lzma.LZMAError, gzip.BadGzipFile) as exc:
            raise UsageError(f"cannot read corpus {path}: corrupt compressed data ({exc})") from exc


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
            raise UsageError(f"corpus directory {source} contains no files")
        return files
    if not source.exists():
        raise UsageError(f"corpus {source} does not exist")
    if not os.access(source, os.R_OK):
        raise UsageError(f"corpus {source} is not readable")
    return [source]


def _spool_stdin() -> str:
    handle, name = tempfile.mkstemp(prefix="embedtrain-stdin-", suffix=".txt")
    try:
        with os.fdopen(handle, "wb") as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool, BLOCK_BYTES)
    except OSError as exc:
        Path(name).unlink(missing_ok=True)
        raise UsageError(f"cannot spool stdin to a temporary file: {exc.strerror or exc}") from exc
    return name
