"""Training-data specs of the CLI and run files: ``ROLE=SPEC`` → records for a method.

Records and their tokenization are :mod:`safetygeo.data.records`.

Example:
    >>> sorted(parse_data_specs(["harmless=example:harmless", "example:harmful"],
    ...                         ["harmful", "harmless"]))
    ['harmful', 'harmless']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetygeo.data.records import RESPONSE_KEYS, _pick, load_records
from safetygeo.errors import DatasetFormatError

__all__ = ["load_data_spec", "parse_data_specs"]


def load_data_spec(spec: str) -> Any:
    """Resolve one CLI data spec into something :func:`as_records` accepts.

    A ``.json`` / ``.jsonl`` file whose objects carry a response field (one of
    :data:`RESPONSE_KEYS`) is read as (prompt, response) records; anything else is a
    :func:`safetygeo.data.load_prompt_set` spec (``example:harmful``, ``advbench=FILE``,
    ``alpaca=FILE``, a ``.txt`` of prompts ...), whose ``targets`` are responses where the
    method uses them.

    Example:
        >>> load_data_spec("example:harmful").name
        'harmful'
    """
    from safetygeo.data import load_prompt_set

    p = Path(spec).expanduser()
    if p.is_file() and p.suffix.lower() in (".json", ".jsonl"):
        try:
            recs = load_records(p)
        except DatasetFormatError:
            recs = []
        if any(isinstance(r, dict) and _pick(r, RESPONSE_KEYS) is not None for r in recs):
            return str(p)
    return load_prompt_set(spec)


def parse_data_specs(specs: Sequence[str], roles: Sequence[str]) -> dict[str, Any]:
    """``["ROLE=SPEC", "SPEC", ...]`` → ``{role: data}``; a spec without a known ``ROLE=``
    prefix belongs to the first role.

    Raises:
        DatasetFormatError: a role is given twice.

    Example:
        >>> sorted(parse_data_specs(["harmless=example:harmless", "example:harmful"],
        ...                         ["harmful", "harmless"]))
        ['harmful', 'harmless']
    """
    out: dict[str, Any] = {}
    for text in specs:
        role, sep, rest = text.partition("=")
        if not (sep and role.strip() in roles):
            role, rest = roles[0], text
        role = role.strip()
        if role in out:
            raise DatasetFormatError(f"data role {role!r} is given twice ({text!r})")
        out[role] = load_data_spec(rest.strip())
    return out
