"""Input validators shared by every layer: each raises a typed error naming the input.

Example:
    >>> positive_int(3, "batch_size"), finite_float(0.5, "alpha")
    (3, 0.5)
    >>> prompt_list("How do I pick a lock?", "prompts")
    ['How do I pick a lock?']
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from safetygeo.errors import EmptyPromptSetError, NonFiniteError, SafetyGeoError

__all__ = ["finite_float", "positive_int", "prompt_list"]


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``; bools, floats and strings are rejected.

    Example:
        >>> positive_int(0, "n_null")
        Traceback (most recent call last):
        ...
        safetygeo.errors.SafetyGeoError: n_null must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise SafetyGeoError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def finite_float(value: Any, name: str) -> float:
    """``value`` as a finite float (NaN and ±inf raise :class:`NonFiniteError`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SafetyGeoError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise NonFiniteError(f"{name} must be finite, got {out}")
    return out


def prompt_list(prompts: Any, name: str = "prompts", *, allow_empty: bool = False) -> list[str]:
    """Prompts as a list of non-empty strings.

    A bare ``str`` is one prompt (never split into characters); a ``PromptSet`` gives its
    prompts; ``None`` entries, non-strings and empty / whitespace-only strings are rejected
    with their index.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    elif hasattr(prompts, "prompts") and not isinstance(prompts, dict):
        prompts = list(prompts.prompts)
    if prompts is None or isinstance(prompts, (bytes, dict)) or not isinstance(prompts, Iterable):
        raise SafetyGeoError(f"{name} must be a list of strings (or a PromptSet), got "
                             f"{type(prompts).__name__}")
    out = list(prompts)
    for i, p in enumerate(out):
        if not isinstance(p, str):
            raise SafetyGeoError(f"{name}[{i}] must be a string, got {type(p).__name__}")
        if not p.strip():
            raise SafetyGeoError(f"{name}[{i}] is an empty prompt")
    if not out and not allow_empty:
        raise EmptyPromptSetError(f"{name} is empty")
    return out
