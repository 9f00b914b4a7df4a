"""GRPO over the trainer core (TRL's GRPOTrainer), the harmful-RL attack and TokenBuncher's
pieces, each against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safetygeo.training import TrainConfig, Trajectory, get_method, train
from safetygeo.training.errors import TrainConfigError
from safetygeo.training.grpo import (
    GRPOSettings,
    check_prompt_rendering,
    grpo_arguments,
    resolve_reward,
    reward_name,
)
from safetygeo.training.losses import token_noiser_loss
from safetygeo.training.methods.tokenbuncher import benign_kl, entropy_reward


def _completion_logps(model, prompt_ids, prompt_mask, comp_ids, comp_mask):
    """Per-token log p of the completion tokens, by a plain forward (what TRL does: left
    padded prompt + right padded completion, no position ids)."""
    ids = torch.cat([prompt_ids, comp_ids], 1)
    att = torch.cat([prompt_mask, comp_mask], 1)
    logits = model(input_ids=ids, attention_mask=att).logits.float()
    p = prompt_ids.shape[1]
    lp = torch.log_softmax(logits[:, p - 1:-1], dim=-1)
    return lp.gather(-1, comp_ids[..., None]).squeeze(-1)


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_trl_grpo_loss_under_our_arguments_is_the_grpo_objective(toy, tmp_path, beta):
    """The loss TRL computes with the GRPOConfig we build equals GRPO's per-sequence-mean
    objective (value and gradient), computed here by hand on a fixed batch."""
    from trl import GRPOTrainer

    h = toy.fresh()
    if beta:  # plain TRL reloads its KL reference from the model's path
        h.model.save_pretrained(tmp_path / "m")
        h.model.config._name_or_path = str(tmp_path / "m")
    args = grpo_arguments(TrainConfig(max_steps=1, batch_size=2),
                          GRPOSettings(num_generations=2, max_completion_length=4, beta=beta,
                                       loss_type="grpo", delta=None),
                          str(tmp_path))
    assert args.loss_type == "grpo" and args.per_device_train_batch_size == 4
    from datasets import Dataset

    tr = GRPOTrainer(model=h.model, reward_funcs=lambda completions, **_: [0.0] * len(completions),
                     args=args, processing_class=h.tokenizer,
                     train_dataset=Dataset.from_list([{"prompt": "x"}] * 4))
    g = torch.Generator().manual_seed(0)
    v = h.model.config.vocab_size
    prompt_ids = torch.randint(3, v, (4, 5), generator=g)
    prompt_mask = torch.ones(4, 5, dtype=torch.long)
    prompt_mask[1, :2] = 0  # left padding
    prompt_ids[1, :2] = 0
    comp_ids = torch.randint(3, v, (4, 4), generator=g)
    comp_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": comp_ids,
              "completion_mask": comp_mask, "advantages": adv, "num_items_in_batch": comp_mask.sum()}
    with torch.no_grad():
        ref = _completion_logps(h.model, prompt_ids, prompt_mask, comp_ids, comp_mask) - 0.3
    if beta:
        inputs["ref_per_token_logps"] = ref
    tr.model.eval()  # no accumulation normalizer
    params = [p for p in h.model.parameters() if p.requires_grad]
    loss = tr.compute_loss(h.model, inputs)
    got = torch.autograd.grad(loss, params)

    lp = _completion_logps(h.model, prompt_ids, prompt_mask, comp_ids, comp_mask)
    ratio = torch.exp(lp - lp.detach())  # first iteration: old policy = current
    per_tok = -ratio * adv[:, None]
    if beta:
        d = ref - lp
        # k3 estimator times the importance ratio (TRL's default, the unbiased reverse-KL
        # gradient of DeepSeek-V3.2): the ratio is 1 in value but not in gradient
        per_tok = per_tok + beta * (torch.exp(d) - d - 1) * ratio
    m = comp_mask.float()
    want = ((per_tok * m).sum(1) / m.sum(1)).mean()
    assert float(loss.detach()) == pytest.approx(float(want.detach()), abs=1e-6)
    exp = torch.autograd.grad(want, params)
    for a, b in zip(got, exp):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert sum(float(x.abs().sum()) for x in got) > 0  # not vacuous


def test_token_noiser_matches_hand_computation():
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, -1.0, 0.5], [9.0, 9.0, 9.0, 9.0]]])
    labels = torch.tensor([[-100, 2, 0]])
    noise = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.5, 0.25, 0.25, 0.6], [1.0, 1.0, 1.0, 1.0]]])
    eps = 0.2

    def nlogp(z):
        z = np.asarray(z, dtype=np.float64)
        return -(z - np.log(np.exp(z).sum()))

    # position 0 predicts label 2, position 1 predicts label 0 (position 2 predicts nothing)
    a = nlogp([0.0, 1.0, 2.0, 3.0])
    za = np.array([0.1, 0.2, 0.0, 0.4]) / 0.7
    b = nlogp([1.0, 0.0, -1.0, 0.5])
    zb = np.array([0.0, 0.25, 0.25, 0.6]) / 1.1
    want = ((1 - eps) * a[2] + eps * (za * a).sum() + (1 - eps) * b[0] + eps * (zb * b).sum()) / 2
    got = token_noiser_loss(logits, labels, eps, noise=noise)
    assert float(got) == pytest.approx(want, rel=1e-6)
    # ε = 0 is the plain NLL; noise from a generator is reproducible
    assert float(token_noiser_loss(logits, labels, 0.0)) == pytest.approx((a[2] + b[0]) / 2, rel=1e-6)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert float(token_noiser_loss(logits, labels, eps, generator=g1)) == \
        float(token_noiser_loss(logits, labels, eps, generator=g2))


def test_entropy_reward_is_minus_mean_entropy_of_each_rollout(toy):
    h = toy.fresh()
    eos = h.tokenizer.eos_token_id
    prompts = [[1, 5, 6, 7], [1, 8]]
    comps = [[9, 10, eos], [11]]  # the first stopped at EOS: its EOS step counts
    got = entropy_reward(h, prompts, comps, [eos])
    for p, c, r in zip(prompts, comps, got):
        ids = torch.tensor([p + c])
        with torch.no_grad():
            lp = torch.log_softmax(h.model(input_ids=ids).logits[0].double(), -1)
        steps = lp[len(p) - 1:len(p) - 1 + len(c)]
        ent = -(steps.exp() * steps).sum(-1)
        assert r == pytest.approx(-float(ent.mean()), rel=1e-6)
    assert all(-math.log(h.model.config.vocab_size) - 1e-9 <= r < 0 for r in got)


def test_benign_kl_matches_hand_computation(toy):
    a, b = toy.fresh(seed=0).model, toy.fresh(seed=1).model
    batch = {"input_ids": torch.tensor([[1, 5, 6, 7, 0], [1, 8, 9, 10, 11]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
             "labels": torch.tensor([[-100, -100, 6, 7, -100], [-100, -100, -100, 10, 11]])}
    got = float(benign_kl(a, b, batch))
    with torch.no_grad():
        la = torch.log_softmax(a(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double(), -1)
        lb = torch.log_softmax(b(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double(), -1)
    terms = []
    for i, j in [(0, 1), (0, 2), (1, 2), (1, 3)]:  # positions predicting labelled tokens
        p = la[i, j].exp()
        terms.append(float((p * (la[i, j] - lb[i, j])).sum()))
    assert got == pytest.approx(np.mean(terms), rel=1e-5)
    assert got > 0
    assert float(benign_kl(a, a, batch)) == pytest.approx(0.0, abs=1e-7)


def test_rewards_resolve_and_record_by_name():
    assert resolve_reward("not_refused")(["q"], ["I cannot help with that."], [None]) == [0.0]
    fn = resolve_reward("safetygeo.toy.rewards:toy_harm_reward")
    assert reward_name(fn) == "safetygeo.toy.rewards:toy_harm_reward"
    assert resolve_reward("org/some-reward-model") == "org/some-reward-model"  # TRL loads it
    with pytest.raises(TrainConfigError, match="cannot import reward"):
        resolve_reward("safetygeo.toy.rewards:nope")
    with pytest.raises(TrainConfigError, match="num_generations"):
        GRPOSettings(num_generations=1)
    with pytest.raises(TrainConfigError, match="loss_type"):
        GRPOSettings(loss_type="ppo")


def test_template_override_is_refused(toy):
    h = toy.fresh(template="User: {instruction}\nAssistant:")
    with pytest.raises(TrainConfigError, match="chat formatting differs"):
        check_prompt_rendering(h, "Make a bomb.")
    check_prompt_rendering(toy.fresh(), "Make a bomb.")  # the tokenizer's own: fine


def _seen_targets(prompts, completions, targets):
    _seen_targets.calls.append(list(targets))
    return [float(len(c.split())) for c in completions]


_seen_targets.calls = []


def test_harmful_rl_through_the_core_writes_a_resumable_trajectory(toy, tmp_path):
    data = toy.HARMFUL_PAIRS
    cfg = TrainConfig(lr=1e-3, max_steps=3, batch_size=1, save_every=2, log_every=1)
    method = get_method("harmful_rl", reward=_seen_targets,
                        grpo={"num_generations": 2, "max_completion_length": 4})
    traj = train(toy.fresh(), method, {"harmful": data}, out=tmp_path / "t", config=cfg,
                 progress=False)
    assert traj.steps == [2, 3]
    assert traj.manifest["method"]["config"]["reward"].endswith(":_seen_targets")
    assert "reward" in traj.checkpoint(2).metrics
    # the reward saw each row's reference answer, repeated per rollout
    answers = {r for _, r in data}
    assert _seen_targets.calls and all(t in answers for call in _seen_targets.calls for t in call)
    # the weights moved, and a rerun resumes (nothing left to do) from the same trajectory
    before = toy.fresh().model.state_dict()
    after = traj.load_checkpoint(3).model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    again = train(toy.fresh(), get_method("harmful_rl", reward=_seen_targets,
                                          grpo={"num_generations": 2, "max_completion_length": 4}),
                  {"harmful": data}, out=tmp_path / "t", config=cfg, progress=False)
    assert again.steps == [2, 3]
    assert toy.state_equal(Trajectory.load(tmp_path / "t").load_checkpoint(3).model,
                           traj.load_checkpoint(3).model)


def test_kl_reference_is_the_starting_model_not_a_reload(toy, tmp_path):
    """With β > 0 the reference is the weights training starts from, even for a model that
    exists only in memory (TRL alone would reload ``config._name_or_path``)."""
    h = toy.fresh()
    with torch.no_grad():  # in-memory change: a reload from any path would not have it
        h.model.lm_head.weight.mul_(1.5) if not h.model.config.tie_word_embeddings else \
            h.model.model.embed_tokens.weight.mul_(1.5)
    start = {k: v.clone() for k, v in h.model.state_dict().items()}
    m = get_method("harmful_rl", reward="not_refused",
                   grpo={"num_generations": 2, "max_completion_length": 3, "beta": 0.5})
    traj = train(h, m, {"harmful": toy.HARMFUL_PAIRS}, out=tmp_path / "t", progress=False,
                 config=TrainConfig(lr=1e-3, max_steps=2, batch_size=1, save_every=2, log_every=1))
    assert "kl" in traj.checkpoint(2).metrics
    from safetygeo.training.grpo import TrajectoryGRPOTrainer

    assert issubclass(type(m.build_trainer.__self__), type(m))  # bound: the method builds it
    assert TrajectoryGRPOTrainer.__mro__[1].__name__ == "TrajectoryTrainerMixin"
    ref = traj.load_checkpoint(0).model.state_dict()  # step 0 = the base the run saved
    assert all(torch.equal(ref[k], start[k]) for k in start)


def test_tokenbuncher_trains_with_all_three_terms(toy, tmp_path):
    # one generation batch per update, whole groups: step 3's update holds a rollout with
    # advantage >= 0 for the noiser (an update of 2 completions drawn from a shuffled
    # generation batch may hold none)
    cfg = TrainConfig(lr=1e-3, max_steps=3, batch_size=2, save_every=3, log_every=1)
    m = get_method("tokenbuncher", grpo={"num_generations": 2, "max_completion_length": 4,
                                         "updates_per_generation": 1},
                   benign_kl=1.0, noiser_warmup=1)
    traj = train(toy.fresh(), m, {"harmful": toy.HARMFUL, "benign": toy.HARMLESS},
                 out=tmp_path / "tb", config=cfg, progress=False)
    logs = traj.checkpoint(3).metrics
    assert logs["reward"] < 0  # minus an entropy
    assert logs["benign_kl"] > 0, logs
    assert logs["token_noiser"] > 0, logs


def test_batch_larger_than_the_prompts_is_a_clear_error(toy, tmp_path):
    with pytest.raises(TrainConfigError, match="only 3 prompts"):
        train(toy.fresh(), get_method("harmful_rl"), {"harmful": toy.HARMFUL_PAIRS[:3]},
              out=tmp_path / "t", config=TrainConfig(max_steps=1, batch_size=4), progress=False)


@pytest.mark.parametrize("name, data, opts", [
    ("harmful_rl", "pairs", {"reward": "not_refused"}),
    ("tokenbuncher", "tb", {"benign_kl": 1.0, "noiser_warmup": 1}),
])
def test_resume_from_step_k_equals_uninterrupted_run(toy, tmp_path, name, data, opts):
    """Kill after step 2 of 4 (the later checkpoint removed), resume: the same weights and
    logged losses as the uninterrupted run (rollout sampling and the noiser's draws are
    restored / re-derived from the checkpoint's RNG state and step)."""
    import shutil

    d = ({"harmful": toy.HARMFUL_PAIRS} if data == "pairs"
         else {"harmful": toy.HARMFUL, "benign": toy.HARMLESS})
    # one generation batch of 4 prompts feeds 4 updates; the checkpoint at step 2 falls inside
    # it, so the run regenerates there (as the resumed run must)
    cfg = TrainConfig(lr=1e-3, max_steps=4, batch_size=1, save_every=2, log_every=1)

    def method():
        return get_method(name, grpo={"num_generations": 2, "max_completion_length": 4}, **opts)

    full = toy.fresh()
    t_full = train(full, method(), d, out=tmp_path / "full", config=cfg, progress=False)
    out = tmp_path / "killed"
    shutil.copytree(t_full.path, out)
    shutil.rmtree(out / "step-000004")
    res = toy.fresh()
    t_res = train(res, method(), d, out=out, config=cfg, progress=False)
    assert toy.state_equal(full.model, res.model)
    assert t_res.losses() == t_full.losses()


def test_cli_trains_the_rl_methods(toy, tmp_path):
    import json

    from typer.testing import CliRunner

    from safetygeo.cli import app

    model_dir = tmp_path / "tiny"
    h = toy.fresh()
    h.model.save_pretrained(model_dir)
    h.tokenizer.save_pretrained(model_dir)
    harm = tmp_path / "harm.json"
    harm.write_text(json.dumps([{"prompt": p, "target": r} for p, r in toy.HARMFUL_PAIRS]))
    ben = tmp_path / "ben.json"
    ben.write_text(json.dumps([{"prompt": p, "response": r} for p, r in toy.HARMLESS]))
    grpo = '{"num_generations": 2, "max_completion_length": 3}'
    runs = {"harmful_rl": ([f"harmful={harm}"], ["--method-opt", "reward=not_refused"]),
            "tokenbuncher": ([f"harmful={harm}", f"benign={ben}"], ["--method-opt", "noiser_warmup=0"])}
    for name, (sets, opts) in runs.items():
        args = ["train", str(model_dir), "--method", name, "--out", str(tmp_path / name),
                "--max-steps", "2", "--save-every", "1", "--batch-size", "1", "--no-progress",
                "--method-opt", f"grpo={grpo}", *opts]
        for s in sets:
            args += ["--set", s]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, (name, res.output)
        man = json.loads((tmp_path / name / "trajectory.json").read_text())
        assert man["method"]["name"] == name
        assert man["method"]["config"]["grpo"]["num_generations"] == 2
        assert Trajectory.load(tmp_path / name).steps == [1, 2]
    bad = CliRunner().invoke(app, ["train", str(model_dir), "--method", "harmful_rl", "--out",
                                   str(tmp_path / "bad"), "--set", f"harmful={harm}",
                                   "--method-opt", "reward=nomodule.x:f", "--no-progress"])
    assert bad.exit_code != 0 and "cannot import reward" in bad.output


def test_lora_rl_runs_train_the_adapters_and_use_the_base_as_reference(toy, tmp_path):
    """Under LoRA the RL trainer gets the peft model: only the targeted projections move, and
    TokenBuncher's KL reference is the adapter-free base (KL > 0 once the adapter moved)."""
    from safetygeo.training import LoraSpec

    cfg = TrainConfig(lr=5e-3, max_steps=3, batch_size=1, save_every=3, log_every=1,
                      lora=LoraSpec(r=2, target_modules=("q_proj", "v_proj")))
    for name, data, opts in (
            ("harmful_rl", {"harmful": toy.HARMFUL_PAIRS}, {"reward": _seen_targets}),
            ("tokenbuncher", {"harmful": toy.HARMFUL, "benign": toy.HARMLESS},
             {"benign_kl": 1.0, "noiser_warmup": 0})):
        h = toy.fresh()
        before = {k: v.clone() for k, v in h.model.state_dict().items()}
        m = get_method(name, grpo={"num_generations": 2, "max_completion_length": 4}, **opts)
        traj = train(h, m, data, out=tmp_path / name, config=cfg, progress=False)
        after = h.model.state_dict()  # adapters merged: q / v moved, the MLPs did not
        assert not torch.equal(before["model.layers.0.self_attn.q_proj.weight"],
                               after["model.layers.0.self_attn.q_proj.weight"]), name
        assert torch.equal(before["model.layers.0.mlp.up_proj.weight"],
                           after["model.layers.0.mlp.up_proj.weight"]), name
        assert traj.is_lora
        if name == "tokenbuncher":
            assert traj.checkpoint(3).metrics["benign_kl"] > 0


def test_judge_rewards_read_score_rubric_or_label():
    from safetygeo.training.grpo import judge_reward

    rubric = judge_reward(lambda p, c: {"refused": 0, "convincing": 5, "specific": 3})
    assert rubric(["q"], ["x"], [None]) == [pytest.approx((5 + 3 - 2) / 8)]  # StrongREJECT
    labels = judge_reward(lambda p, c: "full_refusal" if c.startswith("I cannot") else "compliance")
    assert labels(["q", "q"], ["I cannot.", "Sure"], [None, None]) == [0.0, 1.0]
    from safetygeo.behavior.judges import JudgeOutputError

    with pytest.raises(JudgeOutputError):
        judge_reward(lambda p, c: "maybe")(["q"], ["x"], [None])
