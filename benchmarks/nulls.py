"""Null controls: batching, sequential tests, tail p-values, carrier scoring (issues 4, 18).

Sections (run one, several, or all; each prints its own table):

* ``batched`` (issue 4): one real direction + K = 64 random directions, the three metrics
  of ``intervention_effect``, evaluated **batched** (``max_variants`` directions along the
  batch of each forward; for addition at layer l the layers before l run once and fan
  out) vs **loop** (one direction per pass). Times, speed-up, max abs difference.
* ``sequential`` (issue 18): full layer × op sweeps (ablation + addition at every layer)
  of the planted model and of the toy world's anchor, once with a fixed K = 64 and once
  with the sequential test (``NullSpec.sequential()``: h = 4, k_max = 64, 8 per step, tail
  estimates on). Directions evaluated, prompt-forwards, time, BH decisions at q = 0.05 per
  metric, the cost of clearly null cells and the p of strong cells.
* ``tail`` (issue 18): 5,000 null directions on the planted model (ablation, and addition
  at layer 2) give an exact Monte Carlo p down to 2e-4; for real effects placed where that
  exact p is 2e-3 and 5e-4, the tail estimate from each disjoint block of 64 nulls that no
  null reaches is compared with it (log10 of estimate / exact).
* ``carriers`` (issue 18): time of the candidate scoring of ``select_refusal_carrier`` on
  the toy anchor (every candidate ablated over the validation prompts and added at its
  layer) vs the limit: the same forward passes with no hook and no scoring (identical batch
  shapes, fan-out included), and vs candidates × one plain forward over the validation
  prompts (the issue's count).
* ``simulate`` (issue 18): type-I error of the sequential p and of the p BH uses (tail
  estimate where it is below the exact p), real effect drawn from the null distribution.

    python benchmarks/nulls.py [batched|sequential|tail|carriers|simulate ...] [--quick] [--json PATH]

No section needs a GPU; on CPU the forward of these models is compute-bound, so time
follows directions × prompts evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import torch

from safetygeo.activations.refusal import RefusalScoring
from safetygeo.causal.effects import _metrics, refusal_baseline
from safetygeo.interventions.intervention import VariantStack, from_op
from safetygeo.interventions.nulls import NullSpec
from safetygeo.toy.planted import planted_refusal_model

SECTIONS = ("batched", "sequential", "tail", "carriers", "simulate")


# --------------------------------------------------------------------------- batched (issue 4)
def _stack(h: Any, direction: torch.Tensor, op: str, layer: int | None, k: int) -> VariantStack:
    """``direction`` (variant 0) and ``k`` random directions of its norm (seed 0) — the same
    directions as ``random_directions(k, d, seed=0, norm=|direction|)``."""
    return from_op(op, direction, layer=layer).variants(h, NullSpec(k=k, seed=0))


def run_batched(k: int, n_prompts: int, d_model: int, n_layers: int, op: str, reps: int,
                max_variants: int, layer: int | None = None) -> dict:
    pm = planted_refusal_model(d_model=d_model, n_layers=n_layers, n_prompts=n_prompts)
    h = pm.handle
    harmful, harmless = pm.harmful[:n_prompts], pm.harmless[:n_prompts]
    # the baseline carries the refusal token ids the metrics score with
    base = refusal_baseline(h, harmful, harmless, scoring=RefusalScoring(), batch_size=n_prompts)
    stack = _stack(h, pm.direction * 3, op, layer, k)
    layer = stack.fan_out_layer
    every = list(range(k + 1))

    def batched():
        return _metrics(h, stack, every, harmful, harmless, base,
                        batch_size=n_prompts, max_variants=max_variants)

    def loop():
        return _metrics(h, stack, every, harmful, harmless, base,
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


def section_batched(quick: bool) -> list[dict]:
    reps = 1 if quick else 3
    # (K, prompts, d_model, n_layers, op, directions per pass, addition layer)
    settings = [(64, 16, 64, 4, "ablate", 16, None), (64, 16, 64, 4, "add", 16, 2),
                (64, 16, 64, 4, "add", 16, 3), (64, 16, 256, 4, "ablate", 16, None),
                (64, 16, 256, 4, "add", 16, 2), (64, 16, 256, 8, "add", 16, 6)]
    if quick:
        settings = settings[:2]
    print(f"{'op':7s} {'layer':>5s} {'K':>3s} {'prompts':>7s} {'d':>4s} {'L':>2s} {'var/pass':>8s} "
          f"{'batched s':>9s} {'loop s':>7s} {'speed-up':>8s} {'max|Δ|':>9s}")
    out = []
    for s in settings:
        r = run_batched(*s[:5], reps=reps, max_variants=s[5], layer=s[6])
        out.append(r)
        layer = "all" if r["layer"] is None else str(r["layer"])
        print(f"{r['op']:7s} {layer:>5s} {r['K']:3d} {r['n_prompts']:7d} {r['d_model']:4d} "
              f"{r['n_layers']:2d} {r['max_variants']:8d} {r['batched_s']:9.3f} {r['loop_s']:7.3f} "
              f"{r['speedup']:7.2f}x {r['max_abs_diff']:9.2e}")
    return out


# ------------------------------------------------------------------- sequential (issue 18)
def _sweep_pair(name: str, handle: Any, directions: dict, harmful: list[str],
                harmless: list[str], scoring: RefusalScoring) -> dict:
    from safetygeo.causal.sweep import run_sweep
    from safetygeo.interventions.nulls import NullSpec

    n_prompts = len(harmful) + len(harmless)
    out: dict[str, Any] = {"model": name, "n_prompts": n_prompts}
    tables = {}
    for label, spec in (("fixed", NullSpec(k=64)), ("sequential", NullSpec.sequential())):
        t, c = time.perf_counter(), time.process_time()
        tab = run_sweep(handle, directions, harmful=harmful, harmless=harmless,
                        ops=("ablate", "add"), layers="all", nulls=spec, scoring=scoring,
                        progress=False)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        cells = tab.drop_duplicates(["direction", "op", "layer", "alpha"])
        n_dirs = int((cells.k + 1).sum())
        tables[label] = tab
        out[label] = {"wall_s": wall, "cpu_s": cpu, "cells": len(cells), "directions": n_dirs,
                      "prompt_forwards": n_dirs * n_prompts}
    fixed, seq = tables["fixed"], tables["sequential"]
    cell_key = ["direction", "op", "layer", "alpha"]
    m = fixed.merge(seq, on=[*cell_key, "metric"], suffixes=("_f", "_s"))
    disc = {}
    for metric, g in m.groupby("metric"):
        f_rej, s_rej = set(g.index[g.q_f <= 0.05]), set(g.index[g.q_s <= 0.05])
        disc[metric] = {"fixed": len(f_rej), "sequential": len(s_rej),
                        "lost": len(f_rej - s_rej), "gained": len(s_rej - f_rej)}
    out["discoveries"] = disc
    # cells by the smallest fixed-K p of their three metrics
    bins = {"all p >= 0.5": (0.5, 1.01), "min p in [0.2, 0.5)": (0.2, 0.5),
            "min p in (1/65, 0.2)": (1 / 65 + 1e-9, 0.2), "some p = 1/65": (0.0, 1 / 65 + 1e-9)}
    costs: dict[str, list[float]] = {b: [] for b in bins}
    strong, misses = [], []
    for cell, g in m.groupby(cell_key, dropna=False):
        lo = float(g.p_f.min())
        for b, (a, z) in bins.items():
            if a <= lo < z:
                costs[b].append((int(g.k_s.iloc[0]) + 1) / 65)
        for r in g.itertuples():
            if r.p_f <= 1 / 65 + 1e-12:
                p_bh = float(r.p_tail_s if r.p_used_s == "tail" else r.p_s)
                strong.append({"metric": r.metric, "n_null_used": int(r.n_null_used_s),
                               "p_bh": p_bh})
                if p_bh >= 1 / 65:
                    misses.append(f"{cell[0]} {cell[1]} layer {cell[2]} {r.metric}: tail "
                                  f"{r.p_tail_s:.2g} ({r.p_tail_method_s})")
    out["cost_by_min_p"] = {b: {"n": len(v), "mean": float(np.mean(v)) if v else None,
                                "max": max(v, default=None)} for b, v in costs.items()}
    out["strong"] = {"n": len(strong), "below_floor": sum(x["p_bh"] < 1 / 65 for x in strong),
                     "max_nulls": max((x["n_null_used"] for x in strong), default=0),
                     "median_p_bh": float(np.median([x["p_bh"] for x in strong]))
                     if strong else float("nan"), "not_below": misses}
    out["stop_reasons"] = seq.stop_reason.value_counts().to_dict()
    _print_pair(out)
    return out


def _print_pair(r: dict) -> None:
    f, s = r["fixed"], r["sequential"]
    print(f"\n{r['model']}: {f['cells']} cells (ablation + addition at every layer), "
          f"{r['n_prompts']} prompts per direction")
    print(f"  {'':12s} {'directions':>10s} {'prompt-fwd':>10s} {'CPU s':>7s} {'wall s':>7s}")
    for lab in ("fixed", "sequential"):
        x = r[lab]
        print(f"  {lab:12s} {x['directions']:10d} {x['prompt_forwards']:10d} {x['cpu_s']:7.1f} "
              f"{x['wall_s']:7.1f}")
    print(f"  sequential / fixed: directions {s['directions'] / f['directions']:.2f}, CPU time "
          f"{s['cpu_s'] / f['cpu_s']:.2f}; stop reasons {r['stop_reasons']}")
    for b, c in r["cost_by_min_p"].items():
        if c["n"]:
            print(f"  cells with {b:22s}: {c['n']:2d}, cost / fixed K: mean {c['mean']:.2f}, "
                  f"max {c['max']:.2f}")
    st = r["strong"]
    print(f"  metric-cells at the fixed floor p = 1/65: {st['n']}, {st['below_floor']} with BH p "
          f"< 1/65 using at most {st['max_nulls']} nulls (median BH p {st['median_p_bh']:.2g})")
    for miss in st["not_below"]:
        print(f"    not below the floor: {miss}")
    for metric, d in r["discoveries"].items():
        print(f"  BH q ≤ 0.05 {metric:20s} fixed {d['fixed']:2d}  sequential "
              f"{d['sequential']:2d}  (lost {d['lost']}, gained {d['gained']})")


def _random_like(vec: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.from_numpy(np.random.default_rng(seed).standard_normal(vec.shape[-1]))
    return g / g.norm() * vec.double().norm()


def section_sequential(quick: bool) -> list[dict]:
    results = []
    pm = planted_refusal_model()
    n = 8 if quick else 12
    dirs = {"planted": pm.direction * 3, "random-1": _random_like(pm.direction * 3, 1),
            "random-2": _random_like(pm.direction * 3, 2)}
    results.append(_sweep_pair("planted (L=4, d=64)", pm.handle, dirs, pm.harmful[:n],
                               pm.harmless[:n], RefusalScoring()))
    if not quick:
        from safetygeo.causal.carriers import select_refusal_carrier
        from safetygeo.toy.zoo import load_toy, toy_splits

        h = load_toy("anchor")
        sp = toy_splits()
        sel = select_refusal_carrier(h, sp["harmful"], sp["harmless"], progress=False)
        vec = sel.vector
        tdirs = {"carrier": vec, "random-1": _random_like(vec, 1)}
        results.append(_sweep_pair(f"toy anchor (L={h.n_layers}, d={h.d_model})", h, tdirs,
                                   sp["harmful"]["test"], sp["harmless"]["test"][:32],
                                   sel.scoring))
    return results


# ------------------------------------------------------------------------- tail (issue 18)
def section_tail(quick: bool) -> list[dict]:
    from safetygeo.stats.pvalues import empirical_p, exceedances
    from safetygeo.stats.tail import tail_p

    k_big = 1000 if quick else 5000
    pm = planted_refusal_model()
    h = pm.handle
    harmful, harmless = pm.harmful[:12], pm.harmless[:12]
    base = refusal_baseline(h, harmful, harmless, scoring=RefusalScoring(), batch_size=24)
    names = ("d_refusal_harmful", "d_refusal_harmless", "kl_harmless")
    alts = ("two-sided", "two-sided", "greater")
    out = []
    print(f"\nexact p from K = {k_big} nulls vs tail estimates from disjoint blocks of 64 "
          f"(planted model, 12 + 12 prompts, norm 3)")
    print(f"{'op':6s} {'metric':20s} {'exact p':>8s} {'blocks':>6s} {'method':>12s} "
          f"{'median':>7s} {'IQR':>15s} {'< 1/65':>7s}")
    for op, layer in (("ablate", None), ("add", 2)):
        t = time.perf_counter()
        nulls_only = list(range(1, k_big + 1))  # k_big random directions of norm 3, seed 0
        vals = _metrics(h, _stack(h, pm.direction * 3, op, layer, k_big), nulls_only,
                        harmful, harmless, base, 24, 64)
        elapsed = time.perf_counter() - t
        for j, (name, alt) in enumerate(zip(names, alts)):
            x = vals[:, j]
            m = float(np.median(x))
            stat = np.abs(x - m) if alt == "two-sided" else x
            for target in ((2e-3, 5e-4) if not quick else (5e-3,)):
                thr = float(np.quantile(stat, 1 - target))
                real = m + thr if alt == "two-sided" else thr
                exact = empirical_p(real, x, alt)  # type: ignore[arg-type]
                ests, methods = [], []
                for s in range(0, k_big - 63, 64):
                    block = x[s:s + 64]
                    if exceedances(real, block, alt) > 0:  # type: ignore[arg-type]
                        continue
                    est = tail_p(real, block, alt)  # type: ignore[arg-type]
                    ests.append(est.p)
                    methods.append(str(est.method))
                e = np.asarray(ests)
                ok = np.isfinite(e)
                lr = np.log10(e[ok] / exact)
                meth = ",".join(f"{k}:{methods.count(k)}" for k in sorted(set(methods)))
                row = {"op": op, "metric": name, "exact_p": exact, "blocks": len(e),
                       "methods": meth, "median_log10": float(np.median(lr)),
                       "q25": float(np.quantile(lr, 0.25)), "q75": float(np.quantile(lr, 0.75)),
                       "below_floor": float(np.mean(e[ok] < 1 / 65)), "seconds": elapsed,
                       "null_skew": float(((x - x.mean()) ** 3).mean() / x.std() ** 3)}
                out.append(row)
                print(f"{op:6s} {name:20s} {exact:8.2g} {len(e):6d} {meth:>12s} "
                      f"{row['median_log10']:+7.2f} [{row['q25']:+.2f}, {row['q75']:+.2f}] "
                      f"{row['below_floor']:7.2f}")
        print(f"  ({op}: {k_big} nulls in {elapsed:.0f} s)")
    return out


# --------------------------------------------------------------------- carriers (issue 18)
def section_carriers(quick: bool) -> list[dict]:
    from safetygeo.activations.logits import last_logprobs
    from safetygeo.causal.candidates import refusal_directions
    from safetygeo.causal.carriers import score_candidates
    from safetygeo.toy.zoo import load_toy, toy_splits

    h = load_toy("anchor")
    sp = toy_splits()
    harmful, harmless = sp["harmful"]["val"], sp["harmless"]["val"]
    ids = RefusalScoring().ids(h.tokenizer)
    dirs = refusal_directions(h, sp["harmful"]["train"], sp["harmless"]["train"], progress=False)
    n_l, n_p, d = dirs.vectors.shape
    flat = dirs.vectors.reshape(n_l * n_p, d)
    layers = [dirs.layers[i // n_p] for i in range(n_l * n_p)]
    bs, mv = 16, 16
    reps = 1 if quick else 3

    def scoring() -> None:
        score_candidates(h, flat, layers, harmful, harmless, ids, batch_size=bs,
                         max_variants=mv, progress=False)

    def limit() -> None:  # the same forwards, no hooks, no scoring
        n = flat.shape[0]
        last_logprobs(h, harmless, batch_size=bs, progress=False)  # the KL baseline
        for s in range(0, n, mv):
            last_logprobs(h, [*harmful, *harmless], batch_size=bs, repeat=min(mv, n - s),
                          progress=False)
        by_layer: dict[int, int] = {}
        for layer in layers:
            by_layer[layer] = by_layer.get(layer, 0) + 1
        for layer, cnt in by_layer.items():
            for s in range(0, cnt, mv):
                last_logprobs(h, harmless, batch_size=bs, repeat=min(mv, cnt - s),
                              fan_out_layer=layer, progress=False)

    def one_forward() -> None:  # one plain forward over the validation prompts
        last_logprobs(h, [*harmful, *harmless], batch_size=bs, progress=False)

    times: dict[str, list[float]] = {"scoring": [], "limit": [], "one": []}
    scoring()  # warm-up
    limit()
    for _ in range(reps):  # CPU time of this process: robust to other jobs on the machine
        for name, fn in (("scoring", scoring), ("limit", limit), ("one", one_forward)):
            t = time.process_time()
            fn()
            times[name].append(time.process_time() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    n = flat.shape[0]
    res = {"candidates": n, "val_harmful": len(harmful), "val_harmless": len(harmless),
           "scoring_s": med["scoring"], "limit_s": med["limit"],
           "ratio_limit": med["scoring"] / med["limit"], "one_forward_s": med["one"],
           "issue_limit_s": n * med["one"], "ratio_issue_limit": med["scoring"] / (n * med["one"])}
    print(f"\ncarrier scoring on the toy anchor (L={h.n_layers}, d={h.d_model}): {n} candidates, "
          f"val {len(harmful)} harmful + {len(harmless)} harmless, {mv} candidates per pass")
    print(f"  score_candidates            {med['scoring']:7.2f} CPU s")
    print(f"  the same forwards, no hooks {med['limit']:7.2f} CPU s   ratio {res['ratio_limit']:.3f} "
          "(target ≤ 1.1)")
    print(f"  candidates × one forward over the val prompts {res['issue_limit_s']:7.2f} CPU s   ratio "
          f"{res['ratio_issue_limit']:.3f} (each candidate also needs an addition pass over the "
          "harmless prompts)")
    return [res]


# --------------------------------------------------------------------- simulate (issue 18)
def section_simulate(quick: bool) -> list[dict]:
    from scipy import stats

    from safetygeo.results import NullComparison
    from safetygeo.stats.sequential import besag_clifford_p, schedule

    reps = 4000 if quick else 40000
    rng = np.random.default_rng(2026)
    dists = {"normal": stats.norm(), "exponential": stats.expon(), "t3": stats.t(3)}
    out = []
    print(f"\ntype-I error under H0 ({reps} repetitions; se at α=0.05: "
          f"{np.sqrt(0.05 * 0.95 / reps):.4f})")
    print(f"{'null':12s} {'test':28s} {'alt':10s} {'α=0.01':>7s} {'α=0.05':>7s} {'α=0.1':>7s} "
          f"{'mean nulls':>10s}")
    for dname, dist in dists.items():
        for h, k_max, batch, first in ((4, 64, 8, 16), (4, 64, 16, 16), (2, 64, 8, 8),
                                       (10, 256, 32, 32)):
            cps = schedule(k_max, batch, first)
            for alt in ("greater", "two-sided"):
                x = dist.rvs((reps, k_max + 1), random_state=rng)
                res = [besag_clifford_p(r[0], r[1:], alt, h=h, k_max=k_max, checkpoints=cps)
                       for r in x]
                ps = np.array([r.p for r in res])
                drawn = np.array([next(c for c in cps if c >= r.n_used) for r in res])
                rates = [float((ps <= a).mean()) for a in (0.01, 0.05, 0.1)]
                test = f"h={h} k_max={k_max} b={batch} first={first}"
                out.append({"null": dname, "test": test, "alt": alt, "rates": rates,
                            "mean_drawn": float(drawn.mean())})
                print(f"{dname:12s} {test:28s} {alt:10s} " + " ".join(f"{r:7.4f}" for r in rates)
                      + f" {drawn.mean():10.1f}")
        # the p BH uses with tail estimates, fixed K = 64
        x = dist.rvs((reps // 4, 65), random_state=rng)
        for alt in ("greater", "two-sided"):
            pb = np.array([NullComparison.from_null("m", r[0], r[1:], alt,  # type: ignore[arg-type]
                                                    tail=True).p_bh for r in x])
            rates = [float((pb <= a).mean()) for a in (0.001, 0.005, 0.01)]
            out.append({"null": dname, "test": "p_bh (tail) K=64", "alt": alt,
                        "rates_0.001_0.005_0.01": rates})
            print(f"{dname:12s} {'BH p with tail, K=64 (α=.001,.005,.01)':28s} {alt:10s} "
                  + " ".join(f"{r:7.4f}" for r in rates))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; no section means ``batched``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    valid = [*SECTIONS, "all"]
    # no `choices=` here: argparse checks a nargs="*" positional's default (a list, even [])
    # against `choices` on Python 3.11 and exits ("invalid choice: ['batched']")
    ap.add_argument("sections", nargs="*", metavar="SECTION",
                    help=f"sections to run: {', '.join(valid)} (default: batched)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    bad = [s for s in args.sections if s not in valid]
    if bad:
        ap.error(f"invalid section(s) {bad}: choose from {valid}")
    args.sections = args.sections or ["batched"]
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sections = SECTIONS if "all" in args.sections else args.sections
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    results: dict[str, Any] = {}
    for name in sections:
        t = time.perf_counter()
        results[name] = globals()[f"section_{name}"](args.quick)
        print(f"[{name}: {time.perf_counter() - t:.0f} s]")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
