"""embedtrain: word-embedding training with interchangeable output layers ("heads").

    import embedtrain
    emb = embedtrain.train("corpus.txt", model="skipgram", epochs=5)
    emb.most_similar("king")

:func:`train` and :func:`load` return :class:`Embeddings`; every error the library raises
on purpose is an :class:`EmbedtrainError` (see :mod:`embedtrain.errors`).
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = [
    "ClusterError",
    "CorpusError",
    "Embeddings",
    "EmbedtrainError",
    "EpochReport",
    "GpuUnavailable",
    "ModelFileError",
    "OutputError",
    "OutputInterrupted",
    "Settings",
    "SettingsError",
    "StopTraining",
    "TrainingDiverged",
    "TrainingInterrupted",
    "UnknownWord",
    "load",
    "train",
]
#: Where the public names live (the exceptions in embedtrain.errors). They are imported on
#: first use, so ``import embedtrain.cli`` stays light and the command line can report a
#: failure to load NumPy or Numba in one line.
_MODULES = {
    "train": "embedtrain.api",
    "load": "embedtrain.api",
    "Embeddings": "embedtrain.embeddings",
    "EpochReport": "embedtrain.history",
    "Settings": "embedtrain.settings",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'embedtrain' has no attribute {name!r}")
    value = getattr(import_module(_MODULES.get(name, "embedtrain.errors")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
