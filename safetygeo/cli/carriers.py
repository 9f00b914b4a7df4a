"""``select-carrier``: the admissible refusal carrier, every candidate scored, held-out test."""

from pathlib import Path
from typing import Annotated, Any

import typer

from safetygeo.cli.app import app
from safetygeo.cli.common import (
    BATCH_SIZE,
    MAX_VARIANTS,
    BatchSize,
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
    print_table,
    refusal_scoring,
)

SPLITS = ("train", "val", "test")
#: The chosen carrier's columns in the terminal (every candidate: OUT/candidates.parquet).
CARRIER_COLUMNS = {"layer": "layer", "position": "position", "bypass": "bypass",
                   "induce": "induce", "kl": "KL", "test_bypass": "test bypass",
                   "test_induce": "test induce"}
ROLES = ("harmful", "harmless", *(f"{c}.{s}" for c in ("harmful", "harmless") for s in SPLITS))


def carrier_sets(named: dict[str, Any]) -> dict[str, Any]:
    """``harmful`` / ``harmless`` sets (split later) or their ``.train/.val/.test`` parts."""
    out: dict[str, Any] = {}
    for cls in ("harmful", "harmless"):
        parts = {s: named[f"{cls}.{s}"] for s in SPLITS if f"{cls}.{s}" in named}
        if cls in named and parts:
            raise typer.BadParameter(f"give either {cls}=SPEC (split here) or "
                                     f"{cls}.train/.val/.test, not both", param_hint="--set")
        if parts and len(parts) != 3:
            missing = [f"{cls}.{s}" for s in SPLITS if s not in parts]
            raise typer.BadParameter(f"a pre-split set needs all three splits; missing "
                                     f"{', '.join(missing)}", param_hint="--set")
        if not parts and cls not in named:
            raise typer.BadParameter(f"missing {cls}=SPEC (or {cls}.train/.val/.test=SPEC)",
                                     param_hint="--set")
        out[cls] = parts or named[cls]
    return out


@app.command("select-carrier")
@model_command
def select_carrier(
    model: ModelArg,
    sets: SetOpt,
    model_opts: ModelOptions,
    out: OutDir = Path("artifacts/carriers"),
    splits: Annotated[str, typer.Option(help="train,val,test fractions (sets split here).")] = "0.5,0.25,0.25",
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    max_layer_frac: Annotated[float, typer.Option(help="Discard layers >= floor(frac*L).")] = 0.8,
    max_kl: Annotated[float, typer.Option(help="Discard KL above this.")] = 0.1,
    min_induce: Annotated[float, typer.Option(help="Discard induce below this.")] = 0.0,
    kl_null_quantile: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Null-relative KL filter: allow KL up to this quantile of "
                               "ablating 16 random directions (e.g. 0.95).")] = None,
    refusal_phrase: RefusalPhrase = None,
    refusal_token: RefusalToken = None,
    test_top_k: Annotated[int, typer.Option(min=0, help="Re-score this many best candidates "
                                                        "on the test split.")] = 5,
    min_dimension: Annotated[int, typer.Option(min=0, help="Also find how many dimensions "
                                                           "refusal needs (k <= this; 0: off), "
                                                           "saved as refusal_dimension.json.")] = 0,
    target: Annotated[float, typer.Option(help="Bypass target of --min-dimension: refusal "
                                               "rate at most this.")] = 0.1,
    limit: Limit = None,
    batch_size: BatchSize = BATCH_SIZE,
    max_variants: MaxVariants = MAX_VARIANTS,
) -> None:
    """Select the admissible refusal carrier (Arditi et al. filters) and score every candidate.

    Sets: --set harmful=SPEC --set harmless=SPEC (split into train/val/test with --splits
    and --seed), or already split: --set harmful.train=SPEC --set harmful.val=SPEC
    --set harmful.test=SPEC (and the same for harmless). Writes OUT/candidates.parquet,
    OUT/carriers.json (candidates, chosen carrier, baselines, split sizes, the refusal
    scoring later commands reuse) and OUT/directions.safetensors. With --min-dimension K,
    also OUT/refusal_dimension.json: the smallest k whose subspace ablation (diff-in-means,
    then PCA of paired differences, fitted on train at the carrier) brings the refusal rate
    of the test split's generations to --target, against random k-dim subspaces.
    """
    from safetygeo.reports.steps.carriers import CarriersSettings

    fractions = parse_floats(splits, "--splits")
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise typer.BadParameter(f"{splits!r}: three positive fractions summing to at most 1",
                                 param_hint="--splits")
    check_out(out)
    if not 0 <= target < 1:
        raise typer.BadParameter("the target is a refusal rate in [0, 1)", param_hint="--target")
    refusal_scoring(refusal_phrase, refusal_token)  # a bad phrase / token is refused here
    labels = {"harmful": "harmful", "harmless": "harmless"}
    named = carrier_sets(load_sets(sets, ROLES, limit=limit, labels=labels))
    with guarded():
        settings = CarriersSettings(
            max_layer_frac=max_layer_frac, max_kl=max_kl, min_induce=min_induce,
            kl_null_quantile=kl_null_quantile,
            refusal_phrases=tuple(refusal_phrase) if refusal_phrase else None,
            refusal_tokens=tuple(refusal_token) if refusal_token else None,
            test_top_k=test_top_k, max_variants=max_variants)
        h = load_handle(model, model_opts)
        sel = settings.select(h, named["harmful"], named["harmless"], splits=fractions,
                              seed=seed, batch_size=batch_size, progress=True)
        sel.save(out)
        dim = None
        if min_dimension and sel.chosen is not None:
            from safetygeo.causal.carriers import _as_splits  # the selection's own splits
            from safetygeo.causal.frontier import min_refusal_dimension, save_refusal_dimension

            hs = _as_splits(named["harmful"], fractions, seed, "harmful")
            ls = _as_splits(named["harmless"], fractions, seed, "harmless")
            dim = min_refusal_dimension(
                h, hs["test"], ls["test"], fit_harmful=hs["train"], fit_harmless=ls["train"],
                layer=sel.chosen[0], position=sel.chosen[1], k_max=min_dimension, target=target,
                batch_size=batch_size)
            save_refusal_dimension(dim, out)
    summary = sel.summary()
    c = summary["chosen"]
    if c is not None:
        print_table([c], CARRIER_COLUMNS, title=f"refusal carrier of {h.model_id}",
                    note=f"every candidate: {out / 'candidates.parquet'}")
    console.print(f"baseline: {summary['baseline']}")
    for note in summary["notes"]:
        console.print(f"[yellow]note[/]: {note}")
    if dim is not None:
        console.print(f"refusal needs k = {dim.k_min} dimension(s) (target {target:g}; "
                      f"None = not reached with k <= {min_dimension})")
    console.print(f"{summary['n_admissible']}/{summary['n_candidates']} admissible; "
                  f"refusal tokens {h.tokenizer.convert_ids_to_tokens(sel.scoring.ids(h.tokenizer))}; "
                  f"wrote {out}")
