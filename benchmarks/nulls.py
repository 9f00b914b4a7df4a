"""Batched vs per-direction evaluation of K matched null directions.

Runs, in one process, the metrics of ``intervention_effect`` (refusal-score change on
harmful and harmless prompts, KL on harmless prompts) for one real direction + K=64
random directions, two ways:

* **batched**: ``max_variants`` directions ride along the batch dimension of each forward
  pass (what safetygeo does); for addition at layer ``l`` the layers before ``l`` run once
  and fan out into the variants there (``safetygeo.models.hooks.fan_out``);
* **loop**: one direction at a time, ``K + 1`` separate passes over the prompts
  (what a naive script does).

Prints both times, the speed-up, and the max abs difference of the metrics.

    python benchmarks/nulls.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from safetygeo.activations.refusal import RefusalScoring
from safetygeo.causal.effects import _metrics, refusal_baseline
from safetygeo.interventions.nulls import random_directions
from safetygeo.toy.planted import planted_refusal_model


def run(k: int, n_prompts: int, d_model: int, n_layers: int, op: str, reps: int,
        max_variants: int, layer: int | None = None) -> dict:
    pm = planted_refusal_model(d_model=d_model, n_layers=n_layers, n_prompts=n_prompts)
    h = pm.handle
    harmful, harmless = pm.harmful[:n_prompts], pm.harmless[:n_prompts]
    # the baseline carries the refusal token ids the metrics score with
    base = refusal_baseline(h, harmful, harmless, scoring=RefusalScoring(), batch_size=n_prompts)
    variants = torch.cat([pm.direction[None] * 3,
                          random_directions(k, h.d_model, seed=0, norm=3.0)])
    layer = layer if op == "add" else None

    def batched():
        return _metrics(h, variants, op, layer, 1.0, harmful, harmless, base,
                        batch_size=n_prompts, max_variants=max_variants)

    def loop():
        return _metrics(h, variants, op, layer, 1.0, harmful, harmless, base,
                        batch_size=n_prompts, max_variants=1)

    batched(), loop()  # warm-up
    tb, tl = [], []
    for _ in range(reps):
        t = time.perf_counter(); a = batched(); tb.append(time.perf_counter() - t)
        t = time.perf_counter(); b = loop(); tl.append(time.perf_counter() - t)
    tb.sort(); tl.sort()
    med_b, med_l = tb[len(tb) // 2], tl[len(tl) // 2]
    return {"op": op, "K": k, "n_prompts": n_prompts, "d_model": d_model, "n_layers": n_layers,
            "max_variants": max_variants, "layer": layer, "batched_s": med_b, "loop_s": med_l,
            "speedup": med_l / med_b, "max_abs_diff": float(abs(a - b).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    reps = 1 if args.quick else 3
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    results = []
    # (K, prompts, d_model, n_layers, op, directions per pass, addition layer)
    settings = [(64, 16, 64, 4, "ablate", 16, None), (64, 16, 64, 4, "add", 16, 2),
                (64, 16, 64, 4, "add", 16, 3), (64, 16, 256, 4, "ablate", 16, None),
                (64, 16, 256, 4, "add", 16, 2), (64, 16, 256, 8, "add", 16, 6)]
    if args.quick:
        settings = settings[:2]
    print(f"{'op':7s} {'layer':>5s} {'K':>3s} {'prompts':>7s} {'d':>4s} {'L':>2s} {'var/pass':>8s} "
          f"{'batched s':>9s} {'loop s':>7s} {'speed-up':>8s} {'max|Δ|':>9s}")
    for s in settings:
        r = run(*s[:5], reps=reps, max_variants=s[5], layer=s[6])
        results.append(r)
        layer = "all" if r["layer"] is None else str(r["layer"])
        print(f"{r['op']:7s} {layer:>5s} {r['K']:3d} {r['n_prompts']:7d} {r['d_model']:4d} "
              f"{r['n_layers']:2d} {r['max_variants']:8d} {r['batched_s']:9.3f} {r['loop_s']:7.3f} "
              f"{r['speedup']:7.2f}x {r['max_abs_diff']:9.2e}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
