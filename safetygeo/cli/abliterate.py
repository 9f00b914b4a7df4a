"""``abliterate`` (write an edited, loadable checkpoint with its provenance and a model card)
and ``search-abliteration`` (Optuna over the kernel; the Pareto front in heretic's
``refusals/N @ KL`` read-out, each point next to random-direction edits of the same kernel).

Example (shell)::

    safetygeo abliterate MODEL --carriers artifacts/carriers --attn-max 1.0 --out edited
    safetygeo search-abliteration MODEL --carriers artifacts/carriers \\
        --set harmful=example:harmful --set harmless=example:harmless --out search
    safetygeo abliterate MODEL --carriers artifacts/carriers --kernel search/search.json \\
        --out edited
"""

import json
from pathlib import Path
from typing import Annotated, Any, Optional, cast

import typer

from safetygeo.cli.app import app
from safetygeo.cli.common import (
    BATCH_SIZE,
    BatchSize,
    CarriersDir,
    Limit,
    ModelArg,
    ModelOptions,
    OutDir,
    SetOpt,
    check_out,
    console,
    guarded,
    load_handle,
    load_sets,
    model_command,
    print_table,
)

Position = Annotated[Optional[str], typer.Option(help="Position label of the directions "
                                                      "(default: the chosen carrier's, else "
                                                      "the last).")]
Norm = Annotated[str, typer.Option(help="How each matrix is edited: plain (Arditi / FailSpy / "
                                        "heretic none), rows-renormalized (heretic full), "
                                        "rows-prescaled (heretic pre), columns-renormalized "
                                        "(grimjim norm-preserving).")]
Projected = Annotated[str, typer.Option(help="Direction made orthogonal to the harmless mean: "
                                             "none, harmless-own-slot (heretic / grimjim "
                                             "projected), harmless-block-input (grimjim "
                                             "llm-abliteration); needs --set fit.harmless.")]
Markers = Annotated[Optional[list[str]], typer.Option(
    "--refusal-marker", help="Count a generation as refused when it contains this text "
    "(case-insensitive; repeat). Default: safetygeo's refusal classifier.", show_default=False)]
ROLES = ("harmful", "harmless", "fit.harmless")


def _classifier(markers: Optional[list[str]]) -> Any:
    from safetygeo.behavior.classify import classify_refusal
    from safetygeo.causal.abliteration import marker_classifier

    if not markers:
        return classify_refusal
    with guarded():
        return marker_classifier(markers)


def _kernel_from_file(path: Path, trial: int | None) -> Any:
    from safetygeo.interventions.kernel import AbliterationKernel

    with guarded():
        from safetygeo._io import read_json

        raw = read_json(path, what="kernel file")
        if isinstance(raw, dict) and raw.get("format") == "safetygeo.abliteration_search":
            front = raw["front"]
            if not front:
                raise typer.BadParameter("the search has no Pareto front", param_hint="--kernel")
            pick = front[0] if trial is None else next(
                (p for p in front if p["trial"] == trial), None)
            if pick is None:
                raise typer.BadParameter(f"trial {trial} is not on the saved front "
                                         f"({[p['trial'] for p in front]})", param_hint="--trial")
            return AbliterationKernel.from_dict(pick["kernel"]), pick["trial"]
        if isinstance(raw, dict) and raw.get("format") == "safetygeo.abliteration":
            return AbliterationKernel.from_dict(raw["kernel"]), None
        if isinstance(raw, dict) and "attention" in raw:
            return AbliterationKernel.from_dict(raw), None
        raise typer.BadParameter(f"{path} is neither a search, an abliteration provenance nor "
                                 "a kernel", param_hint="--kernel")


