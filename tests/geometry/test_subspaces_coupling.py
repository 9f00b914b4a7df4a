"""Bootstrap-backed geometry on the planted model and on a random one."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from safetygeo.activations import extract_activations
from safetygeo.causal.coupling import causal_coupling
from safetygeo.errors import SafetyGeoError
from safetygeo.geometry.coupling import geometric_coupling
from safetygeo.geometry.subspaces import carrier_drift, carrier_rank, direction_cosine
from safetygeo.interventions.nulls import NullSpec
from safetygeo.results import Estimate, NullComparison
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
    assert set(r) == {"erank", "pr"} and all(isinstance(e, Estimate) for e in r.values())
    assert r["erank"].value < 1.5 and r["erank"].ci_high < 1.6
    assert r["pr"].value < 1.01 and r["pr"].ci_high < 1.05
    assert r["erank"].metric == "erank" and r["pr"].metric == "pr"
    assert r["erank"].n == 48 and r["erank"].extra["layer"] == 2
    assert r["erank"].extra["n_boot"] == 100 and r["erank"].extra["n_rows"] == len(a.positions)
    assert r["erank"].ci_method == "bootstrap-percentile" and r["erank"].to_row()["layer"] == 2
    _, a0, b0 = stats(False)
    r0 = carrier_rank(a0, b0, layer=2, n_boot=100)
    assert r0["erank"].value > 2.5  # noise differences spread over several directions
    assert r0["erank"].ci_low <= r0["erank"].value <= r0["erank"].ci_high
    nob = carrier_rank(a0, b0, layer=2, n_boot=0)  # no bootstrap: NaN interval, said so
    assert nob["pr"].value == pytest.approx(r0["pr"].value)
    assert np.isnan(nob["pr"].ci_low) and nob["pr"].ci_method == "none"


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
    assert isinstance(res, Estimate) and res.metric == "cos" and res.extra["n_boot"] == 200
    assert res.value > 0.99 and res.ci_low > 0.95 and res.ci_low <= res.value <= res.ci_high


def test_geometric_coupling_table_and_ci() -> None:
    _, a, b = stats(positions="t_inst+post_instruction")
    table = geometric_coupling(a, b, n_boot=100)
    assert list(table.layer) == [0, 1, 2, 3, 4]
    # in the planted model harmfulness and refusal share the planted feature after layer 0
    assert (table[table.layer >= 1].cos > 0.95).all()
    # at layer 0 (embeddings) the refusal position eoi-1 is the same template token for every
    # prompt, so the refusal direction is exactly zero there: cos is NaN with a note since
    # issue #11 (it used to read 0, an angle of 90° that was never measured)
    l0 = table[table.layer == 0].iloc[0]
    assert np.isnan(l0.cos) and "zero norm" in l0.note
    rest = table[table.layer >= 1]
    assert (rest.note == "").all()
    assert (rest.ci_low <= rest.cos + 1e-12).all() and (rest.cos <= rest.ci_high + 1e-12).all()
    _, a2, b2 = stats()
    with pytest.raises(SafetyGeoError, match="t_inst"):
        geometric_coupling(a2, b2)


def test_geometric_coupling_is_nan_with_a_note_where_a_direction_has_zero_norm() -> None:
    """Identical class means: the angle is undefined, so cos is NaN (never 0) and the note
    says why; where both directions exist the note is empty."""
    _, a, b = stats(positions="t_inst+post_instruction")
    table = geometric_coupling(a, a, n_boot=20)
    assert table.cos.isna().all() and (table.note.str.contains("zero norm")).all()
    ok = geometric_coupling(a, b).set_index("layer")
    assert ok.cos.loc[1:].notna().all() and (ok.note.loc[1:] == "").all()


def test_causal_coupling_against_nulls() -> None:
    pm, *_ = stats()
    res = causal_coupling(pm.handle, pm.harmless[:8], source=pm.direction * 3, source_layer=1,
                          read=pm.direction, read_layer=3, nulls=NullSpec(k=32), n_boot=200,
                          progress=False)
    assert isinstance(res, NullComparison) and res.metric == "readout_shift"
    assert res.real > 1.0 and res.p == pytest.approx(1 / 33) and res.z > 3
    assert res.ci_low <= res.real <= res.ci_high
    assert len(res.null) == 32 and res.k == 32 and res.to_row()["k"] == 32
    assert res.extra["op"] == "add" and res.extra["source_layer"] == 1
    assert res.extra["read_layer"] == 3 and res.extra["alpha"] == 1.0
    rnd = torch.from_numpy(np.random.default_rng(3).standard_normal(64))
    fake = causal_coupling(pm.handle, pm.harmless[:8], source=rnd / rnd.norm() * 3,
                           source_layer=1, read=pm.direction, read_layer=3,
                           nulls=NullSpec(k=32, seed=5), n_boot=0, progress=False)
    assert fake.p > 0.05 and np.isnan(fake.ci_low)
    abl = causal_coupling(pm.handle, pm.harmful[:8], source=pm.direction, source_layer=0,
                          read=pm.direction, read_layer=3, op="ablate", nulls=NullSpec(k=16),
                          n_boot=0, progress=False)
    assert abl.real < 0 and abl.p == pytest.approx(1 / 17)
    assert abl.extra["op"] == "ablate" and abl.extra["source_layer"] is None


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
