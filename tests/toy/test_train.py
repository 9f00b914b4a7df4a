"""The trained toy models: the anchor refuses what it should, carries refusal in an
admissible direction, and is rebuilt deterministically through the training wrapper."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import pytest
import torch

from safetygeo.behavior.generate import Generations
from safetygeo.causal import intervention_effect, select_refusal_carrier
from safetygeo.interventions.nulls import NullSpec
from safetygeo.toy.train import STAGES, ToyRecipe, build_all, measure, stage_recipe
from safetygeo.toy.world import ToyWorld
from safetygeo.toy.zoo import cache_root, load_toy, load_toy_trajectory, toy_splits


@functools.lru_cache(maxsize=None)
def _selection():
    h = load_toy("anchor")
    sp = toy_splits()
    return h, sp, select_refusal_carrier(h, sp["harmful"], sp["harmless"], progress=False)


def test_anchor_refuses_harmful_and_answers_benign(toy_built) -> None:
    info = toy_built["anchor"]["behavior"]
    assert info["refusal_harmful"] >= 0.95
    assert info["refusal_lookalike"] <= 0.05 and info["refusal_benign"] <= 0.05
    # re-measured here, not only read from toy.json
    again = measure(load_toy("anchor"), ToyWorld())
    assert again["refusal_harmful"] >= 0.95 and again["refusal_benign"] <= 0.05
    assert again["refusal_lookalike"] <= 0.05 and again["task_accuracy"] >= 0.5


def test_measure_counts_an_empty_completion_as_refused(monkeypatch) -> None:
    """One "refused" (issue #11): an empty completion is refused, as in ``is_refusal``; it
    used to count as not refused here."""
    import sys

    # the module, not the ``generate`` function the behavior package exports under that name
    gen_mod = sys.modules[Generations.__module__]

    def fake(handle, prompts, settings, *, batch_size, progress):
        comps = tuple("" if i % 2 == 0 else "sure ." for i in range(len(prompts)))
        return Generations(tuple(prompts), comps, tuple(() for _ in prompts),
                           tuple("eos" for _ in prompts), settings)

    monkeypatch.setattr(gen_mod, "generate", fake)
    world = ToyWorld()
    out = measure(None, world)  # type: ignore[arg-type]
    for kind, key in (("harmful", "harmful"), ("lookalike", "lookalike"),
                      ("benign_task", "benign")):
        n = len(world.prompts(kind, "test"))
        assert out[f"refusal_{key}"] == pytest.approx(((n + 1) // 2) / n)  # the empty ones
    assert out["compliance_harmful"] == 0.0


def test_base_is_helpful_only(toy_built) -> None:
    b = toy_built["base"]["behavior"]
    assert b["refusal_harmful"] <= 0.05 and b["compliance_harmful"] >= 0.5


def test_trajectories_are_ordinary_safetygeo_trajectories(toy_built) -> None:
    traj = load_toy_trajectory("anchor")
    assert traj.method == "sft" and traj.steps[-1] == ToyRecipe().anchor_steps
    assert len(traj.steps) >= 3
    marker = json.loads((cache_root() / "anchor-s0" / "toy.json").read_text())
    assert marker["recipe"] == stage_recipe("anchor", ToyRecipe())
    assert "attack_lr" not in marker["recipe"]  # attack settings do not invalidate the anchor


def test_admissible_carrier_ablation_far_below_null_band(toy_built) -> None:
    h, sp, sel = _selection()
    assert sel.chosen is not None and not sel.weak, sel.notes
    assert sel.chosen[0] < int(0.8 * h.n_layers)
    eff = intervention_effect(h, sel.vector, "ablate", harmful=sp["harmful"]["test"],
                              harmless=sp["harmless"]["test"], nulls=NullSpec(k=64),
                              scoring=sel.scoring)["d_refusal_harmful"]
    null_width = eff.null_quantile(0.975) - eff.null_quantile(0.025)
    assert eff.real < eff.null_quantile(0.025) - 10 * max(null_width, 0.05)
    assert eff.p < 0.05
    # held-out re-scoring agrees with the selection
    row = sel.candidates[(sel.candidates.layer == sel.chosen[0])
                         & (sel.candidates.position == sel.chosen[1])].iloc[0]
    assert row.test_bypass < sel.baseline["harmful_test"] - 2


def test_build_is_deterministic_and_resumes(tmp_path: Path) -> None:
    r = ToyRecipe(d_model=32, n_layers=2, d_ff=64, base_steps=6, anchor_steps=4, save_every=2,
                  batch_size=8, eval_tokens=4)
    a = build_all(tmp_path / "a", recipe=r)
    b = build_all(tmp_path / "b", recipe=r)
    wa = load_toy("anchor", cache_dir=tmp_path / "a", recipe=r).model.state_dict()
    wb = load_toy("anchor", cache_dir=tmp_path / "b", recipe=r).model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["anchor"]["behavior"] == b["anchor"]["behavior"]
    # a torn build (no toy.json) is finished from its checkpoints, not trusted
    (tmp_path / "a" / "anchor-s0" / "toy.json").unlink()
    again = build_all(tmp_path / "a", recipe=r)
    assert again["anchor"]["final_step"] == 4
    wc = load_toy("anchor", cache_dir=tmp_path / "a", recipe=r).model.state_dict()
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    # another recipe is another model: the cached one is not reused
    base_marker = (tmp_path / "a" / "base-s0" / "toy.json").read_text()
    r2 = dataclasses.replace(r, anchor_steps=2, attack_steps=1)
    assert build_all(tmp_path / "a", recipe=r2)["anchor"]["final_step"] == 2
    # ... but the base it starts from is the same model, and is not retrained
    assert (tmp_path / "a" / "base-s0" / "toy.json").read_text() == base_marker


def test_unknown_stage() -> None:
    with pytest.raises(ValueError, match="unknown toy model"):
        load_toy("nonsense")


@pytest.mark.slow
def test_every_stage_is_wired_through_the_training_wrapper(tmp_path: Path) -> None:
    """All stages on a miniature recipe: each is a trajectory of its method, starting
    from the stage its recipe names (weights of step 0 equal the parent's final weights)."""
    from safetygeo.training import Trajectory

    r = ToyRecipe(d_model=32, n_layers=2, d_ff=64, base_steps=4, anchor_steps=2, r2d2_steps=2,
                  attack_steps=2, sdd_steps=2, ctrap_steps=2, seam_steps=2, save_every=2,
                  batch_size=8, eval_tokens=4)
    infos = build_all(tmp_path, recipe=r, stages=("r2d2", "attacked", "sdd", "ctrap", "seam"))
    assert set(infos) == {"base", "anchor", "r2d2", "attacked", "sdd", "ctrap", "seam"}
    for stage, parent in (("anchor", "base"), ("r2d2", "base"), ("attacked", "anchor"),
                          ("sdd", "base"), ("ctrap", "base"), ("seam", "anchor")):
        traj = Trajectory.load(tmp_path / f"{stage}-s0")
        assert traj.method == infos[stage]["method"] == STAGES[stage][1]
        start = traj.load_checkpoint(0).model.state_dict()
        end_parent = Trajectory.load(tmp_path / f"{parent}-s0").load_checkpoint().model.state_dict()
        assert all(torch.equal(start[k], end_parent[k]) for k in start)
    # SDD reports the similarity distribution of the pairs it trained on (TF-IDF in the toy)
    pairs = infos["sdd"]["sdd_pairs"]
    assert pairs["embedder"] == "tfidf" and pairs["chosen_max"] < pairs["threshold"]
    assert pairs["n_pairs"] == len(ToyWorld().prompts("harmful", "train"))
    # the defended stages' settings do not invalidate the stages they start from
    assert "seam_lr" not in stage_recipe("anchor", r) and "ctrap_steps" in stage_recipe("ctrap", r)
