"""Notebook 05: refusal subspaces and cones, against matched random subspaces (issue 19).

Discovered by ``notebooks/_build.py`` (``python notebooks/_build.py`` regenerates it).
"""

from __future__ import annotations

import nbformat as nbf

NAME = "05_refusal_subspaces.ipynb"


def md(text: str):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text: str):
    return nbf.v4.new_code_cell(text.strip())


def build() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.cells = [
        md("""
# Beyond one direction: how many dimensions does refusal need?

The seed studies describe refusal by one diff-in-means direction. Here every claim about
dimension is made the way abliteration users see it — **refused generations of held-out
harmful prompts vs first-token KL on held-out harmless prompts** — and every point sits next
to **random subspaces of the same dimension** (grey). First on two planted models whose
answer we know, then on the CPU-trained toy world.
"""),
        code("""
import torch

from safetygeo.behavior.generate import GenerationSettings
from safetygeo.causal.frontier import min_refusal_dimension
from safetygeo.interventions.nulls import NullSpec
from safetygeo.toy.planted import planted_refusal_model, planted_two_dimensional_model

torch.set_num_threads(1)   # tiny models: one thread is fastest on a busy CPU
one_token = GenerationSettings(max_new_tokens=1)   # the planted models decide with token 1
first = lambda c: "full_refusal" if c.strip() in ("I", "S") else "compliance"
nulls = NullSpec(k=19, max_variants=20)            # p floor 1/20

for build in (planted_refusal_model, planted_two_dimensional_model):
    pm = build(n_prompts=64)
    res = min_refusal_dimension(pm.handle, pm.harmful[32:], pm.harmless[32:],
                                fit_harmful=pm.harmful[:32], fit_harmless=pm.harmless[:32],
                                layer=2, k_max=3, nulls=nulls, settings=one_token,
                                classifier=first, n_boot=200, stop_at_target=False)
    print(f"{build.__name__}: refusal needs k = {res.k_min} dimension(s)")
    print(res.table()[["edit", "k", "refusals", "null_refusals_mean", "p_refusals", "kl"]]
          .to_string(index=False))
"""),
        md("""
The one-dimensional plant needs one dimension. The two-dimensional plant (two trigger groups,
each carried by its own direction and read by its own refusal token) keeps refusing when its
diff-in-means direction is ablated (`k = 1`), and stops only when the span of both planted
directions is removed; random 2-d subspaces leave every refusal in place.

## The toy world: carrier, finders, frontier

The aligned anchor (refusal SFT on CPU). Directions are fitted on the world's *train* split at
the admissible carrier's layer and position; everything below is measured on the held-out
*test* split.
"""),
        code("""
from safetygeo.causal import select_refusal_carrier
from safetygeo.causal.finders import DirectionOptimization, finder_directions, rdo
from safetygeo.toy.geometry import carrier_or_best
from safetygeo.toy.zoo import load_anchor, toy_splits

anchor, splits = load_anchor(), toy_splits()
train_h, train_l = splits["harmful"]["train"], splits["harmless"]["train"]
test_h, test_l = splits["harmful"]["test"], splits["harmless"]["test"]
sel = select_refusal_carrier(anchor, splits["harmful"], splits["harmless"], progress=False)
layer, pos, admissible = carrier_or_best(sel)
bases = {"diff-in-means": sel.direction[None]}
for method in ("pca", "som"):
    bases[method] = finder_directions(anchor, train_h, train_l, method=method, k=2,
                                      layers=[layer]).basis(layer, pos)
opt = rdo(anchor, train_h, train_l, reference=sel.vector, layer=layer,
          settings=DirectionOptimization(max_steps=15))
bases["rdo"] = opt.basis
print(f"carrier: layer {layer}, {pos} (admissible: {admissible})")
print(f"RDO: {opt.steps} steps in {opt.seconds:.1f} s; cos with diff-in-means "
      f"{float(opt.direction @ sel.direction):.3f}")
{name: tuple(b.shape) for name, b in bases.items()}
"""),
        code("""
from safetygeo.activations import extract_activations
from safetygeo.causal.frontier import refusal_frontier
from safetygeo.reports import frontier_figure

gen = GenerationSettings(max_new_tokens=8)
small = NullSpec(k=8, max_variants=9)   # a notebook-sized null set (p floor 1/9)
table = refusal_frontier(anchor, bases, test_h, test_l, ks=(1, 2), nulls=small,
                         settings=gen, n_boot=200)
means = extract_activations(anchor, train_l, positions="last", progress=False).mean[:, 0]
modes = refusal_frontier(anchor, {"diff-in-means": bases["diff-in-means"]}, test_h, test_l,
                         modes=("biprojected",), harmless_means=means, nulls=small,
                         settings=gen, n_boot=200)
cols = ["edit", "mode", "k", "refusals", "refusals_ci_low", "refusals_ci_high", "kl",
        "null_refusals_mean", "null_kl_mean", "p_refusals", "pareto"]
print(table[cols].round(4).to_string(index=False))
print(modes[cols].round(4).to_string(index=False))
"""),
        code("""
import pandas as pd

frontier_figure(pd.concat([table, modes.assign(edit="diff-in-means (" + modes["mode"] + ")")]),
                title=f"toy anchor: refusals of {len(test_h)} held-out harmful prompts vs first-token KL")
"""),
        md("""
## How many dimensions, per checkpoint

`min_refusal_dimension` ablates the diff-in-means direction, then the span of it and the
next principal directions of paired differences, until held-out refusals fall to 10% with
`p ≤ 0.05` against random subspaces of the same dimension. This is the function a trajectory
report calls per checkpoint; `safetygeo.toy.geometry.zoo_geometry` makes the zoo's table of it
(with the carrier's effective rank); R2D2 is included when it has been built
(`ensure_toy(("r2d2",))`, a few minutes).
"""),
        code("""
from safetygeo.reports import refusal_dimension_figure
from safetygeo.toy.geometry import stage_geometry
from safetygeo.toy.train import read_marker
from safetygeo.toy.zoo import cache_root, load_toy

dim = min_refusal_dimension(anchor, test_h, test_l, fit_harmful=train_h, fit_harmless=train_l,
                            layer=layer, position=pos, k_max=2, nulls=nulls, settings=gen,
                            n_boot=200)
rows, tables = [{"stage": "anchor", **dim.to_row()}], {"anchor": dim.table()}
if read_marker(cache_root() / "r2d2-s0") is not None:   # built: ensure_toy(("r2d2",))
    row, r2d2 = stage_geometry(load_toy("r2d2"), splits, stage="r2d2", k_max=2, nulls=nulls,
                               settings=gen, n_boot=200)
    rows.append(row)
    tables["r2d2"] = r2d2.table()
else:
    print("r2d2 is not built in this cache; its numbers are in benchmarks/RESULTS.md")
print(pd.DataFrame(rows)[["stage", "k_min", "rate_k1", "null_rate_k1", "kl_k1", "rate_at_k_min",
                          "kl_at_k_min"]].round(3).to_string(index=False))
refusal_dimension_figure(tables)
"""),
        md("""
## Reading

* **Ground truth.** Both plants come out as built: one dimension for the one-dimensional
  plant, two for the two-dimensional one, where the diff-in-means direction alone fails and
  random 2-d subspaces do nothing.
* **The toy anchor is not one-dimensional in what it generates.** Its admissible
  diff-in-means carrier is causal at the logit level, yet ablating it leaves most held-out
  harmful prompts refused; no single PCA, SOM or RDO direction does much better, while random
  directions leave every refusal. The span of the first two PCA directions removes most
  refusals, but at a first-token KL about 70× the single direction's; a trained two-dimensional
  RCO subspace (in `benchmarks/RESULTS.md`, too slow for a notebook) does it at a KL below the
  single direction's, and biprojecting the diff-in-means direction against each layer's
  harmless mean does it with one (layer-dependent) direction. `k_min = 2` for the anchor and
  for R2D2; what adversarial training changes on this toy world is the price (KL) of every
  edit and the admissibility of the carrier, not the number of dimensions.
* **Effective rank is not the same question.** The carrier's effective rank (≈ 1.9 here)
  measures how many directions the diff-in-means vectors of the post-instruction positions
  span; `k_min` measures how many must be *removed* to stop refusing — they need not agree.
"""),
    ]
    return nb
