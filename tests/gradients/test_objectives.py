"""Unlearning objectives: closed-form token weights equal autograd, and validation."""

from __future__ import annotations

import pytest
import torch

from safetygeo.errors import SafetyGeoError
from safetygeo.gradients import UnlearningObjective, objective_sum, token_weights


def _inputs():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(3, 5, generator=g, dtype=torch.float64) * 4
    ref = -torch.rand(3, 5, generator=g, dtype=torch.float64) * 4
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, :2] = False  # prompt positions
    mask[2, 3:] = False  # padding
    return logp * mask, ref * mask, mask


@pytest.mark.parametrize("obj", [UnlearningObjective("ga"), UnlearningObjective("wga", 0.7),
                                 UnlearningObjective("wga", 0.0), UnlearningObjective("npo", 0.4),
                                 UnlearningObjective("tnpo", 2.0)])
def test_token_weights_are_the_autograd_derivative(obj: UnlearningObjective) -> None:
    logp, ref, mask = _inputs()
    x = logp.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective_sum(obj, x, mask, ref), x)
    w = token_weights(obj, logp, mask, ref)
    assert torch.allclose(w.w_logp, grad * mask, atol=1e-12)
    assert torch.allclose(w.w_p, grad * mask * torch.exp(-logp), atol=1e-9)
    assert bool((w.w_logp[~mask] == 0).all())


def test_ga_weight_is_inverse_confidence_and_wga_damps_it() -> None:
    logp, _, mask = _inputs()
    ga = token_weights(UnlearningObjective("ga"), logp, mask)
    p = logp.exp()
    assert torch.allclose(ga.w_p[mask], 1 / p[mask])
    wga = token_weights(UnlearningObjective("wga", 1.0), logp, mask)
    assert torch.allclose(wga.w_p[mask], torch.ones_like(p[mask]))  # p^1 / p


def test_npo_weights_are_per_sequence() -> None:
    logp, ref, mask = _inputs()
    w = token_weights(UnlearningObjective("npo", 1.0), logp, mask, ref).w_logp
    for i in range(3):
        vals = w[i][mask[i]]
        assert torch.allclose(vals, vals[0].expand_as(vals))
        r = float((logp[i] - ref[i])[mask[i]].sum())
        assert float(vals[0]) == pytest.approx(2 * torch.sigmoid(torch.tensor(r)).item())


def test_objective_validation() -> None:
    with pytest.raises(SafetyGeoError, match="unknown unlearning objective 'dpo'"):
        UnlearningObjective("dpo")
    with pytest.raises(SafetyGeoError, match="'ga' has no beta"):
        UnlearningObjective("ga", 0.5)
    with pytest.raises(SafetyGeoError, match="must be > 0"):
        UnlearningObjective("npo", 0.0)
    with pytest.raises(SafetyGeoError, match="must be >= 0"):
        UnlearningObjective("wga", -1.0)
    logp, _, mask = _inputs()
    with pytest.raises(SafetyGeoError, match="needs the reference"):
        objective_sum(UnlearningObjective("tnpo"), logp, mask)
    assert UnlearningObjective("tnpo").label == "tnpo(β=0.1)"
