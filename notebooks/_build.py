"""Regenerate the notebooks from this script (kept in git so diffs stay readable).

    python notebooks/_build.py

The notebooks are executed top to bottom by the test suite (tests/test_notebooks.py), so
they never rot; they run on the toy world (CPU, cached under artifacts/toy).
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent


def md(text: str):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text: str):
    return nbf.v4.new_code_cell(text.strip())


def explore() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("""
# Exploring one checkpoint

Where is refusal carried, is the carrier admissible, and is its causal effect larger than
that of matched random directions? This notebook runs on the embedded toy world's aligned
anchor (trained on CPU in about a minute the first time, then cached in `artifacts/toy`);
point `safetygeo.load_model` at any Hugging Face checkpoint (and your own prompt sets) to run
the same cells on a real model.
"""),
        code("""
import torch

from safetygeo.toy.zoo import load_anchor, toy_splits

torch.set_num_threads(2)
handle = load_anchor()     # ModelHandle of the aligned toy model (built if absent)
splits = toy_splits()      # the world's own train / val / test splits, never mixed
print(handle.n_layers, "layers, d_model", handle.d_model)
print("post-instruction template:", repr(handle.chat_template().suffix))
print(handle.extra["toy"]["behavior"])
"""),
        md("""
## Candidate refusal carriers at every layer × post-instruction position

Directions are computed on the train split, filtered on val (Arditi et al.: bypass, induce,
KL, layer < 0.8 L) and re-scored on held-out test prompts.
"""),
        code("""
from safetygeo.causal import select_refusal_carrier
from safetygeo.reports import carrier_scores_figure

sel = select_refusal_carrier(handle, splits["harmful"], splits["harmless"], progress=False)
print("chosen:", sel.chosen, "| weak:", sel.weak, "|", sel.notes)
print("refusal scoring (reused below):", sel.scoring)
carrier_scores_figure(sel.candidates, sel.chosen)
"""),
        code("""
cols = ["layer", "position", "norm", "bypass", "induce", "kl", "reason", "test_bypass", "test_induce"]
sel.candidates[cols].round(3)
"""),
        md("## Ablating the carrier vs 64 matched random directions"),
        code("""
from safetygeo.causal import intervention_effect
from safetygeo.interventions import NullSpec
from safetygeo.reports import null_figure

eff = intervention_effect(handle, sel.vector, "ablate", harmful=splits["harmful"]["test"],
                          harmless=splits["harmless"]["test"], nulls=NullSpec(k=64),
                          scoring=sel.scoring)
e = eff["d_refusal_harmful"]   # a NullComparison: real, null, p, z, ...
print(e)
null_figure(e, "Δ refusal score on held-out harmful prompts")
"""),
        md("## Adding the carrier at each layer (induced refusal on harmless prompts), with the null band"),
        code("""
from safetygeo.causal import run_sweep
from safetygeo.reports import sweep_figure

sweep = run_sweep(handle, {"carrier": sel.vector}, harmful=splits["harmful"]["test"],
                  harmless=splits["harmless"]["test"], ops=("add",), nulls=NullSpec(k=16),
                  scoring=sel.scoring, progress=False)
sweep_figure(sweep, "d_refusal_harmless")
"""),
        md("## What the model says with the carrier ablated"),
        code("""
from safetygeo.behavior import GenerationSettings, classify_refusal, generate
from safetygeo.interventions import ablate

prompts = splits["harmful"]["test"][:6]
greedy = GenerationSettings(max_new_tokens=20)
before = generate(handle, prompts, greedy, progress=False)
with ablate(handle, sel.direction):
    after = generate(handle, prompts, greedy, progress=False)
for p, a, b in zip(prompts, before.completions, after.completions):
    print(f"{p!r}\\n   anchor:  {a!r} [{classify_refusal(a)}]\\n   ablated: {b!r} [{classify_refusal(b)}]")
"""),
        md("## Harmfulness (t_inst) vs refusal (post-instruction) directions, per layer"),
        code("""
from safetygeo.activations import extract_activations
from safetygeo.geometry import carrier_rank, geometric_coupling
from safetygeo.reports import coupling_figure
from safetygeo.results import rows_frame

kw = dict(positions="t_inst+post_instruction", keep_vectors=True, progress=False)
a = extract_activations(handle, splits["harmful"]["test"], **kw)
b = extract_activations(handle, splits["harmless"]["test"], **kw)
coupling = geometric_coupling(a, b, n_boot=200)   # cos is NaN (with a note) where undefined
rank = carrier_rank(a, b, layer=sel.layer, positions=["eoi-2", "eoi-1"], n_boot=200)
print(rows_frame(list(rank.values()))[["metric", "value", "ci_low", "ci_high", "n"]])
coupling_figure(coupling)
"""),
    ]
    return nb


def trajectory() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("""
# Walking a training trajectory

