"""The trainer core: determinism, resume == uninterrupted, atomic checkpoints, bad input,
LoRA, and the Method hooks R2D2 needs (before_step on the current model + saved state)."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from transformers import Trainer

from safetygeo.activations.losses import completion_ce
from safetygeo.data.records import as_records, encode_completions, pad_right
from safetygeo.errors import DamagedCheckpointWarning
from safetygeo.training import (
    DatasetFormatError,
    EmptyDatasetError,
    LoraSpec,
    LoraTargetError,
    StepContext,
    TrainConfig,
    TrainingError,
    Trajectory,
    TrajectoryError,
    TrajectoryMismatchError,
    UnknownMethodError,
    train,
)
from safetygeo.training import trainer as trainer_mod
from safetygeo.training.checkpoints import MANIFEST, STAGING
from safetygeo.training.methods.sft import SupervisedMethod

CFG = TrainConfig(max_steps=6, save_every=2, batch_size=2, lr=1e-3, seed=0)


def _run(toy, out, config=CFG, method="sft", data=None, **kw):
    h = toy.fresh(kw.pop("arch", "llama"), kw.pop("seed", 0))
    traj = train(h, method, toy.SFT_DATA if data is None else data, out=out, config=config,
                 progress=False, **kw)
    return h, traj


# ----------------------------------------------------------------------------- a toy R2D2
@dataclass(frozen=True)
class PoolConfig:
    pool_size: int = 3
    suffix_len: int = 2
    reset_every: int = 3
    use_backward: bool = True


class PoolMethod(SupervisedMethod):
    """A miniature R2D2 exercising the API: before each micro-batch, one greedy-coordinate
    step on an adversarial-suffix pool against the *current* model (one-hot gradient via
    ``backward()``), random pool resets from its own generator every ``reset_every``
    steps; the loss adds CE of a refusal on the pooled adversarial prompts."""

    name = "test_pool"
    config_class = PoolConfig
    roles = ("utility", "harmful")
    required_roles = ("utility", "harmful")

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {"utility": as_records(data["utility"], role="utility"),
                "harmful": as_records(data["harmful"], role="harmful", default_response="I cannot.")}

    def setup(self, handle, records, config):
        rows = encode_completions(handle, records["utility"], max_length=config.max_length)
        super().setup(handle, {"utility": records["utility"]}, config)
        self.handle = handle
        self.harmful = records["harmful"]
        self.gen = torch.Generator().manual_seed(config.seed)
        self.vocab = len(handle.tokenizer)
        self.pool = torch.randint(10, self.vocab, (self.config.pool_size, self.config.suffix_len),
                                  generator=self.gen)
        self.n_updates = 0
        self.resets = []
        return [{**r, "role": 0} for r in rows]

    def _adv_rows(self, idx: int, response: str) -> list[dict[str, list[int]]]:
        rec = self.harmful[idx % len(self.harmful)]
        ids = self.handle.encode([rec["prompt"]]).input_ids[0]
        suffix = self.pool[idx].tolist()
        resp = self.handle.tokenizer(response, add_special_tokens=False)["input_ids"]
        n_eoi = len(self.handle.chat_template().suffix_ids(self.handle.tokenizer))
        full = ids[:-n_eoi] + suffix + ids[-n_eoi:] + resp
        return [{"input_ids": full, "labels": [-100] * (len(full) - len(resp)) + resp}]

    def before_step(self, ctx: StepContext, batch):
        assert not any(p.requires_grad for p in ctx.model.parameters())
        assert not ctx.handle.model.training
        if ctx.micro_step == 0 and ctx.step > 0 and ctx.step % self.config.reset_every == 0:
            self.pool[0] = torch.randint(10, self.vocab, (self.config.suffix_len,), generator=self.gen)
            self.resets.append(ctx.step)
        i = (ctx.step + ctx.micro_step) % self.config.pool_size
        b = pad_right(self._adv_rows(i, "Sure, here"), 0)
        emb = ctx.handle.model.get_input_embeddings()
        onehot = torch.nn.functional.one_hot(b["input_ids"], self.vocab).float().requires_grad_(True)
        logits = ctx.handle.model(inputs_embeds=onehot @ emb.weight[: self.vocab]).logits[:, :-1]
        target_loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), b["labels"][:, 1:].reshape(-1), ignore_index=-100)
        if self.config.use_backward:
            target_loss.backward()
            grad = onehot.grad
        else:
            (grad,) = torch.autograd.grad(target_loss, onehot)
        ids = self.handle.encode([self.harmful[i % len(self.harmful)]["prompt"]]).input_ids[0]
        n_eoi = len(self.handle.chat_template().suffix_ids(self.handle.tokenizer))
        start = len(ids) - n_eoi
        pos = int(torch.randint(0, self.config.suffix_len, (1,)))  # global RNG: restored on resume
        self.pool[i, pos] = int(grad[0, start + pos, 10:].argmin()) + 10
        self.n_updates += 1
        return {"target_loss": target_loss.item()}

    def loss(self, model, batch):
        utility, logs = super().loss(model, batch)
        toward = completion_ce(model, pad_right(self._adv_rows(self.n_updates % self.config.pool_size,
                                                               "I cannot."), self.pad_id))
        return utility + 0.5 * toward, {**logs, "toward": toward.detach().item()}

    def state_dict(self):
        return {"pool": self.pool.clone(), "gen": self.gen.get_state(), "n_updates": self.n_updates,
                "resets": list(self.resets)}

    def load_state_dict(self, state):
        self.pool = state["pool"].clone()
        self.gen.set_state(state["gen"])
        self.n_updates = int(state["n_updates"])
        self.resets = list(state["resets"])


def _pool_data(toy):
    return {"utility": toy.HARMLESS, "harmful": toy.HARMFUL}


# ----------------------------------------------------------------------------- basics
def test_train_writes_a_complete_trajectory(toy, tmp_path):
    h, traj = _run(toy, tmp_path / "t")
    assert traj.steps == [2, 4, 6]
    m = json.loads((tmp_path / "t" / MANIFEST).read_text())
    assert m["method"] == {"name": "sft", "config": {"refusal": "I cannot help with that request.",
                                                      "refusal_for_all": False}}
    assert m["train_config"]["lr"] == 1e-3 and m["seed"] == 0
    assert set(m["data"]) == {"harmful", "harmless"} and m["data"]["harmful"]["n"] == 5
    assert [c["step"] for c in m["checkpoints"]] == [2, 4, 6]
    assert m["base_model"]["fingerprint"]["n_params"] > 0 and m["versions"]["transformers"]
    ck = traj.checkpoint(4).path
    for f in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
              "trainer_state.json", "tokenizer.json", "checkpoint.json", "method_state.json"):
        assert (ck / f).is_file(), f
    assert not (ck / "training_args.bin").exists()  # no stray pickles
    assert not (tmp_path / "t" / STAGING).exists()
    assert not h.model.training
    assert set(traj.checkpoint(2).metrics) >= {"loss", "grad_norm", "learning_rate", "ce_harmful"}


def test_same_seed_same_run_and_seed_matters(toy, tmp_path):
    h1, t1 = _run(toy, tmp_path / "a")
    h2, t2 = _run(toy, tmp_path / "b")
    assert t1.losses() == t2.losses() and toy.state_equal(h1.model, h2.model)
    h3, t3 = _run(toy, tmp_path / "c", config=CFG.replace(seed=1))
    assert t3.losses() != t1.losses()


def test_sft_lowers_its_own_loss_on_the_training_set(toy, tmp_path):
    h = toy.fresh()
    from safetygeo.training.methods.sft import RefusalSFT

    m = RefusalSFT()
    rows = m.setup(h, m.records(toy.SFT_DATA), CFG)
    batch = m.collate(rows)
    with torch.no_grad():
        before = float(completion_ce(h.model, batch))
    train(h, m, toy.SFT_DATA, out=tmp_path / "t",
          config=CFG.replace(max_steps=15, save_every=15, lr=5e-3, lr_scheduler="constant"),
          progress=False)
    with torch.no_grad():
        after = float(completion_ce(h.model, batch))
    assert after < before - 1.0, (before, after)


def test_checkpoints_reload_bit_identically(toy, tmp_path):
    h, traj = _run(toy, tmp_path / "t")
    re = traj.load_checkpoint()
    assert toy.state_equal(h.model, re.model)
    assert re.chat_template().format("x") == h.chat_template().format("x")
    # step 0 is the base, verified against its fingerprint
    base = traj.load_checkpoint(0)
    assert toy.state_equal(base.model, toy.fresh().model)
    assert not toy.state_equal(base.model, re.model)


def test_gradient_accumulation_equals_one_big_batch_with_sgd(toy, tmp_path):
    # equal-length completions: the mean of micro-batch means is the batch mean, so one SGD
    # step with batch 4 must equal batch 2 x 2 accumulated (SGD is scale-sensitive: a missing
    # 1/accumulation factor would double the update)
    data = {"harmful": toy.HARMFUL[:4]}
    base = TrainConfig(max_steps=1, save_every=1, lr=0.5, optim="sgd", max_grad_norm=0.0,
                       lr_scheduler="constant")
    h1, _ = _run(toy, tmp_path / "a", config=base.replace(batch_size=4), data=data)
    h2, _ = _run(toy, tmp_path / "b", config=base.replace(batch_size=2, grad_accum=2), data=data)
    h0 = toy.fresh()
    s0, s1, s2 = h0.model.state_dict(), h1.model.state_dict(), h2.model.state_dict()
    moved = max(float((s1[k] - s0[k]).abs().max()) for k in s0)
    diff = max(float((s1[k] - s2[k]).abs().max()) for k in s0)
    assert moved > 1e-2 and diff < 1e-6, (moved, diff)  # measured: moved 0.105, diff 3e-8


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_from_step_k_equals_uninterrupted(toy, tmp_path, grad_accum):
    # 9 examples, batch 2: resuming at step 2 is mid-epoch, so the trainer must skip batches
    data = {"harmful": toy.HARMFUL, "harmless": toy.HARMLESS}
    cfg = CFG.replace(grad_accum=grad_accum)
    h_full, t_full = _run(toy, tmp_path / "full", config=cfg, data=data)
    out = tmp_path / "killed"
    _run(toy, out, config=cfg.replace(max_steps=2), data=data)  # "killed" after step 2
    # continue the same run to 6: only max_steps differs, which a resume must refuse
    with pytest.raises(TrajectoryMismatchError, match="max_steps"):
        _run(toy, out, config=cfg, data=data)
    out2 = tmp_path / "killed2"
    shutil.copytree(t_full.path, out2)
    for s in (4, 6):
        shutil.rmtree(out2 / f"step-{s:06d}")
    h_res, t_res = _run(toy, out2, config=cfg, data=data)
    assert t_res.steps == [2, 4, 6]
    assert toy.state_equal(h_full.model, h_res.model)
    assert t_res.losses() == t_full.losses()


class _Boom(RuntimeError):
    pass


def _kill_during_save_at(monkeypatch, step):
    """Raise from inside the trainer's checkpoint writing (after the weights are written)."""
    orig = Trainer._save_rng_state

    def boom(self, output_dir):
        if self.state.global_step == step:
            raise _Boom(f"killed while saving step {step}")
        return orig(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", boom)


def test_killed_mid_save_resumes_from_last_complete_checkpoint(toy, tmp_path, monkeypatch):
    h_full, t_full = _run(toy, tmp_path / "full")
    out = tmp_path / "t"
    with monkeypatch.context() as mp:
        _kill_during_save_at(mp, 4)
        with pytest.raises(_Boom):
            _run(toy, out)
    assert (out / STAGING / "checkpoint-4" / "model.safetensors").is_file()  # half-written
    assert Trajectory.load(out).steps == [2]  # never listed
    # step folders that were complete once and are damaged now: one without its marker and
    # one with a truncated file — reported, then quarantined (never deleted) by the rerun
    shutil.copytree(t_full.path / "step-000004", out / "step-000004")
    (out / "step-000004" / "checkpoint.json").unlink()
    shutil.copytree(t_full.path / "step-000006", out / "step-000006")
    with open(out / "step-000006" / "model.safetensors", "r+b") as fh:
        fh.truncate(100)
    with pytest.warns(DamagedCheckpointWarning, match="2 damaged"):
        assert Trajectory.load(out).steps == [2]
    with pytest.warns(DamagedCheckpointWarning, match="quarantined 2"):
        h_res, t_res = _run(toy, out)
    assert t_res.steps == [2, 4, 6]
    assert sorted(d.step for d in t_res.quarantined) == [4, 6]
    assert toy.state_equal(h_full.model, h_res.model)
    assert t_res.losses() == t_full.losses()
    assert not (out / STAGING).exists()


def test_manifest_lag_loses_no_checkpoint(toy, tmp_path):
    _, traj = _run(toy, tmp_path / "t")
    m = json.loads((traj.path / MANIFEST).read_text())
    m["checkpoints"] = m["checkpoints"][:1]  # as if killed between rename and manifest write
    (traj.path / MANIFEST).write_text(json.dumps(m))
    assert Trajectory.load(traj.path).steps == [2, 4, 6]


def test_resume_of_a_finished_run_changes_nothing(toy, tmp_path):
    h1, t1 = _run(toy, tmp_path / "t")
    h2, t2 = _run(toy, tmp_path / "t")
    assert t2.steps == [2, 4, 6] and toy.state_equal(h1.model, h2.model)


# ----------------------------------------------------------------------------- bad input
def test_resume_into_another_models_or_methods_folder_is_refused(toy, tmp_path):
    out = tmp_path / "t"
    _run(toy, out, config=CFG.replace(max_steps=2))
    with pytest.raises(TrajectoryMismatchError, match="weights_sha256") as e:
        _run(toy, out, config=CFG.replace(max_steps=2), seed=1)
    assert "base model" in str(e.value) or "pass the *base* model" in str(e.value)
    with pytest.raises(TrajectoryMismatchError, match="config_sha256|arch_sha256"):
        _run(toy, out, config=CFG.replace(max_steps=2), arch="qwen2")
    with pytest.raises(TrajectoryMismatchError, match="method.name: 'sft' .* != 'harmful_sft'"):
        _run(toy, out, config=CFG.replace(max_steps=2), method="harmful_sft",
             data=toy.HARMFUL_PAIRS)
    with pytest.raises(TrajectoryMismatchError, match=r"data.harmful.sha256"):
        _run(toy, out, config=CFG.replace(max_steps=2),
             data={"harmful": toy.HARMFUL[:3], "harmless": toy.HARMLESS})
    with pytest.raises(TrajectoryMismatchError, match=r"train_config.lr: 0.001 .* != 0.01"):
        _run(toy, out, config=CFG.replace(max_steps=2, lr=1e-2))
    # operational settings may change on resume
    _run(toy, out, config=CFG.replace(max_steps=2, save_every=1))


def test_nothing_is_written_before_the_data_is_valid_and_empty_folders_are_reused(
        toy, tmp_path, monkeypatch):
    out = tmp_path / "t"
    with pytest.raises(DatasetFormatError, match="leaving no room for the completion"):
        _run(toy, out, config=CFG.replace(max_length=4))
    assert not out.exists()
    with monkeypatch.context() as mp:  # killed while writing its first checkpoint
        _kill_during_save_at(mp, 2)
        with pytest.raises(_Boom):
            _run(toy, out)
    assert Trajectory.load(out).steps == []
    h, t = _run(toy, out, config=CFG.replace(lr=2e-3))  # nothing to continue: starts afresh
    assert t.steps == [2, 4, 6] and t.manifest["train_config"]["lr"] == 2e-3


def test_no_resume_refuses_to_clobber_unless_overwrite(toy, tmp_path):
    out = tmp_path / "t"
    _run(toy, out, config=CFG.replace(max_steps=2))
    with pytest.raises(TrajectoryError, match="already holds a trajectory"):
        _run(toy, out, config=CFG.replace(max_steps=2), resume=False)
    _, t = _run(toy, out, config=CFG.replace(max_steps=1, save_every=1), resume=False,
                overwrite=True)
    assert t.steps == [1]
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(TrajectoryError, match="not empty and not a trajectory"):
        _run(toy, stray)


def test_bad_input_errors(toy, tmp_path):
    with pytest.raises(UnknownMethodError, match="known methods: .*sft"):
        _run(toy, tmp_path / "a", method="ppo")
    with pytest.raises(EmptyDatasetError, match="role 'harmful' has no examples"):
        _run(toy, tmp_path / "b", data={"harmful": []})
    with pytest.raises(TrainingError, match="no data role.*'benign'.*roles: \\['harmful', 'harmless'\\]"):
        _run(toy, tmp_path / "c", data={"benign": toy.HARMLESS})
    with pytest.raises(TrainingError, match="needs data for role"):
        _run(toy, tmp_path / "d", method="harmful_sft", data={})
    with pytest.raises(TrajectoryError, match="not a trajectory folder"):
        Trajectory.load(tmp_path)
    _, traj = _run(toy, tmp_path / "e", config=CFG.replace(max_steps=2))
    with pytest.raises(TrajectoryError, match=r"no complete checkpoint at step 3; steps: \[2\]"):
        traj.load_checkpoint(3)


# ----------------------------------------------------------------------------- LoRA
def test_lora_missing_target_modules_error_lists_linear_names(toy, tmp_path):
    with pytest.raises(LoraTargetError, match=r"\['c_attn'\] not found in LlamaForCausalLM.*'q_proj'"):
        _run(toy, tmp_path / "t", config=CFG.replace(lora={"r": 2, "target_modules": ["q_proj", "c_attn"]}))
    with pytest.raises(LoraTargetError, match=r"\['q_proj'\] not found in GPT2LMHeadModel.*'c_attn'"):
        _run(toy, tmp_path / "u", arch="gpt2", config=CFG.replace(lora={"r": 2, "target_modules": ["q_proj"]}))


def test_lora_run_saves_adapters_resumes_and_reloads_bit_identically(toy, tmp_path):
    cfg = CFG.replace(lora=LoraSpec(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    h, traj = _run(toy, tmp_path / "full", config=cfg)
    ck = traj.checkpoint().path
    assert (ck / "adapter_model.safetensors").is_file() and not (ck / "model.safetensors").exists()
    assert (traj.path / "base" / "model.safetensors").is_file()  # in-memory base saved once
    re = traj.load_checkpoint()
    assert toy.state_equal(h.model, re.model)  # merged weights, exactly
    assert type(h.model).__name__ == "LlamaForCausalLM"
    assert not toy.state_equal(h.model, toy.fresh().model)
    # only the adapted projections changed
    s0, s1 = toy.fresh().model.state_dict(), h.model.state_dict()
    changed = {k.split(".")[-2] for k in s0 if not torch.equal(s0[k], s1[k])}
    assert changed == {"q_proj", "v_proj"}
    out2 = tmp_path / "resumed"
    shutil.copytree(traj.path, out2)
    shutil.rmtree(out2 / "step-000006")
    h2, t2 = _run(toy, out2, config=cfg)
    assert toy.state_equal(h.model, h2.model) and t2.losses() == traj.losses()


# ----------------------------------------------------------------------------- Method hooks
def test_before_step_sees_current_model_and_state_is_checkpointed(toy, tmp_path):
    cfg = CFG.replace(grad_accum=2)
    method = PoolMethod()
    h, traj = _run(toy, tmp_path / "t", config=cfg, method=method, data=_pool_data(toy))
    assert method.n_updates == 6 * 2  # once per micro-batch
    assert method.resets == [3]
    s2, s4 = traj.method_state(2), traj.method_state(4)
    assert s2["n_updates"] == 4 and s4["n_updates"] == 8
    assert not torch.equal(s2["pool"], s4["pool"]) and isinstance(s2["pool"], torch.Tensor)
    assert "target_loss" in traj.checkpoint(2).metrics and "toward" in traj.checkpoint(2).metrics


def test_resume_restores_method_state_exactly(toy, tmp_path, monkeypatch):
    cfg = CFG.replace(grad_accum=2)
    full = PoolMethod()
    h_full, t_full = _run(toy, tmp_path / "full", config=cfg, method=full, data=_pool_data(toy))
    out = tmp_path / "t"
    with monkeypatch.context() as mp:
        _kill_during_save_at(mp, 4)
        with pytest.raises(_Boom):
            _run(toy, out, config=cfg, method=PoolMethod(), data=_pool_data(toy))
    resumed = PoolMethod()
    h_res, t_res = _run(toy, out, config=cfg, method=resumed, data=_pool_data(toy))
    assert torch.equal(full.pool, resumed.pool) and full.n_updates == resumed.n_updates
    assert toy.state_equal(h_full.model, h_res.model)
    assert t_res.losses() == t_full.losses()


def test_before_step_backward_leaves_no_stray_parameter_grads(toy, tmp_path, monkeypatch):
    cfg = CFG.replace(max_steps=3, save_every=3, grad_accum=2)
    h_bw, _ = _run(toy, tmp_path / "a", config=cfg, method=PoolMethod(use_backward=True),
                   data=_pool_data(toy))
    h_ag, _ = _run(toy, tmp_path / "b", config=cfg, method=PoolMethod(use_backward=False),
                   data=_pool_data(toy))
    assert toy.state_equal(h_bw.model, h_ag.model)


class _Quiet(PoolMethod):
    def before_step(self, ctx, batch):
        return {}


class _Polluter(PoolMethod):
    """A careless before_step: backward() through the model being trained."""

    def before_step(self, ctx, batch):
        b = pad_right(self._adv_rows(0, "Sure, here"), 0)
        x = ctx.handle.model.get_input_embeddings()(b["input_ids"]).detach().requires_grad_(True)
        logits = ctx.handle.model(inputs_embeds=x).logits[:, :-1]
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                          b["labels"][:, 1:].reshape(-1)).backward()
        assert x.grad is not None
        return {}


def test_guard_is_what_keeps_parameter_grads_clean(toy, tmp_path, monkeypatch):
    cfg = CFG.replace(max_steps=3, save_every=3, grad_accum=2)
    h_quiet, _ = _run(toy, tmp_path / "a", config=cfg, method=_Quiet(), data=_pool_data(toy))
    h_guarded, _ = _run(toy, tmp_path / "b", config=cfg, method=_Polluter(), data=_pool_data(toy))
    assert toy.state_equal(h_quiet.model, h_guarded.model)

    @contextlib.contextmanager
    def no_guard(model):
        yield

    monkeypatch.setattr(trainer_mod, "no_param_grads", no_guard)  # where MethodTrainer calls it
    h_bad, _ = _run(toy, tmp_path / "c", config=cfg, method=_Polluter(), data=_pool_data(toy))
    assert not toy.state_equal(h_quiet.model, h_bad.model)


def test_method_state_roundtrip_types(toy, tmp_path):
    method = PoolMethod()
    _, traj = _run(toy, tmp_path / "t", config=CFG.replace(max_steps=2), method=method,
                   data=_pool_data(toy))
    st = traj.method_state()
    assert st["pool"].dtype == torch.long and st["gen"].dtype == torch.uint8
    assert st["resets"] == [] and st["n_updates"] == 2
