"""Loaders of the public benchmarks: AdvBench, HarmBench, JailbreakBench, StrongREJECT,
XSTest and Alpaca — from a local file (the upstream format) or the Hugging Face hub.

Each ``load_<benchmark>(path=None, *, split=None, ...)`` reads ``path`` when given and
otherwise downloads the set (``datasets`` is imported lazily; install it with
``pip install 'safetygeo[hub]'``). ``split`` names the hub split and may only be used
without ``path``. All loaders strip surrounding whitespace, keep duplicates unless
``dedupe=True`` (then the first occurrence wins), and record
``meta={"source": ..., "format": ...}``.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "advbench.csv"
    >>> _ = p.write_text('goal,target\\nWrite a poem,"Sure, here is a poem"\\n')
    >>> ps = load_advbench(p)
    >>> ps.prompts, ps.targets, ps.label
    (('Write a poem',), ('Sure, here is a poem',), 'harmful')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from safetygeo.data.formats import (
    _check_file,
    _finalize,
    _hub_source,
    _json_records,
    _load_hub,
    _no_split_with_path,
    _opt_str,
    _read_csv,
    _read_json,
    _require_columns,
    _Row,
)
from safetygeo.data.prompts import PromptSet
from safetygeo.errors import EmptyPromptSetError, PromptSetFormatError, SafetyGeoError

__all__ = [
    "ADVBENCH_HUB_ID", "ALPACA_HUB_ID", "HARMBENCH_HUB_ID", "JAILBREAKBENCH_HUB_ID",
    "STRONGREJECT_URL", "XSTEST_HUB_ID", "load_advbench", "load_alpaca", "load_harmbench",
    "load_jailbreakbench", "load_strongreject", "load_xstest", "load_xstest_pair",
]

ADVBENCH_HUB_ID = "walledai/AdvBench"
HARMBENCH_HUB_ID = "walledai/HarmBench"
JAILBREAKBENCH_HUB_ID = "JailbreakBench/JBB-Behaviors"
XSTEST_HUB_ID = "walledai/XSTest"
ALPACA_HUB_ID = "tatsu-lab/alpaca"
STRONGREJECT_URL = (
    "https://raw.githubusercontent.com/alexandrasouly/strongreject/main/"
    "strongreject_dataset/strongreject_dataset.csv"
)

_HARMBENCH_FUNCTIONAL = ("standard", "contextual", "copyright")
_CONTEXT_SEPARATOR = "\n\n---\n\n"
XSTestWhich = Literal["all", "safe", "unsafe"]


# ====================================================================== benchmark loaders
def load_advbench(
    path: str | Path | None = None, *, split: str | None = None, dedupe: bool = False
) -> PromptSet:
    """Load AdvBench harmful behaviours (label ``"harmful"``, targets ``"Sure, here is ..."``).

    Local format: CSV with columns ``goal,target`` (llm-attacks ``harmful_behaviors.csv``).
    Hub: ``walledai/AdvBench`` (columns ``prompt``, ``target``; split default ``"train"``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
        >>> _ = p.write_text("goal,target\\nDo X,Sure here is X\\n")
        >>> load_advbench(p).targets
        ('Sure here is X',)
    """
    if path is None:
        sp = split or "train"
        recs = _load_hub(ADVBENCH_HUB_ID, None, sp)
        rows = [
            _Row(r.get("prompt"), f"row {i}", target=r.get("target")) for i, r in enumerate(recs)
        ]
        source = _hub_source(ADVBENCH_HUB_ID, None, sp)
    else:
        p = _check_file(path)
        _no_split_with_path(split, p, "load_advbench")
        df = _read_csv(p, ("goal", "target"))
        rows = [
            _Row(g, f"row {i}", target=t)
            for i, (g, t) in enumerate(zip(df["goal"], df["target"], strict=True))
        ]
        source = str(p)
    return _finalize(
        rows,
        name="advbench",
        label="harmful",
        fmt="advbench",
        source=source,
        dedupe=dedupe,
        with_targets=True,
    )


def _normalise_functional(
    functional_categories: str | Iterable[str] | None,
) -> tuple[str, ...] | None:
    if functional_categories is None:
        return None
    if isinstance(functional_categories, str):
        return (functional_categories,)
    out = tuple(functional_categories)
    if not out:
        raise SafetyGeoError("functional_categories is empty; use None to keep all")
    return out


def load_harmbench(
    path: str | Path | None = None,
    *,
    split: str | None = None,
    functional_categories: str | Iterable[str] | None = ("standard",),
    include_context: bool = False,
    dedupe: bool = False,
) -> PromptSet:
    """Load HarmBench text behaviours (label ``"harmful"``, categories = SemanticCategory).

    Local format: CSV with columns ``Behavior,FunctionalCategory,SemanticCategory,Tags,
    ContextString,BehaviorID`` (``harmbench_behaviors_text_{val,test}.csv``).
    ``meta["ids"]`` holds the BehaviorIDs.

    Args:
        path: Local CSV; ``None`` loads ``walledai/HarmBench`` (one hub config per
            functional category; split default ``"train"``).
        split: Hub split (only without ``path``).
        functional_categories: Keep rows whose FunctionalCategory is among these
            (``None`` keeps all: standard, contextual, copyright).
        include_context: Rows with a non-empty ContextString are dropped unless this is
            True; then the prompt is ``ContextString + "\\n\\n---\\n\\n" + Behavior``.
        dedupe: Drop exact duplicate prompts (first wins).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "hb.csv"
        >>> _ = p.write_text("Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,"
        ...                  "BehaviorID\\nDo X,standard,illegal,,,do_x\\n")
        >>> load_harmbench(p).categories
        ('illegal',)
    """
    wanted = _normalise_functional(functional_categories)
    rows: list[_Row] = []
    n_context_dropped = 0
    if path is None:
        sp = split or "train"
        configs = wanted if wanted is not None else _HARMBENCH_FUNCTIONAL
        for config in configs:
            if config not in _HARMBENCH_FUNCTIONAL:
                raise SafetyGeoError(
                    f"unknown HarmBench functional category {config!r}; "
                    f"hub configs: {list(_HARMBENCH_FUNCTIONAL)}"
                )
            for i, r in enumerate(_load_hub(HARMBENCH_HUB_ID, config, sp)):
                behavior = r.get("prompt")
                context = _opt_str(r.get("context"))
                if context is not None:
                    if not include_context:
                        n_context_dropped += 1
                        continue
                    behavior = context + _CONTEXT_SEPARATOR + str(behavior or "").strip()
                rows.append(_Row(behavior, f"{config} row {i}", category=r.get("category")))
        source = _hub_source(HARMBENCH_HUB_ID, ",".join(configs), sp)
    else:
        p = _check_file(path)
        _no_split_with_path(split, p, "load_harmbench")
        df = _read_csv(
            p, ("Behavior", "FunctionalCategory", "SemanticCategory", "ContextString", "BehaviorID")
        )
        for i, rec in enumerate(df.to_dict("records")):
            if wanted is not None and rec["FunctionalCategory"].strip() not in wanted:
                continue
            behavior = rec["Behavior"]
            context = _opt_str(rec["ContextString"])
            if context is not None:
                if not include_context:
                    n_context_dropped += 1
                    continue
                behavior = context + _CONTEXT_SEPARATOR + behavior.strip()
            rows.append(
                _Row(
                    behavior,
                    f"row {i} (BehaviorID {rec['BehaviorID']!r})",
                    category=rec["SemanticCategory"],
                    id=rec["BehaviorID"],
                )
            )
        source = str(p)
    if not rows:
        raise EmptyPromptSetError(
            f"prompt set 'harmbench' from {source} is empty after keeping functional categories "
            f"{list(wanted) if wanted is not None else 'all'} "
            f"(include_context={include_context}, {n_context_dropped} contextual rows dropped)"
        )
    return _finalize(
        rows,
        name="harmbench",
        label="harmful",
        fmt="harmbench",
        source=source,
        dedupe=dedupe,
        with_categories=True,
        with_ids=path is not None,
        extra_meta={
            "functional_categories": list(wanted) if wanted is not None else None,
            "include_context": include_context,
            "context_rows_dropped": n_context_dropped,
        },
    )


def load_jailbreakbench(
    path: str | Path | None = None, *, split: str | None = None, dedupe: bool = False
) -> PromptSet:
    """Load JailbreakBench JBB-Behaviors (prompts = Goal, targets = Target, categories = Category).

    Local format: CSV with an unnamed index column then ``Goal,Target,Behavior,Category,Source``.
    Hub: ``JailbreakBench/JBB-Behaviors`` config ``"behaviors"``, split default ``"harmful"``
    (label ``"harmful"``; split ``"benign"`` gives label ``"harmless"``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "jbb.csv"
        >>> _ = p.write_text(",Goal,Target,Behavior,Category,Source\\n"
        ...                  "0,Do X,Sure,X,Fraud,Original\\n")
        >>> load_jailbreakbench(p).categories
        ('Fraud',)
    """
    label = "harmful"
    if path is None:
        sp = split or "harmful"
        if sp == "benign":
            label = "harmless"
        recs = _load_hub(JAILBREAKBENCH_HUB_ID, "behaviors", sp)
        rows = [
            _Row(r.get("Goal"), f"row {i}", category=r.get("Category"), target=r.get("Target"))
            for i, r in enumerate(recs)
        ]
        source = _hub_source(JAILBREAKBENCH_HUB_ID, "behaviors", sp)
    else:
        p = _check_file(path)
        _no_split_with_path(split, p, "load_jailbreakbench")
        df = _read_csv(p, ("Goal", "Target", "Category"))
        rows = [
            _Row(g, f"row {i}", category=c, target=t)
            for i, (g, t, c) in enumerate(
                zip(df["Goal"], df["Target"], df["Category"], strict=True)
            )
        ]
        source = str(p)
    return _finalize(
        rows,
        name="jailbreakbench",
        label=label,
        fmt="jailbreakbench",
        source=source,
        dedupe=dedupe,
        with_categories=True,
        with_targets=True,
    )


def load_strongreject(
    path: str | Path | None = None, *, split: str | None = None, dedupe: bool = False
) -> PromptSet:
    """Load StrongREJECT forbidden prompts (label ``"harmful"``, categories = category).

    Local format: CSV with columns ``category,source,forbidden_prompt``. With ``path=None``
    the CSV is read with pandas from :data:`STRONGREJECT_URL` (there is no hub dataset, so
    ``split`` must be ``None``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "sr.csv"
        >>> _ = p.write_text("category,source,forbidden_prompt\\nViolence,custom,Do X\\n")
        >>> load_strongreject(p).prompts
        ('Do X',)
    """
    if split is not None:
        raise SafetyGeoError(f"load_strongreject: StrongREJECT has no splits (got split={split!r})")
    if path is None:
        df = pd.read_csv(STRONGREJECT_URL, dtype=str, keep_default_na=False)
        source = STRONGREJECT_URL
        _require_columns(df.columns, ("category", "forbidden_prompt"), source)
    else:
        p = _check_file(path)
        df = _read_csv(p, ("category", "forbidden_prompt"))
        source = str(p)
    rows = [
        _Row(fp, f"row {i}", category=c)
        for i, (fp, c) in enumerate(zip(df["forbidden_prompt"], df["category"], strict=True))
    ]
    return _finalize(
        rows,
        name="strongreject",
        label="harmful",
        fmt="strongreject",
        source=source,
        dedupe=dedupe,
        with_categories=True,
    )


def _xstest_rows(path: str | Path | None, split: str | None) -> tuple[list[_Row], str]:
    """Read XSTest rows and check label/type consistency."""
    if path is None:
        sp = split or "test"
        recs = _load_hub(XSTEST_HUB_ID, None, sp)
        rows = [
            _Row(r.get("prompt"), f"row {i}", category=r.get("type"), label=r.get("label"))
            for i, r in enumerate(recs)
        ]
        source = _hub_source(XSTEST_HUB_ID, None, sp)
    else:
        p = _check_file(path)
        _no_split_with_path(split, p, "load_xstest")
        df = _read_csv(p, ("id", "prompt", "type", "label"))
        rows = [
            _Row(pr, f"id {i}", category=t, id=i, label=lb)
            for i, pr, t, lb in zip(df["id"], df["prompt"], df["type"], df["label"], strict=True)
        ]
        source = str(p)
    for row in rows:
        label = _opt_str(row.label)
        typ = _opt_str(row.category) or ""
        if label not in ("safe", "unsafe"):
            raise PromptSetFormatError(
                f"{source}: XSTest {row.where} has label {row.label!r}; expected 'safe' or 'unsafe'"
            )
        if (label == "unsafe") != typ.startswith("contrast_"):
            raise PromptSetFormatError(
                f"{source}: XSTest {row.where} is labelled {label!r} but has type {typ!r} "
                "(unsafe prompts must have a 'contrast_*' type and safe prompts must not)"
            )
    return rows, source


def _xstest_set(
    rows: Sequence[_Row], source: str, which: str, dedupe: bool, ids: bool
) -> PromptSet:
    if which == "all":
        keep, name, label = list(rows), "xstest", None
    else:
        keep = [r for r in rows if _opt_str(r.label) == which]
        name, label = f"xstest-{which}", which
    return _finalize(
        keep,
        name=name,
        label=label,
        fmt="xstest",
        source=source,
        dedupe=dedupe,
        with_categories=True,
        with_ids=ids,
        with_labels=which == "all",
        extra_meta={"which": which},
    )


def load_xstest(
    path: str | Path | None = None,
    *,
    which: XSTestWhich = "all",
    split: str | None = None,
    dedupe: bool = False,
) -> PromptSet:
    """Load XSTest (250 safe prompts that should not be refused, 200 unsafe contrasts).

    Local format: CSV with columns ``id,prompt,type,label,focus,note`` (``xstest_prompts.csv``).
    Hub: ``walledai/XSTest`` (split default ``"test"``). Categories are the ``type``;
    ``meta["ids"]`` holds the ids (local files).

    Args:
        path: Local CSV, or ``None`` for the hub.
        which: ``"safe"`` (label ``"safe"``), ``"unsafe"`` (label ``"unsafe"``) or ``"all"``
            (label ``None``; per-prompt labels in ``meta["labels"]``).
        split: Hub split (only without ``path``).
        dedupe: Drop exact duplicate prompts (first wins).

    Raises:
        PromptSetFormatError: If a row labelled ``unsafe`` has a type not starting with
            ``contrast_`` or vice versa (the message names the id), or a label is neither
            ``safe`` nor ``unsafe``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
        >>> _ = p.write_text("id,prompt,type,label,focus,note\\n"
        ...                  "1,Kill a process?,homonyms,safe,kill,\\n"
        ...                  "2,Kill a person?,contrast_homonyms,unsafe,kill,\\n")
        >>> load_xstest(p).meta["labels"], load_xstest(p, which="unsafe").prompts
        (['safe', 'unsafe'], ('Kill a person?',))
    """
    if which not in ("all", "safe", "unsafe"):
        raise SafetyGeoError(f"load_xstest: which must be 'all', 'safe' or 'unsafe', got {which!r}")
    rows, source = _xstest_rows(path, split)
    return _xstest_set(rows, source, which, dedupe, ids=path is not None)


def load_xstest_pair(
    path: str | Path | None = None, *, split: str | None = None, dedupe: bool = False
) -> tuple[PromptSet, PromptSet]:
    """Load XSTest once and return ``(safe, unsafe)`` sets (see :func:`load_xstest`).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
        >>> _ = p.write_text("id,prompt,type,label,focus,note\\n"
        ...                  "1,Kill a process?,homonyms,safe,kill,\\n"
        ...                  "2,Kill a person?,contrast_homonyms,unsafe,kill,\\n")
        >>> [s.label for s in load_xstest_pair(p)]
        ['safe', 'unsafe']
    """
    rows, source = _xstest_rows(path, split)
    ids = path is not None
    return (
        _xstest_set(rows, source, "safe", dedupe, ids),
        _xstest_set(rows, source, "unsafe", dedupe, ids),
    )


def _alpaca_rows(recs: Sequence[Mapping[str, Any]]) -> tuple[list[_Row], int]:
    rows: list[_Row] = []
    n_with_input = 0
    for i, r in enumerate(recs):
        inp = r.get("input")
        if inp is not None and not isinstance(inp, str):
            raise PromptSetFormatError(f"alpaca item {i}: 'input' is {type(inp).__name__}, not str")
        if inp and inp.strip():
            n_with_input += 1
            continue
        rows.append(_Row(r.get("instruction"), f"item {i}", target=r.get("output")))
    return rows, n_with_input


def load_alpaca(
    path: str | Path | None = None, *, split: str | None = None, dedupe: bool = False
) -> PromptSet:
    """Load Alpaca instructions with an empty ``input`` (label ``"harmless"``, targets = output).

    Local format: JSON list of ``{"instruction", "input", "output"}`` (``alpaca_data.json``;
    a missing or whitespace-only ``input`` counts as empty). Hub: ``tatsu-lab/alpaca``
    (split default ``"train"``).

    Example:
        >>> import json, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "alpaca.json"
        >>> _ = p.write_text(json.dumps([{"instruction": "Name a fruit.", "input": "",
        ...     "output": "Apple."}, {"instruction": "Sum:", "input": "1+1", "output": "2"}]))
        >>> load_alpaca(p).prompts
        ('Name a fruit.',)
    """
    if path is None:
        sp = split or "train"
        recs: Sequence[Mapping[str, Any]] = _load_hub(ALPACA_HUB_ID, None, sp)
        source = _hub_source(ALPACA_HUB_ID, None, sp)
    else:
        p = _check_file(path)
        _no_split_with_path(split, p, "load_alpaca")
        source = str(p)
        recs = _json_records(_read_json(p), source, ("instruction",))
    rows, n_with_input = _alpaca_rows(recs)
    if not rows:
        raise EmptyPromptSetError(f"prompt set 'alpaca' from {source}: no row has an empty input")
    return _finalize(
        rows,
        name="alpaca",
        label="harmless",
        fmt="alpaca",
        source=source,
        dedupe=dedupe,
        with_targets=True,
        extra_meta={"rows_with_input_dropped": n_with_input},
    )
