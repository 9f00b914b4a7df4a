"""Carrier selection on a model with a planted refusal mechanism (ground truth e0)."""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import pytest
import torch

from safetygeo.activations import extract_activations
from safetygeo.activations.refusal import RefusalScoring, refusal_score, refusal_token_ids
from safetygeo.causal.candidates import harmfulness_directions, refusal_directions
from safetygeo.causal.carriers import CarrierSelection, score_candidates, select_refusal_carrier
from safetygeo.errors import ArtifactError, EmptyPromptSetError, NonFiniteError, SafetyGeoError
from safetygeo.geometry.directions import diff_in_means
from safetygeo.interventions.hooks import ablate, add
from safetygeo.toy.planted import planted_refusal_model


@functools.lru_cache(maxsize=None)
def planted(plant: bool = True):
    return planted_refusal_model(plant=plant, plant_layer=1)


@functools.lru_cache(maxsize=None)
def selection(plant: bool = True) -> CarrierSelection:
    pm = planted(plant)
    return select_refusal_carrier(pm.handle, pm.harmful, pm.harmless, progress=False)


def sel_tokenizer():
    return planted().handle.tokenizer


def test_diff_in_means_equals_hand_computation() -> None:
    pm = planted()
    h, harmful, harmless = pm.handle, pm.harmful[:6], pm.harmless[:5]
    a = extract_activations(h, harmful, keep_vectors=True, progress=False)
    b = extract_activations(h, harmless, keep_vectors=True, progress=False)
    c = diff_in_means(a, b, kind="refusal")
    hand = a.vectors.double().mean(0) - b.vectors.double().mean(0)
    torch.testing.assert_close(c.vectors, hand, atol=1e-6, rtol=0)
    assert c.vectors.dtype == torch.float64 and (c.n_harmful, c.n_harmless) == (6, 5)
    hd = harmfulness_directions(h, harmful, harmless, progress=False)
    assert hd.positions.labels == ("t_inst",) and hd.kind == "harmfulness"


def test_mismatched_inputs_are_rejected() -> None:
    pm = planted()
    a = extract_activations(pm.handle, pm.harmful[:3], progress=False)
    other = pm.handle.with_template("Q: {instruction}\nA: ok")
    b = extract_activations(other, pm.harmless[:3], positions=[-1, -2, -3, -4, -5, -6, -7, -8],
                            progress=False)
    with pytest.raises(SafetyGeoError, match="different chat templates|positions differ"):
        diff_in_means(a, b)
    c = extract_activations(pm.handle, pm.harmless[:3], layers=[0, 1], progress=False)
    with pytest.raises(SafetyGeoError, match="layers differ"):
        diff_in_means(a, c)
    rd = refusal_directions(pm.handle, pm.harmful[:2], pm.harmful[:2], progress=False)
    with pytest.raises(SafetyGeoError, match="zero norm"):
        rd.unit(0, "eoi-1")


def test_diff_in_means_refuses_non_finite_means() -> None:
    pm = planted()
    a = extract_activations(pm.handle, pm.harmful[:3], progress=False)
    b = extract_activations(pm.handle, pm.harmless[:3], progress=False)
    for bad in (float("nan"), float("inf")):
        broken = copy.copy(b)
        broken.mean = b.mean.clone()
        broken.mean[1, 0, 3] = bad
        with pytest.raises(NonFiniteError, match="harmless activation means"):
            diff_in_means(a, broken)
        with pytest.raises(NonFiniteError, match="harmful activation means"):
            diff_in_means(broken, a)


def test_planted_direction_is_recovered_in_its_layer_band() -> None:
    pm, sel = planted(), selection()
    assert sel.chosen is not None and not sel.weak, sel.notes
    lo, hi = pm.layer_band
    assert lo <= sel.layer <= hi
    assert float(sel.direction @ pm.direction) >= 0.95
    c = sel.candidates
    # every candidate is kept, with its scores and the reason it was filtered
    assert len(c) == (pm.handle.n_layers + 1) * len(sel.directions.positions)
    assert set(c[c.layer >= 3].reason.str.contains("layer>=3")) == {True}
    assert c[c.layer == 0].reason.str.contains("nan").all()  # zero-norm: same template tokens
    # held-out re-scoring is reported beside the selection scores
    row = c[(c.layer == sel.chosen[0]) & (c.position == sel.chosen[1])].iloc[0]
    assert not math.isnan(row.test_bypass)
    assert row.test_bypass < sel.baseline["harmful_test"] - 5
    assert row.test_induce > 0
    assert sel.split_sizes == {"train": {"harmful": 24, "harmless": 24},
                               "val": {"harmful": 12, "harmless": 12},
                               "test": {"harmful": 12, "harmless": 12}}


