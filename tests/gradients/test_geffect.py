"""G-effects against explicit dot products of brute-force gradients.

The objectives are re-implemented here from logits (cross_entropy per token, the paper's
formulas); gradients are flattened float64 autograd gradients per group. Tolerance: 1e-4
relative (+1e-9 absolute): float32 forward / backward rounding only.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from safetygeo.gradients import (
    GEffectSeries,
    LossSpec,
    UndefinedGradientError,
    UnlearningObjective,
    ema_smooth,
    g_effect,
    reference_logprobs,
)
from safetygeo.models import load_model
from tests.gradients.conftest import (
    BENIGN_PAIRS,
    HARMFUL_PAIRS,
    brute_grads,
    fresh,
    hf_ce,
    one_batch,
)


def _token_logp(m, batch):
    logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    ce = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels.clamp(min=0), reduction="none")
    return -ce * mask, mask


def brute_objective(name: str, beta: float | None, batch, ref_model=None):
    ref = None
    if ref_model is not None:
        with torch.no_grad():
            ref, _ = _token_logp(ref_model, batch)

    def f(m):
        lp, mask = _token_logp(m, batch)
        n = mask.sum()
        if name == "ga":
            return lp.sum() / n
        if name == "wga":
            return (lp.detach().exp() ** beta * lp).sum() / n
        if name == "npo":
            r = lp.sum(-1) - ref.sum(-1)
            return (-(2 / beta) * F.logsigmoid(-beta * r)).mean()
        r = lp - ref
        return ((-(2 / beta) * F.logsigmoid(-beta * r)) * mask).sum() / n

    return f


def _perturbed(h):
    ref = copy.deepcopy(h.model)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in ref.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return load_model(ref, h.tokenizer)


@pytest.mark.parametrize("name,beta", [("ga", None), ("wga", 0.5), ("npo", 0.5), ("tnpo", 1.0)])
def test_g_effect_equals_explicit_dot_product(name: str, beta: float | None) -> None:
    h = fresh()
    ref = _perturbed(h) if name in ("npo", "tnpo") else None
    forget = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce", batch_size=2)  # 2 micro-batches
    retain = LossSpec.from_data(BENIGN_PAIRS)
    ge = g_effect(h, UnlearningObjective(name, beta), forget, retain, reference=ref, step=7)
    fb = one_batch(h, forget)
    g_obj = brute_grads(h, brute_objective(name, beta, fb, ref.model if ref else None))
    g_f = brute_grads(h, hf_ce(fb))
    g_r = brute_grads(h, hf_ce(one_batch(h, retain)))
    for group in g_obj:
        for risk, g_risk in (("unlearn", g_f), ("retain", g_r)):
            want = float(g_obj[group] @ g_risk[group])
            assert ge.value(risk, group) == pytest.approx(want, rel=1e-4, abs=1e-9), (group, risk)
            row = ge.row(risk, group)
            assert row.norm_risk == pytest.approx(float(g_risk[group].norm()), rel=1e-4)
            assert row.norm_objective == pytest.approx(float(g_obj[group].norm()), rel=1e-4)
    df = ge.to_frame()
    assert set(df.step) == {7} and set(df.risk) == {"unlearn", "retain"}
    assert ge.meta["reference"] == (ref.model_id if ref else None)


def test_ga_unlearning_g_effect_is_minus_squared_norm() -> None:
    h = fresh()
    forget = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    ge = g_effect(h, "ga", forget, LossSpec.from_data(BENIGN_PAIRS))
    for r in ge.rows:
        if r.risk == "unlearn":
            assert r.g_effect == pytest.approx(-r.norm_risk ** 2, rel=1e-5)
            assert r.cosine == pytest.approx(-1.0, abs=1e-6)
    assert ge.value("unlearn") < 0


def test_wga_with_beta_zero_equals_ga() -> None:
    h = fresh()
    forget = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    retain = LossSpec.from_data(BENIGN_PAIRS)
    ga = g_effect(h, "ga", forget, retain).to_frame()
    wga = g_effect(h, UnlearningObjective("wga", 0.0), forget, retain).to_frame()
    assert (ga.g_effect - wga.g_effect).abs().max() == 0.0
    wga1 = g_effect(h, UnlearningObjective("wga", 1.0), forget, retain).to_frame()
    assert (ga.g_effect - wga1.g_effect).abs().max() > 0  # the weight does something


def test_npo_at_its_reference_is_scaled_ga() -> None:
    """At π = π_ref every NPO weight is 2σ(0) = 1: ∇L_npo = (N_tok / N_seq) ∇L_ga."""
    h = fresh()
    forget = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    retain = LossSpec.from_data(BENIGN_PAIRS)
    ga = g_effect(h, "ga", forget, retain)
    npo = g_effect(h, UnlearningObjective("npo", 0.3), forget, retain)  # reference = itself
    _, n_tok, n_seq = forget.batches(h)
    for risk in ("unlearn", "retain"):
        assert npo.value(risk) == pytest.approx(ga.value(risk) * n_tok / n_seq, rel=1e-5)
    assert npo.meta["reference"] == "self"
    # precomputed reference log-probs give the same numbers as the reference handle
    ref = _perturbed(h)
    a = g_effect(h, "npo", forget, retain, reference=ref)
    b = g_effect(h, "npo", forget, retain, reference=reference_logprobs(ref, forget))
    assert a.value("retain") == pytest.approx(b.value("retain"), rel=1e-12)


def test_reference_of_other_records_is_refused() -> None:
    h = fresh()
    forget = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    other = LossSpec.from_data(BENIGN_PAIRS)
    with pytest.raises(Exception, match="other records"):
        g_effect(h, "npo", forget, other, reference=reference_logprobs(h, other))


def test_frozen_group_is_undefined() -> None:
    h = fresh()
    for n, p in h.model.named_parameters():
        if n.startswith("model.layers.1."):
            p.requires_grad_(False)
    ge = g_effect(h, "ga", LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce"),
                  LossSpec.from_data(BENIGN_PAIRS))
    row = ge.row("retain", "block.1")
    assert not row.defined and math.isnan(row.g_effect) and "no trainable" in row.note
    with pytest.raises(UndefinedGradientError, match="block.1"):
        ge.value("retain", "block.1")
    assert math.isfinite(ge.value("retain", "all"))


def test_ema_smoothing_by_hand() -> None:
    assert ema_smooth([2.0, 4.0, 1.0], 0.5) == [2.0, 3.0, 2.0]
    assert ema_smooth([float("nan"), 1.0], 0.4)[1] == 1.0
    assert math.isnan(ema_smooth([float("nan"), 1.0], 0.4)[0])
    with pytest.raises(Exception, match="ema must be in"):
        ema_smooth([1.0], 0.0)
    h = fresh()
    forget = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    retain = LossSpec.from_data(BENIGN_PAIRS)
    r1 = g_effect(h, "ga", forget, retain, step=1)
    with torch.no_grad():
        for p in h.model.parameters():
            p.mul_(0.9)
    r2 = g_effect(h, "ga", forget, retain, step=2)
    s = GEffectSeries.from_results([r2, r1], ema=0.4).to_frame()
    sel = s[(s.risk == "retain") & (s.group == "all")]
    assert sel.step.tolist() == [1, 2]
    x1, x2 = r1.value("retain"), r2.value("retain")
    assert sel.g_effect_ema.tolist() == pytest.approx([x1, 0.6 * x1 + 0.4 * x2], rel=1e-9)
