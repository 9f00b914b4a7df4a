"""Beyond one direction on the toy world (issue 19): finder costs, the refusals-vs-KL frontier
of diff-in-means, PCA, SOM, RDO and an RCO cone with matched random subspaces, the minimal
refusal dimension and the cone dimension — for the anchor and for r2d2.

Per stage (toy models from ``$SAFETYGEO_TOY_DIR``; built if absent — r2d2 takes minutes):

1. carrier: Arditi et al.'s admissible selection on the world's train/val splits (or, when
   nothing is admissible, the lowest-bypass candidate below the layer cutoff);
2. finders fitted on the *train* split at the carrier's layer and position, each timed:
   diff-in-means, PCA of paired differences (k = 4), SOM (2 × 2), and cones of dimension
   1 (= RDO), 2 and 3 (RCO, each started from the previous one, CPU preset), each cone
   checked on the held-out *test* prompts (every basis vector and 16 sampled directions
   must ablate and induce refusal: the cone dimension);
3. the frontier on the *test* split: refused greedy generations of the harmful prompts vs
   first-token KL on the harmless ones, per finder × k × strength, and the diff-in-means
   direction under every ablation mode; every point next to K = 19 random subspaces of its
   dimension (p floor 0.05);
4. the zoo geometry row: carrier effective rank and the minimal refusal dimension.

Prints the tables RESULTS.md quotes; ``--json PATH`` writes everything.

    python benchmarks/frontier.py [--stages anchor,r2d2] [--threads 1] [--json out.json]
                                  [--rco-steps 80] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch


def _finders(handle: Any, splits: dict, layer: int, pos: str, ref: torch.Tensor, args: Any,
             out: dict) -> dict[str, torch.Tensor]:
    from safetygeo.causal.cones import cone_dimension
    from safetygeo.causal.finders import (
        DirectionOptimization,
        finder_directions,
        repind_direction,
        representational_independence,
    )
    from safetygeo.interventions.nulls import NullSpec

    tr_h, tr_l = splits["harmful"]["train"], splits["harmless"]["train"]
    costs: list[dict[str, Any]] = []
    bases: dict[str, torch.Tensor] = {}
    for method, kw in (("diff-in-means", {}), ("pca", {"k": 4}), ("som", {"som_grid": (2, 2)})):
        t = time.perf_counter()
        c = finder_directions(handle, tr_h, tr_l, method=method, layers=[layer], **kw)
        sec = time.perf_counter() - t
        bases[method] = c.basis(layer, pos)
        costs.append({"finder": method, "seconds": sec, "steps": None})
    st = DirectionOptimization(max_steps=args.rco_steps)
    t = time.perf_counter()
    dim_k, cones, evals = cone_dimension(
        handle, tr_h, tr_l, splits["harmful"]["test"], splits["harmless"]["test"],
        reference=ref, layer=layer, max_k=args.max_cone, settings=st, n_samples=16,
        stop_at_failure=False)
    total = time.perf_counter() - t
    for cone, ev in zip(cones, evals):
        name = "rdo" if cone.basis.shape[0] == 1 else f"rco-{cone.basis.shape[0]}"
        costs.append({"finder": name, "seconds": cone.seconds, "steps": cone.steps,
                      "best_step": cone.best_step, "target_seconds": cone.target_seconds})
        bases[name] = cone.basis
        out.setdefault("cones", []).append({"finder": name, **ev.to_row()})
    out["cone_dimension"] = dim_k
    out["cone_seconds_total"] = total
    # RepInd: a refusal direction trained to be representationally independent of the
    # diff-in-means direction (random start: starting at diff-in-means would start dependent)
    dim_unit = ref / ref.norm()
    rst = DirectionOptimization(max_steps=args.rco_steps, init="random")
    ind = repind_direction(handle, tr_h, tr_l, dim_unit, reference=ref, layer=layer,
                           settings=rst)
    costs.append({"finder": "repind", "seconds": ind.seconds, "steps": ind.steps,
                  "best_step": ind.best_step, "target_seconds": ind.target_seconds})
    bases["repind"] = ind.basis
    test_h = splits["harmful"]["test"]
    crit = representational_independence(handle, ind.direction, dim_unit, test_h,
                                         nulls=NullSpec(k=19))
    crit_dim_pca = representational_independence(handle, bases["pca"][1], dim_unit, test_h,
                                                 nulls=NullSpec(k=19))
    out["repind"] = {"cos_with_dim": float(ind.direction @ dim_unit), **crit.to_row(),
                     "pca2_vs_dim": crit_dim_pca.to_row()}
    base_s = costs[0]["seconds"]
    for c in costs:
        c["x_dim"] = c["seconds"] / base_s
    out["costs"] = costs
    return bases


def _windows(handle: Any, bases: dict, layer: int, test_h: list, test_l: list, nulls: Any,
             gen: Any, args: Any) -> list[dict[str, Any]]:
    """Layer-window sweep: the writes of blocks before the carrier layer, from it on, and all."""
    from safetygeo.causal.frontier import refusal_frontier

    n = handle.n_layers
    windows = [tuple(range(0, layer)), tuple(range(layer, n)), tuple(range(max(layer - 2, 0),
                                                                           min(layer + 2, n)))]
    sub = {k: v for k, v in bases.items() if k in ("diff-in-means", "pca")}
    t = refusal_frontier(handle, sub, test_h, test_l, ks=(1, 2), windows=windows, nulls=nulls,
                         settings=gen, n_boot=args.n_boot)
    return t.to_dict("records")


def run_windows_only(stage: str, args: Any) -> dict[str, Any]:
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.causal.carriers import select_refusal_carrier
    from safetygeo.causal.finders import finder_directions
    from safetygeo.interventions.nulls import NullSpec
    from safetygeo.toy.geometry import carrier_or_best
    from safetygeo.toy.zoo import load_toy, toy_splits

    handle, splits = load_toy(stage), toy_splits()
    sel = select_refusal_carrier(handle, splits["harmful"], splits["harmless"], progress=False)
    layer, pos, _ = carrier_or_best(sel)
    tr_h, tr_l = splits["harmful"]["train"], splits["harmless"]["train"]
    bases = {m: finder_directions(handle, tr_h, tr_l, method=m, k=4, layers=[layer]).basis(layer, pos)
             for m in ("diff-in-means", "pca")}
    rows = _windows(handle, bases, layer, splits["harmful"]["test"], splits["harmless"]["test"],
                    NullSpec(k=args.n_null, max_variants=10),
                    GenerationSettings(max_new_tokens=args.max_new_tokens), args)
    return {"stage": stage, "carrier_layer": layer, "windows": rows}


def run_stage(stage: str, args: Any) -> dict[str, Any]:
    from safetygeo.activations.extract import extract_activations
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.causal.carriers import select_refusal_carrier
    from safetygeo.causal.frontier import refusal_frontier
    from safetygeo.interventions.nulls import NullSpec
    from safetygeo.toy.geometry import carrier_or_best, stage_geometry
    from safetygeo.toy.zoo import load_toy, toy_splits

    out: dict[str, Any] = {"stage": stage}
    handle = load_toy(stage)
    splits = toy_splits()
    t = time.perf_counter()
    sel = select_refusal_carrier(handle, splits["harmful"], splits["harmless"], progress=False)
    layer, pos, admissible = carrier_or_best(sel)
    out["carrier"] = {"layer": layer, "position": pos, "admissible": admissible,
                      "seconds": time.perf_counter() - t, "notes": sel.notes}
    ref = sel.directions.vector(layer, pos)
    bases = _finders(handle, splits, layer, pos, ref, args, out)
    test_h, test_l = splits["harmful"]["test"], splits["harmless"]["test"]
    gen = GenerationSettings(max_new_tokens=args.max_new_tokens)
    nulls = NullSpec(k=args.n_null, max_variants=10)
    means = extract_activations(handle, splits["harmless"]["train"], positions="last",
                                progress=False).mean[:, 0]
    t = time.perf_counter()
    sweep = refusal_frontier(handle, bases, test_h, test_l, ks=(1, 2, 3),
                             strengths=tuple(args.strengths), nulls=nulls, settings=gen,
                             n_boot=args.n_boot)
    modes = refusal_frontier(handle, {"diff-in-means": bases["diff-in-means"]}, test_h, test_l,
                             modes=("norm_preserving", "biprojected", "mpoa"),
                             harmless_means=means, nulls=nulls, settings=gen,
                             n_boot=args.n_boot)
    out["frontier_seconds"] = time.perf_counter() - t
    out["windows"] = _windows(handle, bases, layer, test_h, test_l, nulls, gen, args)
    out["frontier"] = sweep.to_dict("records")
    out["modes"] = modes.to_dict("records")
    t = time.perf_counter()
    row, dim = stage_geometry(handle, splits, stage=stage, k_max=4, nulls=nulls, settings=gen,
                              n_boot=args.n_boot, alpha=max(0.05, 1 / (args.n_null + 1)))
    out["geometry"] = row
    out["min_k_table"] = dim.table().to_dict("records")
    out["geometry_seconds"] = time.perf_counter() - t
    return out


COLS = ["edit", "mode", "k", "strength", "layers", "refusals", "refusals_ci_low",
        "refusals_ci_high", "kl", "kl_ci_low", "kl_ci_high", "null_refusals_mean", "null_kl_mean",
        "p_refusals", "pareto"]


def _table(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    return pd.DataFrame(rows)[COLS].round(4).to_string(index=False)


def _print(res: dict[str, Any]) -> None:
    import pandas as pd

    print(f"\n=== {res['stage']}: carrier {res['carrier']}")
    print(pd.DataFrame(res["costs"]).round(3).to_string(index=False))
    print(pd.DataFrame(res["cones"]).round(3).to_string(index=False))
    print("cone dimension:", res["cone_dimension"])
    print("repind:", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res["repind"].items()})
    cols = ["edit", "mode", "k", "strength", "refusals", "refusals_ci_low", "refusals_ci_high",
            "kl", "kl_ci_low", "kl_ci_high", "null_refusals_mean", "null_kl_mean", "p_refusals",
            "pareto"]
    print(_table(res["frontier"]))
    print(_table(res["modes"]))
    print(_table(res["windows"]))
    print(pd.DataFrame([res["geometry"]]).round(3).to_string(index=False))
    print(pd.DataFrame(res["min_k_table"])[cols[:12]].round(4).to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stages", default="anchor,r2d2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rco-steps", type=int, default=80)
    ap.add_argument("--max-cone", type=int, default=3)
    ap.add_argument("--n-null", type=int, default=19)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--strengths", default="0.5,1.0")
    ap.add_argument("--quick", action="store_true", help="smoke run: few steps and nulls")
    ap.add_argument("--windows-only", action="store_true",
                    help="only the layer-window sweep (carrier, diff-in-means and PCA)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.strengths = [float(s) for s in args.strengths.split(",")]
    if args.quick:
        args.rco_steps, args.max_cone, args.n_null, args.n_boot = 5, 2, 4, 50
    torch.set_num_threads(args.threads)
    results = {"threads": args.threads, "torch": torch.__version__, "args": vars(args),
               "stages": []}
    t0 = time.perf_counter()
    for stage in args.stages.split(","):
        if args.windows_only:
            res = run_windows_only(stage.strip(), args)
            results["stages"].append(res)
            print(_table(res["windows"]))
            continue
        res = run_stage(stage.strip(), args)
        results["stages"].append(res)
        _print(res)
    results["seconds"] = time.perf_counter() - t0
    print(f"\ntotal {results['seconds']:.0f} s ({args.threads} threads)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
