"""Bootstrap-backed geometry on the planted model and on a random one."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from safetygeo.activations import extract_activations
from safetygeo.errors import SafetyGeoError
from safetygeo.geometry.coupling import causal_coupling, geometric_coupling
from safetygeo.geometry.subspaces import carrier_drift, carrier_rank, direction_cosine
from safetygeo.toy.planted import planted_refusal_model


@functools.lru_cache(maxsize=None)
def stats(plant: bool = True, positions: str = "post_instruction", n: int = 24):
    pm = planted_refusal_model(plant=plant)
    kw = dict(keep_vectors=True, progress=False, positions=positions)
    return pm, extract_activations(pm.handle, pm.harmful[:n], **kw), extract_activations(
        pm.handle, pm.harmless[:n], **kw)


def test_planted_carrier_is_rank_one_random_one_is_not() -> None:
    _, a, b = stats()
    r = carrier_rank(a, b, layer=2, n_boot=100)
    # erank counts small noise singular values (~5% of the mass here: erank ≈ 1.29);
    # PR, weighting by σ², is the sharper rank-one test
    assert r["erank"] < 1.5 and r["erank_ci"][1] < 1.6
    assert r["pr"] < 1.01 and r["pr_ci"][1] < 1.05
    _, a0, b0 = stats(False)
    r0 = carrier_rank(a0, b0, layer=2, n_boot=100)
    assert r0["erank"] > 2.5  # noise differences spread over several directions
    assert r0["erank_ci"][0] <= r0["erank"] <= r0["erank_ci"][1]


def test_drift_zero_against_itself_and_large_against_random_model() -> None:
    _, a, b = stats()
    _, a0, b0 = stats(False)
    table = carrier_drift((a, b), {"self": (a, b), "random": (a0, b0)}, layer=2,
                          positions=["eoi-1"], n_boot=100)
    selfrow = table[table.checkpoint == "self"].iloc[0]
    assert selfrow.angle_deg < 1e-5 and selfrow.paired_bootstrap
    rnd = table[table.checkpoint == "random"].iloc[0]
    assert rnd.angle_deg > 60 and rnd.ci_low_deg <= rnd.angle_deg <= rnd.ci_high_deg


def test_direction_cosine_across_positions_with_ci() -> None:
    _, a, b = stats()
    res = direction_cosine((a, b), (a, b), layer_a=2, position_a="eoi-1", position_b="eoi-5",
                           n_boot=200)
    assert res["cos"] > 0.99 and res["ci"][0] > 0.95


def test_geometric_coupling_table_and_ci() -> None:
    _, a, b = stats(positions="t_inst+post_instruction")
    table = geometric_coupling(a, b, n_boot=100)
    assert list(table.layer) == [0, 1, 2, 3, 4]
    # in the planted model harmfulness and refusal share the planted feature after layer 0
    assert (table[table.layer >= 1].cos > 0.95).all()
    assert (table.ci_low <= table.cos + 1e-12).all() and (table.cos <= table.ci_high + 1e-12).all()
    _, a2, b2 = stats()
    with pytest.raises(SafetyGeoError, match="t_inst"):
        geometric_coupling(a2, b2)


def test_causal_coupling_against_nulls() -> None:
    pm, *_ = stats()
    res = causal_coupling(pm.handle, pm.harmless[:8], source=pm.direction * 3, source_layer=1,
                          read=pm.direction, read_layer=3, n_null=32, n_boot=200, progress=False)
    assert res.shift > 1.0 and res.p_value == pytest.approx(1 / 33) and res.z > 3
    assert res.ci_low <= res.shift <= res.ci_high
    assert len(res.null) == 32 and res.to_dict()["n_null"] == 32
    rnd = torch.from_numpy(np.random.default_rng(3).standard_normal(64))
    fake = causal_coupling(pm.handle, pm.harmless[:8], source=rnd / rnd.norm() * 3,
                           source_layer=1, read=pm.direction, read_layer=3, n_null=32,
                           n_boot=0, seed=5, progress=False)
    assert fake.p_value > 0.05
    abl = causal_coupling(pm.handle, pm.harmful[:8], source=pm.direction, source_layer=0,
                          read=pm.direction, read_layer=3, op="ablate", n_null=16, n_boot=0,
                          progress=False)
    assert abl.shift < 0 and abl.p_value == pytest.approx(1 / 17)


def test_bootstrap_needs_vectors_and_enough_prompts() -> None:
    pm = planted_refusal_model()
    a = extract_activations(pm.handle, pm.harmful[:4], progress=False)
    b = extract_activations(pm.handle, pm.harmless[:4], progress=False)
    with pytest.raises(SafetyGeoError, match="keep_vectors"):
        carrier_rank(a, b, layer=2)
    kw = dict(keep_vectors=True, progress=False)
    a1 = extract_activations(pm.handle, pm.harmful[:1], **kw)
    b1 = extract_activations(pm.handle, pm.harmless[:1], **kw)
    with pytest.raises(SafetyGeoError, match="fewer prompts"):
        carrier_rank(a1, b1, layer=2, n_boot=10)
