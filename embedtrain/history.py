"""The record of training: one :class:`EpochReport` per epoch, handed to callbacks and kept
with the model (``Embeddings.history``) across the runs that continue it."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class EpochReport:
    """What one epoch (or the part of it a run trained) did; what callbacks receive."""

    epoch: int  # 1-based
    loss: float  # float64 sum over the epoch's examples
    examples: int
    words: int  # in-vocabulary corpus words, before subsampling
    seconds: float
    head_summary: str = ""  # what the head reports of the epoch (Head.epoch_summary)

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.examples, 1)

    @property
    def words_per_second(self) -> float:
        return self.words / max(self.seconds, 1e-9)

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "mean_loss": self.mean_loss}

    @classmethod
    def from_dict(cls, values: dict) -> EpochReport:
        """A saved report (KeyError, TypeError or ValueError if it is not one); reports
        saved before ``head_summary`` existed have none."""
        types = {"epoch": int, "loss": float, "examples": int, "words": int, "seconds": float}
        report = cls(**{name: kind(values[name]) for name, kind in types.items()})
        report.head_summary = str(values.get("head_summary", ""))
        return report
