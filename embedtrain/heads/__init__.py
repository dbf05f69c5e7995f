"""Output layers ("heads"), selected by name with ``head``/``--head``."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from embedtrain.errors import SettingsError
from embedtrain.heads.adaptive import AdaptiveSoftmax
from embedtrain.heads.base import PADDING, Head, StepResult
from embedtrain.heads.exact import exact_head
from embedtrain.heads.losses import LOSSES
from embedtrain.heads.lsh import LshNegativeSampling
from embedtrain.heads.sparse import HierarchicalSoftmax, NegativeSampling
from embedtrain.settings import Settings

#: Each head name and its class; an exact loss's name stands for its head in the default
#: (factored) form, ``settings.exact`` choosing the form (:func:`resolve`).
HEADS: dict[str, type[Head]] = {
    "ns": NegativeSampling,
    "lsh": LshNegativeSampling,
    "hs": HierarchicalSoftmax,
    **{name: exact_head(loss, "factored") for name, loss in LOSSES.items()},
    "adaptive": AdaptiveSoftmax,
}


#: The options that only some heads take: for each group, the heads that take it, and
#: the test of a head class (with the settings) that says so. One given to another head
#: is refused rather than ignored (:func:`resolve`).
HEAD_OPTIONS: dict[tuple[str, ...], tuple[str, Callable[[type[Head], Settings], bool]]] = {
    ("negative", "ns_exponent"): (
        "the ns and lsh heads",
        lambda head, s: head.name in ("ns", "lsh"),
    ),
    ("step",): ("the ns and hs heads", lambda head, s: head.has_shared_step),
    ("epsilon",): ("the spherical head", lambda head, s: head.name == "spherical"),
    ("zloss_a", "zloss_b"): ("the zloss head", lambda head, s: head.name == "zloss"),
    ("exact",): (
        "the exact heads with a factored form ("
        + ", ".join(name for name, loss in LOSSES.items() if loss.factored)
        + ")",
        lambda head, s: head.name in LOSSES and LOSSES[head.name].factored,
    ),
    ("aop_policy", "aop_memory"): (
        "the dense heads (softmax, adaptive, --exact naive)",
        lambda head, s: head.has_dense_updates(s),
    ),
    ("cutoffs", "div_value"): ("the adaptive head", lambda head, s: head.name == "adaptive"),
    ("lsh_mode", "lsh_hash", "lsh_bits", "lsh_tables", "lsh_rehash", "lsh_correction"): (
        "the lsh head",
        lambda head, s: head.name == "lsh",
    ),
    ("workers", "sync_words"): ("--cluster runs", lambda head, s: bool(s.cluster)),
}


def resolve(settings: Settings, given: Collection[str] = ()) -> Settings:
    """``settings`` made ready to train with, the one place a head name is looked up: the
    head's class bound to them (``settings.head_class``), the head's defaults written in
    for ``lr = 0``, ``bias_feature = None`` and ``init_norm = None``, and every value
    checked, the head's own limits included; an option in ``given`` (those the user set)
    that the head does not take is refused (:data:`HEAD_OPTIONS`). :class:`SettingsError`
    names the first value that is wrong."""
    if not isinstance(settings.head, str) or settings.head not in HEADS:
        raise SettingsError(f"--head must be one of {', '.join(HEADS)}")
    kind = HEADS[settings.head]
    if settings.head in LOSSES and isinstance(settings.exact, str):
        kind = exact_head(LOSSES[settings.head], settings.exact)
    settings = kind.with_defaults(replace(settings, head_class=kind))
    settings.validate()
    _check_applicable(settings, kind)
    _check_given(settings, kind, given)
    kind.check_settings(settings)
    return settings


def resolved_settings(**options: Any) -> Settings:
    """The defaults overridden by ``options`` (the API's keyword arguments), resolved."""
    return resolve(Settings.from_options(**options), given=options)


def _check_given(settings: Settings, kind: type[Head], given: Collection[str]) -> None:
    """Each option the user set must be one the head takes (:data:`HEAD_OPTIONS`)."""
    for names, (takers, takes) in HEAD_OPTIONS.items():
        for name in names:
            if name in given and not takes(kind, settings):
                flag = f"--{name.replace('_', '-')}"
                raise SettingsError(
                    f"{flag} applies to {takers}, not to --head {settings.head}"
                    if not takers.startswith("--")
                    else f"{flag} applies to {takers} only"
                )


def _check_applicable(settings: Settings, kind: type[Head]) -> None:
    """Options that only some heads take, refused for the others (naming those that do)."""

    def heads_that(capable: Callable[[type[Head]], bool]) -> str:
        return ", ".join(name for name, head in HEADS.items() if capable(head))

    if settings.bias_feature and not kind.takes_bias_feature:
        raise SettingsError(
            f"--bias-feature: the {settings.head} head has no output bias to learn (it "
            f"applies to the exact heads: {heads_that(lambda head: head.takes_bias_feature)})"
        )
    if settings.cluster and (settings.engine == "batched" or settings.device == "gpu"):
        raise SettingsError("--cluster runs the compiled engine on the CPU of each worker")
    if settings.cluster and not kind.merges_by_row:
        # The rounds merge the rows each worker changed (distributed.merge_deltas).
        mergers = heads_that(lambda head: head.merges_by_row).replace(", ", " and ")
        raise SettingsError(
            f"--cluster trains the {mergers} heads only: copies of the {settings.head} "
            "head trained apart do not merge row by row (see the docs, Distributed training)"
        )
    if settings.aop_k and not kind.has_dense_updates(settings):
        raise SettingsError(
            f"--aop-k: the {settings.head} head has no dense weight-gradient product to "
            "approximate (Mem-AOP-GD applies to softmax, adaptive and --exact naive)"
        )


__all__ = ["HEADS", "PADDING", "Head", "StepResult", "resolve", "resolved_settings"]
