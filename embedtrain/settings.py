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

#: --cluster values besides ray://HOST:PORT: start a local Ray, or join the running one.
CLUSTERS = ("ray", "auto")
#: The largest --dim: beyond it a typo, not a model (the memory it implies is checked too).
MAX_DIM = 100_000
#: Hash bits per LSH table at most: 2**12 buckets of 128 ids is 2 MiB a table and buffer.
MAX_LSH_BITS = 12
#: Settings a resumed run may change; the others define the model and are kept.
RESUMABLE_OVERRIDES = (
    "epochs",
    "threads",
    "device",
    "engine",
    "step",
    "cluster",
    "workers",
    "sync_words",
)


#: Where the lsh head's K, L and rehash defaults come from.
LSH_MEASURED = "the best of a sweep on bench17m"


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] = (),
    positive: bool = False,
    at_least: float | None = None,
    at_most: float | None = None,
    note: str = "",
    default_text: str | None = None,
    metavar: str | None = None,
    command_line: bool = True,
) -> Any:
    """A :class:`Settings` field and everything said about it once: its help text (the
    command line's ``--help``, where ``{placeholders}`` name what only the heads know),
    its allowed values (``choices``, ``positive``, ``at_least``, ``at_most``: checked by
    :meth:`Settings.validate`), and how ``--help`` shows its default (``default_text``,
    or the value, then ``note``)."""
    metadata = {
        "help": help,
        "choices": choices,
        "positive": positive,
        "at_least": at_least,
        "at_most": at_most,
        "note": note,
        "default_text": default_text,
        "metavar": metavar,
        "command_line": command_line,
    }
    return field(default=default, metadata=metadata)


