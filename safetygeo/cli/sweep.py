"""``sweep``: ablation / addition of saved carriers against matched random-direction nulls,
and ablation of attention heads against random other heads of the same layer."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional, cast

import typer
from rich.table import Table

from safetygeo.cli.app import app
from safetygeo.cli.common import (
    BATCH_SIZE,
    MAX_VARIANTS,
    BatchSize,
    CarriersDir,
    Limit,
    MaxVariants,
    ModelArg,
    ModelOptions,
    OutDir,
    RefusalPhrase,
    RefusalToken,
    SetOpt,
    check_out,
    console,
    guarded,
    load_handle,
    load_sets,
    model_command,
    parse_floats,
    parse_layers,
    refusal_scoring,
)

if TYPE_CHECKING:
    from torch import Tensor

    from safetygeo.interventions.intervention import HeadAblation
    from safetygeo.models.handle import ModelHandle

Candidate = Annotated[Optional[list[str]], typer.Option(
    help="Extra candidate LAYER:POSITION (repeat, e.g. 3:eoi-1); default: the chosen carrier.",
    show_default=False)]


def carrier_directions(sel: object, candidates: Optional[list[str]]) -> "dict[str, Tensor]":
    """The chosen carrier and any ``--candidate LAYER:POSITION`` as named raw vectors."""
    from safetygeo.errors import LayerIndexError, PositionError, SafetyGeoError

    directions: dict[str, Tensor] = {}
    if sel.chosen is not None:  # type: ignore[attr-defined]
        directions[f"carrier {sel.chosen[0]}:{sel.chosen[1]}"] = sel.vector  # type: ignore[attr-defined]
    cands = sel.directions  # type: ignore[attr-defined]
    for spec in candidates or []:
        layer_s, _, pos = spec.partition(":")
        try:
            layer = int(layer_s)
        except ValueError:
            raise typer.BadParameter(f"cannot parse {spec!r}; use LAYER:POSITION (e.g. 3:eoi-1)",
                                     param_hint="--candidate") from None
        if layer not in cands.layers:
            raise typer.BadParameter(f"layer {layer} out of range: the carriers have layers "
                                     f"{cands.layers[0]}..{cands.layers[-1]}", param_hint="--candidate")
        try:
            directions[f"candidate {spec}"] = cands.vector(layer, pos or "eoi-1")
        except (PositionError, LayerIndexError, SafetyGeoError) as exc:
            raise typer.BadParameter(f"{spec!r}: {exc} (positions: "
                                     f"{', '.join(cands.positions.labels)})",
                                     param_hint="--candidate") from None
    if not directions:
        raise typer.BadParameter("the carrier selection has no chosen carrier; pass --candidate",
                                 param_hint="--carriers")
    return directions


def parse_heads(specs: Optional[list[str]]) -> "list[HeadAblation]":
    """``--heads LAYER:H1,H2`` (repeatable) as head ablations (checked against the model later)."""
    from safetygeo.interventions.intervention import HeadAblation

    out = []
    for spec in specs or []:
        layer_s, sep, heads_s = spec.partition(":")
        try:
            layer = int(layer_s)
            heads = tuple(int(x) for x in heads_s.split(","))
        except ValueError:
            raise typer.BadParameter(f"cannot parse {spec!r}; use LAYER:H1,H2 (e.g. 3:0,5)",
                                     param_hint="--heads") from None
        if not sep or len(set(heads)) != len(heads):
            raise typer.BadParameter(f"cannot parse {spec!r}; use LAYER:H1,H2 with distinct "
                                     "heads (e.g. 3:0,5)", param_hint="--heads")
        out.append(HeadAblation(layer, heads))
    return out


def check_heads_for(h: "ModelHandle", cells: "list[HeadAblation]", specs: list[str]) -> None:
    """Each ``--heads`` cell checked against the loaded model (layer and head ranges)."""
    from safetygeo.errors import SafetyGeoError

    for spec, iv in zip(specs, cells):
        try:
            iv.resolved(h)
        except SafetyGeoError as exc:
            raise typer.BadParameter(f"{spec!r}: {exc}", param_hint="--heads") from None


def load_carriers(path: Path) -> object:
    from safetygeo.causal.carriers import CarrierSelection

    with guarded():
        return CarrierSelection.load(path)


@app.command()
@model_command
def sweep(
    model: ModelArg,
    carriers: CarriersDir,
    sets: SetOpt,
    model_opts: ModelOptions,
    out: OutDir = Path("artifacts/sweep"),
    candidate: Candidate = None,
    ops: Annotated[str, typer.Option(help="Comma list of ablate, add (none: only --heads).")
                   ] = "ablate,add",
    heads: Annotated[Optional[list[str]], typer.Option(
        help="Also zero-ablate attention heads LAYER:H1,H2 (repeat) against random sets of "
             "as many other heads of that layer (all of them when there are at most --n-null: "
             "an exact test, p floor 1/(number of sets)).", show_default=False)] = None,
    layers: Annotated[str, typer.Option(help="Layers for addition: all, 0-3, 1,2.")] = "all",
    alphas: Annotated[str, typer.Option(help="Comma list of addition strengths.")] = "1.0",
    n_null: Annotated[int, typer.Option(min=1, help="Matched random directions per cell (K); "
                                        "with --sequential the default of --k-max.")] = 64,
    seed: Annotated[int, typer.Option(help="Null-direction seed.")] = 0,
    sequential: Annotated[bool, typer.Option(
        "--sequential/--fixed", help="Sequential null tests (Besag–Clifford: a cell stops "
        "drawing nulls once every metric is settled) or a fixed K per cell.")] = True,
    h_exceed: Annotated[int, typer.Option("--h", min=2, help="Sequential: a metric is settled (not "
                                   "significant, p = h/l) once this many nulls reach its "
                                   "real effect.")] = 4,
    k_max: Annotated[Optional[int], typer.Option(min=1, help="Sequential: the most nulls a "
                                                 "cell draws (default --n-null).",
                                                 show_default=False)] = None,
    null_batch: Annotated[Optional[int], typer.Option(min=1, help="Sequential: nulls drawn "
                                                      "per step after a pilot of 16 (default 8).",
                                                      show_default=False)] = None,
    tail: Annotated[Optional[bool], typer.Option(
        "--tail/--no-tail", help="Tail estimates of p below 1/(K+1) where no null reaches the "
        "real effect (GPD or normal tail; BH uses them where below the exact p). Default: on "
        "with --sequential, off with --fixed.", show_default=False)] = None,
    refusal_phrase: RefusalPhrase = None,
    refusal_token: RefusalToken = None,
    generations: Annotated[bool, typer.Option(help="Also test the refusal rate of greedy "
                                                   "generations (slower).")] = False,
    gen_n_null: Annotated[int, typer.Option(min=1, help="Nulls of the generation test.")] = 16,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per generation.")] = 32,
    overwrite: Annotated[bool, typer.Option(help="Replace a sweep in OUT written with other "
                                                 "settings.")] = False,
    limit: Limit = None,
    batch_size: BatchSize = BATCH_SIZE,
    max_variants: MaxVariants = MAX_VARIANTS,
    executor: Annotated[str, typer.Option(help="local, or ray: cells as Ray tasks (one per "
                                               "direction / layer).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(
        help="Ray cluster (default $RAY_ADDRESS; none: a local instance).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="CPUs of a local Ray instance.")] = None,
    num_gpus: Annotated[float, typer.Option(min=0, help="GPUs per Ray task.")] = 0.0,
) -> None:
    """Sweep ablation / addition of saved carriers against matched random directions, and
    (--heads LAYER:H1,H2) zero-ablation of attention heads against random other heads of
    the same layer.

    Refusal is scored exactly as in `select-carrier` (the scoring saved in carriers.json)
    unless --refusal-phrase / --refusal-token are given. By default every cell runs a
    sequential null test (at most --k-max nulls, --null-batch at a time, stopping once h
    nulls reach each metric's real effect) with tail estimates for strong cells; --fixed
    draws --n-null nulls for every cell. Writes OUT/sweep.parquet (resumable: rerun the
    same command to finish a killed sweep; another K, h, seed, prompt set, scoring or model
    is refused unless --overwrite) and OUT/sweep.html.
    """
    from safetygeo._io import atomic_write_text
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.causal.sweep import SWEEP_COLUMNS, run_sweep
    from safetygeo.errors import SafetyGeoError
    from safetygeo.interventions.intervention import OPS
    from safetygeo.interventions.nulls import NullSpec
    from safetygeo.reports.figures import sweep_figure

    if executor not in ("local", "ray"):
        raise typer.BadParameter(f"{executor!r}; use local or ray", param_hint="--executor")
    if not sequential and (k_max is not None or null_batch is not None):
        raise typer.BadParameter("--k-max and --null-batch apply to --sequential tests only",
                                 param_hint="--fixed")
    try:
        nulls = NullSpec(k=n_null, seed=seed, max_variants=max_variants,
                         h=h_exceed if sequential else None, k_max=k_max, batch=null_batch,
                         tail=sequential if tail is None else tail)
    except SafetyGeoError as exc:
        raise typer.BadParameter(str(exc), param_hint="--h / --k-max / --n-null") from None
    op_list = [o.strip() for o in ops.split(",") if o.strip()]
    head_cells = parse_heads(heads)
    if op_list == ["none"] and head_cells:
        op_list = []
    elif not op_list or any(o not in OPS for o in op_list):
        raise typer.BadParameter(f"{ops!r}; use ablate, add, ablate,add (or none with --heads)",
                                 param_hint="--ops")
    alpha_list = parse_floats(alphas, "--alphas")
    layer_sel = parse_layers(layers)
    check_out(out)
    sel = load_carriers(carriers)
    directions = carrier_directions(sel, candidate) if op_list else {}
    scoring = refusal_scoring(refusal_phrase, refusal_token, default=sel.scoring)  # type: ignore[attr-defined]
    if scoring != sel.scoring:  # type: ignore[attr-defined]
        console.print("[yellow]note[/]: scoring refusal with other tokens than the carrier "
                      "selection did")
    named = load_sets(sets, ("harmful", "harmless"), limit=limit, required=("harmful", "harmless"),
                      labels={"harmful": "harmful", "harmless": "harmless"})
    with guarded():
        h = load_handle(model, model_opts)
        d_sel = sel.directions.vectors.shape[-1]  # type: ignore[attr-defined]
        if h.d_model != d_sel:
            raise typer.BadParameter(f"the carriers have d_model={d_sel} but {model} has "
                                     f"d_model={h.d_model}", param_hint="--carriers")
        check_heads_for(h, head_cells, list(heads or []))
        out.mkdir(parents=True, exist_ok=True)
        kw = dict(harmful=list(named["harmful"].prompts),
                  harmless=list(named["harmless"].prompts),
                  ops=cast(list[Literal["ablate", "add"]], op_list), layers=layer_sel,
                  alphas=alpha_list, interventions=head_cells, nulls=nulls,
                  scoring=scoring, out=out / "sweep.parquet", overwrite=overwrite,
                  generations=GenerationSettings(max_new_tokens=max_new_tokens) if generations else None,
                  gen_nulls=NullSpec(k=gen_n_null, seed=seed, max_variants=max_variants),
                  batch_size=batch_size)
        if executor == "local":
            table = run_sweep(h, directions, **kw)
        else:
            import functools

            from safetygeo._executor import make_executor
            from safetygeo.causal.sweep_parallel import run_sweep_parallel

            with make_executor(executor, address=ray_address, workers=workers) as ex:
                table = run_sweep_parallel(
                    h, directions, loader=functools.partial(load_handle, model, model_opts),
                    executor=ex, num_gpus=num_gpus, **kw)
    fig = sweep_figure(table)
    atomic_write_text(out / "sweep.html", fig.to_html(include_plotlyjs=True, full_html=True))
    summary = Table(title="strongest effects (|z|)")
    for col in ("direction", "op", "site", "metric", "real", "null 95%", "nulls", "stop", "p",
                "p tail", "BH on", "q"):
        summary.add_column(col)
    top = table.reindex(table.z.abs().sort_values(ascending=False).index).head(8)
    for r in top.itertuples():
        summary.add_row(r.direction, r.op, r.site if r.layer != r.layer else f"{r.site}@{int(r.layer)}",
                        r.metric, f"{r.real:.3f}", f"[{r.null_q025:.3f}, {r.null_q975:.3f}]",
                        f"{r.n_null_used}/{r.k}", str(r.stop_reason), f"{r.p:.3g}",
                        "–" if r.p_tail != r.p_tail else f"{r.p_tail:.2g} ({r.p_tail_method})",
                        str(r.p_used), f"{r.q:.3g}")
    console.print(summary)
    cells = table.drop_duplicates(list(SWEEP_COLUMNS))
    cost, n_cells = int((cells.k + 1).sum()), len(cells)
    console.print(f"{n_cells} cells, {cost} directions evaluated "
                  f"(a fixed K={nulls.n_max} would take {n_cells * (nulls.n_max + 1)})")
    console.print(f"wrote {out / 'sweep.parquet'} and {out / 'sweep.html'}")
