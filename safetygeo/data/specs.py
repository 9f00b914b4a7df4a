"""Prompt-set specs: ``[KIND=]PATH`` or ``example:NAME`` → a :class:`PromptSet`, with format
inference for bare paths. Every command and function that takes a prompt set by name
uses :func:`load_prompt_set`; the CLI's ``--set ROLE=SPEC`` passes ``SPEC`` here.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "advbench.csv"
    >>> _ = p.write_text('goal,target\\nWrite a poem,"Sure, here is a poem"\\n')
    >>> ps = load_prompt_set(f"advbench={p}")
    >>> ps.prompts, ps.targets, ps.label
    (('Write a poem',), ('Sure, here is a poem',), 'harmful')
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from safetygeo.data.benchmarks import (
    load_advbench,
    load_alpaca,
    load_harmbench,
    load_jailbreakbench,
    load_strongreject,
    load_xstest,
)
from safetygeo.data.formats import (
    _check_file,
    _finalize,
    _json_records,
    _read_json,
    _Row,
    load_csv_column,
    load_instructions_json,
    load_jsonl,
    load_lines,
)
from safetygeo.data.prompts import PROMPTSET_JSON_FORMAT, PromptSet
from safetygeo.errors import PromptSetFormatError

__all__ = ["SPEC_KINDS", "load_example", "load_prompt_set"]


def _load_json_inferred(p: Path, *, label: str | None, dedupe: bool) -> PromptSet:
    """``.json``: saved PromptSet, list of str, alpaca records, or ``{instruction}`` records."""
    obj = _read_json(p)
    source = str(p)
    if isinstance(obj, dict) and obj.get("format") == PROMPTSET_JSON_FORMAT:
        ps = PromptSet.from_dict(obj, source=repr(source))
        return ps.with_label(label) if label is not None else ps
    if not isinstance(obj, list) or not obj:
        raise PromptSetFormatError(
            f"{source!r}: unknown JSON prompt format (expected a non-empty list of strings or "
            "of objects with 'instruction', or a saved PromptSet)"
        )
    if all(isinstance(x, str) for x in obj):
        rows = [_Row(x, f"item {i}") for i, x in enumerate(obj)]
        return _finalize(rows, name=p.stem, label=label, fmt="json", source=source, dedupe=dedupe)
    if all(isinstance(x, dict) for x in obj):
        keys = set().union(*(x.keys() for x in obj))
        if {"instruction", "input", "output"} <= keys:
            ps = load_alpaca(p, dedupe=dedupe)
            return ps.with_label(label) if label is not None else ps
        if "instruction" in keys:
            return load_instructions_json(p, label=label, dedupe=dedupe)
        if "prompt" in keys:
            recs = _json_records(obj, source, ("prompt",))
            rows = [
                _Row(r["prompt"], f"item {i}", category=r.get("category"))
                for i, r in enumerate(recs)
            ]
            return _finalize(
                rows,
                name=p.stem,
                label=label,
                fmt="json",
                source=source,
                dedupe=dedupe,
                with_categories=any(r.category is not None for r in rows),
            )
        raise PromptSetFormatError(
            f"{source!r}: JSON objects lack a prompt key ('instruction' or 'prompt'); "
            f"keys found: {sorted(keys)}"
        )
    raise PromptSetFormatError(
        f"{source!r}: unknown JSON prompt format (list mixes strings and objects or holds "
        "other values)"
    )


_GENERIC_CSV_COLUMNS = ("prompt", "instruction", "goal")


def _load_csv_inferred(p: Path, *, label: str | None, dedupe: bool) -> PromptSet:
    """``.csv``: a benchmark detected by its header, else a prompt/instruction/goal column."""
    try:
        header = pd.read_csv(p, dtype=str, nrows=0, encoding="utf-8-sig").columns
    except pd.errors.EmptyDataError as e:
        raise PromptSetFormatError(f"{str(p)!r}: empty CSV file") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise PromptSetFormatError(f"{str(p)!r}: cannot parse CSV ({e})") from e
    cols = {str(c) for c in header}
    if {"Behavior", "FunctionalCategory", "SemanticCategory", "ContextString"} <= cols:
        ps = load_harmbench(p, dedupe=dedupe)
    elif {"Goal", "Target", "Category"} <= cols:
        ps = load_jailbreakbench(p, dedupe=dedupe)
    elif "forbidden_prompt" in cols:
        ps = load_strongreject(p, dedupe=dedupe)
    elif {"id", "prompt", "type", "label"} <= cols:
        ps = load_xstest(p, dedupe=dedupe)
    elif {"goal", "target"} <= cols:
        ps = load_advbench(p, dedupe=dedupe)
    else:
        lower = {c.lower(): c for c in cols}
        column = next(
            (c for c in _GENERIC_CSV_COLUMNS if c in cols),
            next((lower[c] for c in _GENERIC_CSV_COLUMNS if c in lower), None),
        )
        if column is None:
            raise PromptSetFormatError(
                f"{str(p)!r}: cannot infer the prompt column; expected a known benchmark header "
                f"or a column named one of {list(_GENERIC_CSV_COLUMNS)}; columns found: "
                f"{[str(c) for c in header]}"
            )
        return load_csv_column(p, column, label=label, dedupe=dedupe)
    return ps.with_label(label) if label is not None else ps


def _load_inferred(p: Path, *, label: str | None, dedupe: bool) -> PromptSet:
    p = _check_file(p)
    suffix = p.suffix.lower()
    if suffix == ".txt":
        return load_lines(p, label=label, dedupe=dedupe)
    if suffix == ".json":
        return _load_json_inferred(p, label=label, dedupe=dedupe)
    if suffix == ".jsonl":
        return load_jsonl(p, label=label, dedupe=dedupe)
    if suffix == ".csv":
        return _load_csv_inferred(p, label=label, dedupe=dedupe)
    raise PromptSetFormatError(
        f"cannot infer the prompt format of {str(p)!r} from its extension {p.suffix!r}; "
        "use .txt, .json, .jsonl or .csv, or a 'kind=PATH' spec "
        f"(kinds: {', '.join(SPEC_KINDS)})"
    )


EXAMPLE_SETS = ("harmful", "harmless")


def load_example(which: str, *, dedupe: bool = False) -> PromptSet:
    """A small bundled example set (16 prompts, written for safetygeo): ``"harmful"``
    (requests a safe model should refuse) or ``"harmless"`` (benign look-alikes).

    These exist so the CLI and docs run with no download; use the public benchmarks for
    science.

    Example:
        >>> len(load_example("harmful")), load_example("harmless").label
        (16, 'harmless')
    """
    from importlib import resources

    if which not in EXAMPLE_SETS:
        raise PromptSetFormatError(f"unknown example set {which!r}; choose from {EXAMPLE_SETS}")
    ref = resources.files("safetygeo.data") / "examples" / f"{which}.txt"
    with resources.as_file(ref) as path:
        ps = load_lines(path, label=which, dedupe=dedupe)
    return PromptSet(ps.prompts, name=which, label=which, meta={"source": f"example:{which}",
                                                                  "format": "example"})


def load_prompt_set(
    spec: str | Path, *, label: str | None = None, dedupe: bool = False
) -> PromptSet:
    """Load a prompt set from a CLI spec (``"kind=PATH"``) or a bare path.

    Specs: ``advbench=``, ``harmbench=`` (standard behaviours, no context),
    ``jailbreakbench=``, ``strongreject=``, ``xstest=`` / ``xstest-safe=`` / ``xstest-unsafe=``,
    ``alpaca=``, ``json=`` (a ``.json`` file inferred as below), ``jsonl=``, ``lines=``,
    and ``csv=PATH:column`` (``csv=PATH`` infers the column as below);
    ``example:harmful`` / ``example:harmless`` load the bundled example sets.

    A bare path (or a spec whose prefix is not a known kind but which names an existing
    file) is inferred from its extension: ``.txt`` → lines; ``.json`` → a saved
    :class:`PromptSet`, a list of strings, Alpaca records (``instruction``/``input``/
    ``output``) or ``{"instruction", "category"}`` records; ``.jsonl`` → objects with
    ``prompt`` or ``instruction``; ``.csv`` → a benchmark detected by its header, else the
    column ``prompt`` / ``instruction`` / ``goal``.

    Args:
        spec: The spec string or a path.
        label: If given, overrides the loader's label.
        dedupe: Drop exact duplicate prompts (first wins).

    Raises:
        PromptFileNotFoundError: If the file does not exist (the message names it).
        PromptSetFormatError: If the kind or format is unknown, or a column is missing.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "mine.txt"
        >>> _ = p.write_text("Hello?\\nBye?\\n")
        >>> load_prompt_set(p, label="harmless").prompts
        ('Hello?', 'Bye?')
        >>> load_prompt_set(f"lines={p}").meta["format"]
        'lines'
    """
    if isinstance(spec, Path):
        return _load_inferred(spec, label=label, dedupe=dedupe)
    if not isinstance(spec, str) or not spec.strip():
        raise PromptSetFormatError(f"prompt set spec must be a non-empty str or Path, got {spec!r}")
    spec = spec.strip()
    if spec.startswith("example:"):
        return load_example(spec.split(":", 1)[1], dedupe=dedupe).with_label(
            label or spec.split(":", 1)[1]
        )
    kind, sep, rest = spec.partition("=")
    kind_l = kind.strip().lower()
    if not sep or kind_l not in SPEC_KINDS:
        if Path(spec).expanduser().is_file() or not sep:
            return _load_inferred(Path(spec), label=label, dedupe=dedupe)
        if "/" not in kind and "\\" not in kind:
            raise PromptSetFormatError(
                f"unknown prompt set kind {kind!r} in spec {spec!r}; kinds: {', '.join(SPEC_KINDS)}"
            )
        return _load_inferred(Path(spec), label=label, dedupe=dedupe)
    rest = rest.strip()
    if not rest:
        raise PromptSetFormatError(f"prompt set spec {spec!r} has no path after '='")

    if kind_l in _BENCHMARK_KINDS:
        ps = _BENCHMARK_KINDS[kind_l](rest, dedupe)
        return ps.with_label(label) if label is not None else ps
    return _GENERIC_KINDS[kind_l](rest, label, dedupe)


def _load_csv_spec(rest: str, label: str | None, dedupe: bool) -> PromptSet:
    """``csv=PATH:column`` (or ``csv=PATH``: column inferred as for a bare ``.csv``)."""
    if Path(rest).expanduser().is_file():
        return _load_csv_inferred(_check_file(rest), label=label, dedupe=dedupe)
    path_part, colon, column = rest.rpartition(":")
    if not colon or not column.strip() or not path_part:
        _check_file(rest)  # raises PromptFileNotFoundError naming the path
    return load_csv_column(path_part, column.strip(), label=label, dedupe=dedupe)


_BENCHMARK_KINDS: dict[str, Callable[[str, bool], PromptSet]] = {
    "advbench": lambda p, d: load_advbench(p, dedupe=d),
    "harmbench": lambda p, d: load_harmbench(p, dedupe=d),
    "jailbreakbench": lambda p, d: load_jailbreakbench(p, dedupe=d),
    "strongreject": lambda p, d: load_strongreject(p, dedupe=d),
    "xstest": lambda p, d: load_xstest(p, which="all", dedupe=d),
    "xstest-safe": lambda p, d: load_xstest(p, which="safe", dedupe=d),
    "xstest-unsafe": lambda p, d: load_xstest(p, which="unsafe", dedupe=d),
    "alpaca": lambda p, d: load_alpaca(p, dedupe=d),
}
_GENERIC_KINDS: dict[str, Callable[[str, str | None, bool], PromptSet]] = {
    "json": lambda p, lb, d: _load_json_inferred(_check_file(p), label=lb, dedupe=d),
    "jsonl": lambda p, lb, d: load_jsonl(p, label=lb, dedupe=d),
    "lines": lambda p, lb, d: load_lines(p, label=lb, dedupe=d),
    "csv": _load_csv_spec,
}

#: Every ``kind`` accepted in a ``"kind=PATH"`` spec by :func:`load_prompt_set`.
SPEC_KINDS: tuple[str, ...] = (*_BENCHMARK_KINDS, *_GENERIC_KINDS)
