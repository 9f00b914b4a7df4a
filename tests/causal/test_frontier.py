"""The refusals-vs-KL frontier and the minimal refusal dimension on the planted models."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from safetygeo.behavior.generate import GenerationSettings
from safetygeo.causal.carriers import CarrierSelection, select_refusal_carrier
from safetygeo.causal.frontier import (
    SubspaceEdit,
    frontier_point,
    load_refusal_dimension,
    min_refusal_dimension,
    pareto_front,
    refusal_frontier,
    save_refusal_dimension,
)
from safetygeo.errors import ArtifactError, SafetyGeoError
from safetygeo.interventions.nulls import NullSpec
from safetygeo.toy.planted import planted_refusal_model, planted_two_dimensional_model

ONE_TOKEN = GenerationSettings(max_new_tokens=1)
NULLS = NullSpec(k=19, max_variants=20)  # p floor 0.05


def first_token_refusal(completion: str) -> str:
    """The planted models decide refusal with their first token (I / S)."""
    return "full_refusal" if completion.strip() in ("I", "S") else "compliance"


@functools.lru_cache(maxsize=None)
def _planted(two_d: bool):
    return (planted_two_dimensional_model if two_d else planted_refusal_model)(n_prompts=64)


def _mink(pm, **kw):
    return min_refusal_dimension(
        pm.handle, pm.harmful[32:], pm.harmless[32:], fit_harmful=pm.harmful[:32],
        fit_harmless=pm.harmless[:32], layer=2, k_max=3, nulls=NULLS, settings=ONE_TOKEN,
        classifier=first_token_refusal, n_boot=200, **kw)


def test_one_dimensional_plant_needs_one_dimension() -> None:
    pm = _planted(False)
    res = _mink(pm)
    assert res.k_min == 1 and len(res.points) == 1
    p = res.points[0]
    assert p.refusals.value == 0 and p.base_refusals == 32
    assert p.refusals_null.null_mean == 32  # random directions leave every refusal
    assert p.refusals_null.p == pytest.approx(0.05)
    assert float(res.basis[0] @ pm.direction) > 0.99
    row = res.to_row()
    assert row["k_min"] == 1 and row["rate_k1"] == 0.0 and row["null_rate_k1"] == 1.0


def test_two_dimensional_plant_needs_two_dimensions() -> None:
    pm = _planted(True)
    res = _mink(pm, stop_at_target=False)
    assert res.k_min == 2
    k1, k2, _ = res.points
    assert k1.refusal_rate > 0.3  # the diff-in-means direction alone fails
    assert k2.refusals.value == 0
    assert k2.refusals_null.null.tolist() == [32.0] * 19  # random 2-d subspaces do nothing
    overlap = torch.linalg.svdvals(res.basis[:2] @ pm.basis.T)
    assert float(overlap.min()) > 0.99  # span(basis[:2]) = span(e0, e1)
    # each planted direction alone leaves the other group refusing
    for e in pm.basis:
        p = frontier_point(pm.handle, SubspaceEdit(e), pm.harmful[32:], pm.harmless[32:],
                           nulls=NullSpec(k=4), settings=ONE_TOKEN,
                           classifier=first_token_refusal, n_boot=50)
        assert 0.25 < p.refusal_rate < 0.75


def test_every_ablation_mode_and_strength_gives_a_frontier_point_with_nulls() -> None:
    pm = _planted(False)
    from safetygeo.activations.extract import extract_activations

    means = extract_activations(pm.handle, pm.harmless[:32], positions="last",
                                progress=False).mean[:, 0]
    table = refusal_frontier(
        pm.handle, {"planted": pm.basis, "random": torch.randn(2, pm.handle.d_model)},
        pm.harmful[32:48], pm.harmless[32:48], ks=(1, 2), strengths=(0.3, 1.0),
        modes=("project", "norm_preserving", "biprojected", "mpoa"), harmless_means=means,
        nulls=NullSpec(k=4, max_variants=5), settings=ONE_TOKEN,
        classifier=first_token_refusal, n_boot=50)
    # planted has k = 1 only; random has k = 1, 2: (1 + 2) × 2 strengths × 4 modes
    assert len(table) == 24
    assert {"refusals", "kl", "null_refusals_mean", "p_refusals", "pareto", "q_refusals"} <= set(table.columns)
    full = table[(table.edit == "planted") & (table.strength == 1.0)]
    assert (full.refusals == 0).all()  # every mode removes the planted refusal
    weak = table[(table.edit == "planted") & (table.strength == 0.3) & (table["mode"] == "project")]
    assert float(weak.refusals.iloc[0]) == 16  # 30% of the feature is not enough
    assert (table[table.edit == "random"].refusals == 16).all()
    assert table.pareto.any()


def test_addition_edit_induces_refusal_against_random_vectors() -> None:
    pm = _planted(False)
    from safetygeo.causal.candidates import refusal_directions

    vec = refusal_directions(pm.handle, pm.harmful, pm.harmless, progress=False).vector(2, "eoi-1")
    # an addition on the harmless prompts, counted as "refusals" of the prompts it is applied to
    p = frontier_point(pm.handle, SubspaceEdit(vec, mode="add", layers=(2,)), pm.harmless[:16],
                       pm.harmless[16:32], nulls=NullSpec(k=4), settings=ONE_TOKEN,
                       classifier=first_token_refusal, n_boot=50)
    assert p.refusals.value == 16 and p.base_refusals == 0
    assert p.refusals_null.null_mean < 16


def test_pareto_front_marks_non_dominated_points() -> None:
    import pandas as pd

    t = pd.DataFrame({"edit": ["a"] * 4, "kl": [0.1, 0.2, 0.05, 0.3], "refusals": [5, 2, 9, 2]})
    assert pareto_front(t).tolist() == [True, True, True, False]


def test_refusal_dimension_is_saved_beside_a_carrier_selection(tmp_path: Path) -> None:
    pm = _planted(False)
    sel = select_refusal_carrier(pm.handle, pm.harmful, pm.harmless, progress=False)
    sel.save(tmp_path)
    res = min_refusal_dimension(pm.handle, pm.harmful[32:], pm.harmless[32:],
                                basis=pm.basis, nulls=NULLS, settings=ONE_TOKEN,
                                classifier=first_token_refusal, n_boot=50)
    save_refusal_dimension(res, tmp_path)
    again = CarrierSelection.load(tmp_path)  # the carrier folder still loads
    assert again.chosen == sel.chosen
    loaded = load_refusal_dimension(tmp_path)
    assert loaded["summary"]["k_min"] == 1
    assert list(loaded["table"].k) == [1]
    torch.testing.assert_close(loaded["basis"], res.basis)
    with pytest.raises(ArtifactError):
        load_refusal_dimension(tmp_path / "missing")


def test_too_few_nulls_for_alpha_are_refused() -> None:
    pm = _planted(False)
    with pytest.raises(SafetyGeoError, match="K >= 19"):
        min_refusal_dimension(pm.handle, pm.harmful, pm.harmless, basis=pm.basis,
                              nulls=NullSpec(k=8))
    with pytest.raises(SafetyGeoError, match="fit_harmful"):
        min_refusal_dimension(pm.handle, pm.harmful, pm.harmless, nulls=NULLS)
    with pytest.raises(SafetyGeoError, match="harmless means"):
        SubspaceEdit(pm.basis, mode="biprojected")
    assert np.isfinite(_mink(pm).to_row()["kl_k1"])


def test_points_honour_a_sequential_null_spec_and_any_intervention_value() -> None:
    from safetygeo.interventions.edits import KernelAbliteration
    from safetygeo.interventions.kernel import AbliterationKernel

    pm = _planted(False)
    seq = NullSpec.sequential(h=2, k_max=32, batch=8, tail=False)
    args = (pm.harmful[32:48], pm.harmless[32:48])
    kw = dict(nulls=seq, settings=ONE_TOKEN, classifier=first_token_refusal, n_boot=50)
    real = frontier_point(pm.handle, SubspaceEdit(pm.basis), *args, **kw)
    assert real.refusals.value == 0 and real.refusals_null.k == 32  # never settled early
    noise = frontier_point(pm.handle, SubspaceEdit(torch.randn(1, pm.handle.d_model)), *args, **kw)
    assert noise.refusals_null.k < 32  # null-looking: stopped at the first look
    dirs = pm.direction.double().expand(pm.handle.n_layers + 1, -1)
    kern = frontier_point(pm.handle, KernelAbliteration(dirs, AbliterationKernel(embeddings=True)),
                          *args, **{**kw, "nulls": NullSpec(k=4)})
    assert kern.refusals.value == 0 and kern.refusals_null.null.tolist() == [16.0] * 4
    assert kern.edit["edit"] == "abliterate"


def test_biprojection_combines_with_magnitude_preservation() -> None:
    from safetygeo.activations.extract import extract_activations

    pm = _planted(False)
    means = extract_activations(pm.handle, pm.harmless[:32], positions="last",
                                progress=False).mean[:, 0]
    p = frontier_point(pm.handle, SubspaceEdit(pm.basis, mode="biprojected+mpoa",
                                               harmless_means=means),
                       pm.harmful[32:48], pm.harmless[32:48], nulls=NullSpec(k=3),
                       settings=ONE_TOKEN, classifier=first_token_refusal, n_boot=50)
    assert p.edit["mode"] == "biprojected+mpoa" and p.refusals_null.k == 3
    with pytest.raises(SafetyGeoError, match="harmless means"):
        SubspaceEdit(pm.basis, mode="biprojected+mpoa")
