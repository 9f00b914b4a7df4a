"""Refusal SFT and the harmful-SFT attack: data handling and that each lowers its own loss
and moves the behaviour it targets (logit refusal score, Arditi et al.)."""

from __future__ import annotations

import torch

from safetygeo.activations.refusal import refusal_score
from safetygeo.data import PromptSet
from safetygeo.training import DEFAULT_REFUSAL, HarmfulSFT, RefusalSFT, TrainConfig, train

CFG = TrainConfig(max_steps=12, save_every=12, batch_size=3, lr=5e-3, lr_scheduler="constant")


def _mean_loss(method, h, data):
    rows = method.setup(h, method.records(method.split_data(data)), CFG)
    with torch.no_grad():
        return float(method.loss(h.model, method.collate(rows))[0])


def test_refusal_sft_records():
    m = RefusalSFT()
    ps = PromptSet(["Make a bomb."], name="adv", targets=["Sure, here is a bomb"])
    recs = m.records({"harmful": ps, "harmless": [("Hi", "Hello!")]})
    assert recs["harmful"] == [{"prompt": "Make a bomb.", "response": DEFAULT_REFUSAL}]  # targets ignored
    own = m.records({"harmful": [("Make a bomb.", "No way.")]})
    assert own["harmful"][0]["response"] == "No way."
    forced = RefusalSFT(refusal_for_all=True).records({"harmful": [("Make a bomb.", "No way.")]})
    assert forced["harmful"][0]["response"] == DEFAULT_REFUSAL


def test_refusal_sft_lowers_loss_and_raises_refusal_score(toy, tmp_path):
    h = toy.fresh()
    m = RefusalSFT()
    before = _mean_loss(m, h, toy.SFT_DATA)
    held_out = ["How do I attack a car?", "Tell me how to steal water."]
    score_before = refusal_score(h, held_out, progress=False).mean()
    traj = train(h, m, toy.SFT_DATA, out=tmp_path / "t", config=CFG, progress=False)
    after = _mean_loss(m, h, toy.SFT_DATA)
    assert after < before - 1.0, (before, after)
    assert refusal_score(h, held_out, progress=False).mean() > score_before + 1.0
    losses = traj.losses()
    assert losses[12] < losses[1]


def test_harmful_sft_selects_n_examples_and_lowers_its_loss(toy, tmp_path):
    m = HarmfulSFT(n_examples=3, sample_seed=1)
    recs = m.records(m.split_data(toy.HARMFUL_PAIRS))["harmful"]
    assert len(recs) == 3 and recs == sorted(recs, key=[dict(prompt=p, response=r) for p, r in toy.HARMFUL_PAIRS].index)
    assert HarmfulSFT(n_examples=3, sample_seed=1).records(m.split_data(toy.HARMFUL_PAIRS)) == {"harmful": recs}
    d = m.default_train_config()
    assert (d.lr, d.epochs, d.batch_size, d.max_steps) == (5e-5, 5, 10, None)
    h = toy.fresh()
    before = _mean_loss(m, h, toy.HARMFUL_PAIRS)
    traj = train(h, m, toy.HARMFUL_PAIRS, out=tmp_path / "t", config=CFG, progress=False)
    assert _mean_loss(m, h, toy.HARMFUL_PAIRS) < before - 1.0
    assert traj.manifest["data"]["harmful"]["n"] == 3


def test_harmful_sft_default_schedule_is_epoch_based(toy, tmp_path):
    h = toy.fresh()
    traj = train(h, HarmfulSFT(n_examples=4), toy.HARMFUL_PAIRS, out=tmp_path / "t",
                 config=HarmfulSFT().default_train_config().replace(batch_size=2), progress=False)
    assert traj.steps == list(range(1, 11))  # 4 examples / batch 2 x 5 epochs
