"""File formats of prompt sets: shared readers (CSV, JSON, JSONL, lines, hub rows) and the
generic loaders (``load_lines``, ``load_jsonl``, ``load_csv_column``,
``load_instructions_json``). Benchmark loaders are :mod:`.benchmarks`; CLI specs and
format inference are :mod:`.specs`.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "mine.txt"
    >>> _ = p.write_text("Hello?\\nBye?\\n")
    >>> load_lines(p, label="harmless").prompts
    ('Hello?', 'Bye?')
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from safetygeo.data.prompts import PromptFileNotFoundError, PromptSet
from safetygeo.errors import EmptyPromptSetError, PromptSetFormatError, SafetyGeoError

__all__ = ["load_csv_column", "load_instructions_json", "load_jsonl", "load_lines"]


# ====================================================================== internals
@dataclass(frozen=True)
class _Row:
    """One parsed row before validation: ``where`` locates it for error messages."""

    prompt: Any
    where: str
    category: Any = None
    target: Any = None
    id: Any = None
    label: Any = None


def _opt_str(value: Any) -> str | None:
    """Strip a cell; ``None`` / NaN / blank become ``None``."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):  # NaN from pandas / hub
        return None
    s = str(value).strip()
    return s or None


def _finalize(
    rows: Sequence[_Row],
    *,
    name: str,
    label: str | None,
    fmt: str,
    source: str,
    dedupe: bool,
    with_categories: bool = False,
    with_targets: bool = False,
    with_ids: bool = False,
    with_labels: bool = False,
    extra_meta: Mapping[str, Any] | None = None,
) -> PromptSet:
    """Strip, validate, optionally dedupe ``rows`` and build the :class:`PromptSet`."""
    prompts: list[str] = []
    cats: list[str | None] = []
    tgts: list[str | None] = []
    ids: list[str | None] = []
    labels: list[str | None] = []
    seen: set[str] = set()
    n_dupes = 0
    for row in rows:
        if row.prompt is not None and not isinstance(row.prompt, str):
            raise PromptSetFormatError(
                f"{source}: prompt at {row.where} is {type(row.prompt).__name__}, not str"
            )
        prompt = (row.prompt or "").strip()
        if not prompt:
            raise PromptSetFormatError(f"{source}: empty prompt at {row.where}")
        if "\x00" in prompt:
            raise PromptSetFormatError(f"{source}: prompt at {row.where} contains a NUL byte "
                                       "(a binary or UTF-16 file?)")
        if dedupe:
            if prompt in seen:
                n_dupes += 1
                continue
            seen.add(prompt)
        prompts.append(prompt)
        cats.append(_opt_str(row.category))
        tgts.append(_opt_str(row.target))
        ids.append(_opt_str(row.id))
        labels.append(_opt_str(row.label))
    if not prompts:
        raise EmptyPromptSetError(f"prompt set {name!r} from {source} is empty")
    meta: dict[str, Any] = {"source": source, "format": fmt}
    if with_ids:
        meta["ids"] = ids
    if with_labels:
        meta["labels"] = labels
    if dedupe:
        meta["duplicates_dropped"] = n_dupes
    if extra_meta:
        meta.update(extra_meta)
    return PromptSet(
        prompts=tuple(prompts),
        name=name,
        label=label,
        categories=tuple(cats) if with_categories else None,
        targets=tuple(tgts) if with_targets else None,
        meta=meta,
    )


def _check_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "not found"
        raise PromptFileNotFoundError(f"prompt file {what}: {str(p)!r}")
    return p


def _no_split_with_path(split: str | None, path: Path, fn: str) -> None:
    if split is not None:
        raise SafetyGeoError(
            f"{fn}: split={split!r} selects a hub split and cannot be used with a local path "
            f"({str(path)!r})"
        )


