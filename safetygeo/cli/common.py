"""What every command shares: the console, model options (declared once), ``--set ROLE=SPEC``
parsing, validation before any model is loaded, and error printing without tracebacks.

Grammar of every command that reads a model: ``safetygeo VERB MODEL [--set ROLE=SPEC ...]
[options]`` — MODEL is positional (hub id or local folder); prompt sets are always
``--set ROLE=SPEC`` where SPEC is a prompt-set spec (``[FORMAT=]PATH`` or
``example:NAME``, :func:`safetygeo.data.load_prompt_set`); the model options below are the
same everywhere; ``--batch-size`` (prompts per forward pass) defaults to 16 and
``--max-variants`` (directions per forward pass) to 16 in every command.

Example:
    >>> parse_layers("0-2,5"), parse_layers("all"), parse_layers("-1")
    ([0, 1, 2, 5], 'all', [-1])
    >>> parse_role_spec("harmful=advbench=data.csv", "--set")
    ('harmful', 'advbench=data.csv')
"""

import ast
import contextlib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from safetygeo.errors import SafetyGeoError

console = Console(stderr=True)

#: What a table cell shows for a missing value (None or NaN).
MISSING = "–"

#: Default prompts per forward pass and directions per forward pass, for every command.
BATCH_SIZE = 16
MAX_VARIANTS = 16
#: Set by the global --verbose option.
VERBOSE = False

ModelArg = Annotated[str, typer.Argument(help="Hub id or local checkpoint folder.", metavar="MODEL",
                                         show_default=False)]
BatchSize = Annotated[int, typer.Option(min=1, help="Prompts per forward pass.")]
MaxVariants = Annotated[int, typer.Option(min=1, help="Directions per forward pass.")]
Limit = Annotated[Optional[int], typer.Option(min=1, help="Use only the first N prompts of "
                                                          "each set.")]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
SetOpt = Annotated[
    list[str],
    typer.Option("--set", "-s", help="Prompt set ROLE=SPEC (repeat). SPEC: [FORMAT=]PATH or "
                 "example:NAME; FORMAT one of advbench, harmbench, jailbreakbench, "
                 "strongreject, xstest, xstest-safe, xstest-unsafe, alpaca, json, jsonl, "
                 "lines, csv.", show_default=False),
]
RefusalPhrase = Annotated[
    Optional[list[str]],
    typer.Option("--refusal-phrase", help="Refusal opening whose first token counts as "
                 "refusal (repeat). Default: the GCG/XSTest openings.", show_default=False),
]
RefusalToken = Annotated[
    Optional[list[int]],
    typer.Option("--refusal-token", help="Refusal-start token id (repeat); overrides "
                 "--refusal-phrase.", show_default=False),
]


# ----------------------------------------------------------------------------- registries
_PACKAGE = Path(__file__).resolve().parents[1]


def _class_name_constant(node: ast.ClassDef) -> str | None:
    for stmt in node.body:
        target = (stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                  else stmt.target if isinstance(stmt, ast.AnnAssign) else None)
        value = getattr(stmt, "value", None)
        if (isinstance(target, ast.Name) and target.id == "name"
                and isinstance(value, ast.Constant) and isinstance(value.value, str)):
            return value.value
    return None


