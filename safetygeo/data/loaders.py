"""Loaders for public prompt sets, from a local file or the Hugging Face hub.

Each ``load_<benchmark>(path=None, *, split=None, ...)`` reads ``path`` when given (the
upstream file format, see each docstring) and otherwise downloads the set (``datasets``
is imported lazily; install it with ``pip install 'safetygeo[hub]'``). ``split`` names the
hub split and may only be used without ``path``. All loaders strip surrounding whitespace,
keep duplicates unless ``dedupe=True`` (then the first occurrence wins), and record
``meta={"source": ..., "format": ...}``. :func:`load_prompt_set` dispatches a CLI spec
such as ``"advbench=data/advbench.csv"`` or a bare path whose format is inferred.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "advbench.csv"
    >>> _ = p.write_text('goal,target\\nWrite a poem,"Sure, here is a poem"\\n')
    >>> ps = load_prompt_set(f"advbench={p}")
    >>> ps.prompts, ps.targets, ps.label
    (('Write a poem',), ('Sure, here is a poem',), 'harmful')
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from safetygeo.data.prompts import PROMPTSET_JSON_FORMAT, PromptFileNotFoundError, PromptSet
from safetygeo.errors import EmptyPromptSetError, PromptSetFormatError, SafetyGeoError

__all__ = [
    "ADVBENCH_HUB_ID",
    "ALPACA_HUB_ID",
    "HARMBENCH_HUB_ID",
    "JAILBREAKBENCH_HUB_ID",
    "SPEC_KINDS",
    "STRONGREJECT_URL",
    "XSTEST_HUB_ID",
    "load_advbench",
    "load_alpaca",
    "load_csv_column",
    "load_harmbench",
    "load_instructions_json",
    "load_jailbreakbench",
    "load_jsonl",
    "load_lines",
    "load_prompt_set",
    "load_strongreject",
    "load_xstest",
    "load_xstest_pair",
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
    for lineno, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), start=1):
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
