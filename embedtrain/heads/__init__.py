"""Output layers ("heads"), selected by name with ``--head``."""

from __future__ import annotations

from embedtrain.backend import Ops
from embedtrain.heads.base import PADDING, Head
from embedtrain.heads.sparse import HierarchicalSoftmax, NegativeSampling
from embedtrain.settings import Settings
from embedtrain.vocab import Vocabulary

HEADS: dict[str, type[Head]] = {head.name: head for head in (NegativeSampling, HierarchicalSoftmax)}


def make_head(vocab: Vocabulary, settings: Settings, ops: Ops, seed: int) -> Head:
    """Build the head named by ``settings.head``."""
    return HEADS[settings.head](vocab, settings, ops, seed)


__all__ = ["HEADS", "PADDING", "Head", "make_head"]
