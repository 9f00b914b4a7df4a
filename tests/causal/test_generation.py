"""Generation-level intervention effects on the planted-refusal model (ground truth: the
refusal direction is e0; its read-out makes the first token "I")."""

from __future__ import annotations

import numpy as np
import pytest

from safetygeo.behavior.generate import GenerationSettings, generate
from safetygeo.causal.generation import GenerationEffect, generation_refusal_effect
from safetygeo.errors import NonFiniteError, SafetyGeoError
from safetygeo.interventions.hooks import add
from safetygeo.interventions.nulls import NullSpec, random_directions
from safetygeo.results import NullComparison
from safetygeo.toy.planted import PlantedModel, planted_refusal_model

TWO = GenerationSettings(max_new_tokens=2)


def _starts_refusal(c: str) -> str:
    """The planted model's refusal is its first token, "I" (first token of "I cannot")."""
    return "full_refusal" if c.startswith("I") else "compliance"


@pytest.fixture(scope="module")
def pm() -> PlantedModel:
    return planted_refusal_model()


def test_ablating_the_planted_direction_removes_refusal_beyond_every_null(pm: PlantedModel) -> None:
    k = 7
    eff = generation_refusal_effect(pm.handle, pm.direction, "ablate", pm.harmful[:8],
                                    nulls=NullSpec(k=k, max_variants=3), settings=TWO,
                                    classifier=_starts_refusal, n_boot=200)
    assert isinstance(eff, GenerationEffect) and isinstance(eff, NullComparison)
    assert (eff.base_rate, eff.real_rate, eff.real) == (1.0, 0.0, -1.0)
    assert np.all(eff.null == 0.0) and eff.k == k  # random ablations leave e0 (almost) alone
    assert eff.p == pytest.approx(1 / (k + 1)) and eff.z == -np.inf
    assert "zero spread" in eff.note  # why z is infinite
    assert (eff.ci_low, eff.ci_high) == (-1.0, -1.0)
    d = eff.to_row()
    assert d["metric"] == "d_refusal_rate_gen" and d["real"] == -1.0
    assert d["n"] == 8 and d["op"] == "ablate" and d["layer"] is None
    assert d["base_rate"] == 1.0 and d["real_rate"] == 0.0 and d["k"] == k
    assert all(c.startswith("I") for c in eff.base_generations.completions)
    assert not any(c.startswith("I") for c in eff.real_generations.completions)


def test_batched_nulls_equal_separate_runs(pm: PlantedModel) -> None:
    prompts, k, scale = pm.harmless[:6], 5, 3.0
    a = generation_refusal_effect(pm.handle, pm.direction * scale, "add", prompts, layer=2,
                                  nulls=NullSpec(k=k, max_variants=2), settings=TWO,
                                  classifier=_starts_refusal, n_boot=50)
    b = generation_refusal_effect(pm.handle, pm.direction * scale, "add", prompts, layer=2,
                                  nulls=NullSpec(k=k, max_variants=6), settings=TWO,
                                  classifier=_starts_refusal, n_boot=50)
    assert np.array_equal(a.null, b.null) and a.real == b.real == 1.0
    assert (a.op, a.layer, a.alpha, a.n) == ("add", 2, 1.0, 6)
    nulls = random_directions(k, pm.handle.d_model, seed=0, norm=scale)
    for j in range(k):
        with add(pm.handle, nulls[j], layer=2):
            g = generate(pm.handle, prompts, TWO, progress=False)
        rate = np.mean([_starts_refusal(c) == "full_refusal" for c in g.completions])
        assert a.null[j] == pytest.approx(rate - a.base_rate)


def test_empty_completions_count_as_refused(pm: PlantedModel) -> None:
    """One definition of "refused": a classifier that calls every completion "empty" gives
    a base rate of 1 (refused), as ``is_refusal`` does everywhere else."""
    eff = generation_refusal_effect(pm.handle, pm.direction, "ablate", pm.harmful[:3],
                                    nulls=NullSpec(k=2), settings=TWO,
                                    classifier=lambda c: "empty", n_boot=20)
    assert eff.base_rate == 1.0 and eff.real_rate == 1.0 and eff.real == 0.0


def test_bad_arguments(pm: PlantedModel) -> None:
    h, p = pm.handle, pm.harmful[:2]
    with pytest.raises(SafetyGeoError, match="op must be"):
        generation_refusal_effect(h, pm.direction, "scale", p)  # type: ignore[arg-type]
    with pytest.raises(SafetyGeoError, match="needs a layer"):
        generation_refusal_effect(h, pm.direction, "add", p)
    with pytest.raises(SafetyGeoError, match="null directions"):
        NullSpec(k=0)
    with pytest.raises(SafetyGeoError, match="covariance"):
        NullSpec(kind="covariance")
    with pytest.raises(SafetyGeoError, match="NullSpec"):
        generation_refusal_effect(h, pm.direction, "ablate", p, nulls=4)  # type: ignore[arg-type]
    with pytest.raises(SafetyGeoError, match="shape"):
        generation_refusal_effect(h, pm.direction[:5], "ablate", p)
    with pytest.raises(NonFiniteError, match="alpha"):
        generation_refusal_effect(h, pm.direction, "add", p, layer=1, alpha=float("nan"))
    with pytest.raises(TypeError):  # decoding only via GenerationSettings
        generation_refusal_effect(h, pm.direction, "ablate", p, max_new_tokens=2)  # type: ignore[call-arg]