def test_random_model_has_no_admissible_carrier() -> None:
    sel = selection(False)
    assert sel.chosen is None and sel.weak
    assert "no admissible carrier" in sel.notes[0]
    with pytest.raises(SafetyGeoError, match="no admissible carrier"):
        _ = sel.direction


def test_batched_scores_equal_a_plain_loop() -> None:
    pm, sel = planted(), selection()
    h = pm.handle
    ids = refusal_token_ids(h.tokenizer)
    vecs = torch.stack([sel.directions.vector(2, "eoi-1"), sel.directions.vector(1, "eoi-3"),
                        torch.randn(h.d_model, dtype=torch.float64)])
    layers = [2, 1, 2]
    harmful, harmless = pm.harmful[:6], pm.harmless[:6]
    batched = score_candidates(h, vecs, layers, harmful, harmless, ids, max_variants=2,
                               progress=False)
    for i in range(3):
        with ablate(h, vecs[i]):
            bypass = float(refusal_score(h, harmful, scoring=RefusalScoring(token_ids=ids)).mean())
        with add(h, vecs[i], layers[i]):
            induce = float(refusal_score(h, harmless, scoring=RefusalScoring(token_ids=ids)).mean())
        assert math.isclose(batched.bypass[i], bypass, abs_tol=1e-4)
        assert math.isclose(batched.induce[i], induce, abs_tol=1e-4)


