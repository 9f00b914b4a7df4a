"""Sequential null tests and tail p-values on a model (issue 18): a cell's cost follows its
evidence — random directions stop after one batch, the planted direction uses every null
and gets a tail p below 1/(K+1) — for intervention effects, sweeps (BH, identity, resume of
tables written before these columns), generation effects, coupling and the figure."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import safetygeo.causal.sweep as sw
from safetygeo.behavior.generate import GenerationSettings
from safetygeo.causal.carriers import score_candidates
from safetygeo.causal.coupling import causal_coupling
from safetygeo.causal.effects import intervention_effect
from safetygeo.causal.generation import generation_refusal_effect
from safetygeo.errors import SettingsError
from safetygeo.interventions.nulls import NullSpec
from safetygeo.reports.figures import sweep_figure
from safetygeo.stats import besag_clifford_p, empirical_p
from safetygeo.toy.planted import planted_refusal_model

SEQ = NullSpec.sequential(h=4, k_max=64, batch=16)


@functools.lru_cache(maxsize=None)
def planted():
    return planted_refusal_model()


def _random_like(n: float, seed: int) -> torch.Tensor:
    g = torch.from_numpy(np.random.default_rng(seed).standard_normal(64))
    return g / g.norm() * n


def test_strong_cell_uses_every_null_and_gets_a_tail_p() -> None:
    pm = planted()
    kw = dict(harmful=pm.harmful[:8], harmless=pm.harmless[:8])
    eff = intervention_effect(pm.handle, pm.direction * 3, "ablate", nulls=SEQ, **kw)
    hf = eff["d_refusal_harmful"]
    assert hf.k == 64 and hf.stop_reason == "k_max" and hf.n_null_used == 64
    assert hf.p == 1 / 65  # the exact floor, kept
    assert hf.p_used == "tail" and hf.p_tail < 1 / 65 and hf.p_bh == hf.p_tail
    assert hf.p_tail_method in ("gpd", "normal")
    assert len({c.k for c in eff.values()}) == 1  # the metrics shared their forwards
    # the same first 64 nulls as the fixed-K test: identical exact p's
    fixed = intervention_effect(pm.handle, pm.direction * 3, "ablate", nulls=NullSpec(k=64), **kw)
    for name in eff:  # (batches of other composition: float rounding only)
        assert eff[name].p == fixed[name].p or eff[name].stop_reason == "h_exceedances"
        np.testing.assert_allclose(eff[name].null, fixed[name].null[:eff[name].k], rtol=1e-5,
                                   atol=1e-5)
        assert fixed[name].stop_reason == "fixed" and np.isnan(fixed[name].p_tail)


def test_random_direction_stops_early() -> None:
    pm = planted()
    eff = intervention_effect(pm.handle, _random_like(3.0, 9), "ablate", nulls=SEQ,
                              harmful=pm.harmful[:8], harmless=pm.harmless[:8])
    (k,) = {c.k for c in eff.values()}
    assert k <= 32  # 17 or 33 directions instead of 65
    for c in eff.values():
        assert c.stop_reason == "h_exceedances" and c.n_null_used <= k
        assert c.p == 4 / c.n_null_used and c.p_used == "exact"
        alone = besag_clifford_p(c.real, c.null, c.alternative, h=4, k_max=64,  # type: ignore[arg-type]
                                 checkpoints=SEQ.checkpoints())
        assert alone.p == c.p


def test_sequential_sweep_costs_less_and_discovers_no_less(tmp_path: Path) -> None:
    pm = planted()
    dirs = {"planted": pm.direction * 3, "random": _random_like(3.0, 1)}
    kw = dict(harmful=pm.harmful[:6], harmless=pm.harmless[:6], ops=("ablate", "add"),
              layers=[1, 2, 3], progress=False)
    fixed = sw.run_sweep(pm.handle, dirs, nulls=NullSpec(k=64), **kw)
    out = tmp_path / "seq.parquet"
    seq = sw.run_sweep(pm.handle, dirs, nulls=SEQ, out=out, **kw)
    cells = ["direction", "op", "layer", "alpha"]
    cost = lambda t: int((t.drop_duplicates(cells).k + 1).sum())  # noqa: E731
    assert cost(seq) < cost(fixed)
    rnd = seq[seq.direction == "random"]
    assert (rnd.drop_duplicates(cells).k < 64).mean() >= 0.5  # most random cells stop early
    key = [*cells, "metric"]
    m = fixed.merge(seq, on=key, suffixes=("_f", "_s"))
    assert ((m.q_s <= 0.05) | ~(m.q_f <= 0.05)).all()  # every fixed-K discovery is kept
    assert (m.q_s <= 0.05).sum() >= (m.q_f <= 0.05).sum()
    tail_rows = seq[seq.p_used == "tail"]
    assert len(tail_rows) and (tail_rows.p_tail < 1 / 65).all() and (tail_rows.k == 64).all()
    # q is BH over the p each row names
    harm = seq[seq.metric == "d_refusal_harmful"]
    used = np.where(harm.p_used == "tail", harm.p_tail, harm.p)
    from safetygeo.stats import benjamini_hochberg

    np.testing.assert_allclose(harm.q, benjamini_hochberg(used))
    # the band plot says which p BH used and how many nulls
    fig = sweep_figure(seq)
    hover = fig.data[2].hovertemplate
    assert "BH on" in hover and "nulls used" in hover and "stop" in hover
    # the identity names the sequential settings: another h is refused
    _, ident = sw.read_sweep(out)
    assert ident["nulls"]["sequential"] == {"h": 4, "k_max": 64, "batch": 16, "first": 16}
    with pytest.raises(SettingsError, match=r"nulls\.sequential\.h"):
        sw.run_sweep(pm.handle, dirs, nulls=NullSpec.sequential(h=6), out=out, **kw)


def test_tables_written_before_sequential_tests_resume(tmp_path: Path) -> None:
    """A fixed-K table without the new columns (as written before issue 18) resumes: its
    rows get the fixed-K values and BH runs over the old and new rows together."""
    pm = planted()
    out = tmp_path / "old.parquet"
    kw = dict(harmful=pm.harmful[:3], harmless=pm.harmless[:3], ops=("add",), alphas=(1.0,),
              nulls=NullSpec(k=4), progress=False)
    sw.run_sweep(pm.handle, {"planted": pm.direction * 3}, layers=[2], out=out, **kw)
    table, ident = sw.read_sweep(out)
    old = table.drop(columns=["n_null_used", "stop_reason", "p_tail", "p_tail_method", "p_used"])
    sw._write(out, old, ident)
    grown = sw.run_sweep(pm.handle, {"planted": pm.direction * 3}, layers=[1, 2], out=out, **kw)
    assert len(grown) == 2 * 3 and (grown.stop_reason == "fixed").all()
    assert (grown.n_null_used == 4).all() and (grown.p_used == "exact").all()
    assert grown.q.notna().all()


def test_generation_and_coupling_run_sequentially() -> None:
    pm = planted()
    spec = NullSpec.sequential(h=2, k_max=8, batch=4, first=4, max_variants=4)
    g = generation_refusal_effect(
        pm.handle, _random_like(1.0, 3), "ablate", pm.harmful[:3], nulls=spec,
        settings=GenerationSettings(max_new_tokens=2),
        classifier=lambda c: "full_refusal" if c.startswith("I") else "compliance", n_boot=20)
    assert g.stop_reason in ("h_exceedances", "k_max") and g.k in (4, 8)
    assert g.real_generations is not None and g.base_rate == 1.0
    row = g.to_row()
    assert {"n_null_used", "stop_reason", "p_used", "base_rate"} <= set(row)
    c = causal_coupling(pm.handle, pm.harmless[:4], source=pm.direction * 3, source_layer=1,
                        read=pm.direction, read_layer=3, nulls=spec, n_boot=20, progress=False)
    assert c.stop_reason == "k_max" and c.k == 8 and c.p == 1 / 9
    assert c.extra["read_layer"] == 3 and c.ci_low <= c.real <= c.ci_high
    fixed = causal_coupling(pm.handle, pm.harmless[:4], source=pm.direction * 3, source_layer=1,
                            read=pm.direction, read_layer=3, nulls=NullSpec(k=8, max_variants=4),
                            n_boot=20, progress=False)
    assert fixed.p == empirical_p(fixed.real, fixed.null, "two-sided") == c.p
    np.testing.assert_allclose(fixed.null, c.null)


def test_candidate_scoring_reuses_a_given_baseline() -> None:
    from safetygeo.activations.logits import last_logprobs

    pm = planted()
    vecs = torch.stack([pm.direction * 3, _random_like(3.0, 5)])
    args = (pm.handle, vecs, [2, 1], pm.harmful[:4], pm.harmless[:4], [pm.refusal_token_id])
    a = score_candidates(*args, progress=False)
    base = last_logprobs(pm.handle, pm.harmless[:4], progress=False)
    b = score_candidates(*args, progress=False, base_logprobs=base)
    pd.testing.assert_frame_equal(a, b)
