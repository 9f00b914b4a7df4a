"""Gradient geometry along a trajectory: the callback and the post-hoc function agree; the
unlearning method trains the objective the G-effect differentiates."""

from __future__ import annotations

import json

import pytest
import torch

from safetygeo.activations.losses import completion_logprobs
from safetygeo.errors import SafetyGeoError
from safetygeo.gradients import GradientProbe, LossSpec, UnlearningObjective, objective_sum
from safetygeo.training import (
    GradientGeometryCallback,
    TrainConfig,
    Trajectory,
    get_method,
    gradient_geometry_along,
    read_gradient_geometry,
    train,
)
from safetygeo.training.errors import TrainConfigError
from tests.training.conftest import HARMFUL_PAIRS, HARMLESS, fresh_handle

FORGET = HARMFUL_PAIRS
RETAIN = HARMLESS


def _probe() -> GradientProbe:
    forget = LossSpec.from_data(FORGET, "harmful_ce", max_length=64)
    retain = LossSpec.from_data(RETAIN, "ce", max_length=64)
    return GradientProbe(loss_a=forget, loss_b=retain, objectives=("ga", "npo"),
                         forget=forget, retain=retain)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"max_steps": 4, "save_every": 2, "batch_size": 2, "lr": 1e-3,
                          "max_length": 64, "warmup_steps": 0, **kw})


def test_callback_and_post_hoc_give_the_same_numbers(tmp_path) -> None:
    h = fresh_handle()
    probe = _probe()
    cb = GradientGeometryCallback(probe, on_save=True)
    method = get_method("unlearn", objective="npo", beta=0.5)
    traj = train(h, method, {"forget": FORGET}, out=tmp_path / "run", config=_cfg(),
                 callbacks=[cb], progress=False)
    assert traj.steps == [2, 4]
    logged = read_gradient_geometry(traj, ema=0.4)
    post = gradient_geometry_along(tmp_path / "run", probe, include_base=False, ema=0.4)
    assert sorted(logged.cosines.step.unique()) == [2, 4] == sorted(post.cosines.step.unique())
    key = ["step", "group"]
    a = logged.cosines.sort_values(key).reset_index(drop=True)
    b = post.cosines.sort_values(key).reset_index(drop=True)
    assert (a.group == b.group).all()
    assert (a.cosine - b.cosine).abs().max() < 1e-9
    key = ["step", "objective", "risk", "group"]
    a = logged.g_effect.sort_values(key).reset_index(drop=True)
    b = post.g_effect.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) == 2 * 2 * 2 * 5  # steps × objectives × risks × groups
    assert ((a.g_effect - b.g_effect).abs() <= 1e-9 * b.g_effect.abs().max()).all()
    assert ((a.g_effect_ema - b.g_effect_ema).abs() <= 1e-9 * b.g_effect.abs().max()).all()
    # the reference is the start of the run in both; taking each checkpoint as its own
    # reference instead changes NPO's numbers (so the agreement above is not vacuous)
    own = gradient_geometry_along(tmp_path / "run", probe, include_base=False, reference="self")
    c = own.g_effect.sort_values(key).reset_index(drop=True)
    npo = b.objective == "npo"
    assert (c.g_effect[npo] - b.g_effect[npo]).abs().max() > 1e-6 * b.g_effect.abs().max()
    assert (c.g_effect[~npo] - b.g_effect[~npo]).abs().max() <= 1e-9 * b.g_effect.abs().max()
    rec = json.loads((tmp_path / "run" / "callbacks.jsonl").read_text().splitlines()[0])
    assert rec["name"] == "gradient_geometry" and rec["values"]["step"] == 2
    # the model is left as training leaves it: eval mode, no grads
    assert not h.model.training and all(p.grad is None for p in h.model.parameters())


def test_every_n_steps_and_base_step(tmp_path) -> None:
    h = fresh_handle()
    probe = GradientProbe(loss_a=LossSpec.from_data(FORGET, "harmful_ce", max_length=64),
                          loss_b=LossSpec.from_data(RETAIN, max_length=64))
    cb = GradientGeometryCallback(probe, every=1)
    train(h, "sft", {"harmful": [p for p, _ in FORGET], "harmless": RETAIN},
          out=tmp_path / "sft", config=_cfg(max_steps=3, save_every=3), callbacks=[cb],
          progress=False)
    logged = read_gradient_geometry(tmp_path / "sft")
    assert sorted(logged.cosines.step.unique()) == [1, 2, 3]
    post = gradient_geometry_along(tmp_path / "sft", probe)
    assert sorted(post.cosines.step.unique()) == [0, 3]  # the base is step 0
    a = logged.cosines[logged.cosines.step == 3].set_index("group").cosine
    b = post.cosines[post.cosines.step == 3].set_index("group").cosine
    assert (a - b).abs().max() < 1e-9
    with pytest.raises(SafetyGeoError, match="no callback records named 'other'"):
        read_gradient_geometry(tmp_path / "sft", name="other")
    with pytest.raises(SafetyGeoError, match="no complete checkpoint at step 7"):
        gradient_geometry_along(tmp_path / "sft", probe, steps=[7])


def test_unlearn_method_loss_and_reference() -> None:
    h = fresh_handle()
    m = get_method("unlearn", objective="tnpo", beta=1.0)
    recs = m.records(m.split_data({"forget": FORGET}))
    rows = m.setup(h, recs, _cfg())
    batch = m.collate(rows[:3])
    logp, mask = completion_logprobs(h.model, {k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
    # the reference log-probs are those of the model the run starts from
    assert torch.allclose(batch["ref_logp"][mask], logp.detach()[mask], atol=1e-6)
    loss, logs = m.loss(h.model, batch)
    want = objective_sum(UnlearningObjective("tnpo", 1.0), logp, mask, batch["ref_logp"]) / mask.sum()
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    assert "forget_nll" in logs
    with pytest.raises(TrainConfigError, match="unknown unlearning objective"):
        get_method("unlearn", objective="rmu")
    with pytest.raises(TrainConfigError, match="retain data is unused"):
        m.records(m.split_data({"forget": FORGET, "retain": RETAIN}))


def test_ga_unlearning_raises_the_forget_nll(tmp_path) -> None:
    h = fresh_handle()
    spec = LossSpec.from_data(FORGET, "harmful_ce", max_length=64)

    def nll(handle) -> float:
        with torch.no_grad():
            batches, n_tok, _ = spec.batches(handle)
            return float(sum(-completion_logprobs(handle.model, b)[0].sum() for b in batches) / n_tok)

    before = nll(h)
    traj = train(h, get_method("unlearn", objective="ga", retain_weight=1.0),
                 {"forget": FORGET, "retain": RETAIN}, out=tmp_path / "ga",
                 config=_cfg(max_steps=3, save_every=3), progress=False)
    assert nll(Trajectory.load(traj.path).load_checkpoint()) > before + 0.1
