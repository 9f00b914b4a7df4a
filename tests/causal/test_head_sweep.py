"""Head ablation in sweeps: the planted copying head against every other head of its layer,
checked against a weight edit, and resuming tables written before the site column."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import torch

import safetygeo.causal.sweep as sw
from safetygeo.causal.effects import refusal_baseline
from safetygeo.interventions.intervention import HeadAblation
from safetygeo.interventions.nulls import NullSpec
from safetygeo.models.handle import ModelHandle
from safetygeo.toy.planted import planted_refusal_model


@functools.lru_cache(maxsize=None)
def wide():
    """The planted model with 32 heads per layer: head 0 of layer 0 copies the harmfulness
    feature that the refusal token reads (toy/planted.py); no other head writes it."""
    return planted_refusal_model(n_heads=32, d_model=128)


def test_planted_head_beats_every_other_head_and_a_random_head_does_not(tmp_path: Path,
                                                                       monkeypatch) -> None:
    pm = wide()
    kw = dict(harmful=pm.harmful[:8], harmless=pm.harmless[:8], progress=False)
    out = tmp_path / "heads.parquet"
    cells = [HeadAblation(0, (0,)), HeadAblation(0, (7,))]
    table = sw.run_sweep(pm.handle, {}, interventions=cells, out=out, **kw)  # sequential default
    assert list(table.columns[:6]) == list(sw.SWEEP_COLUMNS)
    assert set(table.site) == {"attn_heads"} and set(table.op) == {"head_ablate"}
    harm = table[table.metric == "d_refusal_harmful"].set_index("heads")
    planted, other = harm.loc["0"], harm.loc["7"]
    # exhaustive: all 31 other heads of layer 0; the planted head ranks first -> p = 1/32
    assert planted.k == 31 and planted.n_null_used == 31 and planted.stop_reason == "k_max"
    assert planted.p == pytest.approx(1 / 32) and "exhaustive" in planted.note
    assert planted.real < -5 and np.isnan(planted.p_tail)  # no tail estimate: exact null
    assert other.p > 0.5 and other.stop_reason == "h_exceedances"
    # the real effect equals the same heads removed by zeroing their projection columns
    model = copy.deepcopy(pm.handle.model)
    hd = 128 // 32
    with torch.no_grad():
        model.model.layers[0].self_attn.o_proj.weight[:, 0:hd] = 0.0
    edited = ModelHandle(model, pm.handle.tokenizer, pm.handle.arch)
    base = refusal_baseline(pm.handle, kw["harmful"], kw["harmless"])
    ref = refusal_baseline(edited, kw["harmful"], kw["harmless"])
    assert planted.real == pytest.approx(ref.harmful - base.harmful, abs=1e-4)
    # resuming with one more head set computes only that cell
    calls = {"n": 0}
    real_effect = sw.intervention_effect

    def counted(*a, **k):
        calls["n"] += 1
        return real_effect(*a, **k)

    monkeypatch.setattr(sw, "intervention_effect", counted)
    grown = sw.run_sweep(pm.handle, {}, interventions=[*cells, HeadAblation(0, (1, 2))],
                         out=out, **kw)
    assert calls["n"] == 1 and set(grown.heads) == {"0", "7", "1,2"}
    assert (grown[grown.heads == "1,2"].k <= 64).all()  # C(30, 2) sets: sampled, not exhaustive
    assert not grown[grown.heads == "1,2"].note.fillna("").str.contains("exhaustive").any()


def test_a_table_without_site_columns_resumes(tmp_path: Path, monkeypatch) -> None:
    pm = planted_refusal_model()
    kw = dict(harmful=pm.harmful[:2], harmless=pm.harmless[:2], ops=("ablate", "add"),
              layers=[2], nulls=NullSpec(k=2), progress=False)
    out = tmp_path / "old.parquet"
    first = sw.run_sweep(pm.handle, {"r": pm.direction}, out=out, **kw)
    old, ident = sw.read_sweep(out)
    sw._write(out, old.drop(columns=["site", "heads"]), ident)  # as written before sites
    monkeypatch.setattr(sw, "intervention_effect", lambda *a, **k: pytest.fail("recomputed"))
    again = sw.run_sweep(pm.handle, {"r": pm.direction}, out=out, **kw)
    assert list(again.site) == list(first.site) == ["resid_all"] * 3 + ["resid_in"] * 3
    assert again.heads.isna().all()
    np.testing.assert_allclose(again.p, first.p)
    # a table with an op this version cannot place is refused with a clear message
    bad = old.drop(columns=["site", "heads"]).assign(op="steer")
    sw._write(out, bad, ident)
    with pytest.raises(sw.SettingsError, match="no site column"):
        sw.run_sweep(pm.handle, {"r": pm.direction}, out=out, **kw)


def test_generation_cells_use_each_interventions_prompts_and_nulls() -> None:
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.causal.generation import generation_refusal_effect

    pm = planted_refusal_model()
    kw = dict(harmful=pm.harmful[:3], harmless=pm.harmless[:3], nulls=NullSpec(k=2),
              gen_nulls=NullSpec(k=2), generations=GenerationSettings(max_new_tokens=2),
              progress=False)
    table = sw.run_sweep(pm.handle, {"r": pm.direction * 3}, ops=("add",), layers=[2],
                         interventions=[HeadAblation(0, (0,))], **kw)
    gen = table[table.metric == "d_refusal_rate_gen"].set_index("op")
    assert list(gen.site) == ["resid_in", "attn_heads"] and gen.loc["head_ablate", "heads"] == "0"
    assert int(gen.loc["head_ablate", "k"]) == 2  # 2 of the 3 other heads (K = 2)
    # the head cell's generations are on harmful prompts (removal), the addition's on harmless
    want = generation_refusal_effect(pm.handle, HeadAblation(0, (0,)), prompts=kw["harmful"],
                                     nulls=NullSpec(k=2), settings=kw["generations"], n_boot=200)
    assert gen.loc["head_ablate", "real"] == pytest.approx(want.real)
    assert gen.loc["head_ablate", "n"] == 3 and want.site == "attn_heads" and want.heads == "0"
