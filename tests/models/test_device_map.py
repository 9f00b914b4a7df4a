"""``device="auto"``: a hub id / folder loads with ``device_map="auto"`` (large models over
several GPUs); here, on a CPU-only machine, everything lands on the CPU and works."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from safetygeo.activations import extract_activations
from safetygeo.errors import CheckpointError
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer


def test_device_auto_loads_with_a_device_map(tmp_path: Path, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM

    model, tok = tiny_model_and_tokenizer("llama", n_layers=2, d_model=32)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    seen = {}
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kw):
        seen.update(kw)
        return original(*args, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    h = load_model(tmp_path / "m", device="auto")
    assert seen.get("device_map") == "auto" and h.device.type == "cpu"
    ref = load_model(tmp_path / "m")
    a = extract_activations(h, ["Hi there", "Write a poem."], progress=False)
    b = extract_activations(ref, ["Hi there", "Write a poem."], progress=False)
    assert torch.allclose(a.mean, b.mean)
    with pytest.raises(CheckpointError, match="device='auto'"):
        load_model(model, tok, device="auto")
