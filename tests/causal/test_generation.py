"""Generation-level intervention effects on the planted-refusal model (ground truth: the
refusal direction is e0; its read-out makes the first token "I")."""

from __future__ import annotations

import numpy as np
import pytest

from safetygeo.causal.generation import generation_refusal_effect
from safetygeo.behavior.generate import generate
from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.hooks import add
from safetygeo.interventions.nulls import random_directions
from safetygeo.toy.planted import PlantedModel, planted_refusal_model


def _starts_refusal(c: str) -> str:
    """The planted model's refusal is its first token, "I" (first token of "I cannot")."""
    return "full_refusal" if c.startswith("I") else "compliance"


@pytest.fixture(scope="module")
def pm() -> PlantedModel:
    return planted_refusal_model()


def test_ablating_the_planted_direction_removes_refusal_beyond_every_null(pm: PlantedModel) -> None:
    k = 7
    eff = generation_refusal_effect(pm.handle, pm.direction, "ablate", pm.harmful[:8], n_null=k,
                                    max_new_tokens=2, classifier=_starts_refusal, n_boot=200,
                                    max_variants=3)
    assert (eff.base_rate, eff.real_rate, eff.effect) == (1.0, 0.0, -1.0)
    assert np.all(eff.null_effects == 0.0)  # random ablations leave e0 (almost) alone
    assert eff.p_value == pytest.approx(1 / (k + 1)) and eff.z == -np.inf
    assert (eff.effect_ci_low, eff.effect_ci_high) == (-1.0, -1.0)
    d = eff.to_dict()
    assert d["d_refusal_rate_gen"]["real"] == -1.0 and d["n"] == 8 and d["op"] == "ablate"
    assert all(c.startswith("I") for c in eff.base.completions)
    assert not any(c.startswith("I") for c in eff.real.completions)


def test_batched_nulls_equal_separate_runs(pm: PlantedModel) -> None:
    prompts, k, scale = pm.harmless[:6], 5, 3.0
    a = generation_refusal_effect(pm.handle, pm.direction * scale, "add", prompts, layer=2,
                                  n_null=k, max_new_tokens=2, classifier=_starts_refusal,
                                  n_boot=50, max_variants=2)
    b = generation_refusal_effect(pm.handle, pm.direction * scale, "add", prompts, layer=2,
                                  n_null=k, max_new_tokens=2, classifier=_starts_refusal,
                                  n_boot=50, max_variants=6)
    assert np.array_equal(a.null_effects, b.null_effects) and a.effect == b.effect == 1.0
    nulls = random_directions(k, pm.handle.d_model, seed=0, norm=scale)
    for j in range(k):
        with add(pm.handle, nulls[j], layer=2):
            g = generate(pm.handle, prompts, max_new_tokens=2, progress=False)
        rate = np.mean([_starts_refusal(c) == "full_refusal" for c in g.completions])
        assert a.null_effects[j] == pytest.approx(rate - a.base_rate)


def test_bad_arguments(pm: PlantedModel) -> None:
    h, p = pm.handle, pm.harmful[:2]
    with pytest.raises(SafetyGeoError, match="op must be"):
        generation_refusal_effect(h, pm.direction, "scale", p)  # type: ignore[arg-type]
    with pytest.raises(SafetyGeoError, match="needs a layer"):
        generation_refusal_effect(h, pm.direction, "add", p)
    with pytest.raises(SafetyGeoError, match="K=0"):
        generation_refusal_effect(h, pm.direction, "ablate", p, n_null=0)
    with pytest.raises(SafetyGeoError, match="covariance"):
        generation_refusal_effect(h, pm.direction, "ablate", p, null="covariance")
    with pytest.raises(SafetyGeoError, match="shape"):
        generation_refusal_effect(h, pm.direction[:5], "ablate", p)
