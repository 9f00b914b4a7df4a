"""The opt-in protocol steps that come from other packages: ``gradients`` (per-layer gradient
cosines), ``entropy`` (output entropy) and ``refusal_dimension`` (minimal subspace
dimension): their rows equal direct API calls on the same checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.reports.conftest import small_protocol


@pytest.fixture(scope="module")
def opt_report(toy_zoo, tmp_path_factory):
    from safetygeo.reports import run_report

    p = small_protocol((300,), base=False).with_steps(
        rank=None, drift=None, coupling=None, ablation=None, behavior=None, transfer=None,
        gradients={"n_examples": 8}, entropy={"max_new_tokens": 8, "n_boot": 50},
        refusal_dimension={"k_max": 2, "k": 4, "alpha": 0.25, "max_new_tokens": 8})
    out = tmp_path_factory.mktemp("opt")
    return p, run_report([toy_zoo["anchor"]], out, p, html=False)


def test_gradient_rows_equal_the_api(opt_report, toy_zoo):
    from safetygeo.gradients import LossSpec, layer_gradient_cosines
    from safetygeo.reports.sources import resolve_sets
    from safetygeo.training import Trajectory

    p, rep = opt_report
    rows = rep.table[rep.table.metric == "grad_cos"]
    assert len(rows) >= 3 and rows.value.notna().all()
    sets = resolve_sets(p.sets)
    harm = list(zip(sets.harmful["train"].prompts, sets.harmful["train"].targets))[:8]
    benign = list(zip(sets.harmless["train"].prompts, sets.harmless["train"].targets))[:8]
    h = Trajectory.load(toy_zoo["anchor"]).load_checkpoint(300, dtype="float32")
    ref = layer_gradient_cosines(h, LossSpec.from_data(harm, "harmful_ce", max_length=256),
                                 LossSpec.from_data(benign, "ce", max_length=256)).to_frame()
    got = rows[rows.layer.notna()].set_index("layer").value
    want = ref[ref.group.str.startswith("block.")]
    for g, cos in zip(want.group, want.cosine):
        assert math.isclose(got.loc[int(g.split(".")[1])], cos, rel_tol=1e-6, abs_tol=1e-9)


def test_refusal_dimension_rows(opt_report):
    _, rep = opt_report
    t = rep.table
    dim = t[t.metric == "refusal_dimension"]
    assert len(dim) == 1
    rates = t[t.metric.str.startswith("refusal_rate_k")]
    assert len(rates) >= 1 and rates.value.between(0, 1).all() and rates.p.between(0, 1).all()
    k = dim.value.iloc[0]
    assert np.isnan(k) or k in (1.0, 2.0)


def test_entropy_rows_equal_the_api(opt_report, toy_zoo):
    from safetygeo.behavior.entropy import output_entropy
    from safetygeo.behavior.generate import GenerationSettings, generate
    from safetygeo.reports.sources import resolve_sets
    from safetygeo.training import Trajectory

    p, rep = opt_report
    rows = rep.table[rep.table.metric == "output_entropy"].set_index("set")
    sets = resolve_sets(p.sets)
    assert set(rows.index) == set(sets.behavior) and len(rows) >= 2
    h = Trajectory.load(toy_zoo["anchor"]).load_checkpoint(300, dtype="float32")
    for name, (_, ps) in sets.behavior.items():
        g = generate(h, list(ps.prompts), GenerationSettings(max_new_tokens=8), progress=False)
        want = output_entropy(h, g, n_boot=50)
        got = rows.loc[name]
        assert math.isclose(got.value, want.value, rel_tol=1e-6)
        assert got.ci_low <= got.value <= got.ci_high and got.n == want.n
        assert 0 <= got.value <= math.log(h.model.config.vocab_size)


def test_rank_at_every_layer_skips_undefined_layers(toy_zoo, tmp_path):
    """``rank: {layer: all}``: layer 0 at template tokens has a zero diff-in-means (every
    prompt embeds the same tokens there) — NaN rows with the reason, not a failed step;
    every other layer equals carrier_rank called directly."""
    from safetygeo.activations import extract_activations
    from safetygeo.geometry import carrier_rank
    from safetygeo.reports import run_report
    from safetygeo.reports.sources import resolve_sets
    from safetygeo.training import Trajectory

    p = small_protocol((300,), base=False).with_steps(
        drift=None, coupling=None, ablation=None, behavior=None, transfer=None,
        rank={"layer": "all", "n_boot": 20})
    rep = run_report([toy_zoo["anchor"]], tmp_path / "rank", p, html=False)
    assert not (rep.status.status == "failed").any(), rep.status
    er = rep.table[rep.table.metric == "erank"].set_index("layer")
    assert math.isnan(er.value.loc[0]) and "zero matrix" in er.note.loc[0]
    assert er.drop(index=0).value.notna().all() and len(er) == 9
    sets = resolve_sets(p.sets)
    h = Trajectory.load(toy_zoo["anchor"]).load_checkpoint(300, dtype="float32")
    kw = dict(positions="t_inst+post_instruction", keep_vectors=True, progress=False)
    a = extract_activations(h, sets.harmful["test"].prompts, **kw)
    b = extract_activations(h, sets.harmless["test"].prompts, **kw)
    post = [x for x in a.positions.labels if x != "t_inst"]
    want = carrier_rank(a, b, layer=5, positions=post, n_boot=20)["erank"].value
    assert math.isclose(er.value.loc[5], want, rel_tol=1e-6)
