"""The exceptions the library raises; the command line shows each as one line on stderr
with exit code 2 (130 for :class:`TrainingInterrupted`), never a traceback.

``EmbedtrainError``
    ``SettingsError``      a nonsensical option value or combination (also a ``ValueError``)
    ``CorpusError``        missing, unreadable, empty or unusable corpus; empty vocabulary
    ``ModelFileError``     a model or vectors file that cannot be read, or cannot be resumed
    ``OutputError``        an output that cannot be written, or would replace an input
    ``GpuUnavailable``     ``device="gpu"`` without CuPy or a working CUDA device
    ``ClusterError``       ``cluster=...`` without Ray, an unreachable or too small cluster, or
                           workers lost more often than they may be restarted
    ``TrainingDiverged``   a non-finite loss or parameter: the vectors would be garbage
    ``TrainingInterrupted`` Ctrl-C, SIGTERM or SIGHUP during training; carries the model so far
    ``UnknownWord``        a word not in the vocabulary (also a ``KeyError``)

:class:`StopTraining` is not an error: a callback raises it (or returns ``False``) to end
training early, and :func:`embedtrain.train` returns normally.
"""

from __future__ import annotations

from typing import Any


class EmbedtrainError(Exception):
    """Base of every error the library raises on purpose; the message is for the user."""


class SettingsError(EmbedtrainError, ValueError):
    """A nonsensical option value or combination of options."""


class CorpusError(EmbedtrainError):
    """The corpus is missing, unreadable or empty, or gives an empty vocabulary."""


class ModelFileError(EmbedtrainError):
    """A model or vectors file that cannot be read, or a resume that is impossible."""


class OutputError(EmbedtrainError):
    """An output that cannot be written, or that would replace one of the inputs."""


class OutputInterrupted(OutputError):
    """A stop signal ended the wait for a reader of a FIFO output (nothing was written to
    it)."""


class GpuUnavailable(EmbedtrainError):
    """No usable GPU: CuPy missing or no working CUDA device."""


class ClusterError(EmbedtrainError):
    """Distributed training cannot go on: Ray missing, the cluster unreachable or too
    small, or a worker lost more often than it may be restarted."""


class TrainingDiverged(EmbedtrainError):
    """Training produced a non-finite value; the vectors would be garbage."""


class TrainingInterrupted(EmbedtrainError):
    """Training was interrupted by a signal; ``embeddings`` holds the model so far (its
    ``save`` writes a file that ``train(..., resume=...)`` continues)."""

    def __init__(self, message: str, embeddings: Any = None) -> None:
        super().__init__(message)
        self.embeddings = embeddings


class StopTraining(Exception):
    """Raised by a callback to end training after the current epoch (not an error)."""


class UnknownWord(EmbedtrainError, KeyError):
    """A word that is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0])
