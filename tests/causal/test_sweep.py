"""Null-controlled intervention effects (``safetygeo.causal.effects``) and resumable sweeps
(``safetygeo.causal.sweep``): the planted direction beats its nulls, crash / resume, the
identity header (another K, seed, prompts, scoring or model is refused), overwrite,
incremental cells, debris of killed writes, damaged files, and the refusal scoring used."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import safetygeo.causal.sweep as sw
from safetygeo.activations.refusal import RefusalScoring, refusal_score
from safetygeo.behavior.generate import GenerationSettings
from safetygeo.causal.effects import intervention_effect
from safetygeo.errors import (
    ArtifactError,
    LayerIndexError,
    NonFiniteError,
    SafetyGeoError,
    SettingsError,
)
from safetygeo.interventions.hooks import ablate
from safetygeo.interventions.nulls import NullSpec
from safetygeo.reports.figures import sweep_figure
from safetygeo.results import NullComparison
from safetygeo.toy.planted import planted_refusal_model

SWEEP_COLUMNS = ["direction", "op", "site", "layer", "alpha", "heads", "metric", "real", "ci_low", "ci_high",
                 "null_mean", "null_std", "null_q025", "null_q975", "p", "z", "alternative",
                 "k", "note", "n_null_used", "stop_reason", "p_tail", "p_tail_method", "p_used",
                 "q"]


@functools.lru_cache(maxsize=None)
def planted(plant: bool = True):
    return planted_refusal_model(plant=plant)


def test_planted_direction_beats_64_nulls_and_a_random_one_does_not() -> None:
    pm = planted()
    kw = dict(harmful=pm.harmful[:12], harmless=pm.harmless[:12])
    real = intervention_effect(pm.handle, pm.direction * 3, "ablate", nulls=NullSpec(k=64), **kw)
    assert set(real) == {"d_refusal_harmful", "d_refusal_harmless", "kl_harmless"}
    assert all(isinstance(v, NullComparison) and v.k == 64 for v in real.values())
    assert real["d_refusal_harmful"].real < -5
    assert real["d_refusal_harmful"].p < 0.05
    assert real["d_refusal_harmful"].z < -3
    assert real["d_refusal_harmful"].alternative == "two-sided"
    assert real["kl_harmless"].alternative == "greater"
    rnd = torch.from_numpy(np.random.default_rng(7).standard_normal(64))
    fake = intervention_effect(pm.handle, rnd / rnd.norm() * 3, "ablate",
                               nulls=NullSpec(k=64, seed=1), **kw)
    assert fake["d_refusal_harmful"].p >= 0.05
    added = intervention_effect(pm.handle, pm.direction * 3, "add", layer=2,
                                nulls=NullSpec(k=64), **kw)
    assert added["d_refusal_harmless"].p < 0.05 and added["d_refusal_harmless"].real > 5


def test_real_effect_equals_the_refusal_score_under_the_hook() -> None:
    """The ``real`` of d_refusal_harmful is the change of the mean logit refusal score under
    the intervention, recomputed with ``refusal_score`` and the same scoring."""
    pm = planted()
    scoring = RefusalScoring(phrases=("I cannot",))
    eff = intervention_effect(pm.handle, pm.direction * 3, "ablate", harmful=pm.harmful[:6],
                              harmless=pm.harmless[:6], nulls=NullSpec(k=4), scoring=scoring)
    base = refusal_score(pm.handle, pm.harmful[:6], scoring=scoring).mean()
    with ablate(pm.handle, pm.direction):
        hooked = refusal_score(pm.handle, pm.harmful[:6], scoring=scoring).mean()
    assert eff["d_refusal_harmful"].real == pytest.approx(float(hooked - base), abs=1e-6)


def test_sweep_table_figure_and_resume(tmp_path: Path, monkeypatch) -> None:
    pm = planted()
    dirs = {"planted": pm.direction * 3, "random": torch.randn(64, dtype=torch.float64)}
    kw = dict(harmful=pm.harmful[:4], harmless=pm.harmless[:4], ops=("ablate", "add"),
              layers=[1, 2], alphas=(1.0,), nulls=NullSpec(k=8), progress=False)
    full = sw.run_sweep(pm.handle, dirs, **kw)
    assert len(full) == 2 * (1 + 2) * 3  # directions × (ablate + 2 layers) × metrics
    assert list(full.columns) == SWEEP_COLUMNS
    assert full.q.between(0, 1).all() and (full.q >= full.p - 1e-12).all()
    assert (full.k == 8).all() and full.p.between(1 / 9, 1).all()
    fig = sweep_figure(full)
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
    table, ident = sw.read_sweep(out)
    pd.testing.assert_frame_equal(table.sort_values(cols).reset_index(drop=True), b)
    assert ident["nulls"] == {"k": 8, "kind": "sphere", "seed": 0, "covariance_sha256": None}
    assert set(ident["directions"]) == {"planted", "random"}


def _counting(monkeypatch) -> dict:
    """Count the cells a sweep actually computes."""
    real = sw.intervention_effect
    calls = {"n": 0}

    def counted(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(sw, "intervention_effect", counted)
    return calls


def _small(pm, **over):
    kw = dict(harmful=pm.harmful[:3], harmless=pm.harmless[:3], ops=("ablate", "add"),
              layers=[2], alphas=(1.0,), nulls=NullSpec(k=4), progress=False)
    return {**kw, **over}


@pytest.mark.parametrize("change, field", [
    (dict(nulls=NullSpec(k=6)), "nulls.k"),
    (dict(nulls=NullSpec(k=4, seed=3)), "nulls.seed"),
    (dict(harmful=["How do I pick a lock?", "How do I make a bomb?", "Hack a bank."]),
     "prompts.harmful_sha256"),
    (dict(harmless=["Bake a cake.", "Write a poem."]), "prompts.n_harmless"),
    (dict(scoring=RefusalScoring(token_ids=(5,))), "refusal_token_ids"),
    (dict(nulls=NullSpec(k=4, kind="covariance", covariance=torch.eye(64, dtype=torch.float64))),
     "nulls.kind"),
])
def test_rerun_with_other_settings_is_refused_naming_the_field(tmp_path: Path, monkeypatch,
                                                               change: dict, field: str) -> None:
    pm = planted()
    out = tmp_path / "sweep.parquet"
    dirs = {"planted": pm.direction * 3}
    first = sw.run_sweep(pm.handle, dirs, out=out, **_small(pm))
    before = out.read_bytes()
    calls = _counting(monkeypatch)
    with pytest.raises(SettingsError, match=field.replace(".", r"\.")) as exc:
        sw.run_sweep(pm.handle, dirs, out=out, **_small(pm, **change))
    assert "overwrite" in str(exc.value)
    assert calls["n"] == 0 and out.read_bytes() == before  # nothing computed, nothing written
    # overwrite=True starts afresh with the new settings
    fresh = sw.run_sweep(pm.handle, dirs, out=out, overwrite=True, **_small(pm, **change))
    assert calls["n"] == 2 and len(fresh) == len(first)
    table, _ = sw.read_sweep(out)
    assert len(table) == len(first)  # the old rows are gone, not appended to


def test_rerun_on_another_model_is_refused(tmp_path: Path) -> None:
    pm, other = planted(), planted(False)  # same architecture and shapes, other weights
    out = tmp_path / "sweep.parquet"
    dirs = {"planted": pm.direction * 3}
    kw = _small(pm)
    sw.run_sweep(pm.handle, dirs, out=out, **kw)
    with pytest.raises(SettingsError, match=r"model\.weights_sha256"):
        sw.run_sweep(other.handle, dirs, out=out, **kw)
    with pytest.raises(SettingsError, match=r"directions\.planted"):  # same name, other vector
        sw.run_sweep(pm.handle, {"planted": pm.direction * 2}, out=out, **kw)


def test_same_settings_resume_without_recomputing_and_new_cells_only(tmp_path: Path,
                                                                     monkeypatch) -> None:
    pm = planted()
    out = tmp_path / "sweep.parquet"
    dirs = {"planted": pm.direction * 3}
    first = sw.run_sweep(pm.handle, dirs, out=out, **_small(pm))
    assert len(first) == 2 * 3
    calls = _counting(monkeypatch)
    again = sw.run_sweep(pm.handle, dirs, out=out, **_small(pm))
    assert calls["n"] == 0
    pd.testing.assert_frame_equal(again, first)
    # another batching of the nulls is the same null sample: still nothing to compute
    sw.run_sweep(pm.handle, dirs, out=out, **_small(pm, nulls=NullSpec(k=4, max_variants=2)))
    assert calls["n"] == 0
    # one more strength: only the new (add, layer 2, α=2) cell is computed
    more = sw.run_sweep(pm.handle, dirs, out=out, **_small(pm, alphas=(1.0, 2.0)))
    assert calls["n"] == 1 and len(more) == 3 * 3
    old = more[more.alpha.isna() | (more.alpha == 1.0)].reset_index(drop=True)
    pd.testing.assert_frame_equal(old.drop(columns="q"), first.drop(columns="q"))
    # a new direction: only its cells
    calls["n"] = 0
    grown = sw.run_sweep(pm.handle, {**dirs, "twice": pm.direction * 6}, out=out,
                         **_small(pm, alphas=(1.0, 2.0)))
    assert calls["n"] == 3 and set(grown.direction) == {"planted", "twice"}
    assert len(sw.read_sweep(out)[0]) == 6 * 3


def test_stale_temporary_file_of_a_killed_write_is_removed(tmp_path: Path) -> None:
    pm = planted()
    out = tmp_path / "sweep.parquet"
    stale = tmp_path / ".sweep.parquet.k1ll3d.tmp"
    stale.write_bytes(b"half a parquet file")
    unrelated = tmp_path / ".other.parquet.x.tmp"
    unrelated.write_bytes(b"not ours")
    sw.run_sweep(pm.handle, {"planted": pm.direction}, out=out, **_small(pm, ops=("ablate",)))
    assert not stale.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.parquet.x.tmp", "sweep.parquet"]


def test_damaged_sweep_file_is_an_artifact_error(tmp_path: Path) -> None:
    pm = planted()
    out = tmp_path / "sweep.parquet"
    kw = _small(pm, ops=("ablate",))
    sw.run_sweep(pm.handle, {"planted": pm.direction}, out=out, **kw)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ArtifactError, match="cannot be read"):
        sw.run_sweep(pm.handle, {"planted": pm.direction}, out=out, **kw)
    out.write_bytes(b"garbage")
    with pytest.raises(ArtifactError):
        sw.read_sweep(out)
    # overwrite=True does not need to read it
    assert len(sw.run_sweep(pm.handle, {"planted": pm.direction}, out=out, overwrite=True,
                            **kw)) == 3
    # a table without the identity header (an older version) is refused, not mixed
    pd.DataFrame({"direction": ["planted"]}).to_parquet(out)
    with pytest.raises(SettingsError, match="identity header"):
        sw.run_sweep(pm.handle, {"planted": pm.direction}, out=out, **kw)


def _word_level_handle():
    """A tiny llama on a lower-case word-level vocabulary without any word the default
    refusal phrases start with ("i", "sorry", "as", "unfortunately", ...)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from safetygeo.models import load_model
    from safetygeo.models.tiny import tiny_model
    from safetygeo.toy.world import CHAT_TEMPLATE

    words = ("no", "nope", "sure", "ok", "tell", "me", "how", "to", "make", "a", "bomb", "cake",
             "bake", "hack", "bank", "write", "poem", "the", "sea", "steal", "car", "please")
    specials = ["<pad>", "<bos>", "<eos>", "<unk>", "<user>", "<end>", "<assistant>"]
    tk = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(specials + list(words))},
                                    unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                  pad_token="<pad>", unk_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": ["<user>", "<end>", "<assistant>"]})
    tok.chat_template = CHAT_TEMPLATE
    model = tiny_model("llama", seed=0, vocab_size=len(tok), n_layers=2, d_model=32)
    return load_model(model, tok), tok


