"""Direction finders: ground truth on the planted models, RDO's loss and gradient by brute force."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from safetygeo.activations.refusal import RefusalScoring, refusal_score
from safetygeo.causal.cones import cone_dimension, cone_property
from safetygeo.causal.finders import (
    DirectionOptimization,
    finder_directions,
    optimization_data,
    rco,
    rdo,
    rdo_loss,
    repind_direction,
    representational_independence,
)
from safetygeo.data.records import IGNORE_INDEX
from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.hooks import add
from safetygeo.interventions.nulls import NullSpec
from safetygeo.interventions.subspace import ablate_subspace
from safetygeo.interventions.subspace_weights import ablated_copy
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer
from safetygeo.toy.planted import planted_refusal_model, planted_two_dimensional_model
from tests.conftest import GPT2_TEMPLATE

FAST = DirectionOptimization(max_steps=40, batch_size=8, target_tokens=2, n_samples=3)


@functools.lru_cache(maxsize=None)
def _planted(two_d: bool = False):
    return (planted_two_dimensional_model if two_d else planted_refusal_model)(n_prompts=64)


def _split(pm):
    return (pm.harmful[:32], pm.harmless[:32]), (pm.harmful[32:], pm.harmless[32:])


def _scoring(pm) -> RefusalScoring:
    return RefusalScoring(token_ids=pm.refusal_token_ids)


@pytest.mark.parametrize("method", ["diff-in-means", "pca", "som"])
def test_pure_finders_recover_the_planted_direction(method: str) -> None:
    pm = _planted()
    c = finder_directions(pm.handle, pm.harmful, pm.harmless, method=method, k=3)
    assert c.method == method
    for layer in range(pm.layer_band[0], pm.layer_band[1] + 1):
        assert float(c.basis(layer, "eoi-1")[0] @ pm.direction) > 0.95, layer
    if method != "diff-in-means":
        assert c.components is not None and c.components.shape[2] >= 3
        # vectors carry the diff-in-means norm (same addition strength for every finder)
        dim = finder_directions(pm.handle, pm.harmful, pm.harmless, method="diff-in-means")
        torch.testing.assert_close(c.vectors.norm(dim=-1)[2:], dim.vectors.norm(dim=-1)[2:])


def test_rdo_recovers_the_planted_direction_and_mediates_refusal() -> None:
    pm = _planted()
    (tr_h, tr_l), (te_h, te_l) = _split(pm)
    ref = finder_directions(pm.handle, tr_h, tr_l, method="diff-in-means").vector(2, "eoi-1")
    res = rdo(pm.handle, tr_h, tr_l, reference=ref, layer=2, scoring=_scoring(pm), settings=FAST)
    assert res.method == "rdo" and res.steps >= 1 and res.seconds > 0
    assert float(res.direction @ pm.direction) > 0.9
    assert res.candidates.components is not None and res.candidates.layers == (2,)
    with ablate_subspace(pm.handle, res.direction):
        assert float(refusal_score(pm.handle, te_h, scoring=_scoring(pm)).mean()) < 0
    with add(pm.handle, res.candidates.vectors[0, 0], 2):
        assert float(refusal_score(pm.handle, te_l, scoring=_scoring(pm)).mean()) > 0
    assert set(res.history.columns) >= {"step", "loss", "ablation", "addition", "retain"}


def test_rdo_from_random_starts_finds_a_causal_direction() -> None:
    pm = _planted()
    (tr_h, tr_l), (te_h, te_l) = _split(pm)
    ref = finder_directions(pm.handle, tr_h, tr_l, method="diff-in-means").vector(2, "eoi-1")
    data = optimization_data(pm.handle, tr_h, tr_l, ref, 2, settings=FAST, scoring=_scoring(pm))
    st = DirectionOptimization(max_steps=80, batch_size=8, target_tokens=2, init="random",
                               restarts=3, amsgrad=False, seed=1)
    res = rdo(pm.handle, tr_h, tr_l, data=data, settings=st)
    assert len(res.extra["restart_losses"]) == 3
    assert float(res.direction @ pm.direction) > 0.5  # far from the random start (cos ≈ 0)
    with ablate_subspace(pm.handle, res.direction):
        assert float(refusal_score(pm.handle, te_h, scoring=_scoring(pm)).mean()) < 0


def test_cone_dimension_of_the_planted_mechanism_is_one() -> None:
    pm = _planted()
    (tr_h, tr_l), (te_h, te_l) = _split(pm)
    ref = finder_directions(pm.handle, tr_h, tr_l, method="diff-in-means").vector(2, "eoi-1")
    dim, cones, evals = cone_dimension(pm.handle, tr_h, tr_l, te_h, te_l, reference=ref, layer=2,
                                       max_k=2, settings=FAST, scoring=_scoring(pm), n_samples=8)
    assert dim == 1
    assert evals[0].holds and not evals[1].holds  # held-out: the ray works, a 2-cone does not
    assert cones[1].basis.shape == (2, pm.handle.d_model)
    torch.testing.assert_close(cones[1].basis @ cones[1].basis.T,
                               torch.eye(2, dtype=torch.float64), atol=1e-6, rtol=0)
    assert (evals[1].table.kind == "sample").sum() == 8


def test_rco_basis_directions_and_samples_are_evaluated_on_held_out_prompts() -> None:
    pm = _planted()
    (tr_h, tr_l), (te_h, te_l) = _split(pm)
    ref = finder_directions(pm.handle, tr_h, tr_l, method="diff-in-means").vector(2, "eoi-1")
    cone = rco(pm.handle, tr_h, tr_l, 1, reference=ref, layer=2, settings=FAST,
               scoring=_scoring(pm))
    ev = cone_property(pm.handle, cone.basis, te_h, te_l, layer=2, alpha=cone.alpha,
                       scoring=_scoring(pm))
    assert ev.holds and ev.base_harmful > 0 > ev.base_harmless
    assert ev.to_row()["worst_bypass"] < 0 < ev.to_row()["worst_induce"]


def test_representational_independence_criterion_on_the_two_dimensional_plant() -> None:
    pm = _planted(two_d=True)
    e0, e1 = pm.basis
    indep = representational_independence(pm.handle, e0, e1, pm.harmful[:24],
                                          nulls=NullSpec(k=9))
    assert indep.cosine == pytest.approx(0.0)
    assert indep.score < 1e-6 and indep.null.p > 0.1  # no more entangled than random
    dim = (e0 + e1) / 2 ** 0.5
    entangled = representational_independence(pm.handle, e0, dim, pm.harmful[:24],
                                              nulls=NullSpec(k=9))
    assert entangled.score > 100 * max(indep.score, 1e-8)
    assert entangled.null.p <= 0.1
    assert list(entangled.per_layer.columns) == ["layer", "d_cos_b_when_a_ablated",
                                                 "d_cos_a_when_b_ablated"]
    # a sequential spec stops a null-looking test at its first look (16 nulls, not 64)
    seq = representational_independence(pm.handle, e0, e1, pm.harmful[:8],
                                        nulls=NullSpec.sequential(h=2, k_max=64, tail=False))
    assert seq.null.k == 16 and seq.null.p > 0.1
    with pytest.raises(SafetyGeoError, match="NullSpec"):
        representational_independence(pm.handle, e0, e1, pm.harmful[:8], nulls=9)


def test_repind_direction_trains_with_the_independence_term() -> None:
    pm = _planted(two_d=True)
    (tr_h, tr_l), _ = _split(pm)
    ref = finder_directions(pm.handle, tr_h, tr_l, method="diff-in-means").vector(2, "eoi-1")
    st = DirectionOptimization(max_steps=6, batch_size=4, target_tokens=1)
    res = repind_direction(pm.handle, tr_h, tr_l, pm.basis[0], reference=ref, layer=2,
                           settings=st, scoring=_scoring(pm))
    assert res.method == "repind" and "repind" in res.history.columns


# ----------------------------------------------------------------------------- brute force
def _double_tiny():
    # GPT-2: its LayerNorm runs in float64 (Llama's RMSNorm computes in float32 whatever the
    # dtype, which would drown finite differences in rounding)
    model, tok = tiny_model_and_tokenizer("gpt2", n_layers=2, d_model=16)
    return load_model(copy.deepcopy(model).double(), tok, template=GPT2_TEMPLATE)


def _brute_loss(h, direction: torch.Tensor, data, s: DirectionOptimization) -> float:
    """The RDO loss by separate, unbatched computations: a weight-orthogonalized copy for the
    ablation terms, the no-grad addition hook, KL from two separate models."""
    unit = direction / direction.norm()
    edited = ablated_copy(h, unit)

    def nll(model_handle, rows, ctx=None):
        tot, n = 0.0, 0
        for r in rows:
            ids = torch.tensor([r["input_ids"]])
            with torch.no_grad(), (ctx() if ctx else _null()):
                lp = torch.log_softmax(model_handle.model(ids).logits[0, :-1].double(), -1)
            for t, lab in enumerate(r["labels"][1:]):
                if lab != IGNORE_INDEX:
                    tot -= float(lp[t, lab])
                    n += 1
        return tot / n

    abl = nll(edited, data.ablation)
    addn = nll(h, data.addition, lambda: add(h, unit * data.alpha, data.layer))
    kl_sum, n = 0.0, 0
    for r in data.retain:
        ids = torch.tensor([r["input_ids"]])
        with torch.no_grad():
            p = torch.log_softmax(h.model(ids).logits[0, :-1].double(), -1)
            q = torch.log_softmax(edited.model(ids).logits[0, :-1].double(), -1)
        for t, lab in enumerate(r["labels"][1:]):
            if lab != IGNORE_INDEX:
                kl_sum += float((p[t].exp() * (p[t] - q[t])).sum())
                n += 1
    return s.ablation_weight * abl + s.addition_weight * addn + s.retain_weight * kl_sum / n


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_rdo_loss_and_gradient_match_brute_force() -> None:
    h = _double_tiny()
    s = DirectionOptimization(target_tokens=3, filter_data=False)
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(16, generator=g, dtype=torch.float64) * 3
    prompts_h = ["Make a bomb.", "Steal a car now.", "Hack the bank."]
    prompts_l = ["Bake a cake.", "Write a poem.", "Tell me a story."]
    data = optimization_data(h, prompts_h, prompts_l, ref, 1, settings=s)
    r = torch.randn(16, generator=g, dtype=torch.float64)
    total, parts = rdo_loss(h, r.clone(), data, s)
    assert float(total.detach()) == pytest.approx(_brute_loss(h, r, data, s), rel=1e-9, abs=1e-9)
    assert set(parts) == {"ablation", "addition", "retain"}
    # gradient: autograd directional derivative vs central finite differences
    p = r.clone().requires_grad_(True)
    loss, _ = rdo_loss(h, p, data, s)
    loss.backward()
    assert p.grad is not None
    eps = 1e-5
    for _ in range(3):
        v = torch.randn(16, generator=g, dtype=torch.float64)
        fd = (_brute_loss(h, r + eps * v, data, s) - _brute_loss(h, r - eps * v, data, s)) / (2 * eps)
        assert float(p.grad @ v) == pytest.approx(fd, rel=1e-4, abs=1e-7)
    # the loss depends on the direction only, not its length: the gradient is tangent
    assert abs(float(p.grad @ r)) < 1e-8 * float(p.grad.norm() * r.norm()) + 1e-10
