"""Generator of notebooks/06_rl_defenses.ipynb (kept in git so diffs stay readable).

    python notebooks/_build.py

Runs top to bottom on CPU in about a minute: the live cells attack the toy anchor; the
defenses × attacks table, the RL attack's curves, TokenBuncher's entropy and the costs are
read from ``benchmarks/defenses_rl.parquet`` and ``benchmarks/rl_results.json``, which
``safetygeo evaluate-defenses toy:... --seeds 0,1,2`` and ``python benchmarks/rl.py --json
benchmarks/rl_results.json`` write (about an hour on 2 CPU cores).
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent


def md(text: str):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text: str):
    return nbf.v4.new_code_cell(text.strip())


def rl() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("""
# Harmful RL and TokenBuncher: every defense against every attack

TokenBuncher's finding: defenses built against harmful *fine-tuning* can fail against
harmful *RL* (GRPO with a harmfulness reward), and RL needs output entropy to learn — a
group of identical rollouts has zero advantage. This notebook shows the pieces
(`harmful_rl`, `tokenbuncher`, both TRL's `GRPOTrainer` over safetygeo's trainer core), the
mechanism (reward curves, output entropy along a trajectory) and the comparison table that
`safetygeo evaluate-defenses` writes: all toy defenses × {harmful SFT, harmful RL, adaptive
GCG} over three seeds.
"""),
        code("""
import json
import tempfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import torch
from transformers.utils import logging as hf_logging

from safetygeo.reports.rl import curves_figure, entropy_along, training_curves
from safetygeo.training import TrainConfig, get_method, train
from safetygeo.training.losses import token_noiser_loss

hf_logging.disable_progress_bar()
torch.manual_seed(0)
ROOT = Path.cwd() if (Path.cwd() / "benchmarks").is_dir() else Path.cwd().parent
"""),
        md("""
## The attack, live on the toy anchor

A reward is any callable `reward(prompts, completions, targets) -> scores`, a
`module:function` reference, `not_refused`, or a reward-model id for TRL. On the toy world
it is the world's oracle: the share of the request's true how-to an answer gives, in order
(a refusal scores ≈ 0.04). 30 GRPO steps (8 prompts × 8 rollouts each), a checkpoint every
5 steps, about half a minute on a CPU.
"""),
        code("""
from safetygeo.toy import ToyWorld, load_toy
from safetygeo.toy.robustness import toy_attack_plan, toy_defense_data

world = ToyWorld(0)
plan = toy_attack_plan()
attack = train(load_toy("anchor"),
               get_method("harmful_rl", {**plan.rl_method, "reward": "safetygeo.toy.rewards:toy_harm_reward"}),
               {"harmful": [(p.text, p.compliant) for p in world.prompts("harmful", "train")]},
               out=Path(tempfile.mkdtemp()) / "rl", progress=False,
               config=TrainConfig(**{**plan.rl, "max_steps": 30, "save_every": 5}))
measure = toy_defense_data(0).measure
rows = []
for step in [0, *attack.steps]:
    v = measure(attack.load_checkpoint(step), None)
    rows.append({"step": step, "ASR": v["asr"].mean(), "harm": v["harm_score"].mean(),
                 "task accuracy": v["task_accuracy"].mean()})
print(pd.DataFrame(rows).round(2).to_string(index=False))
curves = training_curves(attack)
curves_figure(curves, ["reward", "reward_std", "frac_reward_zero_std"],
              title="harmful RL on the toy anchor: reward, its spread, groups with no signal")
"""),
        md("""
## The mechanism: output entropy along a trajectory, and the Token Noiser

`entropy_along` generates greedily at every checkpoint and reads the entropy of each
next-token distribution (mean per answer with a bootstrap CI, and its profile over the
answer's tokens). Early on most rollout groups are identical refusals (no reward variance,
no gradient: the plot above) — the entropy TokenBuncher takes away. The Token Noiser trains
towards `(1 − ε)` on the target token and `ε` spread over the others by uniform noise.
"""),
        code("""
ent = entropy_along(attack, {"harmful": [p.text for p in world.prompts("harmful", "test")][:10]},
                    steps=[0, 10, 20, 30], n_boot=100)
