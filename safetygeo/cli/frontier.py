"""``measure-frontier``: refusals vs first-token KL of subspace ablations of several finders'
directions at a saved carrier, each point next to matched random subspaces; optionally the
minimal refusal dimension."""

from pathlib import Path
from typing import Annotated, Any, cast

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
    SetOpt,
    check_out,
    console,
    guarded,
    load_handle,
    load_sets,
    model_command,
    parse_floats,
    parse_layers,
)

FINDER_NAMES = ("diff-in-means", "pca", "som", "rdo", "rco")
MODES = ("project", "norm_preserving", "biprojected", "mpoa", "biprojected+mpoa")
ROLES = ("harmful", "harmless", "fit.harmful", "fit.harmless")


def parse_ints(text: str, flag: str) -> list[int]:
    """Comma-separated positive integers (``1,2,4``)."""
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"cannot parse {text!r} as comma-separated integers",
                                 param_hint=flag) from None
    if not vals or any(v < 1 for v in vals):
        raise typer.BadParameter(f"{text!r}: positive integers please", param_hint=flag)
    return sorted(set(vals))


def parse_choice(text: str, choices: tuple[str, ...], flag: str) -> list[str]:
    vals = [x.strip() for x in text.split(",") if x.strip()]
    bad = [v for v in vals if v not in choices]
    if not vals or bad:
        raise typer.BadParameter(f"{text!r}: choose from {', '.join(choices)}", param_hint=flag)
    return vals


def _bases(handle: Any, sel: Any, finders: list[str], k_max: int, fit: dict[str, Any],
           rdo_steps: int, seed: int, batch_size: int) -> "dict[str, Any]":
    import torch

    from safetygeo.causal.finders import DirectionOptimization, finder_directions, rco, rdo

    layer, pos = sel.chosen
    out: dict[str, Any] = {}
    fh, fl = fit.get("harmful", []), fit.get("harmless", [])
    for name in finders:
        if name == "diff-in-means":
            out[name] = sel.direction[None]
        elif name in ("pca", "som"):
            c = finder_directions(handle, fh, fl, method=cast(Any, name), k=k_max, layers=[layer],
                                  seed=seed, batch_size=batch_size)
            out[name] = c.basis(layer, pos)
        else:
            st = DirectionOptimization(max_steps=rdo_steps, seed=seed)
            if name == "rdo":
                res = rdo(handle, fh, fl, reference=sel.vector, layer=layer, settings=st,
                          scoring=sel.scoring, batch_size=batch_size)
            else:
                res = rco(handle, fh, fl, max(k_max, 2), reference=sel.vector, layer=layer,
                          settings=st, scoring=sel.scoring, batch_size=batch_size)
            console.print(f"{name}: {res.steps} steps, {res.seconds:.1f} s")
            out[name] = res.basis
    return {k: torch.as_tensor(v).double() for k, v in out.items()}


