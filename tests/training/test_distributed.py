"""Two-process DDP (torchrun, gloo on CPU): only rank 0 commits checkpoints, every rank's RNG
state lands in them, and resuming equals the uninterrupted run bitwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from safetygeo.training import Trajectory


def _launch(model_dir, out, data):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(29500 + os.getpid() % 1000), "-m", "safetygeo.cli", "train",
           str(model_dir), "--method", "sft", "--out", str(out), "--set", f"harmful={data}",
           "--max-steps", "4", "--save-every", "2", "--batch-size", "2", "--lr", "1e-3",
           "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.slow
def test_ddp_checkpoints_and_resume(toy, tmp_path):
    h = toy.fresh()
    model_dir = tmp_path / "tiny"
    h.model.save_pretrained(model_dir)
    h.tokenizer.save_pretrained(model_dir)
    data = tmp_path / "harmful.txt"
    data.write_text("\n".join(toy.HARMFUL) + "\n")
    full = tmp_path / "full"
    _launch(model_dir, full, data)
    t = Trajectory.load(full)
    assert t.steps == [2, 4]
    files = {p.name for p in t.checkpoint(2).path.iterdir()}
    assert {"rng_state_0.pth", "rng_state_1.pth", "checkpoint.json"} <= files
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "step-000004")
    _launch(model_dir, resumed, data)
    a = load_file(str(full / "step-000004" / "model.safetensors"))
    b = load_file(str(resumed / "step-000004" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert Trajectory.load(resumed).losses() == t.losses()
