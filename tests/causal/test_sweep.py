from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import pytest
import torch

import safetygeo.causal.sweep as sw
from safetygeo.errors import LayerIndexError, SafetyGeoError
from safetygeo.toy.planted import planted_refusal_model


@functools.lru_cache(maxsize=None)
def planted():
    return planted_refusal_model()


def test_planted_direction_beats_64_nulls_and_a_random_one_does_not() -> None:
    pm = planted()
    kw = dict(harmful=pm.harmful[:12], harmless=pm.harmless[:12], n_null=64)
    real = sw.intervention_effect(pm.handle, pm.direction * 3, "ablate", **kw)
    assert real["d_refusal_harmful"]["real"] < -5
    assert real["d_refusal_harmful"]["p_value"] < 0.05
    assert real["d_refusal_harmful"]["z"] < -3
    rnd = torch.from_numpy(__import__("numpy").random.default_rng(7).standard_normal(64))
    fake = sw.intervention_effect(pm.handle, rnd / rnd.norm() * 3, "ablate", seed=1, **kw)
    assert fake["d_refusal_harmful"]["p_value"] >= 0.05
    added = sw.intervention_effect(pm.handle, pm.direction * 3, "add", layer=2, **kw)
    assert added["d_refusal_harmless"]["p_value"] < 0.05 and added["d_refusal_harmless"]["real"] > 5


def test_sweep_table_figure_and_resume(tmp_path: Path, monkeypatch) -> None:
    pm = planted()
    dirs = {"planted": pm.direction * 3, "random": torch.randn(64, dtype=torch.float64)}
    kw = dict(harmful=pm.harmful[:4], harmless=pm.harmless[:4], ops=("ablate", "add"),
              layers=[1, 2], alphas=(1.0,), n_null=8, progress=False)
    full = sw.run_sweep(pm.handle, dirs, **kw)
    assert len(full) == 2 * (1 + 2) * 3  # directions × (ablate + 2 layers) × metrics
    assert full.q_value.between(0, 1).all() and (full.q_value >= full.p_value - 1e-12).all()
    fig = sw.sweep_figure(full)
    assert len(fig.data) == 2 * 3

    real = sw.intervention_effect
    calls = {"n": 0}

    def crash_on_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    out = tmp_path / "sweep.parquet"
    monkeypatch.setattr(sw, "intervention_effect", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(pm.handle, dirs, out=out, **kw)
    assert len(pd.read_parquet(out)) == 2 * 3  # two finished cells survived the crash
    monkeypatch.setattr(sw, "intervention_effect", real)
    calls["n"] = 0
    resumed = sw.run_sweep(pm.handle, dirs, out=out, **kw)
    cols = ["direction", "op", "layer", "alpha", "metric"]
    a = full.sort_values(cols).reset_index(drop=True)
    b = resumed.sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-9)


def test_bad_input() -> None:
    pm = planted()
    kw = dict(harmful=pm.harmful[:2], harmless=pm.harmless[:2])
    with pytest.raises(SafetyGeoError, match="expected \\[d_model=64\\]"):
        sw.intervention_effect(pm.handle, torch.ones(5), "ablate", **kw)
    with pytest.raises(SafetyGeoError, match="zero norm"):
        sw.intervention_effect(pm.handle, torch.zeros(64), "ablate", **kw)
    with pytest.raises(SafetyGeoError, match="K=0"):
        sw.intervention_effect(pm.handle, torch.ones(64), "ablate", n_null=0, **kw)
    with pytest.raises(LayerIndexError):
        sw.intervention_effect(pm.handle, torch.ones(64), "add", layer=12, **kw)
    with pytest.raises(SafetyGeoError, match="unknown op"):
        sw.run_sweep(pm.handle, {"x": torch.ones(64)}, ops=("steer",), **kw)


def test_covariance_matched_nulls_are_used() -> None:
    pm = planted()
    cov = torch.eye(64, dtype=torch.float64) * 1e-6
    cov[5, 5] = 1.0  # nulls lie (almost) along e5, which the model never reads as refusal
    kw = dict(harmful=pm.harmful[:4], harmless=pm.harmless[:4], n_null=8)
    eff = sw.intervention_effect(pm.handle, pm.direction * 3, "add", layer=2, null="covariance",
                                 covariance=cov, **kw)
    sphere = sw.intervention_effect(pm.handle, pm.direction * 3, "add", layer=2, **kw)
    assert eff["d_refusal_harmless"]["null_mean"] != sphere["d_refusal_harmless"]["null_mean"]
    with pytest.raises(SafetyGeoError, match="needs the activation covariance"):
        sw.intervention_effect(pm.handle, pm.direction, "add", layer=2, null="covariance", **kw)
    table = sw.run_sweep(pm.handle, {"p": pm.direction * 3}, ops=("add",), layers=[2],
                         null="covariance", covariance=cov, progress=False, **kw)
    assert table[table.metric == "d_refusal_harmless"].null_mean.iloc[0] == pytest.approx(
        eff["d_refusal_harmless"]["null_mean"])


def test_sweep_measures_generations_against_nulls(toy_built) -> None:
    """On the trained toy anchor: ablating its carrier lowers the refusal rate of greedy
    generations more than every matched random direction does. (The toy's refusal is
    "deep": most ablated completions open compliantly and then refuse anyway — "ok cannot
    help with that ." — so the generation-level effect is much smaller than the logit one.)"""
    from safetygeo.geometry import select_refusal_carrier
    from safetygeo.toy.zoo import load_toy, toy_splits

    h, sp = load_toy("anchor"), toy_splits()
    sel = select_refusal_carrier(h, sp["harmful"], sp["harmless"], progress=False)
    table = sw.run_sweep(h, {"carrier": sel.vector}, harmful=sp["harmful"]["test"],
                         harmless=sp["harmless"]["test"][:12], ops=("ablate",), n_null=8,
                         generations=True, gen_null=32, max_new_tokens=8, progress=False)
    row = table[table.metric == "d_refusal_rate_gen"].iloc[0]
    assert row.real <= -0.15 and row.real < row.null_q025 and row.p_value < 0.05
    assert row.null_q025 <= row.null_mean <= row.null_q975 and abs(row.null_mean) < 0.1
    assert 0 <= row.q_value <= 1
    assert set(table.metric) == {"d_refusal_harmful", "d_refusal_harmless", "kl_harmless",
                                 "d_refusal_rate_gen"}


def test_keep_null_returns_the_null_distribution() -> None:
    pm = planted()
    eff = sw.intervention_effect(pm.handle, pm.direction * 3, "ablate", harmful=pm.harmful[:4],
                                 harmless=pm.harmless[:4], n_null=9, keep_null=True)
    for v in eff.values():
        assert len(v["null"]) == 9
        assert abs(sum(v["null"]) / 9 - v["null_mean"]) < 1e-9
