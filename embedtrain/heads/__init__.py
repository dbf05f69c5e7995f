"""Output layers ("heads"), selected by name with ``head``/``--head``."""

from __future__ import annotations

from embedtrain.errors import SettingsError
from embedtrain.heads.adaptive import AdaptiveSoftmax
from embedtrain.heads.base import PADDING, Head, StepResult
from embedtrain.heads.exact import exact_head
from embedtrain.heads.losses import LOSSES
from embedtrain.heads.lsh import LshNegativeSampling
from embedtrain.heads.sparse import HierarchicalSoftmax, NegativeSampling
from embedtrain.settings import Settings

#: Each head name and its class; an exact loss's name stands for its head in the default
#: (factored) form, ``settings.exact`` choosing the form (:func:`head_kind`).
HEADS: dict[str, type[Head]] = {
    "ns": NegativeSampling,
    "lsh": LshNegativeSampling,
    "hs": HierarchicalSoftmax,
    **{name: exact_head(loss, "factored") for name, loss in LOSSES.items()},
    "adaptive": AdaptiveSoftmax,
}


def head_kind(settings: Settings) -> type[Head]:
    """The class of the head ``settings`` name; :class:`SettingsError` for unknown names."""
    if settings.head in LOSSES:
        return exact_head(LOSSES[settings.head], settings.exact)
    try:
        return HEADS[settings.head]
    except KeyError:
        raise SettingsError(f"--head must be one of {', '.join(HEADS)}") from None


__all__ = ["HEADS", "PADDING", "Head", "StepResult", "head_kind"]
