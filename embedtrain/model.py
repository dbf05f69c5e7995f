"""The model: vocabulary, input vectors, the head and where training stands.

The native file (``.npz``) holds everything needed to continue training: settings,
vocabulary with counts, input vectors, the head's parameters and the words done.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from embedtrain import memory
from embedtrain.atomic import atomic_write
from embedtrain.backend import Ops
from embedtrain.errors import CorpusError, ModelFileError, SettingsError
from embedtrain.heads import Head, resolve
from embedtrain.history import EpochReport
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

#: 2: the factored heads save V and [Q; U; U^-T], not W; 3: [Q; U; r^T; c^T; U^-T].
FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
_ZIP_MAGIC = b"PK\x03\x04"
#: What the zip and zlib readers raise on a damaged archive, besides OSError/ValueError.
_DAMAGED = (
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,  # a flipped compression-method field
    RuntimeError,
    struct.error,
    UnicodeDecodeError,
    OverflowError,
)


class Model:
    """Parameters and progress of one training run."""

    def __init__(
        self,
        vocab: Vocabulary,
        settings: Settings,
        ops: Ops,
        vectors: np.ndarray | None = None,
        head_parameters: dict[str, np.ndarray] | None = None,
        words_done: int = 0,
        history: list[dict] | None = None,
        epoch_words: int = 0,
    ) -> None:
        """A fresh model (seeded initialisation, the settings settled by the head for the
        vocabulary) or, given the arrays, one built from them."""
        kind = settings.head_class
        if head_parameters is None:
            settings = kind.settle(settings, vocab, ops)
            _check_fits(vocab, settings)
        self.vocab = vocab
        self.settings = settings
        self.ops = ops
        if vectors is None:
            rng = np.random.default_rng(settings.seed)
            # Uniform in [-w, w): gensim 4.x's w = 1/d unless the head needs another scale.
            vectors = rng.random((len(vocab), settings.dim), dtype=np.float32)
            vectors *= 2.0
            vectors -= 1.0
            # E|h|^2 = d w^2 / 3 gives the vectors the expected norm init_norm.
            vectors *= np.float32(settings.init_norm * math.sqrt(3.0 / settings.dim))
        self.vectors = ops.asarray(vectors, dtype=np.float32)
        self.head: Head = kind.create(vocab, settings, ops, settings.seed + 1, head_parameters)
        self.words_done = words_done  # in-vocabulary words trained on, over all epochs
        self.history: list[dict] = history or []  # per-epoch reports, over all runs
        #: In-vocabulary words of the training corpus (one epoch); 0 until training starts.
        self.epoch_words = epoch_words

    @classmethod
    def start(
        cls,
        settings: Settings,
        ops: Ops,
        resume: str | Path | None,
        vocabulary: Callable[[], Vocabulary],
    ) -> Model:
        """The model a run starts from: the one saved at ``resume`` (with ``settings``, the
        saved ones with a resumed run's changes), or a fresh one on ``vocabulary()``."""
        if resume is None:
            return cls(vocabulary(), settings, ops)
        model = cls.load(resume, ops, settings)
        model.check_epochs()
        return model

    def use_corpus(self, epoch_words: int) -> None:
        """Train on a corpus of ``epoch_words`` in-vocabulary words per epoch: the one this
        model was trained on, if it was (a different one would shift every epoch's
        position and learning rate)."""
        if self.epoch_words and epoch_words != self.epoch_words:
            raise CorpusError(
                f"the corpus has {epoch_words:,} words of the model's vocabulary, the one it "
                f"was trained on {self.epoch_words:,}: resume on the same corpus"
            )
        self.epoch_words = epoch_words
        self.check_epochs()

    def check_epochs(self) -> None:
        """``settings.epochs`` must cover the epochs already trained."""
        if self.epoch_words and self.words_done > self.epoch_words * self.settings.epochs:
            done = self.words_done / self.epoch_words
            raise SettingsError(
                f"the model has trained {done:.4g} epochs already: --epochs must be at "
                f"least {math.ceil(done)}"
            )

    def host_vectors(self) -> np.ndarray:
        return self.ops.to_host(self.vectors)

    def save(self, path: str | Path) -> None:
        """Write the native model file atomically."""
        header = {
            "format": FORMAT_VERSION,
            "settings": self.settings.to_dict(),
            "words_done": self.words_done,
            "total_corpus_words": self.vocab.total_words,
            "history": self.history,
            "epoch_words": self.epoch_words,
        }
        arrays = {f"head.{k}": v for k, v in self.head.parameters().items()}
        with atomic_write(path) as out:
            np.savez(
                out,
                header=np.array(json.dumps(header)),
                words=np.array(self.vocab.words, dtype=str),
                counts=self.vocab.counts,
                vectors=self.host_vectors(),
                **arrays,
            )

    @staticmethod
    def saved_settings(path: str | Path) -> Settings:
        """The settings stored in a model file, without loading its arrays."""
        with _open_model(path) as data:
            return _header(path, data)[1]

    @classmethod
    def load(cls, path: str | Path, ops: Ops, settings: Settings | None = None) -> Model:
        """Read a native model file written by :meth:`save`, with its saved settings or
        ``settings`` (the saved ones with a resumed run's changes). Every array is checked
        (shape, type, finiteness) before any kernel sees it."""
        with _open_model(path) as data:
            header, saved = _header(path, data)
            settings = settings or saved
            try:
                words = [str(w) for w in data["words"]]
                counts = data["counts"]
                vectors = data["vectors"]
                head = {k[5:]: data[k] for k in data.files if k.startswith("head.")}
                total = int(header["total_corpus_words"])
                words_done = int(header["words_done"])
                history = [EpochReport.from_dict(r).as_dict() for r in header.get("history", [])]
                epoch_words = int(header.get("epoch_words", 0))
            except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
                raise ModelFileError(
                    f"{path} is not an embedtrain model file ({_reason(exc)})"
                ) from exc
            except _DAMAGED as exc:
                raise ModelFileError(f"{path} is damaged ({exc})") from exc
        _check_array(path, "counts", counts, (len(words),), integer=True)
        if (counts < 0).any() or min(words_done, total, epoch_words) < 0:
            raise ModelFileError(f"{path} is damaged (negative counts)")
        _check_array(path, "vectors", vectors, (len(words), settings.dim))
        vocab = Vocabulary(words, counts.astype(np.int64), total)
        kind = settings.head_class
        expected = kind.parameter_shapes(len(vocab), settings)
        if header.get("format") == 2:
            head = kind.upgraded_parameters(head, settings)
        if set(head) != set(expected) and header.get("format") == 1:
            raise ModelFileError(
                f"{path} was saved by an older embedtrain (format 1), whose {settings.head} "
                "head state cannot be continued exactly; train it again"
            )
        if set(head) != set(expected):
            raise ModelFileError(
                f"{path} is damaged (head arrays {sorted(head)}, expected {sorted(expected)})"
            )
        for name, shape in expected.items():
            integer = name in kind.integer_parameters
            _check_array(path, f"head.{name}", head[name], shape, integer=integer)
        problem = kind.parameter_problem(head, len(vocab), settings)
        if problem is not None:
            raise ModelFileError(f"{path} is damaged ({problem})")
        return cls(vocab, settings, ops, vectors, head, words_done, history, epoch_words)


def _check_fits(vocab: Vocabulary, settings: Settings) -> None:
    """:class:`SettingsError` before allocating a model that cannot fit: its input vectors
    and its head's arrays (counted twice: the head's working copies and temporaries)."""
    shapes = settings.head_class.parameter_shapes(len(vocab), settings)
    elements = len(vocab) * settings.dim + 2 * sum(math.prod(shape) for shape in shapes.values())
    needed = 4 * elements
    problem = memory.shortage(needed)
    if problem:
        raise SettingsError(
            f"a model of {len(vocab):,} words x {settings.dim:,} dimensions "
            f"(--head {settings.head}) needs about {memory.size(needed)} for its arrays, and "
            f"{problem}: lower --dim, or raise --min-count or set --max-final-vocab"
        )


def is_model_file(path: str | Path) -> bool:
    """Whether ``path`` is a zip archive, the container of a model file (word2vec vectors
    are text or raw floats)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
    except FileNotFoundError:
        raise ModelFileError(f"file {path} does not exist") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


@contextmanager
def _open_model(path: str | Path) -> Iterator:
    """The model file's arrays, loaded lazily; unreadable files are :class:`ModelFileError`."""
    if not is_model_file(path):
        raise ModelFileError(
            f"{path} is not a model saved by embedtrain (word2vec vectors cannot be resumed: "
            "they hold no output layer or word counts; save with --save-model)"
        )
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ModelFileError(f"{path} is not an embedtrain model file ({_reason(exc)})") from exc
    except _DAMAGED as exc:
        raise ModelFileError(f"{path} is damaged ({exc})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path} is not an embedtrain model file (a single array)")
    with data:
        yield data


def _header(path: str | Path, data) -> tuple[dict, Settings]:
    """The header and the saved settings, checked."""
    try:
        header = json.loads(str(data["header"]))
        if header.get("format") not in READABLE_FORMATS:
            raise ModelFileError(f"{path}: unsupported model format {header.get('format')}")
        settings = resolve(Settings.from_dict(header["settings"]))
    except (KeyError, ValueError, TypeError, AttributeError, EOFError, OSError) as exc:
        raise ModelFileError(f"{path} is not an embedtrain model file ({_reason(exc)})") from exc
    except _DAMAGED as exc:
        raise ModelFileError(f"{path} is damaged ({exc})") from exc
    return header, settings


def _reason(exc: BaseException) -> str:
    """The cause in a few words (NumPy's pickle advice does not apply to a model file)."""
    if isinstance(exc, KeyError):  # NumPy's "NAME is not a file in the archive"
        return f"no {str(exc.args[0]).split()[0]!r}" if exc.args else "a missing entry"
    if "allow_pickle" in str(exc):
        return "it holds Python objects, which a model file never does"
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_array(
    path: str | Path, name: str, array: np.ndarray, shape: tuple[int, ...], integer: bool = False
) -> None:
    """A saved array must have the shape the header implies, a numeric type, finite values."""
    kind = "iu" if integer else "f"
    if array.dtype.kind not in kind or array.shape != shape:
        raise ModelFileError(
            f"{path} is damaged ({name} is {array.dtype} {array.shape}, expected {shape})"
        )
    if not integer and not np.isfinite(array).all():
        raise ModelFileError(f"{path} is damaged ({name} has non-finite values)")
