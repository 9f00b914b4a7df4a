"""Harmful RL and TokenBuncher on the toy world (issue 15): the attack's ASR curve, the
defense's entropy mechanism, and the cost of a GRPO step.

    python benchmarks/rl.py [--phases curve,tokenbuncher,cost] [--seeds 0,1,2]
                            [--threads 1] [--json out.json] [--cache DIR]

* ``curve``: the harmful-RL attack (``harmful_rl``, CPU preset, the world's oracle reward,
  LR ``rl_attack_lr``, 8 prompts × 8 rollouts per step) on the toy anchor of each seed, a
  checkpoint every 2 steps: held-out ASR / compliance / task accuracy per checkpoint and the
  logged reward, and the first budget at which ASR passes 50% (per seed and the largest).
* ``tokenbuncher``: the toy ``tokenbuncher`` stage of each seed against its anchor: output
  entropy on harmful and benign held-out prompts along the TokenBuncher trajectory (mean and
  per-token profile, :func:`safetygeo.reports.rl.entropy_along`), refusal, harm score and
  task accuracy at its end (and example answers); the same run without the Token Noiser
  (entropy reward + KL only); and the preset at LR 1e-4 for 20 steps (where entropy-reward
  GRPO moves the toy model).
* ``cost``: seconds per optimizer step, measured inside the trainer by a callback, on the
  seed-0 anchor with the same model, prompts and batch: TRL's ``GRPOTrainer`` alone (our
  ``GRPOConfig``, same reward) vs ``harmful_rl`` through our core (checkpoint commits
  outside the timed steps), TokenBuncher, and refusal SFT (8 prompts per step, and 64
  examples — as many sequences as the GRPO step's rollouts).

One process; toy stages come from the toy cache (``--cache``, default $SAFETYGEO_TOY_DIR or
artifacts/toy) and are built if absent.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch

T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.0f} s] {msg}", flush=True)


def _rl_method(recipe: Any) -> Any:
    """The toy RL attacker (the same as ``toy_attack_plan``'s)."""
    from safetygeo.training import get_method

    return get_method("harmful_rl", preset="cpu", reward="safetygeo.toy.rewards:toy_harm_reward")


def curve(seeds: list[int], cache: str | None, steps: int = 40, every: int = 2) -> dict[str, Any]:
    from safetygeo.reports.rl import training_curves
    from safetygeo.toy.robustness import toy_defense_data
    from safetygeo.toy.train import ToyRecipe
    from safetygeo.toy.world import ToyWorld
    from safetygeo.toy.zoo import cache_root, load_toy
    from safetygeo.training import TrainConfig, train

    recipe = ToyRecipe()
    out: dict[str, Any] = {}
    for seed in seeds:
        world = ToyWorld(seed)
        data = [(p.text, p.compliant) for p in world.prompts("harmful", "train")]
        folder = cache_root(cache) / f"rlcurve-anchor-n{steps}-s{seed}"
        cfg = TrainConfig(lr=recipe.rl_attack_lr, max_steps=steps, batch_size=8, save_every=every,
                          seed=seed, lr_scheduler="constant", max_length=64, log_every=1)
        t = time.perf_counter()
        traj = train(load_toy("anchor", seed=seed, cache_dir=cache), _rl_method(recipe),
                     {"harmful": data}, out=folder, config=cfg, progress=False)
        secs = time.perf_counter() - t
        rows = []
        measure = toy_defense_data(seed).measure  # toy_behavior + the oracle's harm_score
        for step in [0, *traj.steps]:
            b = measure(traj.load_checkpoint(step), None)
            rows.append({"step": step, **{k: float(b[k].mean()) for k in
                                          ("asr", "harm_score", "compliance_harmful",
                                           "task_accuracy", "entropy_harmful")}})
        log = training_curves(traj)
        passed = next((r["step"] for r in rows if r["asr"] > 0.5), None)
        out[str(seed)] = {"rows": rows, "reward": log[["step", "reward", "reward_std", "entropy"]]
                          .to_dict("records"), "passes_50": passed, "train_s": secs}
        say(f"seed {seed}: RL attack on the anchor, ASR / harm score by step "
            + ", ".join(f"{r['step']}:{r['asr']:.2f}/{r['harm_score']:.2f}" for r in rows)
            + f"; passes 50% at step {passed}; reward {log.reward.iloc[0]:.3f} → "
              f"{log.reward.iloc[-1]:.3f} ({secs:.0f} s)")
    firsts = [v["passes_50"] for v in out.values()]
    out["budget_50"] = None if None in firsts else max(firsts)
    return out


def tokenbuncher(seeds: list[int], cache: str | None) -> dict[str, Any]:
    from safetygeo.reports.rl import entropy_along
    from safetygeo.toy.robustness import toy_defense_data
    from safetygeo.toy.train import ToyRecipe, _method_and_config, stage_data
    from safetygeo.toy.world import ToyWorld
    from safetygeo.toy.zoo import cache_root, load_toy, load_toy_trajectory
    from safetygeo.training import get_method, train

    out: dict[str, Any] = {}
    recipe = ToyRecipe()
    for seed in seeds:
        world = ToyWorld(seed)
        measure = toy_defense_data(seed).measure
        sets = {"harmful": [p.text for p in world.prompts("harmful", "test")],
                "benign": [p.text for p in world.prompts("benign_task", "test")]}
        res: dict[str, Any] = {}
        traj = load_toy_trajectory("tokenbuncher", seed=seed, cache_dir=cache)
        _, cfg = _method_and_config("tokenbuncher", recipe, seed)
        data = stage_data(world, "tokenbuncher", recipe)
        # the mechanism without the Token Noiser (entropy reward + benign KL only), and the
        # preset at a learning rate where entropy-reward GRPO moves the toy model (1e-4)
        variants = {
            "no_noiser": (get_method("tokenbuncher", preset="cpu", noiser_weight=0.0), cfg),
            "lr_1e-4": (get_method("tokenbuncher", preset="cpu"),
                        cfg.replace(lr=1e-4, max_steps=20, save_every=5)),
        }
        runs = {"tokenbuncher": traj}
        for name, (m, c) in variants.items():
            runs[name] = train(load_toy("anchor", seed=seed, cache_dir=cache), m, data,
                               out=cache_root(cache) / f"tokenbuncher-{name}-s{seed}", config=c,
                               progress=False)
        for name, t in runs.items():
            frame = entropy_along(t, sets, max_new_tokens=recipe.eval_tokens, n_boot=200)
            last = t.load_checkpoint(t.steps[-1])
            end = measure(last, None)
            from safetygeo.behavior.generate import GenerationSettings, generate

            sample = generate(last, sets["harmful"][:3], GenerationSettings(max_new_tokens=24),
                              progress=False).completions
            res[name] = {"entropy": frame.replace({np.nan: None}).to_dict("records"),
                         "end": {k: float(v.mean()) for k, v in end.items()},
                         "examples": [c.strip() for c in sample]}
            m_ = frame[(frame.metric == "output_entropy") & (frame.set == "harmful")]
            say(f"seed {seed} {name}: harmful output entropy by step "
                + ", ".join(f"{int(r.step)}:{r.value:.3f}" for r in m_.itertuples())
                + f"; at the end refusal {res[name]['end']['refusal_harmful']:.2f}, harm "
                  f"{res[name]['end']['harm_score']:.2f}, task {res[name]['end']['task_accuracy']:.2f}"
                  f"; e.g. {res[name]['examples'][0]!r}")
        anchor = measure(load_toy("anchor", seed=seed, cache_dir=cache), None)
        res["anchor"] = {k: float(v.mean()) for k, v in anchor.items()}
        out[str(seed)] = res
    return out


def cost(cache: str | None, steps: int = 12) -> dict[str, Any]:
    """Median seconds per optimizer step of the last ``steps - 2`` steps (see the module
    docstring), wall and process CPU."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from safetygeo.toy.train import ToyRecipe, _method_and_config, stage_data
    from safetygeo.toy.world import ToyWorld
    from safetygeo.toy.zoo import load_toy
    from safetygeo.training import TrainConfig, get_method, train
    from safetygeo.training.callbacks import StepTimer
    from safetygeo.training.grpo import grpo_arguments, grpo_rows

    recipe = ToyRecipe()
    world = ToyWorld(0)
    data = [(p.text, p.compliant) for p in world.prompts("harmful", "train")]
    cfg = TrainConfig(lr=recipe.rl_attack_lr, max_steps=steps, batch_size=8, save_every=steps,
                      lr_scheduler="constant", max_length=64, log_every=1)
    out: dict[str, Any] = {}

    def mean_length(log: list[dict[str, Any]]) -> float:
        xs = [r["completions/mean_length"] for r in log if "completions/mean_length" in r]
        return float(np.mean(xs[2:])) if xs else float("nan")

    def counted(handle: Any) -> tuple[Any, list[int]]:
        """The handle, with a counter of its decoder's forward passes (rollout decoding steps
        + loss forwards: what differs between two runs whose rollouts differ in length)."""
        calls = [0]
        handle.model.model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        return handle, calls

    def record(name: str, timer: StepTimer, log: list[dict[str, Any]] | None = None,
               calls: list[int] | None = None) -> None:
        w, c = timer.median(), timer.median(cpu=True)
        row = out.setdefault(name, {"rounds": []})
        per_fwd = sum(timer.wall) / calls[0] if calls and calls[0] else float("nan")
        row["rounds"].append({"wall_s": w, "cpu_s": c, "forwards": calls[0] if calls else None,
                              "s_per_forward": per_fwd,
                              "mean_completion_tokens": mean_length(log or [])})
        row["s_per_forward"] = min(r["s_per_forward"] for r in row["rounds"])
        row["wall_s"] = min(r["wall_s"] for r in row["rounds"])
        row["cpu_s"] = min(r["cpu_s"] for r in row["rounds"])
        say(f"cost {name}: {w:.3f} s wall, {c:.3f} s CPU per step"
            + (f", rollouts of {row['rounds'][-1]['mean_completion_tokens']:.1f} tokens" if log else "")
            + (f", {calls[0]} decoder forwards, {per_fwd * 1e3:.1f} ms per forward" if calls else ""))

    method = _rl_method(recipe)
    recs = method.records({"harmful": data})["harmful"]
    for _ in range(2):  # TRL alone and ours alternate, twice; the faster median of each counts
        # TRL alone: the same GRPOConfig, model, prompts and reward, no trajectory
        timer = StepTimer()
        h, calls = counted(load_toy("anchor", cache_dir=cache))
        with tempfile.TemporaryDirectory() as d:
            args = grpo_arguments(cfg.replace(save_every=10 * steps), method.config.grpo, d)
            args.save_strategy = "no"
            tr = GRPOTrainer(model=h.model, args=args,
                             train_dataset=Dataset.from_list(grpo_rows(recs)),
                             processing_class=h.tokenizer, callbacks=[timer],
                             reward_funcs=method.reward_funcs())  # the reward ours hands to TRL
            tr.train()
        record("trl_grpo", timer, tr.state.log_history, calls)
        timer = StepTimer()
        h, calls = counted(load_toy("anchor", cache_dir=cache))
        with tempfile.TemporaryDirectory() as d:
            traj = train(h, _rl_method(recipe), {"harmful": data}, out=d, config=cfg,
                         callbacks=[timer], progress=False, save_base=False)
            record("ours_harmful_rl", timer, traj.log_history(), calls)
    for name, m, dat, c in (
            ("tokenbuncher", get_method("tokenbuncher", preset="cpu", noiser_warmup=0),
             stage_data(world, "tokenbuncher", recipe), cfg),
            ("sft_8", _method_and_config("anchor", recipe, 0)[0],
             stage_data(world, "anchor", recipe), cfg.replace(batch_size=8)),
            ("sft_64", _method_and_config("anchor", recipe, 0)[0],
             stage_data(world, "anchor", recipe), cfg.replace(batch_size=64))):
        timer = StepTimer()
        with tempfile.TemporaryDirectory() as d:
            traj = train(load_toy("anchor", cache_dir=cache), m, dat, out=d, config=c,
                         callbacks=[timer], progress=False, save_base=False)
            record(name, timer, traj.log_history() if name == "tokenbuncher" else None)
    for k, v in out.items():
        v["x_trl_wall"] = v["wall_s"] / out["trl_grpo"]["wall_s"]
        v["x_sft8_wall"] = v["wall_s"] / out["sft_8"]["wall_s"]
        v["x_sft64_wall"] = v["wall_s"] / out["sft_64"]["wall_s"]
    for k in ("trl_grpo", "ours_harmful_rl"):
        out[k]["x_trl_per_forward"] = out[k]["s_per_forward"] / out["trl_grpo"]["s_per_forward"]
    print(f"\nours vs TRL alone per decoder forward: {out['ours_harmful_rl']['x_trl_per_forward']:.3f}x "
          "(the per-step ratio also carries the rollouts' different lengths)")
    print("\nCost per optimizer step (toy anchor, 8 prompts; GRPO: 8 rollouts of ≤ 24 tokens each):")
    for k, v in out.items():
        print(f"{k:16s} {v['wall_s']:.3f} s wall ({v['x_trl_wall']:.2f}x TRL alone, "
              f"{v['x_sft8_wall']:.1f}x SFT-8, {v['x_sft64_wall']:.1f}x SFT-64), {v['cpu_s']:.3f} s CPU")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--phases", default="curve,tokenbuncher,cost")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--curve-steps", type=int, default=40, help="RL attack steps of the curve")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    seeds = [int(s) for s in args.seeds.split(",")]
    phases = args.phases.split(",")
    result: dict[str, Any] = {}
    if args.json and os.path.exists(args.json):
        with open(args.json, encoding="utf-8") as f:
            result = json.load(f)
    result["threads"] = args.threads
    if "curve" in phases:
        result["curve"] = curve(seeds, args.cache, steps=args.curve_steps)
    if "tokenbuncher" in phases:
        result["tokenbuncher"] = tokenbuncher(seeds, args.cache)
    if "cost" in phases:
        result["cost"] = cost(args.cache)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, default=float)
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