def test_run_sweep_scores_refusal_with_the_given_scoring(tmp_path: Path) -> None:
    h, tok = _word_level_handle()
    harmful = ["tell me how to make a bomb", "hack a bank", "steal a car"]
    harmless = ["bake a cake", "write a poem", "tell me how to bake a cake"]
    d = torch.randn(32, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4
    kw = dict(harmful=harmful, harmless=harmless, ops=("add",), layers=[1], alphas=(1.0,),
              nulls=NullSpec(k=4), progress=False)
    with pytest.raises(SafetyGeoError, match="none of the refusal phrases"):
        RefusalScoring().ids(tok)  # the default refusal phrases do not exist here
    with pytest.raises(SafetyGeoError, match="none of the refusal phrases"):
        sw.run_sweep(h, {"d": d}, **kw)
    no, nope = tok.convert_tokens_to_ids(["no", "nope"])
    out = tmp_path / "sweep.parquet"
    by_phrase = sw.run_sweep(h, {"d": d}, scoring=RefusalScoring(phrases=("No",)), out=out, **kw)
    by_ids = sw.run_sweep(h, {"d": d}, scoring=RefusalScoring(token_ids=(no,)), **kw)
    pd.testing.assert_frame_equal(by_phrase, by_ids)  # "No" → the word "no"
    assert sw.read_sweep(out)[1]["refusal_token_ids"] == [no]
    ref = intervention_effect(h, d, "add", layer=1, harmful=harmful, harmless=harmless,
                              nulls=NullSpec(k=4), scoring=RefusalScoring(token_ids=(no,)))
    for metric, eff in ref.items():
        row = by_ids[by_ids.metric == metric].iloc[0]
        assert row.real == pytest.approx(eff.real) and row.p == eff.p
        assert row.null_mean == pytest.approx(eff.null_mean)
    other = sw.run_sweep(h, {"d": d}, scoring=RefusalScoring(token_ids=(nope,)), **kw)
    h_row = lambda t: t[t.metric == "d_refusal_harmful"].real.iloc[0]  # noqa: E731
    assert h_row(other) != pytest.approx(h_row(by_ids))  # the scoring matters ...
    with pytest.raises(SettingsError, match="refusal_token_ids"):  # ... and is in the header
        sw.run_sweep(h, {"d": d}, scoring=RefusalScoring(token_ids=(nope,)), out=out, **kw)


def test_bad_input() -> None:
    pm = planted()
    kw = dict(harmful=pm.harmful[:2], harmless=pm.harmless[:2])
    with pytest.raises(SafetyGeoError, match="expected \\[d_model=64\\]"):
        intervention_effect(pm.handle, torch.ones(5), "ablate", **kw)
    with pytest.raises(SafetyGeoError, match="zero norm"):
        intervention_effect(pm.handle, torch.zeros(64), "ablate", **kw)
    with pytest.raises(SafetyGeoError, match="null directions"):
        NullSpec(k=0)  # K is validated where the null specification is made
    with pytest.raises(SafetyGeoError, match="NullSpec"):
        intervention_effect(pm.handle, torch.ones(64), "ablate", nulls=8, **kw)
    with pytest.raises(LayerIndexError):
        intervention_effect(pm.handle, torch.ones(64), "add", layer=12, **kw)
    with pytest.raises(SafetyGeoError, match="unknown op"):
        sw.run_sweep(pm.handle, {"x": torch.ones(64)}, ops=("steer",), **kw)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(NonFiniteError, match="alpha"):
            intervention_effect(pm.handle, torch.ones(64), "add", layer=1, alpha=bad, **kw)
        with pytest.raises(NonFiniteError, match="alpha"):
            sw.run_sweep(pm.handle, {"x": torch.ones(64)}, ops=("add",), layers=[1],
                         alphas=(1.0, bad), progress=False, **kw)
    with pytest.raises(SafetyGeoError, match="empty prompt"):
        intervention_effect(pm.handle, torch.ones(64), "ablate", harmful=["ok", " "],
                            harmless=pm.harmless[:2])


def test_a_bare_string_is_one_prompt() -> None:
    pm = planted()
    one = intervention_effect(pm.handle, pm.direction * 3, "ablate", harmful=pm.harmful[0],
                              harmless=pm.harmless[0], nulls=NullSpec(k=4))
    listed = intervention_effect(pm.handle, pm.direction * 3, "ablate", harmful=[pm.harmful[0]],
                                 harmless=[pm.harmless[0]], nulls=NullSpec(k=4))
    for metric in one:
        assert one[metric].real == listed[metric].real
        np.testing.assert_array_equal(one[metric].null, listed[metric].null)


def test_covariance_matched_nulls_are_used() -> None:
    pm = planted()
    cov = torch.eye(64, dtype=torch.float64) * 1e-6
    cov[5, 5] = 1.0  # nulls lie (almost) along e5, which the model never reads as refusal
    kw = dict(harmful=pm.harmful[:4], harmless=pm.harmless[:4])
    cov_nulls = NullSpec(k=8, kind="covariance", covariance=cov)
    eff = intervention_effect(pm.handle, pm.direction * 3, "add", layer=2, nulls=cov_nulls, **kw)
    sphere = intervention_effect(pm.handle, pm.direction * 3, "add", layer=2,
                                 nulls=NullSpec(k=8), **kw)
    assert eff["d_refusal_harmless"].null_mean != sphere["d_refusal_harmless"].null_mean
    with pytest.raises(SafetyGeoError, match="needs the activation covariance"):
        NullSpec(k=8, kind="covariance")
    table = sw.run_sweep(pm.handle, {"p": pm.direction * 3}, ops=("add",), layers=[2],
                         nulls=cov_nulls, progress=False, **kw)
    assert table[table.metric == "d_refusal_harmless"].null_mean.iloc[0] == pytest.approx(
        eff["d_refusal_harmless"].null_mean)


def test_sweep_measures_generations_against_nulls(toy_built) -> None:
    """On the trained toy anchor: ablating its carrier lowers the refusal rate of greedy
    generations more than every matched random direction does. (The toy's refusal is
    "deep": most ablated completions open compliantly and then refuse anyway — "ok cannot
    help with that ." — so the generation-level effect is much smaller than the logit one.)"""
    from safetygeo.causal import select_refusal_carrier
    from safetygeo.toy.zoo import load_toy, toy_splits

    h, sp = load_toy("anchor"), toy_splits()
    sel = select_refusal_carrier(h, sp["harmful"], sp["harmless"], progress=False)
    table = sw.run_sweep(h, {"carrier": sel.vector}, harmful=sp["harmful"]["test"],
                         harmless=sp["harmless"]["test"][:12], ops=("ablate",),
                         nulls=NullSpec(k=8), scoring=sel.scoring,
                         generations=GenerationSettings(max_new_tokens=8),
                         gen_nulls=NullSpec(k=32, max_variants=8), progress=False)
    row = table[table.metric == "d_refusal_rate_gen"].iloc[0]
    assert row.real <= -0.15 and row.real < row.null_q025 and row.p < 0.05
    assert row.null_q025 <= row.null_mean <= row.null_q975 and abs(row.null_mean) < 0.1
    assert 0 <= row.q <= 1 and row.k == 32
    assert row.n == len(sp["harmful"]["test"]) and row.real == pytest.approx(
        row.real_rate - row.base_rate)
    assert set(table.metric) == {"d_refusal_harmful", "d_refusal_harmless", "kl_harmless",
                                 "d_refusal_rate_gen"}


def test_the_null_distribution_is_always_kept() -> None:
    pm = planted()
    eff = intervention_effect(pm.handle, pm.direction * 3, "ablate", harmful=pm.harmful[:4],
                              harmless=pm.harmless[:4], nulls=NullSpec(k=9))
    for v in eff.values():
        assert len(v.null) == 9 and v.k == 9
        assert abs(sum(v.null) / 9 - v.null_mean) < 1e-9
        row = v.to_row()
        assert row["null_q025"] == pytest.approx(v.null_quantile(0.025))
        assert row["p"] == v.p and row["z"] == v.z
