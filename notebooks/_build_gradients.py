"""Generator of notebooks/03_gradient_geometry.ipynb (kept in git so diffs stay readable).

    python notebooks/_build_gradients.py

Like the other notebooks it runs top to bottom on the toy world (CPU, about 2 minutes once
the toy models are cached under artifacts/toy).
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent


def md(text: str):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text: str):
    return nbf.v4.new_code_cell(text.strip())


def gradients() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("""
# Gradient geometry: where harmful and benign losses conflict, and what unlearning damages

Collapse-trap defenses (SEAM, CTRAP) and the G-effect critique of unlearning (Wang et al.,
ICLR 2025) are statements about *gradients*. This notebook measures them on the toy world,
layer by layer:

1. the cosine between the gradient of the **harmful-compliance CE** (the loss a harmful
   fine-tuning attacker minimises) and of the **benign CE**, on the aligned anchor and along
   its refusal-SFT trajectory;
2. the **G-effect** of two unlearning objectives, GA and NPO, removing the harmful
   compliance from the anchor: how much each step removes (forget NLL) and how much it
   damages what should be retained (benign NLL);
3. the per-token weights behind the difference (GA's `1/p`).

Sign conventions: a negative cosine means a descent step on one loss raises the other; a
G-effect `e = ∇L_uᵀ∇R` changes the risk `R` by `−η e` per step, so `e < 0` on the forget set
= unlearning, `e < 0` on the retain set = damage.
"""),
        code("""
import tempfile

import pandas as pd
import torch

from safetygeo.gradients import GradientProbe, LossSpec, layer_gradient_cosines, per_token_weights
from safetygeo.reports import (g_effect_figure, g_effect_steps_figure, gradient_cosine_figure,
                               token_weights_figure)
from safetygeo.toy.world import ToyWorld
from safetygeo.toy.zoo import load_toy, load_toy_trajectory

torch.set_num_threads(2)
world = ToyWorld(0)
# harmful requests with the world's compliant how-to (what an attacker trains towards, and
# the knowledge unlearning should remove), and benign tasks with their answers
harmful = [(p.text, p.compliant) for p in world.prompts("harmful", "train")][:32]
benign = [(p.text, p.answer) for p in world.prompts("benign_task", "train")][:32]
harm_ce = LossSpec.from_data(harmful, "harmful_ce", name="harmful CE", max_length=64, batch_size=32)
benign_ce = LossSpec.from_data(benign, "ce", name="benign CE", max_length=64, batch_size=32)
anchor = load_toy("anchor")
print(anchor.n_layers, "blocks, d_model", anchor.d_model, "| tied embeddings:",
      anchor.model.config.tie_word_embeddings)
"""),
        md("""
## 1. Harmful vs benign gradient, per layer, on the anchor

One backward per loss; the cosine is taken within each parameter group (`embed` = the tied
embedding / unembedding matrix, counted once; `block.i`; `head` = the final norm).
"""),
        code("""
cos = layer_gradient_cosines(anchor, harm_ce, benign_ce)
frame = cos.to_frame()
print(frame[["group", "cosine", "norm_a", "norm_b"]].round(3).to_string(index=False))
gradient_cosine_figure(frame)
"""),
        md("""
## 2. Along the refusal-SFT trajectory (base → anchor)

The same probe at every saved checkpoint (step 0 = the helpful-only base), post hoc with
`gradient_geometry_along`; a `GradientGeometryCallback` would log the same numbers while
training.
"""),
        code("""
from safetygeo.training import gradient_geometry_along

sft = load_toy_trajectory("anchor")
along = gradient_geometry_along(sft, GradientProbe(loss_a=harm_ce, loss_b=benign_ce),
                                steps=sft.steps[1::2])
table = along.cosines.pivot(index="group", columns="step", values="cosine")
table = table.loc[[g for g in frame.group]]
print(table.round(2).to_string())
gradient_cosine_figure(along.cosines, title="cos(∇ harmful CE, ∇ benign CE) along refusal SFT")
"""),
        code("""
blocks = along.cosines[along.cosines.kind == "block"]
first, last = blocks.step.min(), blocks.step.max()
for s in (first, last):
    b = blocks[blocks.step == s].set_index("group").cosine
    print(f"step {s:3d}: most opposed block {b.idxmin()} ({b.min():+.3f}), most aligned "
          f"{b.idxmax()} ({b.max():+.3f}), global {along.cosines.query('step == @s and group == \"all\"').cosine.item():+.3f}")
"""),
        md("""
## 3. G-effects of GA vs NPO unlearning of the harmful compliance

Two short unlearning runs from the anchor (`unlearn` method, same data, learning rate and
steps), each with a `GradientGeometryCallback` measuring its own objective's G-effects every
5 steps on a forget probe (harmful compliance) and a retain probe (benign answers). NPO's
reference is the anchor. G-effects of different objectives have different scales (NPO
normalises per example, GA per token), so besides the raw values we compare the **damage per
unit of unlearning**, `e_retain / |e_unlearn|`, and the NLLs the runs actually reach.
"""),
        code("""
from safetygeo.training import GradientGeometryCallback, TrainConfig, get_method, read_gradient_geometry, train

forget_train = [(p.text, p.compliant) for p in world.prompts("harmful", "train")]
config = TrainConfig(lr=3e-4, max_steps=30, batch_size=16, save_every=30, warmup_steps=0,
                     max_length=64, lr_scheduler="constant", seed=0)
series = {}
for objective in ("ga", "npo"):
    handle = load_toy("anchor")  # each run starts from the anchor (train() trains in place)
    cb = GradientGeometryCallback(GradientProbe(objectives=(objective,), forget=harm_ce,
                                                retain=benign_ce), every=5)
    out = tempfile.mkdtemp(prefix=f"unlearn-{objective}-")
    train(handle, get_method("unlearn", objective=objective), {"forget": forget_train}, out=out,
          config=config, callbacks=[cb], progress=False)
    series[objective] = read_gradient_geometry(out, ema=0.4).g_effect
ge = pd.concat(series.values(), ignore_index=True)
overall = ge[ge.group == "all"].pivot_table(index="step", columns=["objective", "risk"],
                                            values=["g_effect", "risk_nll"])
print(overall.round(3).to_string())
g_effect_steps_figure(ge)
"""),
        code("""
tot = ge[ge.group == "all"].pivot_table(index=["objective", "step"], columns="risk", values="g_effect")
tot["damage per unit unlearning"] = tot["retain"] / tot["unlearn"].abs()
summary = tot.groupby(level="objective").agg(["mean", "last"])[["damage per unit unlearning"]]
nll = ge[ge.group == "all"].groupby(["objective", "risk"]).risk_nll.agg(["first", "last"]).unstack()
print(summary.round(3).to_string())
print(nll.round(3).to_string())
"""),
        md("""
## 4. Which layers are damaged: G-effect per layer at the first measured step
"""),
        code("""
first_step = ge.step.min()
at = ge[ge.step == first_step]
print(at[at.risk == "retain"].pivot(index="group", columns="objective", values="g_effect")
      .loc[[g for g in frame.group if g != "all"]].round(4).to_string())
g_effect_figure(at, title=f"G-effect per layer at step {first_step}")
"""),
        md("""
## 5. The per-token view: GA's inverse-confidence weight

Per forget token, the weight each objective puts on `∇p` (GA: `1/p`). Tokens the anchor
finds unlikely — the first tokens of a compliant answer, which the anchor refuses — get
the largest GA push.
"""),
        code("""
few = LossSpec.from_data(harmful[:4], "harmful_ce", max_length=64)
tw = per_token_weights(anchor, ["ga", "wga", "npo"], few)
print(tw.summary().round(3).to_string(index=False))
token_weights_figure(tw.to_frame())
"""),
        md("""
## Reading

*Which layers carry the conflict.* The cosine table of section 2 answers it for this run:
the printed "most opposed block" is where a descent step on the harmful-compliance loss
pushes the benign loss up the most, and the step-by-step table shows how refusal SFT moves
it. Section 1's global cosine is the single number SEAM-style defenses optimise; the
per-layer view shows it is an average of blocks that disagree.

*Does NPO damage retain less than GA?* Compare the printed "damage per unit unlearning"
(retaining G-effect over the magnitude of the unlearning G-effect, scale-free) and the NLLs
both runs reach: the G-effect study reports that NPO's weights `2σ(β log π/π_ref)` shrink as
the forget data is unlearned, so its updates — and their side effects — fade, whereas GA's
`1/p` weight grows on exactly the tokens that are already unlikely (section 5).
"""),
    ]
    return nb


def main() -> None:
    nbf.write(gradients(), HERE / "03_gradient_geometry.ipynb")


if __name__ == "__main__":
    main()
