"""Defend, then attack, on the toy world: the robustness table of issue 14.

For every seed: build (or reuse) the toy stages base, anchor, r2d2, sdd, ctrap, seam; attack
each with the toy harmful-SFT attacker (``attack_steps`` steps, a checkpoint every 5); pick
the budget N at which the anchor is fully broken (held-out ASR = 1) in every seed; and
measure each stage before the attack and at step N of its attack. Then the defenses' own
diagnostics, the geometry of each defended checkpoint against the anchor, and the cost of a
training step relative to plain SFT.

    python benchmarks/defenses.py [--seeds 0,1,2] [--threads 1] [--json out.json]
                                  [--geometry-seeds 0] [--cost-steps 8] [--skip-cost]

One process; stages and attacks are cached in the toy cache ($SAFETYGEO_TOY_DIR, default
artifacts/toy), so a rerun only measures. On a loaded 2-core machine the first run takes
hours (CTRAP: three passes per step, SEAM: five); progress is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

import numpy as np
import torch

T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.0f} s] {msg}", flush=True)


def fmt(e: Any, pct: bool = True) -> str:
    if pct:
        return f"{e.value:.2f} [{e.ci_low:.2f}, {e.ci_high:.2f}]"
    return f"{e.value:.2f} [{e.ci_low:.2f}, {e.ci_high:.2f}]"


def row_json(e: Any) -> dict[str, Any]:
    return {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
            "per_seed": e.extra.get("per_seed")}


# ----------------------------------------------------------------------------- robustness
def measured(traj: Any, step: int | None, world: Any) -> Any:
    """``toy_behavior`` of a checkpoint (``None``: the stage's recorded final step), cached
    under the toy cache as ``behavior/<folder>-<step>.npz`` keyed by the checkpoint's
    modification time (a rebuilt checkpoint is measured again)."""
    from safetygeo.toy.robustness import ToyBehavior, toy_behavior
    from safetygeo.toy.train import read_marker
    from safetygeo.toy.zoo import cache_root

    if step is None:
        info = read_marker(traj.path) or {}
        step = info.get("final_step", traj.steps[-1])
    ck = traj.checkpoint(step)
    key = f"{traj.path.name}-{step}-{os.stat(ck.path).st_mtime_ns}"
    path = cache_root() / "behavior" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return ToyBehavior({k: z[k] for k in z.files})
    b = toy_behavior(traj.load_checkpoint(step), world)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v) for k, v in b.values.items()})
    return b


def robustness(seeds: list[int]) -> dict[str, Any]:
    from safetygeo.toy.robustness import (
        COLLAPSED_BELOW,
        DEFENSE_STAGES,
        attack_budget,
        pooled,
        toy_attack,
    )
    from safetygeo.toy.world import ToyWorld
    from safetygeo.toy.zoo import cache_root, ensure_toy
    from safetygeo.training import Trajectory

    for seed in seeds:
        for stage in DEFENSE_STAGES:
            t = time.perf_counter()
            info = ensure_toy((stage,), seed=seed)[stage]
            say(f"seed {seed} {stage:7s} ready ({time.perf_counter() - t:.0f} s; trained in "
                f"{info['train_seconds']:.0f} s): {info['behavior']}")
    attacks = {}
    for seed in seeds:
        for stage in DEFENSE_STAGES:
            t = time.perf_counter()
            attacks[stage, seed] = toy_attack(stage, seed=seed)
            say(f"seed {seed} attack on {stage} ready ({time.perf_counter() - t:.0f} s)")
    budget, curve = attack_budget([attacks["anchor", s] for s in seeds], seeds)
    say(f"attack budget N = {budget} steps (anchor ASR curve: {curve})")
    before: dict[str, list[Any]] = {s: [] for s in DEFENSE_STAGES}
    after: dict[str, list[Any]] = {s: [] for s in DEFENSE_STAGES}
    asr_curves: dict[str, dict[int, list[float]]] = {}
    for seed in seeds:
        world = ToyWorld(seed)
        for stage in DEFENSE_STAGES:
            defended = Trajectory.load(cache_root() / f"{stage}-s{seed}")
            before[stage].append(measured(defended, None, world))
            traj = attacks[stage, seed]
            after[stage].append(measured(traj, budget, world))
            curve_s = asr_curves.setdefault(stage, {})
            for step in traj.steps:
                v = float(measured(traj, step, world).values["asr"].mean())
                curve_s.setdefault(step, []).append(v)
            say(f"seed {seed} {stage}: measured before / after N")
    table = {}
    for stage in DEFENSE_STAGES:
        b, a = pooled(before[stage]), pooled(after[stage])
        table[stage] = {"before": {k: row_json(v) for k, v in b.items()},
                        "after": {k: row_json(v) for k, v in a.items()},
                        "collapsed_after": a["task_accuracy"].value < COLLAPSED_BELOW,
                        "asr_curve": {str(k): v for k, v in sorted(asr_curves[stage].items())}}
    print(f"\nRobustness on the toy world, seeds {seeds}, attack budget N = {budget} steps "
          "(pooled over seeds; 95% bootstrap CI over prompts; per-seed means after '|')")
    head = ("stage", "refusal harm.", "over-ref. look.", "task acc.", "ASR@N", "compl.@N",
            "task acc.@N", "entropy@N (nats)", "collapsed")
    print(" | ".join(head))
    for stage in DEFENSE_STAGES:
        b, a = table[stage]["before"], table[stage]["after"]

        def c(r: dict[str, Any]) -> str:
            seeds_s = "/".join(f"{x:.2f}" for x in r["per_seed"])
            return f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] | {seeds_s}"
        print(" | ".join([stage, c(b["refusal_harmful"]), c(b["over_refusal_lookalike"]),
                          c(b["task_accuracy"]), c(a["asr"]), c(a["compliance_harmful"]),
                          c(a["task_accuracy"]), c(a["entropy_benign"]),
                          str(table[stage]["collapsed_after"])]))
    return {"budget": budget, "anchor_curve": curve, "table": table,
            "collapsed_below": COLLAPSED_BELOW}


# ----------------------------------------------------------------------------- diagnostics
def diagnostics(seeds: list[int]) -> dict[str, Any]:
    from safetygeo.gradients import LossSpec, layer_gradient_cosines
    from safetygeo.toy.train import TOY_COLLAPSE_TOKEN, read_marker
    from safetygeo.toy.world import REFUSAL, ToyWorld
    from safetygeo.toy.zoo import cache_root, load_toy, load_toy_trajectory
    from safetygeo.training import collapse_trap_probe

    out: dict[str, Any] = {"seam": {}, "ctrap": {}, "sdd": {}}
    for seed in seeds:
        w = ToyWorld(seed)
        harm = [(p.text, p.compliant) for p in w.prompts("harmful", "val")]
        ben = [(p.text, p.answer) for p in w.prompts("benign_task", "val")]
        a = LossSpec.from_data(harm, "harmful_ce", max_length=64, batch_size=32)
        b = LossSpec.from_data(ben, "ce", max_length=64, batch_size=32)
        cos = {}
        for stage in ("anchor", "seam"):
            res = layer_gradient_cosines(load_toy(stage, seed=seed), a, b)
            cos[stage] = {g.group: g.cosine for g in res.groups}
        out["seam"][seed] = cos
        say(f"seed {seed} SEAM cosines (held-out val): anchor {cos['anchor']['all']:+.3f} → "
            f"seam {cos['seam']['all']:+.3f}")
        # CTRAP: the collapse loss after k simulated steps, along the CTRAP trajectory
        general = [(p.text, REFUSAL) for p in w.prompts("harmful", "val")] + ben
        traj = load_toy_trajectory("ctrap", seed=seed)
        steps = [0, traj.steps[len(traj.steps) // 2 - 1], traj.steps[-1]]
        rows = {}
        for step in steps:
            h = traj.load_checkpoint(step)
            rows[step] = collapse_trap_probe(h, harmful=harm, benign=ben, general=general,
                                             collapse_token=TOY_COLLAPSE_TOKEN, steps=3, alpha=1.0)
        out["ctrap"][seed] = rows
        say(f"seed {seed} CTRAP probe (collapse CE after k = 0..3 steps): {rows}")
        out["sdd"][seed] = (read_marker(cache_root() / f"sdd-s{seed}") or {}).get("sdd_pairs")
    return out


# ----------------------------------------------------------------------------- geometry
def geometry(seeds: list[int]) -> dict[str, Any]:
    from safetygeo.causal import select_refusal_carrier
    from safetygeo.toy.robustness import DEFENSE_STAGES, defense_geometry
    from safetygeo.toy.zoo import load_toy, toy_splits

    out: dict[str, Any] = {}
    for seed in seeds:
        anchor = load_toy("anchor", seed=seed)
        sp = toy_splits(seed)
        sel = select_refusal_carrier(anchor, sp["harmful"], sp["harmless"], progress=False)
        for stage in DEFENSE_STAGES:
            g = defense_geometry(load_toy(stage, seed=seed), (anchor, sel), seed=seed)
            e = g["erank"]
            out[f"{stage}-s{seed}"] = {**g, "erank": [e.value, e.ci_low, e.ci_high]}
            say(f"seed {seed} {stage}: carrier {g['carrier']}, erank@L{g['layer']} "
                f"{e.value:.2f} [{e.ci_low:.2f}, {e.ci_high:.2f}], drift {g['drift_deg'][0]:.1f}° "
                f"[{g['drift_deg'][1]:.1f}, {g['drift_deg'][2]:.1f}], H/R cos {g['coupling'][0]:+.2f} "
                f"[{g['coupling'][1]:+.2f}, {g['coupling'][2]:+.2f}]")
    return out


# ----------------------------------------------------------------------------- cost
def cost(steps: int) -> dict[str, Any]:
    """Seconds per optimizer step (wall and process CPU) of each method on the toy model,
    same start (the base, seed 0), batch 32, measured inside the trainer."""
    import tempfile

    from safetygeo.toy.train import ToyRecipe, _method_and_config, stage_data
    from safetygeo.toy.world import ToyWorld
    from safetygeo.toy.zoo import load_toy
    from safetygeo.training import train
    from safetygeo.training.callbacks import StepTimer

    world = ToyWorld(0)
    recipe = ToyRecipe()
    out = {}
    for stage in ("anchor", "sdd", "r2d2", "ctrap", "seam"):  # anchor = plain refusal SFT
        method, cfg = _method_and_config(stage, recipe, 0)
        cfg = cfg.replace(max_steps=steps + 2, save_every=steps + 2, batch_size=32, warmup_steps=0)
        timer = StepTimer()
        start = load_toy("base")
        with tempfile.TemporaryDirectory() as d:
            train(start, method, stage_data(world, stage, recipe), out=d, config=cfg,
                  callbacks=[timer], progress=False, save_base=False)
        w, c = timer.median(), timer.median(cpu=True)
        out[stage if stage != "anchor" else "sft"] = {"wall_s": w, "cpu_s": c}
        say(f"cost {stage}: {w:.3f} s wall, {c:.3f} s CPU per step (median of {steps})")
    base = out["sft"]
    for k, v in out.items():
        v["x_sft_wall"] = v["wall_s"] / base["wall_s"]
        v["x_sft_cpu"] = v["cpu_s"] / base["cpu_s"]
    print("\nCost per optimizer step relative to refusal SFT (toy model, batch 32, 1 thread):")
    for k, v in out.items():
        print(f"{k:6s} {v['wall_s']:.3f} s wall ({v['x_sft_wall']:.2f}x), {v['cpu_s']:.3f} s CPU "
              f"({v['x_sft_cpu']:.2f}x)")
    return out


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _clean(x.item())
    if hasattr(x, "to_row"):
        return _clean(x.to_row())
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--geometry-seeds", default="0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cost-steps", type=int, default=8)
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--skip-geometry", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--phases", default="robustness,diagnostics,geometry,cost",
                    help="comma-separated subset; with --json, results of earlier runs in that "
                         "file are kept for the phases not run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    seeds = [int(s) for s in args.seeds.split(",")]
    phases = set(args.phases.split(","))
    if args.skip_geometry:
        phases.discard("geometry")
    if args.skip_cost:
        phases.discard("cost")
    result: dict[str, Any] = {}
    if args.json and os.path.exists(args.json):
        with open(args.json, encoding="utf-8") as f:
            result = json.load(f)
    if "robustness" in phases:
        result.update(seeds=seeds, threads=args.threads, robustness=robustness(seeds))
    if "diagnostics" in phases:
        result["diagnostics"] = diagnostics(seeds)
    if "geometry" in phases:
        result["geometry"] = geometry([int(s) for s in args.geometry_seeds.split(",")])
    if "cost" in phases:
        result["cost"] = cost(args.cost_steps)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(_clean(result), f, indent=1)
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
