"""`safetygeo train`: data specs, config file + flag precedence, resume, clear errors."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from safetygeo.cli import app
from safetygeo.training import Trajectory


@pytest.fixture
def model_dir(toy, tmp_path):
    h = toy.fresh()
    d = tmp_path / "tiny"
    h.model.save_pretrained(d)
    h.tokenizer.save_pretrained(d)
    return d


def _invoke(method, model, *args):
    return CliRunner().invoke(app, ["train", str(model), "--method", method, *map(str, args)])


def test_train_command_with_config_file_and_flags(toy, model_dir, tmp_path):
    pairs = tmp_path / "helpful.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in toy.HARMLESS))
    harmful = tmp_path / "harmful.txt"
    harmful.write_text("\n".join(toy.HARMFUL) + "\n")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"lr: 0.002\nmax_steps: 5\nbatch_size: 2\nsave_every: 2\n"
                   f"method_config: {{refusal: 'No.'}}\ndata: {{harmful: {harmful}}}\n")
    out = tmp_path / "traj"
    r = _invoke("sft", model_dir, "--out", out, "--config", cfg,
                "--set", f"harmless={pairs}", "--max-steps", 3, "--no-progress")
    assert r.exit_code == 0, r.output
    t = Trajectory.load(out)
    assert t.steps == [2, 3]  # flag (3) beat the file (5); save_every from the file
    tc = t.manifest["train_config"]
    assert tc["lr"] == 0.002 and tc["max_steps"] == 3 and tc["batch_size"] == 2
    assert t.manifest["method"]["config"]["refusal"] == "No."
    assert t.manifest["data"]["harmful"]["n"] == len(toy.HARMFUL)
    assert t.manifest["data"]["harmless"]["n"] == len(toy.HARMLESS)
    assert t.manifest["base_model"]["saved"] is None  # reloadable from its folder
    assert t.load_checkpoint(0).model is not None
    # rerun = resume: nothing left to do, same trajectory
    r2 = _invoke("sft", model_dir, "--out", out, "--config", cfg,
                 "--set", f"harmless={pairs}", "--max-steps", 3, "--no-progress")
    assert r2.exit_code == 0, r2.output
    assert Trajectory.load(out).steps == [2, 3]


def test_lora_and_epoch_flags(model_dir, tmp_path):
    out = tmp_path / "t"
    r = _invoke("harmful_sft", model_dir, "-o", out, "-s", "harmful=example:harmful",
                "--method-opt", "n_examples=4", "--batch-size", 2, "--epochs", 1,
                "--lora-r", 2, "--lora-targets", "q_proj,v_proj", "--no-progress")
    # example:harmful has no completions: harmful_sft needs them
    assert r.exit_code == 2 and "no response" in r.output
    pairs = tmp_path / "bad.json"
    pairs.write_text(json.dumps([{"goal": f"Do bad thing {i}", "target": "Sure, here"} for i in range(6)]))
    r = _invoke("harmful_sft", model_dir, "-o", out, "-s", f"harmful={pairs}",
                "--method-opt", "n_examples=4", "--batch-size", 2, "--epochs", 1,
                "--lora-r", 2, "--lora-targets", "q_proj,v_proj", "--no-progress")
    assert r.exit_code == 0, r.output
    t = Trajectory.load(out)
    assert t.steps == [1, 2] and t.manifest["train_config"]["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert t.manifest["train_config"]["max_steps"] is None and t.manifest["train_config"]["epochs"] == 1


@pytest.mark.parametrize("args, match", [
    (["dpo"], "unknown training method 'dpo'"),
    (["sft"], "no training data"),
    (["sft", "--set", "harmful=nope.json"], "not found: 'nope.json'"),
    (["sft", "--set", "example:harmful"], "not ROLE=SPEC"),
    (["sft", "--set", "bogus=example:harmful"], "unknown data role"),
    (["sft", "--set", "harmful=example:harmful", "--lora-r", 2, "--lora-targets", "c_attn"],
     r"\['c_attn'\] not found"),
    (["sft", "--set", "harmful=example:harmful", "--max-steps", 0], "--max-steps"),
])
def test_clear_errors(model_dir, tmp_path, args, match):
    r = _invoke(args[0], model_dir, "--out", tmp_path / "t", *args[1:], "--no-progress")
    assert r.exit_code == 2, r.output
    assert re.search(match, " ".join(r.output.split())), r.output
