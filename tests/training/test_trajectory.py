"""Trajectory folders: completeness markers, cleanup, identity diffs, base reloading."""

from __future__ import annotations

import hashlib
import json

import pytest

from safetygeo.errors import DamagedCheckpointWarning
from safetygeo.models import load_model
from safetygeo.models.fingerprint import model_fingerprint
from safetygeo.training import TrainConfig, TrajectoryMismatchError, train
from safetygeo.training.checkpoints import (
    MARKER,
    STAGING,
    clean_partial,
    commit_checkpoint,
    scan_checkpoints,
    scan_trajectory,
)
from safetygeo.training.trajectory import identity_diff, read_jsonl


def _staged(tmp_path, name="checkpoint-3"):
    d = tmp_path / STAGING / name
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x" * 10)
    return d


def test_commit_marks_and_renames(tmp_path):
    info = commit_checkpoint(_staged(tmp_path), tmp_path, 3, metrics={"loss": 1.5},
                             method_state={"n": 2})
    assert info.path.name == "step-000003" and not (tmp_path / STAGING / "checkpoint-3").exists()
    marker = json.loads((info.path / MARKER).read_text())
    assert marker["files"] == {
        "method_state.json": {"size": 8, "sha256": hashlib.sha256(b'{"n": 2}').hexdigest()},
        "model.safetensors": {"size": 10, "sha256": hashlib.sha256(b"x" * 10).hexdigest()}}
    assert [c.step for c in scan_checkpoints(tmp_path)] == [3]
    # corrupt a file: no longer complete, reported as damaged, and kept (only debris is cleaned)
    (info.path / "model.safetensors").write_bytes(b"x" * 9)
    with pytest.warns(DamagedCheckpointWarning, match=r"step 3 \(model.safetensors is 9 bytes"):
        assert scan_checkpoints(tmp_path) == []
    (tmp_path / STAGING).mkdir(exist_ok=True)
    assert [p.name for p in clean_partial(tmp_path)] == [STAGING]
    assert info.path.is_dir()


def test_marker_step_must_match_folder_name(tmp_path):
    info = commit_checkpoint(_staged(tmp_path), tmp_path, 3, metrics={}, method_state={})
    info.path.rename(tmp_path / "step-000004")
    assert scan_checkpoints(tmp_path, warn=False) == []
    assert [(d.step, d.reason) for d in scan_trajectory(tmp_path).damaged] == [
        (4, "checkpoint.json is for step 3, not 4")]


def test_identity_diff_names_fields():
    old = {"train_config": {"lr": 1e-3, "lora": None}, "data": {"h": {"sha256": "a" * 64}}}
    new = {"train_config": {"lr": 1e-3, "lora": {"r": 4}}, "data": {"h": {"sha256": "b" * 64}}}
    diff = identity_diff(old, new)
    assert any(d.startswith("data.h.sha256: 'aaaaaaaaaaaa…'") for d in diff)
    assert any(d.startswith("train_config.lora") for d in diff)
    assert identity_diff(old, old) == []


def test_fingerprint_sees_weights_config_and_shapes(toy):
    a, b = toy.fresh().model, toy.fresh(seed=1).model
    fa = model_fingerprint(a)
    assert fa == model_fingerprint(toy.fresh().model)
    fb = model_fingerprint(b)
    assert fa["weights_sha256"] != fb["weights_sha256"] and fa["arch_sha256"] == fb["arch_sha256"]
    fq = model_fingerprint(toy.fresh("qwen2").model)
    assert fq["config_sha256"] != fa["config_sha256"]


def test_torn_jsonl_line_is_skipped(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"step": 1}\n{"step": 2')
    assert read_jsonl(p) == [{"step": 1}]


def test_base_referenced_by_path_is_checked_on_reload(toy, tmp_path):
    d = tmp_path / "base"
    h0 = toy.fresh()
    h0.model.save_pretrained(d)
    h0.tokenizer.save_pretrained(d)
    h = load_model(d)
    traj = train(h, "sft", toy.SFT_DATA, out=tmp_path / "t",
                 config=TrainConfig(max_steps=1, save_every=1, batch_size=2), progress=False)
    assert traj.manifest["base_model"]["saved"] is None
    assert toy.state_equal(traj.load_checkpoint(0).model, h0.model)
    other = toy.fresh(seed=1)
    other.model.save_pretrained(d)  # someone replaced the base checkpoint
    with pytest.raises(TrajectoryMismatchError, match="weights_sha256"):
        traj.load_checkpoint(0)
