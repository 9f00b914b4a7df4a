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
harmful fine-tuning attack? Both runs are ordinary safetygeo trajectories (`step-NNNNNN/`
checkpoints + `trajectory.json`) of the toy world, trained through
`safetygeo.training.train`. The trajectory report (`safetygeo.reports.run_report`, the
same as `safetygeo report` on the command line) runs the whole protocol on every selected
checkpoint and its base, into one tidy table; the same cells work on any trajectory folders.
"""),
        code("""
import torch

import safetygeo.toy  # noqa: F401  (registers the toy: prompt sets and the toy judge)
from safetygeo.reports import CheckpointSelection, Protocol, run_report
from safetygeo.toy.zoo import load_toy_trajectory

torch.set_num_threads(1)
sft = load_toy_trajectory("anchor")        # base -> aligned anchor (refusal SFT)
attack = load_toy_trajectory("attacked")   # anchor -> harmful-SFT attack
print(sft.method, sft.steps)
print(attack.method, attack.steps)

# the toy preset, on a few checkpoints of each run (every one: drop `steps`), without the
# transfer attack (GCG on the source checkpoint is the slowest step on a CPU)
protocol = Protocol.toy(transfer_source=None).replace(
    checkpoints=CheckpointSelection(steps=(25, 75, 150, 300, 5, 15, 30)))
print(protocol.step_names)
"""),
        md("""
## One report over both runs

For every checkpoint: the admissible refusal carrier (selected on val, re-scored on held-out
prompts), the effective rank of the carrier subspace, its drift against the run's first
checkpoint (principal angles), the harmfulness–refusal cosine per layer, the carrier's
ablation against matched random directions, and behaviour on held-out prompts.
"""),
        code("""
report = run_report([sft.path, attack.path], "artifacts/notebook-trajectory-report", protocol)
print(report.counts)
table = report.table     # trajectory, step, layer, position, metric, value, ci_low, ci_high, p, q, ...
table[table.metric.isin(["carrier_layer", "erank"])][
    ["trajectory", "step", "layer", "position", "metric", "value", "ci_low", "ci_high"]]
"""),
        code("""
from safetygeo.reports.trajectory_html import summary_table

summary_table(table)     # the headline numbers per checkpoint (95% CIs in brackets)
"""),
        code("""
from safetygeo.reports import trajectory_figures as tf

tf.carrier_layer_figure(table)
"""),
        code("""
tf.drift_figure(table)
"""),
        code("""
tf.coupling_figure(table)
"""),
        code("""
tf.behavior_steps_figure(table)
"""),
        md("""
## Incremental: a rerun computes nothing

Results are cached per checkpoint *content* and step settings under the output folder, so
running the same report again loads no model; adding checkpoints or changing one step's
settings recomputes only those. The full interactive report is
`artifacts/notebook-trajectory-report/report.html`.
"""),
        code("""
again = run_report([sft.path, attack.path], "artifacts/notebook-trajectory-report", protocol)
again.counts
"""),
        md("""
The attack removes refusal within a few steps, while the task accuracy stays well above
chance. Whether the refusal direction itself rotates away, or stays in place and is simply no
longer read, is what the drift and coupling panels answer for this run.
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
