"""Output layers ("heads"), selected by name with ``head``/``--head``."""

from __future__ import annotations

from embedtrain.errors import SettingsError
from embedtrain.heads.adaptive import AdaptiveSoftmax
from embedtrain.heads.base import PADDING, Head, StepResult
from embedtrain.heads.exact import ExactHead
from embedtrain.heads.lsh import LshNegativeSampling
from embedtrain.heads.sparse import HierarchicalSoftmax, NegativeSampling

#: Each head name and its kind: the class whose limits and capabilities apply and whose
#: ``create`` builds it (the exact kind builds its factored or naive form).
HEADS: dict[str, type[Head]] = {
    "ns": NegativeSampling,
    "lsh": LshNegativeSampling,
    "hs": HierarchicalSoftmax,
    "spherical": ExactHead,
    "squared": ExactHead,
    "taylor": ExactHead,
    "zloss": ExactHead,
    "softmax": ExactHead,
    "adaptive": AdaptiveSoftmax,
}


def head_kind(name: str) -> type[Head]:
    """The kind of the head called ``name``; :class:`SettingsError` for unknown names."""
    try:
        return HEADS[name]
    except KeyError:
        raise SettingsError(f"--head must be one of {', '.join(HEADS)}") from None


__all__ = ["HEADS", "PADDING", "Head", "StepResult", "head_kind"]
