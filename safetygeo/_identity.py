"""Identity records of runs and artifacts: stable hashes and readable differences.

A resumable artifact (trajectory, sweep, report cache) stores an *identity* — a nested
dict of what determines its contents. Resuming compares identities and names every
differing field instead of silently mixing results.

Example:
    >>> identity_diff({"nulls": {"k": 64}}, {"nulls": {"k": 4}}, labels=("saved", "now"))
    ['nulls.k: 64 (saved) != 4 (now)']
    >>> len(sha256_json({"a": 1}))
    64
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["flatten", "identity_diff", "jsonable", "sha256_json", "sha256_texts"]


def jsonable(value: Any) -> Any:
    """``value`` with tensors / numpy scalars / tuples turned into JSON types."""
    if hasattr(value, "detach") and hasattr(value, "numel"):  # torch tensors
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def sha256_json(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_texts(texts: Sequence[str]) -> str:
    """SHA-256 of a list of strings, in order (e.g. a prompt set).

    Example:
        >>> sha256_texts(["a", "b"]) == sha256_texts(["a", "b"]) != sha256_texts(["b", "a"])
        True
    """
    return sha256_json(list(texts))


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b": value}``."""
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def identity_diff(old: Mapping[str, Any], new: Mapping[str, Any], *,
                  labels: tuple[str, str] = ("saved", "this run")) -> list[str]:
    """Human-readable differences between two identity dicts (dotted keys)."""
    a, b = flatten(old), flatten(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if jsonable(va) != jsonable(vb):
            short = lambda v: v[:12] + "…" if isinstance(v, str) and len(v) == 64 else v  # noqa: E731
            lines.append(f"{key}: {short(va)!r} ({labels[0]}) != {short(vb)!r} ({labels[1]})")
    return lines
