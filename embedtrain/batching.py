"""From text to training batches.

:class:`EncodedCorpus` turns the corpus into a stream of int32 word ids once, into a
temporary file (``-1`` ends a sentence; out-of-vocabulary words are dropped), so the
epochs read ids in fixed-size jobs instead of re-tokenising text: memory stays flat
whatever the corpus size. The file is unlinked as soon as it exists and read through its
open descriptor, so that it never outlives the process, even one that is killed. :func:`window_batch` turns a job into the padded (centre,
contexts) matrices the batched engine feeds the heads.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedtrain.backend import Ops
from embedtrain.corpus import Corpus
from embedtrain.errors import OutputError
from embedtrain.heads.base import PADDING
from embedtrain.vocab import Vocabulary

SENTENCE_END = -1
_OUT_OF_VOCABULARY = -2
_SENTENCE_MARK = "\n"  # never a token: tokens are split on whitespace
_ID_BYTES = np.dtype(np.int32).itemsize
DEFAULT_JOB_WORDS = 50_000


class _WordIds(dict):
    """word -> id, with unknown words mapped to a marker so one C-level map() suffices."""

    def __missing__(self, word: str) -> int:
        return _OUT_OF_VOCABULARY


class EncodedCorpus:
    """The corpus as word ids in a temporary file, read back in sentence-aligned jobs."""

    def __init__(
        self,
        corpus: Corpus,
        vocab: Vocabulary,
        on_block: Callable[[int], None] | None = None,
    ) -> None:
        lookup = _WordIds(vocab.index)
        lookup[_SENTENCE_MARK] = SENTENCE_END
        self.words = 0
        try:
            self._file = tempfile.TemporaryFile(  # noqa: SIM115 -- open until close()
                prefix="embedtrain-ids-"
            )
        except OSError as exc:
            raise OutputError(
                f"cannot create a temporary word-id file: {exc.strerror or exc}"
            ) from exc
        try:
            for block in corpus.sentence_blocks():
                tokens: list[str] = []
                for sentence in block:
                    tokens.extend(sentence)
                    tokens.append(_SENTENCE_MARK)
                ids = np.fromiter(map(lookup.__getitem__, tokens), np.int32, len(tokens))
                ids = ids[ids != _OUT_OF_VOCABULARY]
                ids.tofile(self._file)
                self.words += int(ids.size) - len(block)
                if on_block is not None:
                    on_block(len(tokens) - len(block))
            self._file.flush()
        except OSError as exc:
            self.close()
            raise OutputError(
                f"cannot write temporary word-id file: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the word-id file (it has no name: this frees its disk space)."""
        self._file.close()

    def jobs(self, job_words: int = DEFAULT_JOB_WORDS, skip_words: int = 0) -> Iterator[np.ndarray]:
        """Yield id arrays of about ``job_words`` ids, each ending with a sentence end.

        ``skip_words`` in-vocabulary words are skipped first (whole sentences), to resume
        an interrupted epoch. Each call reads the file from its start with ``os.pread``, at
        its own offset, so it may be called once per epoch, from any thread.
        """
        carry = np.empty(0, dtype=np.int32)
        descriptor = self._file.fileno()
        offset = 0
        while raw := os.pread(descriptor, job_words * _ID_BYTES, offset):
            offset += len(raw)
            chunk = np.frombuffer(bytearray(raw), dtype=np.int32)  # writable, as engines expect
            data = np.concatenate([carry, chunk]) if carry.size else chunk
            ends = np.flatnonzero(data == SENTENCE_END)
            if ends.size == 0:
                carry = data
                continue
            job, carry = data[: ends[-1] + 1], data[ends[-1] + 1 :]
            if skip_words > 0:
                job, skip_words = _skip(job, skip_words)
                if job.size == 0:
                    continue
            yield job


def prefetch(items: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """Read ahead ``depth`` jobs in a background thread (double buffering), so the next
    job is ready while the engine (or the GPU) works on the current one."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the consumer
            put(exc)

    reader = threading.Thread(target=fill, daemon=True)
    reader.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()  # the source (and its file) is not read once this returns


def _skip(job: np.ndarray, words: int) -> tuple[np.ndarray, int]:
    """Drop whole leading sentences of ``job`` holding up to ``words`` words."""
    is_word = job >= 0
    seen = np.cumsum(is_word)
    ends = np.flatnonzero(job == SENTENCE_END)
    done = ends[seen[ends] <= words]
    if done.size == 0:
        return job, words
    cut = done[-1] + 1
    return job[cut:], max(words - int(seen[done[-1]]), 0)


def job_words(job: np.ndarray) -> int:
    """In-vocabulary words in a job."""
    return int(np.count_nonzero(job >= 0))


@dataclass
class WindowBatch:
    """Every kept position of a job with its context words, padded to ``2 * window``."""

    centres: Any  # (n,) word ids
    contexts: Any  # (n, 2 * window) word ids, PADDING where absent


def window_batch(ops: Ops, job: np.ndarray, keep: Any, window: int, random: Any) -> WindowBatch:
    """Subsample a job and build each position's randomly reduced window (as word2vec:
    the half-width is ``window - b`` with b uniform in 0..window-1), on the backend.

    ``job`` is a host array; it is copied to the backend in one transfer.
    """
    xp = ops.xp
    ids = ops.asarray(job)
    is_word = ids >= 0
    sentence = xp.cumsum(~is_word)
    word_ids = xp.where(is_word, ids, 0)
    kept = is_word & (random.random_sample(ids.shape[0]) < keep[word_ids])
    centres = ids[kept]
    sentence = sentence[kept]
    n = centres.shape[0]
    half_width = window - random.randint(0, window, size=n)
    contexts = xp.full((n, 2 * window), PADDING, dtype=np.int32)
    column = 0
    for offset in range(-window, window + 1):
        if offset == 0:
            continue
        source = xp.arange(n) + offset
        inside = (source >= 0) & (source < n)
        source = xp.clip(source, 0, max(n - 1, 0))
        valid = inside & (sentence[source] == sentence) & (abs(offset) <= half_width)
        contexts[:, column] = xp.where(valid, centres[source], PADDING)
        column += 1
    has_context = (contexts != PADDING).any(axis=1)
    return WindowBatch(centres[has_context], contexts[has_context])
