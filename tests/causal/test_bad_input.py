"""Bad input at the causal layer: prompts, strengths, splits, batching, saved artifacts."""

from __future__ import annotations

import json

import pytest

from safetygeo.causal import (
    CarrierSelection,
    intervention_effect,
    read_sweep,
    run_sweep,
    select_refusal_carrier,
)
from safetygeo.errors import ArtifactError, NonFiniteError, SafetyGeoError
from safetygeo.interventions import NullSpec
from safetygeo.toy.planted import planted_refusal_model


@pytest.fixture(scope="module")
def pm():
    return planted_refusal_model()


def test_a_bare_string_is_one_prompt(pm):
    eff = intervention_effect(pm.handle, pm.direction, "ablate", harmful=pm.harmful[0],
                              harmless=pm.harmless[0], nulls=NullSpec(k=2))
    assert eff["d_refusal_harmful"].k == 2


@pytest.mark.parametrize("alpha", [float("nan"), float("inf")])
def test_non_finite_alpha_in_effects_and_sweeps(pm, alpha):
    with pytest.raises(NonFiniteError, match="alpha"):
        intervention_effect(pm.handle, pm.direction, "add", layer=1, alpha=alpha,
                            harmful=pm.harmful[:2], harmless=pm.harmless[:2], nulls=NullSpec(k=2))
    with pytest.raises(NonFiniteError, match="alpha"):
        run_sweep(pm.handle, {"r": pm.direction}, harmful=pm.harmful[:2], harmless=pm.harmless[:2],
                  ops=("add",), layers=[1], alphas=[alpha], nulls=NullSpec(k=2), progress=False)


@pytest.mark.parametrize("kw, text", [
    ({"splits": (0.5, 0.5)}, "three positive fractions"),
    ({"splits": (0.5, 0.5, 0.5)}, "at most 1"),
    ({"splits": (0.5, float("nan"), 0.25)}, "three positive fractions"),
    ({"max_variants": 0}, "max_variants"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_carrier_selection_settings(pm, kw, text):
    with pytest.raises(SafetyGeoError, match=text):
        select_refusal_carrier(pm.handle, pm.harmful, pm.harmless, progress=False, **kw)


def test_damaged_carrier_folders(pm, tmp_path):
    sel = select_refusal_carrier(pm.handle, pm.harmful, pm.harmless, progress=False)
    sel.save(tmp_path / "c")
    assert CarrierSelection.load(tmp_path / "c").chosen == sel.chosen
    meta = tmp_path / "c" / "carriers.json"
    info = json.loads(meta.read_text())
    del info["meta"]["refusal_token_ids"]
    meta.write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="incomplete or damaged"):
        CarrierSelection.load(tmp_path / "c")
    meta.write_bytes(b"\xff\xfe not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        CarrierSelection.load(tmp_path / "c")
    with pytest.raises(ArtifactError, match="not a complete"):
        CarrierSelection.load(tmp_path / "missing")


def test_damaged_sweep_table(tmp_path):
    p = tmp_path / "sweep.parquet"
    p.write_bytes(b"PAR1 garbage")
    with pytest.raises(ArtifactError, match="cannot be read"):
        read_sweep(p)
