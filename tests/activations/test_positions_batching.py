from __future__ import annotations

import numpy as np
import pytest
import torch

from safetygeo.models.batching import iter_batches, left_pad
from safetygeo.activations.positions import resolve_positions
from safetygeo.activations.reducers import MomentAccumulator
from safetygeo.errors import PositionError


def test_named_positions() -> None:
    assert resolve_positions("post_instruction", 4).offsets == (-4, -3, -2, -1)
    assert resolve_positions("eoi", 2).labels == ("eoi-2", "eoi-1")
    assert resolve_positions("t_inst", 4).offsets == (-5,)
    sel = resolve_positions("t_inst+post_instruction", 2)
    assert sel.offsets == (-3, -2, -1) and sel.labels == ("t_inst", "eoi-2", "eoi-1")
    assert resolve_positions([-1, -7], 2).labels == ("eoi-1", "pos-7")
    assert resolve_positions(-3, 2).labels == ("t_inst",)
    assert sel.index("t_inst") == 0 and sel.index(-1) == 2
    # labels round-trip: what results report can be passed back
    assert resolve_positions(["eoi-1", "t_inst"], 3) == resolve_positions([-1, -4], 3)
    assert resolve_positions("EOI-2", 2).labels == ("eoi-2",)


@pytest.mark.parametrize("bad,msg", [
    ("post_instruction+last", "duplicate"), ([], "empty"), (3, "negative"), (True, "invalid"),
    ("eoi-2", "does not exist"), ("eoi-0", "does not exist"), ("middle", "unknown position"),
])
def test_position_errors(bad, msg) -> None:
    with pytest.raises(PositionError, match=msg):
        resolve_positions(bad, 1)
    with pytest.raises(PositionError, match="n_eoi = 0"):
        resolve_positions("post_instruction", 0)


def test_left_pad_and_position_ids() -> None:
    ids, mask, pos = left_pad([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 1]]


def test_batches_cover_every_prompt_once_longest_first() -> None:
    seqs = [[1] * n for n in (3, 1, 5, 2, 4)]
    batches = list(iter_batches(seqs, batch_size=2, pad_id=0))
    assert [b.indices for b in batches] == [(2, 4), (0, 3), (1,)]
    assert sorted(i for b in batches for i in b.indices) == list(range(5))
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_batches(seqs, 0, 0))


def test_accumulator_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 2, 3, 4)).astype(np.float32)  # [n, layer, pos, d]
    acc = MomentAccumulator(2, 3, 4, n_prompts=7, second_moment="full", keep_vectors=True)
    for idx in ([0, 1, 2], [3, 4], [5, 6]):
        for slot in range(2):
            acc.update(slot, torch.from_numpy(x[idx, slot]), indices=idx)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(acc.mean().numpy(), x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        acc.mean_outer().numpy(), np.einsum("nlpi,nlpj->lpij", x64, x64) / 7, rtol=1e-12)
    np.testing.assert_array_equal(acc.vectors.numpy(), x)
    assert acc.count == 7 and acc.mean_sq() is None
    with pytest.raises(ValueError, match="second_moment"):
        MomentAccumulator(1, 1, 1, 1, second_moment="half")