@functools.lru_cache(maxsize=None)
def registry_names(kind: str) -> tuple[str, ...]:
    """Names in a registry, read from the source files without importing them (so that
    ``--help`` stays fast: the registries' modules import torch and transformers).

    ``methods``: the ``name`` of every ``@register_method`` class in ``training/methods/``
    (sorted); ``toy_stages`` / ``toy_defenses``: the keys of the toy stage table
    (``toy/stages.py``; all of them / those with ``defense=True``, in table order);
    ``real_stages`` / ``real_defenses``: the same of the real world's (``real/stages.py``).
    ``tests/test_contracts.py`` checks them against the imported registries.

    Example:
        >>> {"sft", "r2d2"} <= set(registry_names("methods"))
        True
        >>> registry_names("toy_defenses")[:2], registry_names("real_defenses")[:2]
        (('base', 'anchor'), ('instruct', 'anchor'))
    """
    if kind == "methods":
        names = []
        for path in sorted((_PACKAGE / "training" / "methods").glob("[!_]*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and any(
                        getattr(d, "id", getattr(d, "attr", None)) == "register_method"
                        for d in node.decorator_list):
                    name = _class_name_constant(node)
                    if name:
                        names.append(name)
        return tuple(sorted(names))
    if kind in ("toy_stages", "toy_defenses", "real_stages", "real_defenses"):
        world = kind.split("_")[0]
        tree = ast.parse((_PACKAGE / world / "stages.py").read_text(encoding="utf-8"))
        for node in tree.body:
            target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
            if isinstance(target, ast.Name) and target.id == f"{world.upper()}_STAGES":
                table = getattr(node, "value", None)
                assert isinstance(table, ast.Dict)
                out = []
                for key, row in zip(table.keys, table.values):
                    defense = any(k.arg == "defense" and isinstance(k.value, ast.Constant)
                                  and k.value.value is True
                                  for k in getattr(row, "keywords", []))
                    if isinstance(key, ast.Constant) and (kind.endswith("_stages") or defense):
                        out.append(str(key.value))
                return tuple(out)
    raise SafetyGeoError(f"unknown registry {kind!r}; use methods, toy_stages, toy_defenses, "
                         "real_stages or real_defenses")


# ----------------------------------------------------------------------------- model options
@dataclass(frozen=True)
class ModelOptions:
    """How MODEL is loaded; the same options in every command."""

    revision: Optional[str] = None
    dtype: str = "auto"
    device: Optional[str] = None
    template: Optional[str] = None
    system: Optional[str] = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    layers_path: Optional[str] = None
    final_norm_path: Optional[str] = None


_MODEL_OPTIONS: dict[str, tuple[Any, Any]] = {
    "revision": (Optional[str], typer.Option(help="Hub revision (branch, tag, commit).",
                                             rich_help_panel="Model")),
    "dtype": (str, typer.Option(help="auto, float32, bf16 or fp16.", rich_help_panel="Model")),
    "device": (Optional[str], typer.Option(help="cpu, cuda, cuda:1, ... (default: cpu).",
                                           rich_help_panel="Model")),
    "template": (Optional[str], typer.Option(help="Chat-template override with one "
                                                  "'{instruction}' field.",
                                             rich_help_panel="Model")),
    "system": (Optional[str], typer.Option(help="System prompt for the chat template.",
                                           rich_help_panel="Model")),
    "trust_remote_code": (bool, typer.Option(help="Allow custom modelling code from the hub.",
                                             rich_help_panel="Model")),
    "allow_pickle": (bool, typer.Option(help="Accept pickle (*.bin) weights.",
                                        rich_help_panel="Model")),
    "layers_path": (Optional[str], typer.Option(help="Dotted path of the block list.",
                                                rich_help_panel="Model")),
    "final_norm_path": (Optional[str], typer.Option(help="Dotted path of the final norm.",
                                                    rich_help_panel="Model")),
}


def model_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Append the model options to a command's signature; the command receives them as
    ``model_opts: ModelOptions``. Declared once here, identical in every command."""
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "model_opts"]
    defaults = {f.name: f.default for f in fields(ModelOptions)}
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name],
                               annotation=Annotated[tp, opt])
             for name, (tp, opt) in _MODEL_OPTIONS.items()]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        opts = ModelOptions(**{k: kwargs.pop(k) for k in _MODEL_OPTIONS})
        return fn(model_opts=opts, **kwargs)

    setattr(wrapper, "__signature__", sig.replace(parameters=params + extra))
    wrapper.__annotations__ = {**{k: v for k, v in fn.__annotations__.items()
                                  if k != "model_opts"},
                               **{p.name: p.annotation for p in extra}}
    return wrapper


def field_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a dataclass's docstring
    (``"a, b: text"`` documents both).

    Example:
        >>> from safetygeo.training.config import TrainConfig
        >>> field_docs(TrainConfig)["grad_accum"]
        'micro-batches per optimizer step.'
    """
    out: dict[str, str] = {}
    lines = inspect.getdoc(cls) or ""
    inside, indent = False, 0
    current: list[str] = []
    for line in lines.splitlines():
        if line.strip() == "Attributes:":
            inside, current = True, []
            continue
        if not inside or not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        head, sep, text = line.strip().partition(": ")
        if sep and all(n.strip().isidentifier() for n in head.split(",")) and (
                not out or depth <= indent):
            indent = depth
            current = [n.strip() for n in head.split(",")]
            for n in current:
                out[n] = text.strip()
        elif depth > indent and current:
            for n in current:
                out[n] += " " + line.strip()
        else:
            break
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option_specs(cls: type, prefix: str, path: tuple[str, ...], exclude: Sequence[str],
                  flags: Mapping[str, str], panel: str | None
                  ) -> list[tuple[tuple[str, ...], inspect.Parameter]]:
    import dataclasses
    import typing
    from types import UnionType

    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    out: list[tuple[tuple[str, ...], inspect.Parameter]] = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        tp = hints[f.name]
        union = isinstance(tp, UnionType) or typing.get_origin(tp) is typing.Union
        kinds = [a for a in (typing.get_args(tp) if union else (tp,)) if a is not type(None)]
        nested = [a for a in kinds if isinstance(a, type) and dataclasses.is_dataclass(a)]
        if nested:
            out += _option_specs(nested[0], f"{prefix}{f.name}_", (*path, f.name), (), flags,
                                 panel)
            continue
        param = f"{prefix}{f.name}"
        flag = flags.get(param, "--" + param.replace("_", "-"))
        base = kinds[0] if len(kinds) == 1 and kinds[0] in (bool, int, float, str) else str
        decl = f"{flag}/--no-{flag[2:]}" if base is bool else flag
        text = docs.get(f.name, "").replace("``", "")
        text = text[:1].upper() + text[1:]
        if base is not bool and f.default is not dataclasses.MISSING and f.default is not None:
            text += f" [default: {f.default}]"
        option = typer.Option(decl, help=text.strip(), show_default=False, rich_help_panel=panel)
        out.append(((*path, f.name), inspect.Parameter(
            param, inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[Optional[base], option])))
    return out


def dataclass_options(cls: type, *, exclude: Sequence[str] = (),
                      flags: Mapping[str, str] | None = None,
                      panel: str | None = None) -> dict[str, tuple[tuple[str, ...], str]]:
    """The typer options generated from a config dataclass's fields (TRL's
    ``HfArgumentParser`` idea), as ``{parameter: (field path, flag)}``: one
    ``--field-name`` per field, help from the docstring's ``Attributes``, ``None`` by
    default (not given = the config's own default); a nested dataclass field becomes
    ``--<field>-<subfield>``; ``bool`` fields get ``--x/--no-x``.

    Args:
        exclude: field names left out (e.g. one another option already owns).
        flags: ``{parameter name: flag}`` for flags named unlike their field.

    Example:
        >>> from safetygeo.training.config import TrainConfig
        >>> opts = dataclass_options(TrainConfig, exclude=("dtype",))
        >>> opts["max_steps"], opts["lora_r"]
        ((('max_steps',), '--max-steps'), (('lora', 'r'), '--lora-r'))
    """
    specs = _option_specs(cls, "", (), exclude, flags or {}, panel)
    return {p.name: (path, (flags or {}).get(p.name, "--" + p.name.replace("_", "-")))
            for path, p in specs}


def config_command(cls: type, *, param: str, exclude: Sequence[str] = (),
                   flags: Mapping[str, str] | None = None,
                   panel: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Append the options of :func:`dataclass_options` to a command's signature; the
    command receives the ones given as ``{param: {field: value}}`` (a nested field as a
    nested dict)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name != param]
        specs = _option_specs(cls, "", (), exclude, flags or {}, panel)

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            given: dict[str, Any] = {}
            for path, p in specs:
                value = kwargs.pop(p.name)
                if value is not None:
                    node = given
                    for key in path[:-1]:
                        node = node.setdefault(key, {})
                    node[path[-1]] = value
            return fn(**{param: given}, **kwargs)

        extra = [p for _, p in specs]
        setattr(wrapper, "__signature__", sig.replace(parameters=params + extra))
        wrapper.__annotations__ = {**{k: v for k, v in fn.__annotations__.items() if k != param},
                                   **{p.name: p.annotation for p in extra}}
        return wrapper

    return deco


def check_device(device: Optional[str]) -> None:
    """Refuse a device name torch does not know or the machine does not have, before anything
    is loaded (:func:`safetygeo.models.checks.check_device`, as a ``--device`` error)."""
    from safetygeo.errors import DeviceError
    from safetygeo.models.checks import check_device as check

    try:
        check(device)
    except DeviceError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from None


def load_handle(model: str, opts: ModelOptions) -> Any:
    """Load MODEL with the shared options (after :func:`check_device`)."""
    from safetygeo.models import load_model

    check_device(opts.device)
    with console.status(f"loading {model}"):
        handle = load_model(model, revision=opts.revision, dtype=opts.dtype, device=opts.device,
                            trust_remote_code=opts.trust_remote_code,
                            allow_pickle=opts.allow_pickle, layers_path=opts.layers_path,
                            final_norm_path=opts.final_norm_path)
    if opts.template is not None or opts.system is not None:
        handle = handle.with_template(opts.template, system=opts.system)
    return handle


# ----------------------------------------------------------------------------- errors
@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Print a :class:`SafetyGeoError` as one line (type and message) and exit with 2."""
    try:
        yield
    except SafetyGeoError as exc:
        console.print(f"[bold red]error[/]: {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(2) from None


def quiet_libraries(verbose: bool) -> None:
    """Library noise off unless ``--verbose``: transformers' warnings and its progress bars
    ("Loading weights", "Writing model shards")."""
    import os

    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


# ----------------------------------------------------------------------------- parsing
def parse_layers(text: str, flag: str = "--layers") -> str | list[int]:
    """Parse ``all``, ``3``, ``0,2,4``, ``0-3`` or ``-1`` into a layer selection."""
    text = text.strip()
    if text == "all":
        return "all"
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part[0] + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1]
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise typer.BadParameter(f"cannot parse {text!r}; use all, 3, 0,2,4 or 0-3",
                                 param_hint=flag) from None
    return out


def parse_floats(text: str, flag: str) -> list[float]:
    """Comma-separated finite floats (``nan`` / ``inf`` are refused, naming the flag)."""
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"cannot parse {text!r} as comma-separated numbers",
                                 param_hint=flag) from None
    if not vals:
        raise typer.BadParameter("needs at least one number", param_hint=flag)
    bad = [v for v in vals if not math.isfinite(v)]
    if bad:
        raise typer.BadParameter(f"values must be finite, got {bad}", param_hint=flag)
    return vals


def parse_role_spec(text: str, flag: str = "--set") -> tuple[str, str]:
    """``ROLE=SPEC`` → ``(role, spec)``; the role is everything before the first ``=``."""
    role, sep, spec = text.partition("=")
    if not sep or not role.strip() or not spec.strip():
        raise typer.BadParameter(f"{text!r} is not ROLE=SPEC (e.g. harmful=advbench.csv)",
                                 param_hint=flag)
    return role.strip(), spec.strip()


def load_sets(values: Sequence[str], roles: Sequence[str] | None, *, flag: str = "--set",
              limit: int | None = None, labels: Mapping[str, str] | None = None,
              required: Sequence[str] = ()) -> dict[str, Any]:
    """Parse and load every ``--set ROLE=SPEC`` (before any model is loaded).

    Args:
        roles: the roles this command accepts (``None``: any name, e.g. ``extract``).
        limit: keep the first ``limit`` prompts of each set.
        labels: label given to the sets of a role (e.g. ``{"harmful": "harmful"}``).
        required: roles that must be present.
    """
    from safetygeo.data import load_prompt_set

    out: dict[str, Any] = {}
    for text in values:
        role, spec = parse_role_spec(text, flag)
        if roles is not None and role not in roles:
            raise typer.BadParameter(f"unknown role {role!r} in {text!r}; this command takes "
                                     f"{', '.join(roles)}", param_hint=flag)
        if role in out:
            raise typer.BadParameter(f"role {role!r} is given twice", param_hint=flag)
        with guarded():
            ps = load_prompt_set(spec, label=(labels or {}).get(role.split(".")[0]))
            if limit is not None:
                ps = ps.subset(range(min(limit, len(ps))))
        out[role] = ps
    missing = [r for r in required if r not in out]
    if missing:
        raise typer.BadParameter(f"missing {', '.join(f'{r}=SPEC' for r in missing)}",
                                 param_hint=flag)
    return out


def check_out(path: Path, flag: str = "--out", *, file: bool = False) -> None:
    """Refuse an output folder that is an existing file (or an output file that is a folder)."""
    if file and path.is_dir():
        raise typer.BadParameter(f"{str(path)!r} is a folder, not a file", param_hint=flag)
    if not file and path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{str(path)!r} exists and is not a folder", param_hint=flag)


def refusal_scoring(phrases: Optional[list[str]], tokens: Optional[list[int]],
                    default: Any = None) -> Any:
    """``--refusal-phrase`` / ``--refusal-token`` → a RefusalScoring (``default`` if neither)."""
    from safetygeo.activations.refusal import RefusalScoring

    if not phrases and not tokens:
        return default if default is not None else RefusalScoring()
    with guarded():
        return RefusalScoring.from_options(phrases, tokens)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return MISSING
    if isinstance(value, (bool, str)) or isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        return MISSING if math.isnan(v) else format(v, fmt)
    return str(value)


def _column_widths(heads: list[str], cells: list[list[str]], total: int) -> list[int] | list[None]:
    """Widths that fit ``total`` characters: every value whole (up to 24 characters) and
    headers wrapped at spaces where needed; ``None`` each (rich decides) if even that
    does not fit."""
    value = [max((len(row[j]) for row in cells), default=1) for j in range(len(heads))]
    natural = [max(len(h), v) for h, v in zip(heads, value)]
    least = [max(max(len(w) for w in h.split() or [""]), min(v, 24))
             for h, v in zip(heads, value)]
    room = total - (3 * len(heads) + 1)  # borders and padding of rich's default box
    if sum(least) > room:
        return [None] * len(heads)
    widths, spare = list(least), room - sum(least)
    for j in sorted(range(len(heads)), key=lambda j: natural[j] - least[j]):
        grow = min(natural[j] - widths[j], spare // max(1, len(heads) - j))
        widths[j] += grow
        spare -= grow
    return widths


def print_table(rows: Any, columns: Sequence[str] | Mapping[str, str], *,
                title: str | None = None, note: str | None = None, fmt: str = ".3g",
                out: Console | None = None) -> None:
    """Print the few columns of a table that matter, readable in an 80-column terminal.

    A terminal table is a summary: pass the columns a reader needs first (three to six),
    and in ``note`` say where the full table is (the Parquet / HTML the command wrote).
    No value is cut: columns are at least as wide as their values (up to 24 characters;
    longer ones wrap onto a second line instead of ending in "…"), headers wrap at spaces.

    Args:
        rows: a pandas DataFrame, or a sequence of mappings (one per row).
        columns: the column names to print, in order; or ``{column: header}`` to print
            them under shorter headers.
        title: printed above the table.
        note: printed under the table (e.g. ``"all 40 candidates: OUT/candidates.parquet"``).
        fmt: format of float cells (``".3g"``); None and NaN print as ``–``, ints as is.
        out: the console (default: the CLI's stderr console).

    Example:
        >>> import io
        >>> buf = io.StringIO()
        >>> print_table([{"layer": 3, "kl": 0.01234, "note": None}], {"layer": "layer",
        ...             "kl": "KL"}, note="all columns: out/x.parquet",
        ...             out=Console(file=buf, width=80))
        >>> print(buf.getvalue().strip())  # doctest: +NORMALIZE_WHITESPACE
        ┏━━━━━━━┳━━━━━━━━┓
        ┃ layer ┃ KL     ┃
        ┡━━━━━━━╇━━━━━━━━┩
        │ 3     │ 0.0123 │
        └───────┴────────┘
        all columns: out/x.parquet
    """
    from rich.table import Table

    heads = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    records = rows.to_dict(orient="records") if hasattr(rows, "to_dict") else [
        dict(r) for r in rows]
    missing = [c for c in heads if records and c not in records[0]]
    if missing:
        raise SafetyGeoError(f"print_table: no column(s) {missing} in the table "
                             f"(it has {sorted(records[0])})")
    cells = [[_cell(rec.get(c), fmt) for c in heads] for rec in records]
    con = out or console
    widths = _column_widths(list(heads.values()), cells, con.width)
    table = Table(title=title)
    for head, width in zip(heads.values(), widths):
        table.add_column(head, overflow="fold", width=width)
    for row in cells:
        table.add_row(*row)
    con.print(table)
    if note:
        con.print(note, highlight=False)


#: ``--carriers``: a folder written by ``select-carrier`` (sweep, measure-frontier, abliterate)
CarriersDir = Annotated[Path, typer.Option("--carriers", "-c", help="Folder written by "
                                           "`safetygeo select-carrier`.", show_default=False)]
