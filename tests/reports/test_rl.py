"""RL diagnostics along a trajectory against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safetygeo.reports.rl import entropy_along, training_curves
from safetygeo.training import TrainConfig, get_method, train


@pytest.fixture
def rl_traj(toy, tmp_path):
    m = get_method("harmful_rl", reward="not_refused",
                   grpo={"num_generations": 2, "max_completion_length": 4})
    return train(toy.fresh(), m, {"harmful": toy.HARMFUL_PAIRS}, out=tmp_path / "t",
                 config=TrainConfig(lr=1e-3, max_steps=3, batch_size=1, save_every=2, log_every=1),
                 progress=False)


def test_training_curves_hold_every_logged_step(rl_traj):
    c = training_curves(rl_traj)
    assert list(c.step) == [1, 2, 3]
    assert {"reward", "reward_std", "entropy", "loss"} <= set(c.columns)
    at2 = rl_traj.checkpoint(2).metrics
    assert c.set_index("step").loc[2, "reward"] == pytest.approx(at2["reward"])
    assert list(training_curves(rl_traj, 2).step) == [1, 2]


def test_entropy_along_matches_a_direct_forward(rl_traj, toy):
    prompts = [p for p, _ in toy.HARMFUL_PAIRS[:3]]
    frame = entropy_along(rl_traj, {"harmful": prompts}, steps=[0, 3], max_new_tokens=4,
                          n_boot=50)
    assert set(frame.step) == {0, 3}
    for step in (0, 3):
        h = rl_traj.load_checkpoint(step)
        # the first generated token's distribution: one forward of the formatted prompt
        ents = []
        for ids in h.encode(prompts).input_ids:
            with torch.no_grad():
                lp = torch.log_softmax(h.model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)
            ents.append(float(-(lp.exp() * lp).sum()))
        got = frame[(frame.step == step) & (frame.metric == "entropy_at_token") & (frame.position == 0)]
        assert float(got.value.iloc[0]) == pytest.approx(np.mean(ents), rel=1e-6)
        mean = frame[(frame.step == step) & (frame.metric == "output_entropy")].iloc[0]
        assert mean.n == 3 and mean.ci_low <= mean.value <= mean.ci_high
