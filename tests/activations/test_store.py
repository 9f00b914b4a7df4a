from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import safetygeo.activations.store as store
from safetygeo.activations import extract_activations, load_stats
from safetygeo.errors import ArtifactError
from tests.conftest import PROMPTS


def test_round_trip_keeps_tensors_and_provenance(llama, tmp_path: Path) -> None:
    stats = extract_activations(llama, PROMPTS, second_moment="diag", keep_vectors=True,
                                progress=False)
    path = store.save_stats(stats, tmp_path / "acts")
    assert path.name == "acts.safetensors"
    back = load_stats(path)
    for name in ("mean", "mean_sq", "vectors"):
        assert torch.equal(getattr(back, name), getattr(stats, name))
    assert back.mean_outer is None
    assert (back.layers, back.positions, back.n_eoi, back.count) == (
        stats.layers, stats.positions, stats.n_eoi, stats.count)
    meta = back.meta
    assert meta["model_id"] == llama.model_id and meta["seed"] == 0
    assert meta["prompt_set"]["sha256"] == stats.meta["prompt_set"]["sha256"]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["meta"]["template"]["suffix"] == llama.chat_template().suffix


def test_corrupt_or_foreign_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(ArtifactError, match="corrupt"):
        load_stats(bad)
    with pytest.raises(ArtifactError, match="no activation artifact"):
        load_stats(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ArtifactError, match="without safetygeo metadata"):
        load_stats(tmp_path / "foreign.safetensors")


def test_crash_mid_write_leaves_previous_artifact_intact(llama, tmp_path, monkeypatch) -> None:
    stats = extract_activations(llama, PROMPTS[:2], progress=False)
    path = store.save_stats(stats, tmp_path / "acts.safetensors")
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save_stats(stats, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts.json", "acts.safetensors"]


def test_shape_metadata_mismatch_is_detected(llama, tmp_path: Path) -> None:
    stats = extract_activations(llama, PROMPTS[:2], progress=False)
    stats.layers = stats.layers[:2]  # metadata now disagrees with the tensor
    path = store.save_stats(stats, tmp_path / "x")
    with pytest.raises(ArtifactError, match="metadata says 2 layers"):
        load_stats(path)