def _read_csv(path: Path, required: Iterable[str]) -> pd.DataFrame:
    """Read a CSV as strings (blank cells → ``""``) and check ``required`` columns exist."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as e:
        raise PromptSetFormatError(f"{str(path)!r}: empty CSV file") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise PromptSetFormatError(f"{str(path)!r}: cannot parse CSV ({e})") from e
    _require_columns(df.columns, required, str(path))
    return df


def _require_columns(found: Iterable[Any], required: Iterable[str], source: str) -> None:
    found_list = [str(c) for c in found]
    for col in required:
        if col not in found_list:
            raise PromptSetFormatError(
                f"{source!r}: missing required column {col!r}; columns found: {found_list}"
            )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PromptSetFormatError(f"{str(path)!r}: invalid JSON ({e})") from e


def _json_records(obj: Any, source: str, required: Sequence[str]) -> list[dict[str, Any]]:
    """Check ``obj`` is a list of objects each holding the ``required`` keys."""
    if not isinstance(obj, list):
        raise PromptSetFormatError(f"{source!r}: expected a JSON list, got {type(obj).__name__}")
    for i, rec in enumerate(obj):
        if not isinstance(rec, dict):
            raise PromptSetFormatError(
                f"{source!r}: item {i} is {type(rec).__name__}, expected an object"
            )
        for key in required:
            if key not in rec:
                raise PromptSetFormatError(
                    f"{source!r}: item {i} lacks required key {key!r}; keys found: {sorted(rec)}"
                )
    return obj


def _load_hub(repo: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """Download ``repo`` (``config``, ``split``) with ``datasets`` and return its rows."""
    try:
        import datasets  # optional dependency, imported lazily
    except ImportError as e:
        raise SafetyGeoError(
            f"loading {repo!r} from the Hugging Face hub needs the 'datasets' package: "
            "pip install 'safetygeo[hub]' (or pass a local path)"
        ) from e
    ds = datasets.load_dataset(repo, config, split=split)
    return [dict(r) for r in ds]


def _hub_source(repo: str, config: str | None, split: str) -> str:
    return f"hf://{repo}" + (f"/{config}" if config else "") + f"[{split}]"


# ====================================================================== generic loaders
def load_instructions_json(
    path: str | Path, *, label: str | None = None, name: str | None = None, dedupe: bool = False
) -> PromptSet:
    """Load a JSON list of ``{"instruction": ..., "category": ...}`` (refusal_direction splits).

    ``category`` is optional (``null`` → ``None``); ``name`` defaults to the file stem.

    Example:
        >>> import json, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "harmful_val.json"
        >>> _ = p.write_text(json.dumps([{"instruction": "Do X", "category": "illegal"}]))
        >>> ps = load_instructions_json(p, label="harmful")
        >>> ps.name, ps.categories, ps.label
        ('harmful_val', ('illegal',), 'harmful')
    """
    p = _check_file(path)
    source = str(p)
    recs = _json_records(_read_json(p), source, ("instruction",))
    rows = [
        _Row(r["instruction"], f"item {i}", category=r.get("category")) for i, r in enumerate(recs)
    ]
    return _finalize(
        rows,
        name=name or p.stem,
        label=label,
        fmt="instructions_json",
        source=source,
        dedupe=dedupe,
        with_categories=True,
    )


def load_lines(
    path: str | Path, *, label: str | None = None, name: str | None = None, dedupe: bool = False
) -> PromptSet:
    """Load one prompt per non-empty line (e.g. MaliciousInstruct's ``.txt``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "mi.txt"
        >>> _ = p.write_text("How to X?\\n\\n  How to Y?  \\n")
        >>> load_lines(p).prompts
        ('How to X?', 'How to Y?')
    """
    p = _check_file(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptSetFormatError(f"{str(p)!r}: not UTF-8 text ({e})") from e
    rows = [_Row(line, f"line {i + 1}") for i, line in enumerate(text.splitlines()) if line.strip()]
    return _finalize(
        rows, name=name or p.stem, label=label, fmt="lines", source=str(p), dedupe=dedupe
    )


def load_csv_column(
    path: str | Path,
    column: str,
    *,
    label: str | None = None,
    name: str | None = None,
    dedupe: bool = False,
) -> PromptSet:
    """Load the prompts in one ``column`` of a CSV file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "my.csv"
        >>> _ = p.write_text("text,x\\nHello?,1\\n")
        >>> load_csv_column(p, "text").prompts
        ('Hello?',)
    """
    p = _check_file(path)
    df = _read_csv(p, (column,))
    rows = [_Row(v, f"row {i}") for i, v in enumerate(df[column])]
    return _finalize(
        rows,
        name=name or p.stem,
        label=label,
        fmt="csv",
        source=str(p),
        dedupe=dedupe,
        extra_meta={"column": column},
    )


def load_jsonl(
    path: str | Path, *, label: str | None = None, name: str | None = None, dedupe: bool = False
) -> PromptSet:
    """Load JSON Lines objects holding ``prompt`` (or ``instruction``), optional ``category``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "p.jsonl"
        >>> _ = p.write_text('{"prompt": "A?"}\\n{"instruction": "B?", "category": "c"}\\n')
        >>> ps = load_jsonl(p)
        >>> ps.prompts, ps.categories
        (('A?', 'B?'), (None, 'c'))
    """
    p = _check_file(path)
    source = str(p)
    rows: list[_Row] = []
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptSetFormatError(f"{str(p)!r}: not UTF-8 text ({e})") from e
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptSetFormatError(f"{source!r}: invalid JSON on line {lineno} ({e})") from e
        if not isinstance(rec, dict):
            raise PromptSetFormatError(f"{source!r}: line {lineno} is not a JSON object")
        key = "prompt" if "prompt" in rec else "instruction" if "instruction" in rec else None
        if key is None:
            raise PromptSetFormatError(
                f"{source!r}: line {lineno} lacks required key 'prompt' (or 'instruction'); "
                f"keys found: {sorted(rec)}"
            )
        rows.append(_Row(rec[key], f"line {lineno}", category=rec.get("category")))
    return _finalize(
        rows,
        name=name or p.stem,
        label=label,
        fmt="jsonl",
        source=source,
        dedupe=dedupe,
        with_categories=any(r.category is not None for r in rows),
    )
