"""load_toy never returns an earlier step than the stage's recorded final step (issue #12):
a damaged final checkpoint is repaired by resuming the stage's training — nothing deleted,
the re-created step bit-identical — or, with repair=False, raises."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from safetygeo.errors import DamagedCheckpointWarning
from safetygeo.toy.train import ToyRecipe, build_all
from safetygeo.toy.zoo import load_toy, load_toy_trajectory
from safetygeo.training import DamagedCheckpointError

R = ToyRecipe(d_model=32, n_layers=2, d_ff=64, base_steps=6, anchor_steps=4, save_every=2,
              batch_size=8, eval_tokens=4)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("toy")
    build_all(cache, recipe=R)
    return cache


def _fresh_copy(built: Path, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(built, cache)
    return cache


def _same(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("how", ["marker", "overwritten", "gone"])
def test_damaged_final_step_is_repaired_not_replaced_by_an_earlier_one(built, tmp_path, how):
    cache = _fresh_copy(built, tmp_path)
    want = load_toy("anchor", cache_dir=built, recipe=R)
    final = cache / "anchor-s0" / "step-000004"
    if how == "marker":
        (final / "checkpoint.json").write_text("{")
    elif how == "overwritten":
        path = final / "model.safetensors"
        data = bytearray(path.read_bytes())
        data[len(data) // 2: len(data) // 2 + 32] = bytes(32)
        path.write_bytes(bytes(data))
    else:  # deleted by an older safetygeo: toy.json still says step 4
        shutil.rmtree(final)
    with pytest.raises(DamagedCheckpointError, match=r"step 4"):
        load_toy("anchor", cache_dir=cache, recipe=R, repair=False)
    with pytest.warns(DamagedCheckpointWarning, match=r"toy model 'anchor'.*repairing"):
        got = load_toy("anchor", cache_dir=cache, recipe=R)
    assert got.extra["toy"]["final_step"] == 4 and _same(got, want)
    traj = load_toy_trajectory("anchor", cache_dir=cache, recipe=R)
    assert traj.steps[-1] == 4 and traj.damaged == []
    if how != "gone":
        assert [d.step for d in traj.quarantined] == [4]  # kept, moved aside
