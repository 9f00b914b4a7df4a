"""The RL methods' update structure against the official (verl) recipe (issue 26): optimizer
updates per generation batch, the token-mean policy loss with verl's dual clip computed by
hand, and weight decay reaching the optimizer."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from safetygeo.training import TrainConfig, get_method, train
from safetygeo.training.errors import TrainConfigError
from safetygeo.training.grpo import GRPOSettings, grpo_arguments


def test_defaults_are_the_official_update_structure():
    s = GRPOSettings()
    assert (s.updates_per_generation, s.loss_type, s.delta, s.epsilon, s.beta) == (4, "bnpo", 3.0, 0.2, 0.0)
    for name, steps in (("harmful_rl", 100), ("tokenbuncher", 200)):
        m = get_method(name)
        cfg = m.default_train_config()
        args = grpo_arguments(cfg, m.config.grpo, "/tmp/unused")
        # 32 prompts × 4 rollouts per generation, 4 updates of 8 prompts, `steps` rollout steps
        assert args.generation_batch_size == 32 * 4 and args.per_device_train_batch_size == 8 * 4
        assert args.steps_per_generation == 4 and args.max_steps == 4 * steps
        assert args.weight_decay == 0.01 and args.loss_type == "bnpo" and args.delta == 3.0
    assert get_method("tokenbuncher").config.noiser_warmup == 4 * 25
    # the toy presets: harmful_rl's uses the official structure, tokenbuncher's keeps the one
    # its toy stage was built and measured with (RESULTS.md, "Recipe fidelity")
    assert get_method("harmful_rl", preset="cpu").config.grpo.updates_per_generation == 4
    tb = get_method("tokenbuncher", preset="cpu").config.grpo
    assert (tb.updates_per_generation, tb.loss_type, tb.delta) == (1, "grpo", None)
    # with gradient accumulation an update still consumes batch_size × grad_accum prompts
    acc = grpo_arguments(TrainConfig(batch_size=4, grad_accum=2), GRPOSettings(), "/tmp/unused")
    assert acc.steps_per_generation == 8 and acc.generation_batch_size == 4 * 4 * 8
    with pytest.raises(TrainConfigError, match="delta"):
        GRPOSettings(delta=1.1)
    with pytest.raises(TrainConfigError, match="updates_per_generation"):
        GRPOSettings(updates_per_generation=0)


class _Count(TrainerCallback):
    def __init__(self) -> None:
        self.steps = 0
        self.weight_decay: dict[str, float] = {}

    def on_train_begin(self, args, state, control, optimizer=None, model=None, **kw):
        names = {id(p): n for n, p in model.named_parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                self.weight_decay[names[id(p)]] = group["weight_decay"]

    def on_step_end(self, args, state, control, **kw):
        self.steps += 1


def test_one_generation_batch_feeds_four_optimizer_updates_and_decay_reaches_adamw(toy, tmp_path):
    calls: list[int] = []

    def reward(prompts, completions, targets):
        calls.append(len(completions))
        return [float(len(c)) for c in completions]

    count = _Count()
    cfg = TrainConfig(lr=1e-3, max_steps=8, batch_size=1, save_every=4, log_every=1, weight_decay=0.01)
    m = get_method("harmful_rl", reward=reward, grpo={"num_generations": 2, "max_completion_length": 3})
    traj = train(toy.fresh(), m, {"harmful": toy.HARMFUL_PAIRS}, out=tmp_path / "t", config=cfg,
                 callbacks=[count], progress=False)
    assert traj.steps[-2:] == [4, 8] and count.steps == 8
    # 8 optimizer updates from 2 generation batches of 4 prompts × 2 rollouts each
    assert calls == [8, 8]
    wd = count.weight_decay
    assert wd["model.layers.0.self_attn.q_proj.weight"] == 0.01
    assert wd["model.layers.0.mlp.down_proj.weight"] == 0.01
    # transformers exempts norm weights (verl's AdamW does not: a documented difference)
    assert wd["model.layers.0.input_layernorm.weight"] == 0.0
    # without updates_per_generation every update samples its own generation batch
    calls.clear()
    m1 = get_method("harmful_rl", reward=reward,
                    grpo={"num_generations": 2, "max_completion_length": 3, "updates_per_generation": 1})
    train(toy.fresh(), m1, {"harmful": toy.HARMFUL_PAIRS}, out=tmp_path / "t1", progress=False,
          config=cfg.replace(max_steps=3, save_every=3))
    assert calls == [2, 2, 2]


def _completion_logps(model, prompt_ids, prompt_mask, comp_ids, comp_mask):
    ids = torch.cat([prompt_ids, comp_ids], 1)
    att = torch.cat([prompt_mask, comp_mask], 1)
    logits = model(input_ids=ids, attention_mask=att).logits.float()
    p = prompt_ids.shape[1]
    lp = torch.log_softmax(logits[:, p - 1:-1], dim=-1)
    return lp.gather(-1, comp_ids[..., None]).squeeze(-1)


def test_default_policy_loss_is_verl_token_mean_with_dual_clip(toy, tmp_path):
    """TRL's loss under the default settings, on an off-policy update (the ratios differ from
    1, as in the 2nd–4th update of a generation batch), equals verl's PPO loss written out by
    hand: per token −A·r clipped to [1−ε, 1+ε], the dual clip min(·, −A·c) for A < 0, then
    the mean over every completion token of the update."""
    from datasets import Dataset
    from trl import GRPOTrainer

    h = toy.fresh()
    args = grpo_arguments(TrainConfig(max_steps=1, batch_size=2),
                          GRPOSettings(num_generations=2, max_completion_length=4), str(tmp_path))
    tr = GRPOTrainer(model=h.model, reward_funcs=lambda completions, **_: [0.0] * len(completions),
                     args=args, processing_class=h.tokenizer,
                     train_dataset=Dataset.from_list([{"prompt": "x"}] * 8))
    g = torch.Generator().manual_seed(1)
    v = h.model.config.vocab_size
    prompt_ids = torch.randint(3, v, (4, 5), generator=g)
    prompt_mask = torch.ones(4, 5, dtype=torch.long)
    prompt_mask[2, :3] = 0
    comp_ids = torch.randint(3, v, (4, 4), generator=g)
    comp_mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    adv = torch.tensor([1.0, -1.5, -0.5, 0.7])
    with torch.no_grad():
        lp0 = _completion_logps(h.model, prompt_ids, prompt_mask, comp_ids, comp_mask)
    # old log-probs so that the ratios r = exp(lp − old) cover every branch of the clip:
    # inside [0.8, 1.2], below, above, and above the dual-clip cap 3
    log_r = torch.log(torch.tensor([[1.0, 1.5, 0.5, 4.0], [5.0, 1.0, 1.0, 1.0],
                                    [0.6, 2.0, 3.5, 1.0], [1.1, 0.7, 1.0, 1.0]]))
    old = lp0 - log_r
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": comp_ids,
              "completion_mask": comp_mask, "advantages": adv, "old_per_token_logps": old,
              "num_items_in_batch": comp_mask.sum()}
    tr.model.eval()  # one micro-batch, no accumulation normalizer
    params = [p for p in h.model.parameters() if p.requires_grad]
    loss = tr.compute_loss(h.model, inputs)
    got = torch.autograd.grad(loss, params)

    lp = _completion_logps(h.model, prompt_ids, prompt_mask, comp_ids, comp_mask)
    r = torch.exp(lp - old)
    a = adv[:, None]
    clipped = torch.maximum(-a * r, -a * torch.clamp(r, 0.8, 1.2))
    per_tok = torch.where(a < 0, torch.minimum(clipped, -a * 3.0), clipped)
    m = comp_mask.float()
    want = (per_tok * m).sum() / m.sum()  # verl's token-mean over the update
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    for x, y in zip(got, torch.autograd.grad(want, params)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)
    assert sum(float(x.abs().sum()) for x in got) > 0
    # not vacuous: the per-sequence mean (loss_type "grpo") and no dual clip differ here
    seq = ((per_tok * m).sum(1) / m.sum(1)).mean()
    assert abs(float(seq.detach()) - float(want.detach())) > 1e-2
    no_dual = (clipped * m).sum() / m.sum()
    assert abs(float(no_dual.detach()) - float(want.detach())) > 1e-2