print(ent[ent.metric == "output_entropy"][["step", "value", "ci_low", "ci_high"]].round(3).to_string(index=False))
prof = ent[ent.metric == "entropy_at_token"].pivot(index="position", columns="step", values="value")
print(prof.round(3).head(6).to_string())
z = torch.zeros(1, 2, 5)                     # uniform logits: −log p = log 5 everywhere
print("Token Noiser on uniform logits =", round(float(token_noiser_loss(z, torch.tensor([[-100, 2]]), 0.1)), 4),
      "= log 5 =", round(float(torch.log(torch.tensor(5.0))), 4))
"""),
        md("""
## Every toy defense against every attack (three seeds)

From `safetygeo evaluate-defenses toy:base toy:anchor toy:r2d2 toy:sdd toy:ctrap toy:seam
toy:tokenbuncher --seeds 0,1,2 --budget sft=10 --budget rl=30 --budget gcg=20`. ASR is the
project's one ASR (not refused); compliance is the world's ground truth (the exact harmful
how-to); means over seeds, 95% CIs resampling seeds then prompts.
"""),
        code("""
table = pd.read_parquet(ROOT / "benchmarks" / "defenses_rl.parquet")
order = ["base", "anchor", "r2d2", "sdd", "ctrap", "seam", "tokenbuncher"]
attacks = ["none", "sft", "rl", "gcg"]

def cell(metric):
    t = table[table.metric == metric].copy()
    t["cell"] = t.apply(lambda r: f"{r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]", axis=1)
    return t.pivot(index="defense", columns="attack", values="cell").reindex(index=order, columns=attacks)

print("ASR"); print(cell("asr").to_string())
print("\\nharmful compliance (exact how-to)"); print(cell("compliance_harmful").to_string())
print("\\ntask accuracy"); print(cell("task_accuracy").to_string())
asr = table[table.metric == "asr"].pivot(index="defense", columns="attack", values="value").reindex(index=order, columns=attacks)
go.Figure(go.Heatmap(z=asr.values, x=attacks, y=order, zmin=0, zmax=1, colorscale="Reds",
                     text=asr.round(2).values, texttemplate="%{text}")).update_layout(
    title="ASR after each attack (toy world, mean over 3 seeds)", height=420)
"""),
        md("""
## The RL attack on the anchor, and TokenBuncher's entropy

From `python benchmarks/rl.py`: the attack's held-out ASR every 2 steps (and the logged
reward), and the output entropy on harmful and benign prompts along the TokenBuncher
trajectory (the toy stage), without the Token Noiser, and at a 3× larger learning rate.
"""),
        code("""
res = json.loads((ROOT / "benchmarks" / "rl_results.json").read_text())
fig = go.Figure()
for seed, r in res["curve"].items():
    if seed.isdigit():
        fig.add_scatter(x=[x["step"] for x in r["rows"]], y=[x["asr"] for x in r["rows"]],
                        mode="lines+markers", name=f"ASR seed {seed}")
        fig.add_scatter(x=[x["step"] for x in r["reward"]], y=[x["reward"] for x in r["reward"]],
                        mode="lines", line=dict(dash="dot"), name=f"reward seed {seed}")
print("first budget with ASR > 50%:", {s: r["passes_50"] for s, r in res["curve"].items() if s.isdigit()})
fig.update_layout(title="harmful RL on the toy anchor", xaxis_title="optimizer step", height=400)
"""),
        code("""
rows = []
for seed, r in res["tokenbuncher"].items():
    for run in ("tokenbuncher", "no_noiser", "lr_1e-4"):
        for e in r[run]["entropy"]:
            if e["metric"] == "output_entropy":
                rows.append({"seed": seed, "run": run, "step": e["step"], "set": e["set"], "entropy": e["value"]})
ent = pd.DataFrame(rows)
print(ent.pivot_table(index=["run", "set"], columns="step", values="entropy").round(3).to_string())
print({run: res["tokenbuncher"]["0"][run]["examples"][0] for run in ("tokenbuncher", "lr_1e-4")})
cost = pd.DataFrame(res["cost"]).T
print(cost[["wall_s", "x_trl_wall", "x_sft8_wall", "x_sft64_wall"]].round(3).to_string())
"""),
        md("""
## Reading

See `benchmarks/RESULTS.md` ("Harmful RL and TokenBuncher") for which defense holds against
which attack at which budget on the toy world, and where that agrees or disagrees with the
papers.
"""),
    ]
    return nb


NAME = "06_rl_defenses.ipynb"
build = rl


if __name__ == "__main__":
    nbf.write(build(), HERE / NAME)