def test_save_and_reload_with_provenance(tmp_path: Path) -> None:
    sel = selection()
    folder = sel.save(tmp_path / "carriers")
    back = CarrierSelection.load(folder)
    assert back.chosen == sel.chosen and back.weak == sel.weak
    assert torch.equal(back.directions.vectors, sel.directions.vectors)
    assert back.candidates.shape == sel.candidates.shape
    assert back.meta["model_id"] == "safetygeo-planted"
    assert back.meta["refusal_tokens"][0] == "I"
    # the refusal scoring is saved with the selection and comes back as the same definition
    assert back.scoring == sel.scoring
    assert back.scoring.phrases == RefusalScoring().phrases
    assert back.scoring.ids(sel_tokenizer()) == refusal_token_ids(sel_tokenizer())
    assert (folder / "candidates.parquet").is_file()
    (folder / "directions.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="does not match"):
        CarrierSelection.load(folder)
    with pytest.raises(ArtifactError, match="not a complete"):
        CarrierSelection.load(tmp_path / "nowhere")


def test_bad_splits() -> None:
    pm = planted()
    with pytest.raises(EmptyPromptSetError):
        select_refusal_carrier(pm.handle, pm.harmful[:2], pm.harmless, progress=False)
    with pytest.raises(SafetyGeoError, match="missing"):
        select_refusal_carrier(pm.handle, {"train": pm.harmful}, pm.harmless, progress=False)
    for bad in ((0.5, 0.5), (0.5, 0.25, 0.25, 0.0), (0.5, 0.0, 0.5), (0.5, -0.1, 0.5),
                (0.6, 0.3, 0.3), (0.5, float("nan"), 0.25), (0.5, True, 0.25), "0.5,0.25,0.25"):
        with pytest.raises(SafetyGeoError, match="three positive fractions"):
            select_refusal_carrier(pm.handle, pm.harmful, pm.harmless, splits=bad,
                                   progress=False)


def test_scoring_is_used_and_saved(tmp_path: Path) -> None:
    """A selection made with an explicit refusal scoring scores refusal with it (baselines
    equal the refusal score under that scoring) and hands it on via ``sel.scoring``."""
    pm = planted()
    h = pm.handle
    ids = refusal_token_ids(h.tokenizer, ["Sorry"])
    assert ids != refusal_token_ids(h.tokenizer)
    scoring = RefusalScoring(token_ids=tuple(ids))
    cut = lambda p: {"train": p[:24], "val": p[24:36], "test": p[36:]}  # noqa: E731
    hs, ls = cut(pm.harmful), cut(pm.harmless)
    sel = select_refusal_carrier(h, hs, ls, scoring=scoring, progress=False, test_top_k=1)
    assert sel.scoring == scoring and sel.meta["refusal_token_ids"] == ids
    assert sel.meta["scoring"] == {"phrases": list(RefusalScoring().phrases), "token_ids": ids}
    for cls, sets in (("harmful", hs), ("harmless", ls)):
        for split in ("val", "test"):
            want = float(refusal_score(h, sets[split], scoring=scoring).mean())
            assert sel.baseline[f"{cls}_{split}"] == pytest.approx(want, abs=1e-6)
    default = select_refusal_carrier(h, hs, ls, progress=False, test_top_k=1)
    assert sel.baseline["harmful_val"] != pytest.approx(default.baseline["harmful_val"])
    assert default.scoring.ids(h.tokenizer) == refusal_token_ids(h.tokenizer)
    by_phrase = select_refusal_carrier(h, hs, ls, progress=False, test_top_k=1,
                                       scoring=RefusalScoring(phrases=("Sorry",)))
    assert by_phrase.baseline == pytest.approx(sel.baseline)
    assert by_phrase.scoring.ids(h.tokenizer) == ids
    assert by_phrase.scoring.phrases == ("Sorry",)
    back = CarrierSelection.load(by_phrase.save(tmp_path / "c"))
    assert back.scoring == by_phrase.scoring
    assert RefusalScoring.from_dict(back.scoring.to_dict()) == back.scoring
    with pytest.raises(SafetyGeoError, match="outside the vocabulary"):
        select_refusal_carrier(h, pm.harmful, pm.harmless, progress=False,
                               scoring=RefusalScoring(token_ids=(len(h.tokenizer) + 5,)))


def test_null_ablation_kl_equals_weight_orthogonalized_models() -> None:
    """Independent reference: each random direction orthogonalized out of the weights (no
    hooks), KL(base ‖ edited) of the last-position next-token distribution by hand."""
    from safetygeo.causal.carriers import null_ablation_kl
    from safetygeo.interventions.nulls import random_directions
    from safetygeo.interventions.orthogonalize import orthogonalized_copy

    pm = planted()
    h, prompts = pm.handle, pm.harmless[:5]
    got = null_ablation_kl(h, prompts, k=3, seed=7, max_variants=2)

    def last_logp(handle) -> torch.Tensor:
        rows = []
        for p in prompts:
            ids = torch.tensor([handle.encode([p]).input_ids[0]])
            with torch.no_grad():
                rows.append(torch.log_softmax(handle.model(ids).logits[0, -1].double(), -1))
        return torch.stack(rows)

    base = last_logp(h)
    for i, d in enumerate(random_directions(3, h.d_model, seed=7)):
        edited = last_logp(orthogonalized_copy(h, d))
        kl = (base.exp() * (base - edited)).sum(-1).mean()
        assert math.isclose(float(got[i]), float(kl), rel_tol=1e-3, abs_tol=1e-6)


def test_null_relative_kl_filter_admits_up_to_the_null_quantile() -> None:
    from safetygeo.causal.carriers import CarrierThresholds

    pm = planted()
    strict = select_refusal_carrier(pm.handle, pm.harmful, pm.harmless, progress=False,
                                    thresholds=CarrierThresholds(max_kl=0.0))
    rel = select_refusal_carrier(pm.handle, pm.harmful, pm.harmless, progress=False,
                                 thresholds=CarrierThresholds(max_kl=0.0, kl_null_quantile=1.0,
                                                              kl_null_k=8))
    info = rel.meta["kl_null"]
    assert info["k"] == 8 and info["value"] == pytest.approx(info["max"]) and info["value"] > 0
    assert rel.meta["kl_limit"] == pytest.approx(info["value"])
    c = rel.candidates.dropna(subset=["kl"])
    flagged = c.reason.str.contains("kl>")
    assert (flagged == (c.kl > info["value"])).all()
    # the absolute filter at 0 rejects every scored candidate; the null-relative one less
    assert strict.candidates.dropna(subset=["kl"]).reason.str.contains("kl>").all()
    assert (~flagged).any()
    with pytest.raises(SafetyGeoError, match="kl_null_quantile"):
        CarrierThresholds(kl_null_quantile=1.5)