@dataclass
class Settings:
    """Everything that defines a training run; saved with the model for ``resume``.
    Defaults follow word2vec and gensim 4 where they have one."""

    model: str = option(
        "cbow", "architecture; gensim's default (sg=0)", choices=("skipgram", "cbow")
    )
    head: str = option("ns", "output layer: {heads}")
    dim: int = option(100, "vector size", positive=True, at_most=MAX_DIM)
    window: int = option(
        5,
        "maximum context half-width; each position uses a random width 1..window as word2vec",
        positive=True,
        at_most=10_000,
    )
    negative: int = option(
        5, "noise words per target for --head ns and lsh", at_least=0, at_most=1_000
    )
    ns_exponent: float = option(0.75, "noise distribution count**x", at_least=-10, at_most=10)
    min_count: int = option(5, "ignore words seen fewer times", at_least=1)
    max_vocab_size: int | None = option(
        None,
        "prune rare words while counting to hold at most this many distinct words, as word2vec.c",
        at_least=1,
        default_text="no limit",
    )
    max_final_vocab: int | None = option(
        None, "keep at most this many most frequent words", at_least=1, default_text="no limit"
    )
    sample: float = option(
        1e-3, "subsampling threshold for frequent words; 0 disables", at_least=0, at_most=1
    )
    epochs: int = option(5, "passes over the corpus", positive=True, at_most=100_000)
    lr: float = option(
        0.0,
        "initial learning rate; 0 picks the head's: {lr_by_head}",
        positive=True,
        default_text="0",
    )
    min_lr: float = option(1e-4, "final learning rate, reached linearly")
    threads: int = option(
        2,
        "Hogwild worker threads of the compiled engine; the batched engine runs one minibatch "
        "stream",
        positive=True,
        at_most=1_024,
    )
    seed: int = option(1, "random seed; runs are reproducible with --threads 1", at_least=0)
    batch_size: int = option(
        0,
        "examples per minibatch on the batched engine (GPU and exact heads); 0 picks the "
        "head's default",
        at_least=0,
        at_most=10_000_000,
    )
    epsilon: float = option(
        0.1,
        "spherical softmax epsilon: P(c|h) = (o_c^2 + eps) / (|o|^2 + D eps)",
        positive=True,
        at_most=1e6,
    )
    bias_feature: float | None = option(
        None,
        "exact heads: a constant appended to every hidden vector, so that each word's output "
        "row gains a bias; 0 disables",
        at_least=0,
        at_most=1e3,
        default_text="{bias_by_head}",
    )
    init_norm: float | None = option(
        None,
        "expected norm of each input vector at the start: uniform in [-w, w), w = norm sqrt(3 / d)",
        positive=True,
        at_most=1e3,
        default_text="the head's; at d = 100 {init_norm_by_head}: gensim's w = 1/d, except "
        "where a head measured better",
    )
    zloss_a: float = option(
        1.0, "Z-loss sharpness a in softplus(a (b - z)) / a", positive=True, at_most=1e3
    )
    zloss_b: float = option(
        10.0,
        "Z-loss margin b, in standard deviations of the output",
        at_least=-1e3,
        at_most=1e3,
    )
    cutoffs: str = option(
        "",
        "adaptive softmax cluster bounds in frequency rank, e.g. 2000,10000",
        default_text="chosen from the vocabulary's counts by the paper's cost model, and printed",
    )
    div_value: float = option(
        4.0,
        "adaptive softmax: tail cluster i projects to d / div^i dimensions",
        at_least=1,
        at_most=1e3,
        note="PyTorch's",
    )
    aop_k: int = option(
        0,
        "dense heads (softmax, adaptive, --exact naive): apply K of each minibatch's "
        "weight-gradient outer products, Mem-AOP-GD; 0 or >= the batch size: all, exact",
        at_least=0,
        at_most=10_000_000,
    )
    aop_policy: str = option(
        "topk",
        "which K products: the largest norm products, drawn in proportion to their squared "
        "norms, or uniformly",
        choices=("topk", "weighted", "random"),
        note="the authors' best",
    )
    aop_memory: str = option(
        "factors",
        "what becomes of the others: the authors' factor-row memory, the exact products "
        "added back at the next step, or dropped",
        choices=("factors", "exact", "none"),
    )
    exact: str = option(
        "factored",
        "exact heads: factored O(d^2) update or the naive O(Dd) reference",
        choices=("factored", "naive"),
    )
    lsh_mode: str = option(
        "label",
        "lsh head: hash the hidden vector (negatives scoring high for the input) or the "
        "target's output vector (negatives resembling the target)",
        choices=("embedding", "label"),
        note="measured best on bench17m",
    )
    lsh_hash: str = option(
        "simhash",
        "lsh head: SimHash (signed random projections) or DWTA (winner-take-all over "
        "coordinate pairs)",
        choices=("simhash", "dwta"),
    )
    lsh_bits: int = option(
        6,
        f"lsh head: K hash bits per table, 2**K buckets, 1..{MAX_LSH_BITS}",
        at_least=1,
        at_most=MAX_LSH_BITS,
        note=LSH_MEASURED,
    )
    lsh_tables: int = option(
        10, "lsh head: L hash tables", positive=True, at_most=1_000, note=LSH_MEASURED
    )
    lsh_rehash: int = option(
        100_000,
        "lsh head: words between table rebuilds from the current output vectors; the hash "
        "functions are redrawn every 10th rebuild",
        positive=True,
        at_most=10**12,
        note=LSH_MEASURED,
    )
    lsh_correction: str = option(
        "none",
        "lsh head: logq shifts each negative's logit by -log(negative * q), q its sampling "
        "probability; none as the paper's code",
        choices=("none", "logq"),
        note="measured best on bench17m",
    )
    max_sentence_length: int = option(
        10_000,
        "longer sentences are cut into pieces of this many words (word2vec's 1000, gensim's 10000)",
        positive=True,
        at_most=10_000_000,
        command_line=False,
    )
    device: str = option(
        "auto",
        "cpu, gpu (CuPy) or auto: the GPU when one works",
        choices=("cpu", "gpu", "auto"),
    )
    engine: str = option(
        "auto",
        "compiled: Numba SGD (see --step) with Hogwild threads ({compiled_heads}; CPU); "
        "batched: minibatches on the array backend (every head, CPU or GPU; skip-gram groups "
        "each centre word's context words into one target); auto: compiled where it can run, "
        "batched otherwise",
        choices=("auto", "compiled", "batched"),
    )
    step: str | None = option(
        None,
        "the compiled engine's update for the ns and hs heads. shared: the examples of a "
        "window (skip-gram) or of a few consecutive positions (CBOW) share one draw of "
        "negatives (hs: the target's path) and are updated together as small dense "
        "products (HogBatch, Ji et al. 2016); per-example: word2vec.c's and gensim's "
        "update, one example at a time, each with its own negatives",
        choices=("shared", "per-example"),
        default_text="the head's: {step_by_head} (the faster at the same quality, measured)",
    )
    cluster: str = option(
        "",
        "train on Ray workers ({merging_heads}): ray starts a local Ray, auto joins the "
        "running cluster, ray://HOST:PORT a remote one; needs the distributed extra",
        default_text="one process",
        metavar="RAY",
    )
    workers: int = option(
        2,
        "--cluster: worker processes, each with --threads threads and a shard of the corpus",
        at_least=1,
        at_most=10_000,
    )
    sync_words: int = option(
        500_000,
        "--cluster: words each worker trains between two merges of the changed rows (about "
        "1 s of compute against a 0.3 s merge)",
        at_least=1,
        at_most=10**12,
    )
    #: The head's class, bound by :func:`embedtrain.heads.resolve` (not an option, not saved).
    head_class: Any = field(default=None, repr=False, compare=False, metadata={"saved": False})

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the first nonsensical value, from what each
        field's :func:`option` allows (the head's own limits are checked by
        :func:`embedtrain.heads.resolve`)."""
        for name, value in self.to_dict().items():
            expected = _TYPES[name]
            if value is None and name in _OPTIONAL:
                continue
            if isinstance(value, bool) or not isinstance(value, expected):
                kind = _TYPE_NAMES[expected]
                raise SettingsError(f"{option_name(name)} must be {kind}, not {value!r}")
        for name, value in self.to_dict().items():
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"{option_name(name)} must be a finite number, not {value}")
        for spec in OPTIONS:
            value = getattr(self, spec.name)
            if value is not None and (problem := _out_of_range(value, spec.metadata)):
                raise SettingsError(f"{option_name(spec.name)} must be {problem}")
        if not 0 <= self.min_lr <= self.lr:
            raise SettingsError("--min-lr must be between 0 and --lr")
        if self.cluster and not (self.cluster in CLUSTERS or self.cluster.startswith("ray://")):
            raise SettingsError("--cluster must be ray (a new local Ray), auto or ray://HOST:PORT")

    def changed(self) -> list[str]:
        """The options whose values differ from the defaults."""
        return [f.name for f in OPTIONS if getattr(self, f.name) != f.default]

    def to_dict(self) -> dict[str, Any]:
        """The options, as saved with a model."""
        return {name: getattr(self, name) for name in _TYPES}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Settings:
        """Settings from a saved dictionary (unknown keys ignored, missing ones default)."""
        known = _TYPES.keys()
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


def option_name(name: str) -> str:
    """How messages name the option ``name``: its flag, or its keyword where the command
    line has none."""
    spec = next(f for f in OPTIONS if f.name == name)
    return f"--{name.replace('_', '-')}" if spec.metadata["command_line"] else name


def _out_of_range(value: Any, allowed: Any) -> str:
    """What ``value`` must be instead, by the option's ``allowed`` values ('' if it is)."""
    choices, low, high = allowed["choices"], allowed["at_least"], allowed["at_most"]
    if choices and value not in choices:
        return f"one of {', '.join(choices)}"
    if allowed["positive"] and not value > 0:
        return "positive"
    if low is not None and high is not None and not low <= value <= high:
        return f"in {_bound(low)}..{_bound(high)}"
    if low is not None and not value >= low:
        return f">= {_bound(low)}"
    if high is not None and not value <= high:
        return f"<= {_bound(high)}"
    return ""


def _bound(number: float) -> str:
    return f"{number:,}" if isinstance(number, int) else f"{number:g}"


#: The options: every Settings field but the bound head class.
OPTIONS = [f for f in fields(Settings) if f.metadata.get("saved", True)]
_TYPES: dict[str, type] = {
    f.name: {"int": Integral, "float": Real, "str": str}[f.type.split(" | ")[0]] for f in OPTIONS
}
_OPTIONAL = {f.name for f in OPTIONS if "None" in f.type}
_TYPE_NAMES = {Integral: "an integer", Real: "a number", str: "a string"}