How does the refusal carrier appear during refusal SFT, and what happens to it under a
harmful fine-tuning attack? Both trajectories are ordinary safetygeo trajectories
(`step-NNNNNN/` checkpoints + `trajectory.json`) of the toy world, trained through
`safetygeo.training.train`; the same cells work on any trajectory folder
(`safetygeo.training.Trajectory.load(path)`).
"""),
        code("""
import pandas as pd
import plotly.express as px
import torch

from safetygeo.toy.zoo import load_toy_trajectory, toy_splits

torch.set_num_threads(2)
sft = load_toy_trajectory("anchor")        # base -> aligned anchor (refusal SFT)
attack = load_toy_trajectory("attacked")   # anchor -> harmful-SFT attack
splits = toy_splits()
print(sft.method, sft.steps)
print(attack.method, attack.steps)
"""),
        md("""
## One row per checkpoint

For every checkpoint: the logit refusal score on held-out harmful / harmless prompts, the
refusal rate of greedy generations, and the diff-in-means refusal direction at the anchor's
carrier position, compared with the anchor's (principal angle, with a paired bootstrap CI).
"""),
        code("""
from safetygeo.activations import extract_activations
from safetygeo.activations.refusal import refusal_score
from safetygeo.causal import select_refusal_carrier
from safetygeo.geometry import carrier_drift
from safetygeo.toy.train import measure
from safetygeo.toy.world import ToyWorld

anchor = sft.load_checkpoint()
sel = select_refusal_carrier(anchor, splits["harmful"], splits["harmless"], progress=False)
layer, position = sel.chosen
scoring = sel.scoring   # one refusal definition for every checkpoint
print("anchor carrier:", sel.chosen)

def stats(handle):
    kw = dict(layers=[layer], positions=[position], keep_vectors=True, progress=False)
    return (extract_activations(handle, splits["harmful"]["test"], **kw),
            extract_activations(handle, splits["harmless"]["test"], **kw))

reference = stats(anchor)
rows, acts = [], {}
for name, traj in (("refusal SFT", sft), ("harmful-SFT attack", attack)):
    for step in traj.steps if name == "refusal SFT" else traj.steps[1:]:
        h = traj.load_checkpoint(step)
        key = f"{name} @ {step}"
        acts[key] = stats(h)
        b = measure(h, ToyWorld(), max_new_tokens=12)
        rows.append({"run": name, "step": step, "checkpoint": key,
                     "refusal score (harmful)": float(refusal_score(h, splits["harmful"]["test"], scoring=scoring).mean()),
                     "refusal score (harmless)": float(refusal_score(h, splits["harmless"]["test"], scoring=scoring).mean()),
                     "refusal rate (harmful)": b["refusal_harmful"],
                     "task accuracy": b["task_accuracy"]})
table = pd.DataFrame(rows)
drift = carrier_drift(reference, acts, layer=layer, n_boot=200)
table = table.merge(drift[["checkpoint", "angle_deg", "ci_low_deg", "ci_high_deg"]], on="checkpoint")
table.round(3)
"""),
        code("""
px.line(table, x="step", y=["refusal score (harmful)", "refusal score (harmless)"], facet_col="run",
        markers=True, title="Logit refusal score along the trajectories").update_xaxes(matches=None)
"""),
        code("""
fig = px.line(table, x="step", y="angle_deg", facet_col="run", markers=True,
              error_y=table.ci_high_deg - table.angle_deg,
              error_y_minus=table.angle_deg - table.ci_low_deg,
              title=f"Angle between each checkpoint's refusal direction and the anchor's (layer {layer}, {position})")
fig.update_xaxes(matches=None)
"""),
        code("""
px.line(table, x="step", y=["refusal rate (harmful)", "task accuracy"], facet_col="run", markers=True,
        title="Behaviour on held-out prompts").update_xaxes(matches=None)
"""),
        md("""
The attack removes refusal within a few steps, while the task accuracy stays well above
chance. Whether the refusal direction itself rotates away, or stays in place and is simply no
longer read, is what the angle plot answers for this run.
"""),
    ]
    return nb


def all_notebooks() -> dict[str, nbf.NotebookNode]:
    """Every notebook by file name: the two defined here, plus one per ``_build_*.py`` module
    next to this file (each defines ``NAME``, the .ipynb file name, and ``build()``)."""
    import importlib.util

    out = {"01_explore_checkpoint.ipynb": explore(), "02_trajectory.ipynb": trajectory()}
    for path in sorted(HERE.glob("_build_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        out[mod.NAME] = mod.build()
    return out


def main() -> None:
    for name, nb in all_notebooks().items():
        nbf.write(nb, HERE / name)


if __name__ == "__main__":
    main()
