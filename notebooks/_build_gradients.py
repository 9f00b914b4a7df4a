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
import shutil
import tempfile

import pandas as pd
import torch
from transformers.utils import logging as hf_logging

from safetygeo.gradients import GradientProbe, LossSpec, layer_gradient_cosines, per_token_weights
from safetygeo.reports import (
    g_effect_figure,
    g_effect_steps_figure,
    gradient_cosine_figure,
    token_weights_figure,
)
from safetygeo.toy.world import ToyWorld
from safetygeo.toy.zoo import load_toy, load_toy_trajectory

torch.set_num_threads(1)  # the toy model is tiny: one thread is as fast, and robust on a busy machine
hf_logging.disable_progress_bar()
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
overall = along.cosines[along.cosines.group == "all"].set_index("step").cosine
for s in (blocks.step.min(), blocks.step.max()):
    b = blocks[blocks.step == s].set_index("group").cosine
    print(f"step {s:3d}: most opposed block {b.idxmin()} ({b.min():+.3f}), most aligned "
          f"{b.idxmax()} ({b.max():+.3f}), all parameters {overall[s]:+.3f}")
"""),
        md("""
## 3. G-effects of GA vs NPO unlearning of the harmful compliance

Two unlearning runs from the anchor (`unlearn` method: same forget data — every harmful
train request with its compliant how-to —, AdamW, learning rate, batch and 60 steps), each
with a `GradientGeometryCallback` measuring its own objective's G-effects every 10 steps on a
forget probe (harmful compliance) and a retain probe (benign answers, never trained on by
these runs). NPO's reference is the anchor. G-effects of different objectives have different
scales (NPO normalises per example, GA per token), so next to the raw values compare their
course, and the NLLs the runs actually reach.
"""),
        code("""
from safetygeo.training import (
    GradientGeometryCallback,
    TrainConfig,
    Trajectory,
    get_method,
    read_gradient_geometry,
    train,
)

forget_train = [(p.text, p.compliant) for p in world.prompts("harmful", "train")]
config = TrainConfig(lr=1e-4, max_steps=60, batch_size=16, save_every=20, warmup_steps=0,
                     max_length=64, lr_scheduler="constant", seed=0)
runs, series = {}, {}
for objective in ("ga", "npo"):
    handle = load_toy("anchor")  # each run starts from the anchor (train() trains in place)
    cb = GradientGeometryCallback(GradientProbe(objectives=(objective,), forget=harm_ce,
                                                retain=benign_ce), every=10)
    runs[objective] = train(handle, get_method("unlearn", objective=objective),
                            {"forget": forget_train}, config=config, callbacks=[cb],
                            out=tempfile.mkdtemp(prefix=f"unlearn-{objective}-"), progress=False)
    series[objective] = read_gradient_geometry(runs[objective], ema=0.4).g_effect
ge = pd.concat(series.values(), ignore_index=True)
overall = ge[ge.group == "all"].pivot_table(index="step", columns=["objective", "risk"],
                                            values=["g_effect", "risk_nll"])
print(overall.round(3).to_string())
g_effect_steps_figure(ge)
"""),
        code("""
nll = ge[ge.group == "all"].groupby(["objective", "risk"]).risk_nll.agg(["first", "last"]).unstack()
rise = nll["last"] - nll["first"]
outcome = pd.DataFrame({"forget NLL rise": rise["unlearn"], "retain NLL rise": rise["retain"],
                        "retain rise per forget rise": rise["retain"] / rise["unlearn"]})
print(outcome.round(3).to_string())
late = ge[(ge.group == "all") & (ge.risk == "retain") & (ge.step >= 30)]
print("mean retaining G-effect from step 30 on:",
      late.groupby("objective").g_effect.mean().round(3).to_dict())
"""),
        md("""
## 4. Which layers are damaged: retaining G-effect per layer

Each objective's per-layer retaining G-effect at step 20, as a share of its whole-model value
(scale-free), and the per-layer figure.
"""),
        code("""
