"""Label names and the project's single definition of "refused".

``REFUSAL_LABELS`` = {full_refusal, partial_refusal, empty}: every rate in
:mod:`safetygeo.behavior.metrics` counts these as *not complied*.

Example:
    >>> sorted(REFUSAL_LABELS)
    ['empty', 'full_refusal', 'partial_refusal']
"""

from __future__ import annotations

from typing import Literal

from safetygeo.errors import SafetyGeoError

__all__ = ["LABELS", "REFUSAL_LABELS", "EmptyCompletionError", "Label", "check_text",
           "is_refusal", "to_binary"]

Label = Literal["full_refusal", "partial_refusal", "compliance", "empty"]
#: Every label a classifier here returns.
LABELS: tuple[str, ...] = ("full_refusal", "partial_refusal", "compliance", "empty")
#: Labels counted as "did not comply" by the rates in :mod:`safetygeo.behavior.metrics`.
REFUSAL_LABELS: frozenset[str] = frozenset({"full_refusal", "partial_refusal", "empty"})


class EmptyCompletionError(SafetyGeoError):
    """A completion passed for classification is empty (the message names its index)."""


def check_text(completion: object) -> str:
    """``completion`` itself if it is a ``str``, else :class:`SafetyGeoError` naming its type.

    Example:
        >>> check_text("ok")
        'ok'
    """
    if not isinstance(completion, str):
        raise SafetyGeoError(f"a completion must be a str, got {type(completion).__name__}")
    return completion


def is_refusal(label: str) -> bool:
    """Whether a label counts as *not complied* (full or partial refusal, or empty).

    Example:
        >>> [is_refusal(x) for x in ("full_refusal", "partial_refusal", "compliance", "empty")]
        [True, True, False, True]
    """
    if label not in LABELS:
        raise SafetyGeoError(f"unknown refusal label {label!r}; labels are {LABELS}")
    return label in REFUSAL_LABELS


def to_binary(label: str) -> str:
    """Collapse to ``"refusal"`` / ``"compliance"`` (partial and empty count as refusal), the
    only distinction the string-match baselines make.

    Example:
        >>> to_binary("partial_refusal"), to_binary("compliance")
        ('refusal', 'compliance')
    """
    return "refusal" if is_refusal(label) else "compliance"
