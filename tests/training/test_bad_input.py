"""Bad input at the training layer: run files, training data and trainer state that cannot be
read are typed errors naming the file."""

from __future__ import annotations

import pytest

from safetygeo.errors import CheckpointError, DatasetFormatError
from safetygeo.training import TrainConfig, TrainConfigError, train
from safetygeo.training.config import load_run_file


def test_non_utf8_run_file(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_bytes("lr: 0.001\nnote: caf\xe9\n".encode("latin-1"))
    with pytest.raises(TrainConfigError, match="run.yaml.*not UTF-8"):
        load_run_file(p)


@pytest.mark.parametrize("text, match", [
    ("lr: [unclosed", "cannot parse"), ("- a list\n", "mapping"), ("lrr: 1\n", "unknown key"),
])
def test_bad_run_files(tmp_path, text, match):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    with pytest.raises(TrainConfigError, match=match):
        load_run_file(p)


def test_non_utf8_training_data(toy, tmp_path):
    p = tmp_path / "harmless.jsonl"
    p.write_bytes(b'{"prompt": "caf\xe9", "response": "ok"}\n')
    with pytest.raises(DatasetFormatError, match="not UTF-8"):
        train(toy.fresh(), "sft", {"harmful": toy.HARMFUL, "harmless": str(p)},
              out=tmp_path / "t", config=TrainConfig(max_steps=1), progress=False)


def test_corrupt_trainer_state_is_named(toy, tmp_path):
    traj = train(toy.fresh(), "sft", {"harmful": toy.HARMFUL, "harmless": toy.HARMLESS},
                 out=tmp_path / "t", config=TrainConfig(max_steps=2, save_every=2, batch_size=2),
                 progress=False)
    (traj.checkpoint(2).path / "trainer_state.json").write_bytes(b"{torn")
    with pytest.raises(CheckpointError, match="trainer state"):
        traj.log_history(2)
