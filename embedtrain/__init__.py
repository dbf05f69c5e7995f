"""embedtrain: word-embedding training with interchangeable output layers ("heads").

    import embedtrain
    emb = embedtrain.train("corpus.txt", model="skipgram", epochs=5)
    emb.most_similar("king")

:func:`train` and :func:`load` return :class:`Embeddings`; every error the library raises
on purpose is an :class:`EmbedtrainError` (see :mod:`embedtrain.errors`).
"""

from embedtrain.api import load, train
from embedtrain.embeddings import Embeddings
from embedtrain.errors import (
    CorpusError,
    EmbedtrainError,
    GpuUnavailable,
    ModelFileError,
    OutputError,
    SettingsError,
    StopTraining,
    TrainingDiverged,
    TrainingInterrupted,
    UnknownWord,
)
from embedtrain.settings import Settings
from embedtrain.training import EpochReport

__version__ = "0.1.0"
__all__ = [
    "CorpusError",
    "Embeddings",
    "EmbedtrainError",
    "EpochReport",
    "GpuUnavailable",
    "ModelFileError",
    "OutputError",
    "Settings",
    "SettingsError",
    "StopTraining",
    "TrainingDiverged",
    "TrainingInterrupted",
    "UnknownWord",
    "load",
    "train",
]
