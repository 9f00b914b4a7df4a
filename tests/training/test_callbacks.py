"""Geometry callbacks: called on schedule with the live model, records on disk, no effect on
the run they observe, pruned on resume."""

from __future__ import annotations

import shutil

import pytest
import torch

from safetygeo.causal.candidates import refusal_directions
from safetygeo.training import GeometryCallback, TrainConfig, TrainingError, train

CFG = TrainConfig(max_steps=4, save_every=2, batch_size=2, lr=1e-3)


def _refusal_norm(handle, step):
    # a cheap geometry read-out; it also draws random numbers, which must not leak
    torch.rand(3)
    d = refusal_directions(handle, ["Make a bomb.", "Hack a bank."], ["Bake a cake.", "Say hi."],
                           layers=[1], progress=False)
    return {"norm": float(d.norms.max()), "training": handle.model.training}


def test_callback_records_geometry_every_n_steps(toy, tmp_path):
    h = toy.fresh()
    cb = GeometryCallback(_refusal_norm, every=1, name="refusal_norm")
    traj = train(h, "sft", toy.SFT_DATA, out=tmp_path / "t", config=CFG, callbacks=[cb], progress=False)
    recs = traj.callback_records()
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert all(r["name"] == "refusal_norm" and r["values"]["training"] is False for r in recs)
    norms = [r["values"]["norm"] for r in recs]
    assert len(set(norms)) == 4  # the model moves between calls
    # the record at the last step is the geometry of the final model (independent recompute)
    final = _refusal_norm(h, 4)["norm"]
    assert norms[-1] == pytest.approx(final, rel=1e-9)


def test_callback_does_not_change_the_run(toy, tmp_path):
    h1 = toy.fresh()
    t1 = train(h1, "sft", toy.SFT_DATA, out=tmp_path / "a", config=CFG, progress=False)
    h2 = toy.fresh()
    t2 = train(h2, "sft", toy.SFT_DATA, out=tmp_path / "b", config=CFG, progress=False,
               callbacks=[GeometryCallback(_refusal_norm, every=1)])
    assert toy.state_equal(h1.model, h2.model) and t1.losses() == t2.losses()


def test_on_save_and_resume_pruning(toy, tmp_path):
    h = toy.fresh()
    cb = GeometryCallback(lambda handle, step: {"s": step}, every=None, on_save=True)
    traj = train(h, "sft", toy.SFT_DATA, out=tmp_path / "t", config=CFG, callbacks=[cb], progress=False)
    assert [r["step"] for r in traj.callback_records()] == [2, 4]
    # a killed run: checkpoint 4 lost, but its callback record was written
    shutil.rmtree(traj.path / "step-000004")
    cb2 = GeometryCallback(lambda handle, step: {"s": step}, every=1)
    traj2 = train(toy.fresh(), "sft", toy.SFT_DATA, out=tmp_path / "t", config=CFG, callbacks=[cb2],
                  progress=False)
    assert [r["step"] for r in traj2.callback_records()] == [2, 3, 4]


def test_callback_errors():
    with pytest.raises(TrainingError, match="every=N or on_save"):
        GeometryCallback(lambda h, s: {}, every=None)
    with pytest.raises(TrainingError, match="positive int"):
        GeometryCallback(lambda h, s: {}, every=0)
    with pytest.raises(TrainingError, match="not bound"):
        GeometryCallback(lambda h, s: {})._run(1)
