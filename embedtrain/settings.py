"""Training settings, their defaults (word2vec/gensim's where sensible) and validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from embedtrain.errors import UsageError

MODELS = ("skipgram", "cbow")
DEVICES = ("cpu", "gpu", "auto")
EXACT_HEADS = ("spherical", "squared", "softmax")
#: The exact heads' minibatch step holds m x m matrices (and m x D outputs for the naive
#: ones): beyond this the memory, not the arithmetic, decides, and a typo could page the
#: machine to a halt instead of failing.
MAX_EXACT_BATCH = 4096


@dataclass
class Settings:
    """Everything that defines a training run; saved with the model for ``--resume``."""

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
    lr: float = 0.025
    min_lr: float = 1e-4
    threads: int = 2
    seed: int = 1
    batch_size: int = 0  # examples per minibatch on the batched engine; 0: the head's default
    epsilon: float = 1e-3  # spherical softmax: P(c|h) = (o_c^2 + eps) / (|o|^2 + D eps)
    exact: str = "factored"  # exact heads: "factored" (O(d^2)) or "naive" (O(Dd)) reference
    max_sentence_length: int = 10_000

    def validate(self, head_names: tuple[str, ...]) -> None:
        """Raise :class:`UsageError` naming the first nonsensical value."""
        checks = [
            (self.model in MODELS, f"--model must be one of {', '.join(MODELS)}"),
            (self.head in head_names, f"--head must be one of {', '.join(head_names)}"),
            (self.dim > 0, "--dim must be positive"),
            (self.window > 0, "--window must be positive"),
            (self.negative >= 0, "--negative must be >= 0"),
            (self.head != "ns" or self.negative > 0, "--head ns needs --negative >= 1"),
            (self.min_count >= 1, "--min-count must be >= 1"),
            (self.sample >= 0, "--sample must be >= 0"),
            (self.epochs > 0, "--epochs must be positive"),
            (self.lr > 0, "--lr must be positive"),
            (0 <= self.min_lr <= self.lr, "--min-lr must be between 0 and --lr"),
            (self.threads > 0, "--threads must be positive"),
            (self.batch_size >= 0, "--batch-size must be >= 0"),
            (
                self.head not in EXACT_HEADS or self.batch_size <= MAX_EXACT_BATCH,
                f"--batch-size must be <= {MAX_EXACT_BATCH:,} for the exact heads (their "
                + "minibatch step holds m x m matrices)",
            ),
            (self.epsilon > 0, "--epsilon must be positive"),
            (self.exact in ("factored", "naive"), "--exact must be factored or naive"),
            (self.max_sentence_length > 0, "max_sentence_length must be positive"),
            (self.seed >= 0, "--seed must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Settings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