at = ge[ge.step == 20]
ret = at[at.risk == "retain"].pivot(index="group", columns="objective", values="g_effect")
share = (ret.drop("all") / ret.loc["all"]).loc[[g for g in frame.group if g != "all"]]
print(share.round(3).to_string())
g_effect_figure(at, title="G-effect per layer at step 20")
"""),
        md("""
## 5. The per-token view: GA's inverse-confidence weight

Per forget token, the weight each objective puts on `∇p` (GA: `1/p`), at the anchor and at
step 20 of each run (NPO against its reference, the anchor). Tokens the model finds unlikely
get the largest GA push; NPO's weights `2σ(β log π/π_ref)` shrink as the run lowers `π`.
"""),
        code("""
few = LossSpec.from_data(harmful[:4], "harmful_ce", max_length=64)
at_anchor = per_token_weights(anchor, ["ga", "wga"], few).to_frame().assign(model="anchor")
ga20 = per_token_weights(Trajectory.load(runs["ga"].path).load_checkpoint(20), "ga", few)
npo20 = per_token_weights(Trajectory.load(runs["npo"].path).load_checkpoint(20), "npo", few,
                          reference=anchor)
tokens = pd.concat([at_anchor, ga20.to_frame().assign(model="GA step 20"),
                    npo20.to_frame().assign(model="NPO step 20")], ignore_index=True)
print(tokens.groupby(["model", "objective"]).agg(
    mean_w_p=("w_p", "mean"), max_w_p=("w_p", "max"),
    share_w_p_on_p_below_0_1=("w_p", lambda w: w[tokens.loc[w.index, "p"] < 0.1].sum() / w.sum()),
    tokens_p_below_0_1=("p", lambda p: (p < 0.1).mean())).round(3).to_string())
token_weights_figure(tokens.assign(objective=tokens.model + ": " + tokens.objective))
"""),
        md("""
## Reading (seed 0; the cells above print every number quoted)

*Which layers carry the conflict.* In the toy world the harmful-compliance and the benign
gradients are nearly orthogonal in every block and in the tied embedding (|cos| ≤ 0.06 at
every checkpoint; +0.02 over all parameters). The one group where they conflict is `head` —
with tied embeddings, the final RMSNorm's 128 gains: +0.94 in the helpful-only base (making
compliance likelier made benign answers likelier too) and −0.43 from step 150 of refusal SFT
on. Refusal SFT builds an opposition, but only there; the global cosine a SEAM-style
objective would read (+0.02) does not show it. (At the anchor the harmful gradient is ~50×
the benign one: benign answers are already fitted.)

*Does NPO damage retain less than GA?* By the G-effect, yes, after the first steps. At the
anchor NPO is GA rescaled; then GA's retaining G-effect grows to −118 at step 30 and stays
large (mean −76 from step 30 on) while NPO's fades to −2 and then ~0 (mean −0.5), as its
weights `2σ(β log π/π_ref)` collapse — section 5 shows the mechanism: at the anchor the 4% of
forget tokens with p < 0.1 carry 99.7% of GA's weight on `∇p` (up to 1/p ≈ 10⁴), and by step
20 GA's mean weight is 10× NPO's. In outcomes after 60 AdamW steps NPO did damage less
(retain NLL +5.1 nats vs +9.3 for GA, which collapses) but also unlearned less (forget NLL
+7.8 vs +14.5): per unit of unlearning the damage is the same (0.66 vs 0.65), and NPO's retain
NLL keeps rising after its gradients vanish (3.6 → 5.1 from step 40 to 60) — optimizer
momentum, which a gradient inner product cannot see. For both objectives ~98% of the
retaining G-effect sits in the tied embedding and block 0: the shallow-layer damage the
G-effect study reports. One seed, one learning rate, a toy world: a reading, not a result.
"""),
        code("""
for run in runs.values():  # the unlearning runs were only needed for this notebook
    shutil.rmtree(run.path, ignore_errors=True)
print("removed", [run.path.name for run in runs.values()])
"""),
    ]
    return nb


NAME = "03_gradient_geometry.ipynb"
build = gradients


if __name__ == "__main__":
    nbf.write(build(), HERE / NAME)
