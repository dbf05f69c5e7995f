"""Training settings: every option's name, default (word2vec/gensim's where sensible) and
validation, defined once for the Python API and the command line.

This module knows no head: :func:`embedtrain.heads.resolve` fills in what depends on the
head (its defaults, its limits) and binds the head's class to the settings, once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from numbers import Integral, Real
from typing import Any

from embedtrain.errors import SettingsError

MODELS = ("skipgram", "cbow")
DEVICES = ("cpu", "gpu", "auto")
ENGINES = ("auto", "compiled", "batched")
#: --cluster values besides ray://HOST:PORT: start a local Ray, or join the running one.
CLUSTERS = ("ray", "auto")
EXACT_FORMS = ("factored", "naive")
AOP_POLICIES = ("topk", "weighted", "random")
AOP_MEMORIES = ("factors", "exact", "none")
LSH_MODES = ("embedding", "label")
LSH_HASHES = ("simhash", "dwta")
LSH_CORRECTIONS = ("none", "logq")
#: Hash bits per LSH table at most: 2**12 buckets of 128 ids is 2 MiB a table and buffer.
MAX_LSH_BITS = 12
#: Settings a resumed run may change; the others define the model and are kept.
RESUMABLE_OVERRIDES = ("epochs", "threads", "device", "engine", "cluster", "workers", "sync_words")


@dataclass
class Settings:
    """Everything that defines a training run; saved with the model for ``resume``."""

    model: str = "cbow"  # gensim's default (sg=0)
    head: str = "ns"
    dim: int = 100
    window: int = 5
    negative: int = 5
    ns_exponent: float = 0.75
    min_count: int = 5
    max_vocab_size: int | None = None
    max_final_vocab: int | None = None
    sample: float = 1e-3
    epochs: int = 5
    lr: float = 0.0  # 0: the head's default (see Head.default_lr), resolved by from_options
    min_lr: float = 1e-4
    threads: int = 2
    seed: int = 1
    batch_size: int = 0  # examples per minibatch on the batched engine; 0: the head's default
    epsilon: float = 0.1  # spherical softmax: P(c|h) = (o_c^2 + eps) / (|o|^2 + D eps)
    #: Exact heads: a constant appended to every hidden vector, so that W's extra column
    #: is a per-word output bias (the factored-softmax authors' constant feature); 0: none.
    bias_feature: float | None = None  # None: the head's default (Head.default_bias_feature)
    init_norm: float | None = None  # input vectors' expected start norm; None: the head's
    zloss_a: float = 1.0  # Z-loss: softplus(a (b - z)) / a; a and b measured (README)
    zloss_b: float = 10.0
    cutoffs: str = ""  # adaptive softmax: "2000,10000"; empty: chosen by the cost model
    div_value: float = 4.0  # adaptive softmax: tail i projects to d / div_value^i (PyTorch's)
    aop_k: int = 0  # dense heads: outer products kept per minibatch (Mem-AOP-GD); 0: exact
    aop_policy: str = "topk"  # which K: the largest norm products (the authors' best)
    aop_memory: str = "factors"  # what becomes of the rest: the authors' factor-row memory
    exact: str = "factored"  # exact heads: "factored" (O(d^2)) or "naive" (O(Dd)) reference
    lsh_mode: str = "label"  # measured better than embedding on bench17m (README)
    lsh_hash: str = "simhash"  # lsh head: hash family
    lsh_bits: int = 6  # lsh head: K, hash bits per table (2**K buckets)
    lsh_tables: int = 10  # lsh head: L tables
    lsh_rehash: int = 100_000  # lsh head: words between table rebuilds (swept: README)
    lsh_correction: str = "none"  # lsh head: "logq" shifts negatives' logits by log(k q)
    max_sentence_length: int = 10_000
    device: str = "auto"  # where the arrays live: cpu, gpu (CuPy) or auto
    engine: str = "auto"  # compiled (Numba per-example) or batched (minibatches); see engines
    cluster: str = ""  # "": one process; ray, auto or ray://HOST:PORT: see distributed.py
    workers: int = 2  # Ray worker actors, each with --threads threads and a corpus shard
    sync_words: int = 500_000  # words per worker and round: ~1 s of compute against a ~0.3 s merge
    #: The head's class, bound by :func:`embedtrain.heads.resolve` (not an option, not saved).
    head_class: Any = field(default=None, repr=False, compare=False, metadata={"saved": False})

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the first nonsensical value (the head's own
        limits are checked by :func:`embedtrain.heads.resolve`)."""
        for name, value in self.to_dict().items():
            expected = _TYPES[name]
            if value is None and name in _OPTIONAL:
                continue
            if isinstance(value, bool) or not isinstance(value, expected):
                kind = _TYPE_NAMES[expected]
                raise SettingsError(f"--{_flag(name)} must be {kind}, not {value!r}")
        for name, value in self.to_dict().items():
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"--{_flag(name)} must be a finite number, not {value}")
        checks = [
            (self.model in MODELS, f"--model must be one of {', '.join(MODELS)}"),
            (self.dim > 0, "--dim must be positive"),
            (self.window > 0, "--window must be positive"),
            (self.negative >= 0, "--negative must be >= 0"),
            (self.min_count >= 1, "--min-count must be >= 1"),
            (
                self.max_vocab_size is None or self.max_vocab_size >= 1,
                "--max-vocab-size must be >= 1",
            ),
            (
                self.max_final_vocab is None or self.max_final_vocab >= 1,
                "--max-final-vocab must be >= 1",
            ),
            (self.sample >= 0, "--sample must be >= 0"),
            (self.epochs > 0, "--epochs must be positive"),
            (self.lr > 0, "--lr must be positive"),
            (0 <= self.min_lr <= self.lr, "--min-lr must be between 0 and --lr"),
            (self.threads > 0, "--threads must be positive"),
            (self.batch_size >= 0, "--batch-size must be >= 0"),
            (self.epsilon > 0, "--epsilon must be positive"),
            (
                self.bias_feature is None or self.bias_feature >= 0,
                "--bias-feature must be >= 0",
            ),
            (self.init_norm is None or self.init_norm > 0, "--init-norm must be positive"),
            (self.zloss_a > 0, "--zloss-a must be positive"),
            (self.aop_k >= 0, "--aop-k must be >= 0"),
            (
                self.aop_policy in AOP_POLICIES,
                f"--aop-policy must be one of {', '.join(AOP_POLICIES)}",
            ),
            (
                self.aop_memory in AOP_MEMORIES,
                f"--aop-memory must be one of {', '.join(AOP_MEMORIES)}",
            ),
            (self.exact in EXACT_FORMS, f"--exact must be one of {', '.join(EXACT_FORMS)}"),
            (self.lsh_mode in LSH_MODES, f"--lsh-mode must be one of {', '.join(LSH_MODES)}"),
            (self.lsh_hash in LSH_HASHES, f"--lsh-hash must be one of {', '.join(LSH_HASHES)}"),
            (1 <= self.lsh_bits <= MAX_LSH_BITS, f"--lsh-bits must be in 1..{MAX_LSH_BITS}"),
            (self.lsh_tables >= 1, "--lsh-tables must be positive"),
            (self.lsh_rehash >= 1, "--lsh-rehash must be positive"),
            (
                self.lsh_correction in LSH_CORRECTIONS,
                f"--lsh-correction must be one of {', '.join(LSH_CORRECTIONS)}",
            ),
            (self.max_sentence_length > 0, "max_sentence_length must be positive"),
            (self.seed >= 0, "--seed must be >= 0"),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
            (self.engine in ENGINES, f"--engine must be one of {', '.join(ENGINES)}"),
            (self.workers >= 1, "--workers must be >= 1"),
            (self.sync_words >= 1, "--sync-words must be >= 1"),
            (
                not self.cluster or self.cluster in CLUSTERS or self.cluster.startswith("ray://"),
                "--cluster must be ray (a new local Ray), auto or ray://HOST:PORT",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

    def to_dict(self) -> dict[str, Any]:
        """The options, as saved with a model."""
        return {name: getattr(self, name) for name in _TYPES}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Settings:
        """Settings from a saved dictionary (unknown keys ignored, missing ones default)."""
        known = {f.name for f in fields(cls)}
        # Models saved before --bias-feature existed have no bias column.
        return cls(**{"bias_feature": 0.0, **{k: v for k, v in values.items() if k in known}})

    @classmethod
    def from_options(cls, **options: Any) -> Settings:
        """Defaults overridden by ``options`` (the API's keyword arguments), not yet
        resolved (:func:`embedtrain.heads.resolve`)."""
        unknown = sorted(set(options) - _TYPES.keys())
        if unknown:
            raise SettingsError(f"unknown option {unknown[0]!r}; options are {', '.join(_TYPES)}")
        return replace(cls(), **options)

    def resumed_with(self, **options: Any) -> Settings:
        """These (saved) settings with the options a resumed run may change, not yet
        resolved."""
        changed = sorted(set(options) - set(RESUMABLE_OVERRIDES))
        if changed:
            raise SettingsError(
                f"a resumed run keeps its saved settings; only {', '.join(RESUMABLE_OVERRIDES)} "
                f"may be given (not {', '.join(changed)})"
            )
        return replace(self, **options)


def _flag(name: str) -> str:
    return name.replace("_", "-")


_OPTIONS = [f for f in fields(Settings) if f.metadata.get("saved", True)]
_TYPES: dict[str, type] = {
    f.name: {"int": Integral, "float": Real, "str": str}[f.type.split(" | ")[0]] for f in _OPTIONS
}
_OPTIONAL = {f.name for f in _OPTIONS if "None" in f.type}
_TYPE_NAMES = {Integral: "an integer", Real: "a number", str: "a string"}
