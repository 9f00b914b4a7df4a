"""Fault injection into real trajectories (issue #12): a checkpoint that was complete once is
never deleted; its damage — torn marker, truncated weights, bytes overwritten in place,
an unreadable optimizer state — is reported (``Trajectory.damaged``, a
DamagedCheckpointWarning, a DamagedCheckpointError naming the file and step) and a rerun
quarantines it and re-creates what is missing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from transformers import Trainer

from safetygeo.errors import CheckpointError, DamagedCheckpointWarning
from safetygeo.training import DamagedCheckpointError, TrainConfig, Trajectory, train
from safetygeo.training.checkpoints import MARKER, QUARANTINE_NOTE, STAGING

CFG = TrainConfig(max_steps=6, save_every=2, batch_size=2, lr=1e-3, seed=0)


def _run(toy, out, **kw):
    h = toy.fresh()
    return h, train(h, "sft", toy.SFT_DATA, out=out, config=CFG, progress=False, **kw)


def _files(folder: Path) -> dict[str, bytes]:
    return {f.relative_to(folder).as_posix(): f.read_bytes()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def _overwrite_middle(path: Path, n: int = 64) -> None:
    """Same size, other bytes (a bad sector, a stray write): only a hash can tell."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        old = fh.read(n)
        fh.seek(size // 2)
        fh.write(bytes(b ^ 0xFF for b in old))


def _damage(folder: Path, how: str) -> None:
    if how == "marker":  # torn marker (e.g. a disk filled up under an editor / sync tool)
        marker = folder / MARKER
        marker.write_text(marker.read_text()[:40])
    elif how == "no-marker":
        (folder / MARKER).unlink()
    elif how == "truncated":
        with open(folder / "model.safetensors", "r+b") as fh:
            fh.truncate(100)
    elif how == "overwritten":
        _overwrite_middle(folder / "model.safetensors")
    else:  # pragma: no cover
        raise ValueError(how)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted run (steps 2, 4, 6): the reference and the source of copies."""
    import types

    from tests.training.conftest import SFT_DATA, fresh_handle, state_equal

    toy = types.SimpleNamespace(fresh=fresh_handle, SFT_DATA=SFT_DATA, state_equal=state_equal)
    h, t = _run(toy, tmp_path_factory.mktemp("ref") / "t")
    return h, t


def _copy(finished, tmp_path) -> Path:
    out = tmp_path / "t"
    shutil.copytree(finished[1].path, out)
    return out


# ----------------------------------------------------------------------------- reporting
@pytest.mark.parametrize("how", ["marker", "no-marker", "truncated"])
def test_damaged_last_step_is_reported_not_replaced_by_an_earlier_one(finished, tmp_path, how):
    out = _copy(finished, tmp_path)
    _damage(out / "step-000006", how)
    with pytest.warns(DamagedCheckpointWarning, match=r"1 damaged checkpoint\(s\): step 6 \("):
        traj = Trajectory.load(out)
    assert traj.steps == [2, 4] and traj.damaged_steps == [6]
    file = "model.safetensors" if how == "truncated" else MARKER
    with pytest.raises(DamagedCheckpointError, match=rf"step 6 .*step-000006.* damaged: {file}"):
        traj.load_checkpoint()  # not step 4 without a word
    with pytest.raises(DamagedCheckpointError, match=r"step 6") as e:
        traj.checkpoint(6)
    assert e.value.step == 6 and isinstance(e.value, CheckpointError)
    assert traj.load_checkpoint(4) is not None  # intact steps stay usable


# ----------------------------------------------------------------------------- rerun
@pytest.mark.parametrize("how", ["marker", "truncated", "overwritten"])
def test_rerun_quarantines_the_damaged_step_and_recreates_it(toy, finished, tmp_path, how):
    out = _copy(finished, tmp_path)
    _damage(out / "step-000006", how)
    damaged_bytes = _files(out / "step-000006")
    # the user chose to stop: an error naming the step, and nothing touched
    with pytest.raises(DamagedCheckpointError, match=r"step 6 in 'step-000006'.*Nothing was changed"):
        _run(toy, out, on_damaged="stop")
    assert _files(out / "step-000006") == damaged_bytes
    assert not list(out.glob("*.damaged-*"))
    # the default: moved aside (same bytes), said so, and re-created from step 4
    with pytest.warns(DamagedCheckpointWarning,
                      match=r"quarantined 1 damaged checkpoint\(s\), nothing deleted: step 6 .*"
                            r"-> step-000006\.damaged-\d{8}T\d{6}.*continues from step 4"):
        h, traj = _run(toy, out)
    (q,) = out.glob("step-000006.damaged-*")
    kept = _files(q)
    note = json.loads(kept.pop(QUARANTINE_NOTE))
    assert kept == damaged_bytes and note["step"] == 6 and note["from"] == "step-000006"
    assert traj.steps == [2, 4, 6] and traj.damaged == []
    assert [(d.step, d.path) for d in traj.quarantined] == [(6, q)]
    assert traj.manifest["quarantined"][0]["path"] == q.name
    assert re.search("model.safetensors|checkpoint.json", traj.quarantined[0].reason)
    # the re-created step is the one an uninterrupted run wrote
    assert toy.state_equal(h.model, finished[0].model)
    assert traj.losses() == finished[1].losses()


def test_damaged_middle_step_is_quarantined_and_later_steps_kept(toy, finished, tmp_path):
    out = _copy(finished, tmp_path)
    _damage(out / "step-000004", "truncated")
    last = _files(out / "step-000006")
    with pytest.warns(DamagedCheckpointWarning,
                      match=r"continues from step 6 .*step\(s\) \[4\] stay missing"):
        h, traj = _run(toy, out)
    assert traj.steps == [2, 6] and [d.step for d in traj.quarantined] == [4]
    assert _files(out / "step-000006") == last
    assert toy.state_equal(h.model, finished[0].model)


def test_overwrite_and_no_resume_never_delete_damaged_steps(toy, finished, tmp_path):
    out = _copy(finished, tmp_path)
    (out / "step-000006" / MARKER).unlink()
    with pytest.raises(CheckpointError, match=r"damaged checkpoints \[6\]"):
        _run(toy, out, resume=False)
    with pytest.warns(DamagedCheckpointWarning, match="starts afresh"):
        _, traj = _run(toy, out, resume=False, overwrite=True)
    assert traj.steps == [2, 4, 6] and [d.step for d in traj.quarantined] == [6]


# ----------------------------------------------------------------------------- hashes
def test_overwritten_bytes_fail_the_hash_check_on_load(finished, tmp_path):
    out = _copy(finished, tmp_path)
    marker = json.loads((out / "step-000004" / MARKER).read_text())
    assert len(marker["files"]["model.safetensors"]["sha256"]) == 64
    _overwrite_middle(out / "step-000004" / "model.safetensors")
    traj = Trajectory.load(out)
    assert traj.steps == [2, 4, 6]  # listing stays cheap: sizes only
    with pytest.raises(DamagedCheckpointError,
                       match=r"step 4 .* model.safetensors does not match the SHA-256"):
        traj.load_checkpoint(4)
    assert traj.load_checkpoint(4, verify=False) is not None  # explicitly unchecked
    assert [d.step for d in traj.verify()] == [4] and traj.steps == [2, 6]
    with pytest.raises(DamagedCheckpointError, match="step 4"):
        traj.checkpoint(4)


def test_markers_without_hashes_are_still_read(finished, tmp_path):
    out = _copy(finished, tmp_path)
    for d in out.glob("step-*"):  # as written before the marker recorded SHA-256s
        m = json.loads((d / MARKER).read_text())
        m["version"], m["files"] = 1, {k: v["size"] for k, v in m["files"].items()}
        (d / MARKER).write_text(json.dumps(m))
    traj = Trajectory.load(out)
    assert traj.steps == [2, 4, 6] and traj.verify() == []
    assert traj.load_checkpoint() is not None
    (out / "step-000006" / "model.safetensors").write_bytes(b"x")  # sizes are still checked
    with pytest.warns(DamagedCheckpointWarning, match="model.safetensors is 1 bytes"):
        assert Trajectory.load(out).steps == [2, 4]


# ----------------------------------------------------------------------------- optimizer
class _Boom(RuntimeError):
    pass


def _killed_at_4(toy, out, monkeypatch):
    orig = Trainer._save_rng_state

    def boom(self, output_dir):
        if self.state.global_step == 4:
            raise _Boom("killed while saving step 4")
        return orig(self, output_dir)

    with monkeypatch.context() as mp:
        mp.setattr(Trainer, "_save_rng_state", boom)
        with pytest.raises(_Boom):
            _run(toy, out)
    assert Trajectory.load(out).steps == [2]


def _garble(path: Path) -> None:
    path.write_bytes(b"\x80\x04garbage" + b"\0" * (path.stat().st_size - 9))


def test_corrupt_optimizer_state_is_caught_by_its_hash(toy, finished, tmp_path, monkeypatch):
    out = tmp_path / "t"
    _killed_at_4(toy, out, monkeypatch)
    _garble(out / "step-000002" / "optimizer.pt")
    with pytest.raises(DamagedCheckpointError,
                       match=r"step 2 in 'step-000002': optimizer.pt does not match the SHA-256"):
        _run(toy, out, on_damaged="stop")
    assert (out / "step-000002" / "optimizer.pt").is_file()
    # loading the model reads (and checks) only the weights side; resuming checks it all
    assert Trajectory.load(out).load_checkpoint(2) is not None
    with pytest.warns(DamagedCheckpointWarning, match="starts from the base model"):
        h, traj = _run(toy, out)
    assert traj.steps == [2, 4, 6] and [d.step for d in traj.quarantined] == [2]
    assert toy.state_equal(h.model, finished[0].model)


def test_unreadable_optimizer_state_is_a_checkpoint_error_not_an_unpickling_traceback(
        toy, finished, tmp_path, monkeypatch):
    out = tmp_path / "t"
    _killed_at_4(toy, out, monkeypatch)
    step2 = out / "step-000002"
    m = json.loads((step2 / MARKER).read_text())  # an old marker: sizes only, no hash to catch it
    m["files"] = {k: v["size"] for k, v in m["files"].items()}
    (step2 / MARKER).write_text(json.dumps(m))
    _garble(step2 / "optimizer.pt")
    garbled = _files(step2)
    with pytest.raises(DamagedCheckpointError,
                       match=r"step 2 in .*step-000002.*: optimizer.pt cannot be read "
                             r"\(UnpicklingError") as e:
        _run(toy, out, on_damaged="stop")
    assert e.value.step == 2 and _files(step2) == garbled
    with pytest.raises(DamagedCheckpointError, match=r"optimizer.pt cannot be read.*moved it to "
                       r"'step-000002\.damaged-\d{8}T\d{6}'.*rerun to continue from the base"):
        with pytest.warns(DamagedCheckpointWarning):
            _run(toy, out)
    (q,) = out.glob("step-000002.damaged-*")
    kept = _files(q)
    kept.pop(QUARANTINE_NOTE)
    assert kept == garbled
    h, traj = _run(toy, out)  # the rerun the message asks for
    assert traj.steps == [2, 4, 6] and toy.state_equal(h.model, finished[0].model)
    assert not (out / STAGING).exists()


# ----------------------------------------------------------------------------- CLI
def test_cli_rerun_reports_stops_or_quarantines(toy, tmp_path):
    from typer.testing import CliRunner

    from safetygeo.cli import app

    h = toy.fresh()
    model_dir = tmp_path / "tiny"
    h.model.save_pretrained(model_dir)
    h.tokenizer.save_pretrained(model_dir)
    out = tmp_path / "t"
    args = ["train", str(model_dir), "--method", "sft", "--out", str(out), "--set",
            "harmful=example:harmful", "--max-steps", "2", "--save-every", "1", "--batch-size", "2",
            "--no-progress"]
    assert CliRunner().invoke(app, args).exit_code == 0
    with open(out / "step-000002" / "model.safetensors", "r+b") as fh:
        fh.truncate(100)
    r = CliRunner().invoke(app, [*args, "--on-damaged", "stop"])
    text = " ".join(r.output.split())
    assert r.exit_code != 0 and "step 2" in text and "model.safetensors" in text
    assert (out / "step-000002").is_dir()
    with pytest.warns(DamagedCheckpointWarning):
        r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    text = "".join(r.output.split())  # rich wraps long paths anywhere
    assert re.search(r"quarantineddamagedcheckpointstep2.*step-000002\.damaged-", text)
    assert Trajectory.load(out).steps == [1, 2]