@app.command("measure-frontier")
@model_command
def measure_frontier(
    model: ModelArg,
    carriers: CarriersDir,
    sets: SetOpt,
    model_opts: ModelOptions,
    out: OutDir = Path("artifacts/frontier"),
    finders: Annotated[str, typer.Option(help="Comma list of diff-in-means, pca, som, rdo, "
                                              "rco.")] = "diff-in-means,pca",
    k: Annotated[str, typer.Option("--k", help="Subspace dimensions (first k directions of "
                                               "each finder), e.g. 1,2,3.")] = "1,2",
    strengths: Annotated[str, typer.Option(help="Ablation strengths in [0, 1].")] = "1.0",
    modes: Annotated[str, typer.Option(help="Comma list of project, norm_preserving, "
                                            "biprojected, mpoa, biprojected+mpoa (both "
                                            "combined).")] = "project",
    layers: Annotated[str, typer.Option(help="Blocks whose writes are ablated: all, 0-3.")] = "all",
    n_null: Annotated[int, typer.Option(min=1, help="Random subspaces per point (K; with "
                                                    "--sequential the most drawn).")] = 16,
    sequential: Annotated[bool, typer.Option(
        "--sequential/--fixed", help="Sequential null tests (Besag–Clifford: a point stops "
        "drawing nulls once refusals and KL are both settled).")] = False,
    seed: Annotated[int, typer.Option(help="Null and finder seed.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per generation.")] = 16,
    rdo_steps: Annotated[int, typer.Option(min=1, help="Optimizer steps of RDO / RCO.")] = 150,
    min_dimension: Annotated[int, typer.Option(min=0, help="Also find the smallest k <= this "
                                                           "whose ablation reaches --target "
                                                           "(0: off).")] = 0,
    target: Annotated[float, typer.Option(help="Bypass target: refusal rate at most this.")] = 0.1,
    limit: Limit = None,
    batch_size: BatchSize = BATCH_SIZE,
    max_variants: MaxVariants = MAX_VARIANTS,
) -> None:
    """Refusals vs first-token KL of ablating several finders' directions, with nulls.

    Sets: --set harmful=SPEC --set harmless=SPEC are the held-out evaluation prompts (refused
    generations of harmful ones, first-token KL on harmless ones); PCA, SOM, RDO and RCO are
    fitted on --set fit.harmful=SPEC --set fit.harmless=SPEC (e.g. the carrier's train split),
    at the carrier's layer and position. Writes OUT/frontier.parquet (one row per finder × k
    × strength × mode, with K random k-dim subspaces per point), OUT/frontier.html and, with
    --min-dimension, OUT/refusal_dimension.json.
    """
    from safetygeo._io import atomic_path, atomic_write_text
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.causal.frontier import (
        min_refusal_dimension,
        refusal_frontier,
        save_refusal_dimension,
    )
    from safetygeo.cli.sweep import load_carriers
    from safetygeo.interventions.nulls import NullSpec
    from safetygeo.reports.frontier import frontier_figure

    finder_list = parse_choice(finders, FINDER_NAMES, "--finders")
    mode_list = parse_choice(modes, MODES, "--modes")
    ks = parse_ints(k, "--k")
    strength_list = parse_floats(strengths, "--strengths")
    if any(not 0 <= s <= 1 for s in strength_list):
        raise typer.BadParameter("strengths must lie in [0, 1]", param_hint="--strengths")
    if not 0 <= target < 1:
        raise typer.BadParameter("the target is a refusal rate in [0, 1)", param_hint="--target")
    window = parse_layers(layers)
    check_out(out)
    sel = load_carriers(carriers)
    if sel.chosen is None:  # type: ignore[attr-defined]
        raise typer.BadParameter("the carrier selection has no chosen carrier", param_hint="--carriers")
    named = load_sets(sets, ROLES, limit=limit, required=("harmful", "harmless"),
                      labels={"harmful": "harmful", "harmless": "harmless"})
    needs_fit = [f for f in finder_list if f != "diff-in-means"] or min_dimension > 0
    fit = {c: list(named[f"fit.{c}"].prompts) for c in ("harmful", "harmless") if f"fit.{c}" in named}
    if needs_fit and len(fit) != 2:
        raise typer.BadParameter("pca / som / rdo / rco and --min-dimension fit directions on "
                                 "--set fit.harmful=SPEC --set fit.harmless=SPEC", param_hint="--set")
    biprojected = any(m.startswith("biprojected") for m in mode_list)
    if biprojected and "harmless" not in fit:
        raise typer.BadParameter("biprojected mode needs fit.harmless (its harmless means)",
                                 param_hint="--set")
    harmful, harmless = list(named["harmful"].prompts), list(named["harmless"].prompts)
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    nulls = (NullSpec.sequential(k_max=n_null, seed=seed, max_variants=max_variants, tail=False)
             if sequential else NullSpec(k=n_null, seed=seed, max_variants=max_variants))
    with guarded():
        h = load_handle(model, model_opts)
        d_sel = sel.directions.vectors.shape[-1]  # type: ignore[attr-defined]
        if h.d_model != d_sel:
            raise typer.BadParameter(f"the carriers have d_model={d_sel} but {model} has "
                                     f"d_model={h.d_model}", param_hint="--carriers")
        out.mkdir(parents=True, exist_ok=True)
        bases = _bases(h, sel, finder_list, max(ks), fit, rdo_steps, seed, batch_size)
        means = None
        if biprojected:
            from safetygeo.activations.extract import extract_activations

            means = extract_activations(h, fit["harmless"], positions="last",
                                        batch_size=batch_size, progress=False).mean[:, 0]
        table = refusal_frontier(
            h, bases, harmful, harmless, ks=ks, strengths=strength_list,
            windows=[None if isinstance(window, str) else tuple(window)],
            modes=cast(Any, mode_list),
            harmless_means=means, nulls=nulls, settings=settings, batch_size=batch_size,
            progress=True)
        with atomic_path(out / "frontier.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        fig = frontier_figure(table)
        atomic_write_text(out / "frontier.html", fig.to_html(include_plotlyjs=True, full_html=True))
        dim = None
        if min_dimension:
            layer, pos = sel.chosen  # type: ignore[attr-defined]
            dim = min_refusal_dimension(
                h, harmful, harmless, fit_harmful=fit["harmful"], fit_harmless=fit["harmless"],
                layer=layer, position=pos, k_max=min_dimension, target=target,
                nulls=nulls if n_null >= 19 else nulls.replace(k=19), settings=settings,
                batch_size=batch_size)
            save_refusal_dimension(dim, out)
    summary = Table(title="refusals vs first-token KL (held-out)")
    for col in ("finder", "mode", "k", "s", "refusals", "KL", "random subspaces", "p"):
        summary.add_column(col)
    for r in table.itertuples():
        summary.add_row(r.edit, r.mode, str(r.k), f"{r.strength:g}",
                        f"{r.refusals:.0f}/{r.n_harmful} [{r.refusals_ci_low:.0f}, {r.refusals_ci_high:.0f}]",
                        f"{r.kl:.3g}", f"{r.null_refusals_mean:.1f} refusals, KL {r.null_kl_mean:.2g}",
                        f"{r.p_refusals:.3g}")
    console.print(summary)
    if dim is not None:
        console.print(f"minimal refusal dimension: k = {dim.k_min} (target refusal rate <= "
                      f"{target:g}; tried k <= {dim.to_row()['k_max_tried']})")
    console.print(f"wrote {out / 'frontier.parquet'} and {out / 'frontier.html'}"
                  + (f" and {out / 'refusal_dimension.json'}" if dim is not None else ""))
