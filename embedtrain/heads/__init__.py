"""Output layers ("heads"), selected by name with ``--head``."""

from __future__ import annotations

from collections.abc import Callable

from embedtrain.backend import Ops
from embedtrain.heads.base import PADDING, Head, StepResult
from embedtrain.heads.exact import softmax_head, spherical_head, squared_head
from embedtrain.heads.sparse import HierarchicalSoftmax, NegativeSampling
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

HEADS: dict[str, Callable[[Vocabulary, Settings, Ops, int], Head]] = {
    "ns": NegativeSampling,
    "hs": HierarchicalSoftmax,
    "spherical": spherical_head,
    "squared": squared_head,
    "softmax": softmax_head,
}


def make_head(vocab: Vocabulary, settings: Settings, ops: Ops, seed: int) -> Head:
    """Build the head named by ``settings.head``."""
    return HEADS[settings.head](vocab, settings, ops, seed)


__all__ = ["HEADS", "PADDING", "Head", "StepResult", "make_head"]
