"""Abliteration (issue 25): the Optuna search's Pareto front vs a hand grid of kernels and vs
matched random-direction edits of the same kernel, and the wall time per trial — on the toy
anchor and on the real-language anchor (SmolLM2-135M-Instruct + the shipped adapter).

Per world:

1. directions: diff-in-means at the last prompt position, every slot ``0..L``, on the
   world's *train* split (no carrier filters: the kernel decides which layers are edited);
   harmless means from the same split (for the projected mode);
2. search: ``safetygeo.causal.abliteration.search_abliteration`` (TPE, multivariate,
   seeded) over the kernel (``--space heretic``: heretic's late-layer ranges; ``wide``: every
   layer, weights from 0), minimizing refused greedy generations of the *test* harmful
   prompts and the mean first-token KL on the *test* harmless prompts, mode ``--norm``
   (default ``rows-renormalized``, heretic's default row normalization), ``--projected``,
   ``--embeddings``;
3. grid: the same read-out for 12 hand-picked kernels of the same mode (global direction at
   0.5 L or 0.75 L; attention weight 0.5 / 1.0 / 1.5 on every block; MLP off or at 1.0);
4. the front's points (at most ``--max-front``) re-measured against ``--n-null`` random
   directions under the same kernel (refusals one-sided, KL two-sided).

Prints the front ("refusals/N @ KL" with its null), the grid, how many grid points a front
point dominates (and vice versa), and seconds per trial; ``--json PATH`` writes everything.

    python benchmarks/abliteration.py --world toy
    python benchmarks/abliteration.py --world toy --space wide --projected harmless-own-slot --embeddings
    python benchmarks/abliteration.py --world real --n 16 --trials 16 --max-new-tokens 8
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import torch


def _world(name: str, seed: int) -> tuple[Any, dict[str, dict[str, list[str]]]]:
    if name == "toy":
        from safetygeo.toy.zoo import load_toy, toy_splits

        return load_toy("anchor", seed=seed), toy_splits(seed)
    from safetygeo.real.world import RealWorld
    from safetygeo.real.zoo import load_real

    return load_real("anchor", seed=seed), RealWorld().splits()


#: heretic's ranges (late layers), and a wide space over every layer (for small models whose
#: refusal is written early).
SPACES = {"heretic": None, "wide": dict(index=(0.0, 1.0), peak=(0.0, 1.0), distance_max=1.0,
                                        attention_max=(0.0, 1.5), mlp_max=(-0.25, 1.5))}


def _space(name: str) -> Any:
    from safetygeo.causal.abliteration import SearchSpace

    kw = SPACES[name]
    return SearchSpace() if kw is None else SearchSpace(**kw)


def _grid(n_layers: int, base: Any) -> list[Any]:
    from safetygeo.interventions.kernel import LayerKernel

    out = []
    for frac in (0.5, 0.75):
        for w in (0.5, 1.0, 1.5):
            for mlp in (0.0, 1.0):
                out.append(base.replace(attention=LayerKernel(w), mlp=LayerKernel(mlp),
                                        direction_index=round(frac * n_layers)))
    return out


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])


def run_world(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from safetygeo.activations.extract import extract_activations
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.causal.abliteration import kernel_point, search_abliteration
    from safetygeo.causal.frontier import frontier_baseline
    from safetygeo.interventions.kernel import AbliterationKernel
    from safetygeo.interventions.nulls import NullSpec

    t0 = time.perf_counter()
    handle, splits = _world(name, args.seed)
    t_load = time.perf_counter() - t0
    tr_h, tr_l = splits["harmful"]["train"][:args.n_train], splits["harmless"]["train"][:args.n_train]
    test_h, test_l = splits["harmful"]["test"][:args.n], splits["harmless"]["test"][:args.n]
    t = time.perf_counter()
    kw: dict[str, Any] = dict(positions="last", batch_size=16, progress=False)
    mh = extract_activations(handle, tr_h, **kw).mean[:, 0].double()
    ml = extract_activations(handle, tr_l, **kw).mean[:, 0].double()
    dirs = mh - ml
    t_dirs = time.perf_counter() - t
    gen = GenerationSettings(max_new_tokens=args.max_new_tokens)
    base_kernel = AbliterationKernel(norm=args.norm, projected=args.projected,
                                     embeddings=args.embeddings)
    t = time.perf_counter()
    res = search_abliteration(handle, dirs, test_h, test_l, means=ml, base_kernel=base_kernel,
                              n_trials=args.trials, n_startup=args.startup, seed=args.seed,
                              space=_space(args.space),
                              nulls=NullSpec(k=args.n_null, seed=args.seed, max_variants=1),
                              settings=gen, n_boot=200, max_front=args.max_front)
    t_search = time.perf_counter() - t
    base = frontier_baseline(handle, test_h, test_l, settings=gen)
    grid = []
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="kernel weight")
        for k in _grid(handle.n_layers, base_kernel):
            s = kernel_point(handle, dirs, k, base, means=ml, settings=gen)
            grid.append({"direction_index": k.direction_index,
                         "attention": k.attention.max_weight, "mlp": k.mlp.max_weight,
                         "refusals": s.refusals, "kl": s.kl, "point": str(s)})
    t_grid = time.perf_counter() - t
    front = res.front_rows()
    fp = [(float(r.refusals), float(r.kl)) for r in res.table[res.table.pareto].itertuples()]
    gp = [(float(g["refusals"]), float(g["kl"])) for g in grid]
    return {
        "world": name, "space": args.space, "mode": base_kernel.to_dict(),
        "model": handle.model_id, "n_layers": handle.n_layers,
        "n_test": len(test_h), "base_refusals": res.base_refusals,
        "seconds": {"load": t_load, "directions": t_dirs, "search": t_search, "grid": t_grid,
                    "per_trial_mean": float(res.table.seconds.mean()),
                    "per_trial_median": float(res.table.seconds.median())},
        "trials": res.table.to_dict("records"),
        "front": [{k: v for k, v in r.items() if k != "kernel"} | {"kernel": r["kernel"]}
                  for r in front],
        "grid": grid,
        "grid_dominated_by_front": sum(any(_dominates(f, g) for f in fp) for g in gp),
        "front_dominated_by_grid": sum(any(_dominates(g, f) for g in gp) for f in fp),
        "n_front": len(fp), "n_grid": len(gp),
    }


def _print(r: dict[str, Any]) -> None:
    m = r["mode"]
    print(f"\n=== {r['world']} ({r['space']} space; {m['norm']}, projected {m['projected']}, "
          f"embeddings {m['embeddings']}): {r['model']} ({r['n_layers']} blocks), base "
          f"{r['base_refusals']}/{r['n_test']} refused")
    s = r["seconds"]
    print(f"seconds: load {s['load']:.0f}, directions {s['directions']:.1f}, search "
          f"{s['search']:.0f} ({len(r['trials'])} trials; per trial mean {s['per_trial_mean']:.2f},"
          f" median {s['per_trial_median']:.2f}), grid {s['grid']:.0f}")
    print("Pareto front (refusals/N @ first-token KL) vs random directions, same kernel:")
    for f in r["front"]:
        k = f["kernel"]
        scope = "per layer" if k["direction_index"] is None else f"slot {k['direction_index']:.2f}"
        print(f"  trial {f['trial']:>3}: {f['point']:<16} null {f['null_point']:<18} "
              f"p_refusals {f['p_refusals']:.3g}  p_kl {f['p_kl']:.3g}  [{scope}; attn "
              f"{k['attention']['max_weight']:.2f}@{k['attention']['peak']:.1f}, mlp "
              f"{k['mlp']['max_weight']:.2f}@{k['mlp']['peak']:.1f}]")
    print("grid (global direction slot, attention weight, MLP weight):")
    for g in r["grid"]:
        print(f"  slot {g['direction_index']:>2} attn {g['attention']:.1f} mlp {g['mlp']:.1f}: "
              f"{g['point']}")
    print(f"grid points dominated by a front point: {r['grid_dominated_by_front']}/{r['n_grid']};"
          f" front points dominated by a grid point: {r['front_dominated_by_grid']}/{r['n_front']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", default="toy", choices=("toy", "real", "both"))
    ap.add_argument("--n", type=int, default=32, help="test prompts per class")
    ap.add_argument("--n-train", type=int, default=64, help="train prompts per class")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--startup", type=int, default=10)
    ap.add_argument("--n-null", type=int, default=8)
    ap.add_argument("--max-front", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--space", default="heretic", choices=sorted(SPACES),
                    help="search ranges: heretic's (late layers) or every layer")
    ap.add_argument("--norm", default="rows-renormalized",
                    choices=("plain", "rows-renormalized", "rows-prescaled",
                             "columns-renormalized"))
    ap.add_argument("--projected", default="none",
                    choices=("none", "harmless-own-slot", "harmless-block-input"))
    ap.add_argument("--embeddings", action="store_true", help="also edit the embeddings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    worlds = ["toy", "real"] if args.world == "both" else [args.world]
    out = {"threads": args.threads, "torch": torch.__version__, "args": vars(args), "worlds": []}
    for w in worlds:
        r = run_world(w, args)
        out["worlds"].append(r)
        _print(r)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