def _load(model: str, model_opts: ModelOptions, carriers: Path, position: str | None,
          named: dict[str, Any], needs_means: bool, batch_size: int) -> tuple[Any, Any, Any, Any]:
    from safetygeo.causal.abliteration import harmless_means, slot_directions
    from safetygeo.cli.sweep import load_carriers

    sel = load_carriers(carriers)
    h = load_handle(model, model_opts)
    dirs = slot_directions(sel, position)
    if dirs.shape != (h.n_layers + 1, h.d_model):
        raise typer.BadParameter(f"the carriers have directions {tuple(dirs.shape)} but {model} "
                                 f"has {h.n_layers + 1} slots of d_model={h.d_model}",
                                 param_hint="--carriers")
    means = None
    if needs_means:
        if "fit.harmless" not in named:
            raise typer.BadParameter("a projected mode needs --set fit.harmless=SPEC (its "
                                     "harmless means)", param_hint="--set")
        means = harmless_means(h, list(named["fit.harmless"].prompts), batch_size=batch_size)
    return sel, h, dirs, means


@app.command("abliterate")
@model_command
def abliterate(
    model: ModelArg,
    carriers: CarriersDir,
    model_opts: ModelOptions,
    out: OutDir = Path("artifacts/abliterated"),
    sets: SetOpt = [],  # noqa: B006 - typer needs a list default
    kernel_file: Annotated[Optional[Path], typer.Option(
        "--kernel", help="Kernel JSON: a search-abliteration search.json (its first front "
        "point, or --trial), an abliteration.json, or a kernel; overrides the kernel "
        "options.")] = None,
    trial: Annotated[Optional[int], typer.Option(help="Trial of --kernel's front.")] = None,
    position: Position = None,
    direction_index: Annotated[Optional[float], typer.Option(
        help="Fractional slot of one direction for all blocks (slot l = residual entering "
        "block l; heretic's index i is slot i+1). Default: the chosen carrier's layer.")] = None,
    per_layer: Annotated[bool, typer.Option("--per-layer", help="Block l uses the direction "
                                                                "of slot l+1.")] = False,
    attn_max: Annotated[float, typer.Option(help="Attention: weight at the peak.")] = 1.0,
    attn_min: Annotated[Optional[float], typer.Option(help="Attention: weight at the "
                                                           "distance (default = max).")] = None,
    attn_peak: Annotated[float, typer.Option(help="Attention: peak layer.")] = 0.0,
    attn_distance: Annotated[Optional[float], typer.Option(help="Attention: layers from the "
                                                                "peak to the min weight; "
                                                                "beyond, none (default: all).")] = None,
    mlp_max: Annotated[float, typer.Option(help="MLP: weight at the peak.")] = 1.0,
    mlp_min: Annotated[Optional[float], typer.Option(help="MLP: weight at the distance.")] = None,
    mlp_peak: Annotated[float, typer.Option(help="MLP: peak layer.")] = 0.0,
    mlp_distance: Annotated[Optional[float], typer.Option(help="MLP: distance.")] = None,
    norm: Norm = "plain",
    projected: Projected = "none",
    embeddings: Annotated[bool, typer.Option("--embeddings", help="Also edit the embeddings "
                                                                  "(plain, weight 1).")] = False,
    lora: Annotated[bool, typer.Option("--lora", help="Write a rank-1 LoRA adapter for MODEL "
                                                      "instead of merged weights (plain and "
                                                      "rows-prescaled edits).")] = False,
    n_null: Annotated[int, typer.Option(min=1, help="Random-direction edits of the same "
                                                    "kernel in the held-out check.")] = 8,
    seed: Annotated[int, typer.Option(help="Null seed.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per generation.")] = 16,
    refusal_marker: Markers = None,
    limit: Limit = None,
    batch_size: BatchSize = BATCH_SIZE,
) -> None:
    """Write an abliterated checkpoint (merged safetensors, or --lora a rank-1 adapter), OUT/abliteration.json
    (directions, kernel, held-out refusals and KL with nulls) and OUT/README.md (a model card).

    Directions: the carrier selection's diff-in-means at every layer. With --set
    harmful=SPEC --set harmless=SPEC (held-out prompts), the edit's refused generations and
    first-token KL are measured and compared with --n-null random-direction edits of the same
    kernel. Projected modes need --set fit.harmless=SPEC.
    """
    import math
    import warnings

    from safetygeo.interventions.kernel import AbliterationKernel, LayerKernel

    check_out(out)
    named = load_sets(sets, ROLES, limit=limit, labels={"harmful": "harmful",
                                                        "harmless": "harmless"})
    if ("harmful" in named) != ("harmless" in named):
        raise typer.BadParameter("the held-out check needs both harmful=SPEC and harmless=SPEC",
                                 param_hint="--set")
    picked = None
    with guarded():
        if kernel_file is not None:
            kernel, picked = _kernel_from_file(kernel_file, trial)
        else:
            def lk(mx: float, mn: float | None, peak: float, dist: float | None) -> LayerKernel:
                return LayerKernel(mx, peak=peak, min_weight=mn,
                                   distance=math.inf if dist is None else dist)

            kernel = AbliterationKernel(lk(attn_max, attn_min, attn_peak, attn_distance),
                                        lk(mlp_max, mlp_min, mlp_peak, mlp_distance),
                                        direction_index, cast(Any, norm), cast(Any, projected),
                                        embeddings)
        sel, h, dirs, means = _load(model, model_opts, carriers, position, named,
                                    kernel.projected != "none", batch_size)
        if kernel_file is None and not per_layer and direction_index is None:
            if sel.chosen is None:
                raise typer.BadParameter("the selection has no chosen carrier: give "
                                         "--direction-index or --per-layer",
                                         param_hint="--carriers")
            kernel = kernel.replace(direction_index=float(sel.chosen[0]))
        if per_layer:
            kernel = kernel.replace(direction_index=None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from safetygeo.interventions.kernel import abliterated_copy, lora_factors

            if lora:
                lora_factors(h, dirs, kernel, means)  # refuses full-rank modes before any work
            edited = None if lora else abliterated_copy(h, dirs, kernel, means)
        for w in caught:
            console.print(f"[yellow]warning[/]: {w.message}")
        check = None
        if "harmful" in named:
            check = _held_out(h, dirs, kernel, means, named, n_null, seed, max_new_tokens,
                              batch_size, _classifier(refusal_marker))
        from safetygeo.causal.abliteration import write_checkpoint

        write_checkpoint(edited, out, source=h, kernel=kernel, directions=dirs,
                         carriers=carriers, position=position, check=check, trial=picked,
                         means=means)
    if check is not None:
        print_table([check], {"point": "edit", "null_point": "random directions, same kernel",
                              "p_refusals": "p refusals", "p_kl": "p KL"},
                    title="held-out refusals/N @ first-token KL")
    what = "LoRA adapter" if lora else "abliterated checkpoint"
    console.print(f"wrote the {what}, abliteration.json and README.md to {out}")


def _held_out(h: Any, dirs: Any, kernel: Any, means: Any, named: dict[str, Any], n_null: int,
              seed: int, max_new_tokens: int, batch_size: int, classifier: Any) -> dict[str, Any]:
    import warnings

    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.causal.abliteration import format_point
    from safetygeo.causal.frontier import frontier_point
    from safetygeo.interventions.edits import KernelAbliteration
    from safetygeo.interventions.nulls import NullSpec

    nulls = NullSpec(k=n_null, seed=seed, max_variants=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="kernel weight")
        p = frontier_point(h, KernelAbliteration(dirs, kernel, means),
                           list(named["harmful"].prompts), list(named["harmless"].prompts),
                           nulls=nulls, settings=GenerationSettings(max_new_tokens=max_new_tokens),
                           classifier=classifier, batch_size=batch_size, n_boot=200)
    row = p.to_row()
    return {"point": format_point(p.refusals.value, p.n_harmful, p.kl.value),
            "null_point": format_point(row["null_refusals_mean"], p.n_harmful, row["null_kl_mean"]),
            "p_refusals": row["p_refusals"], "p_kl": row["p_kl"], "nulls": nulls.identity(),
            "row": row}


@app.command("search-abliteration")
@model_command
def search_cmd(
    model: ModelArg,
    carriers: CarriersDir,
    sets: SetOpt,
    model_opts: ModelOptions,
    out: OutDir = Path("artifacts/abliteration-search"),
    position: Position = None,
    norm: Norm = "rows-renormalized",
    projected: Projected = "none",
    n_trials: Annotated[int, typer.Option(min=1, help="Optuna trials.")] = 40,
    n_startup: Annotated[int, typer.Option(min=1, help="Random trials before TPE.")] = 10,
    n_null: Annotated[int, typer.Option(min=0, help="Random-direction edits of the same "
                                                    "kernel per front point (0: none).")] = 8,
    max_front: Annotated[int, typer.Option(min=1, help="Front points checked against "
                                                       "nulls.")] = 6,
    seed: Annotated[int, typer.Option(help="Sampler and null seed.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per generation.")] = 16,
    refusal_marker: Markers = None,
    limit: Limit = None,
    batch_size: BatchSize = BATCH_SIZE,
) -> None:
    """Search the kernel with Optuna (TPE, multi-objective): minimize held-out refusals and
    first-token KL. Prints the Pareto front as refusals/N @ KL, each point next to
    random-direction edits of the same kernel; writes OUT/search.json (read by `abliterate
    --kernel`) and OUT/trials.parquet.

    Sets: --set harmful=SPEC --set harmless=SPEC (held-out; not the carrier's train split);
    projected modes need --set fit.harmless=SPEC. The mode (--norm, --projected) is fixed;
    the search varies the direction scope and index and each component's kernel.
    """
    from safetygeo._io import atomic_path, atomic_write_json
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.causal.abliteration import format_point, search_abliteration
    from safetygeo.interventions.kernel import AbliterationKernel
    from safetygeo.interventions.nulls import NullSpec

    check_out(out)
    _classifier(refusal_marker)
    named = load_sets(sets, ROLES, limit=limit, required=("harmful", "harmless"),
                      labels={"harmful": "harmful", "harmless": "harmless"})
    with guarded():
        base = AbliterationKernel(norm=cast(Any, norm), projected=cast(Any, projected))
        _, h, dirs, means = _load(model, model_opts, carriers, position, named,
                                  base.projected != "none", batch_size)

        def show(i: int, score: Any, kernel: Any) -> None:
            console.print(f"trial {i}: {score}", highlight=False)

        res = search_abliteration(
            h, dirs, list(named["harmful"].prompts), list(named["harmless"].prompts),
            means=means, base_kernel=base, n_trials=n_trials, n_startup=n_startup, seed=seed,
            nulls=NullSpec(k=n_null, seed=seed, max_variants=1) if n_null else None,
            settings=GenerationSettings(max_new_tokens=max_new_tokens), batch_size=batch_size,
            classifier=_classifier(refusal_marker), max_front=max_front, progress=show)
    out.mkdir(parents=True, exist_ok=True)
    table = res.table
    with atomic_path(out / "trials.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    front = res.front_rows() if res.front else [
        {"trial": int(r.trial), "point": format_point(r.refusals, r.n_harmful, r.kl),
         "refusals": r.refusals, "kl": r.kl, "kernel": res.kernels[int(r.trial)].to_dict()}
        for r in table[table.pareto].sort_values(["refusals", "kl"]).itertuples()]
    atomic_write_json(out / "search.json", json.loads(json.dumps({
        "format": "safetygeo.abliteration_search", "format_version": 1,
        "model": h.describe(), "carriers": str(carriers), "base_refusals": res.base_refusals,
        "meta": res.meta, "front": front}, default=_plain)))
    cols = {"trial": "trial", "point": "refusals/N @ KL"}
    if res.front:
        cols |= {"null_point": "random directions, same kernel", "p_refusals": "p refusals",
                 "p_kl": "p KL"}
    print_table(front, cols, title=f"Pareto front ({n_trials} trials; base "
                                   f"{res.base_refusals}/{res.meta['n_harmful']} refused)",
                note=f"every trial: {out / 'trials.parquet'}; kernels: {out / 'search.json'}")


def _plain(obj: Any) -> Any:
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)
