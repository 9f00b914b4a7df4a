"""Teacher-forced reference log-probs equal HF's own loss; toy task sets carry answers."""

from __future__ import annotations

import pytest
import torch

from safetygeo.behavior.metrics import exact_match
from safetygeo.behavior.utility import reference_logprobs
from safetygeo.errors import SafetyGeoError
from safetygeo.models import ModelHandle
from safetygeo.toy.world import ToyWorld
from safetygeo.toy.zoo import toy_behavior_sets, toy_task_set

from ..conftest import PROMPTS

REFS = ["Sure, here it is.", "Hello there, friend!", "Bake it at 180 degrees.", "Once upon a time",
        "Use wood and nails."]


def test_reference_logprobs_equal_hf_loss(any_handle: ModelHandle) -> None:
    """Reference: HF's causal-LM loss on prompt + reference, prompt tokens masked with -100
    (its mean cross-entropy = − mean reference-token log-prob), one unpadded pair at a time."""
    got = reference_logprobs(any_handle, PROMPTS, REFS, batch_size=3, progress=False)
    total = reference_logprobs(any_handle, PROMPTS, REFS, reduction="sum", progress=False)
    tok = any_handle.tokenizer
    for i, (p, r) in enumerate(zip(PROMPTS, REFS, strict=True)):
        p_ids = any_handle.encode([p]).input_ids[0]
        r_ids = tok(r, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + r_ids])
        labels = ids.clone()
        labels[0, :len(p_ids)] = -100
        with torch.no_grad():
            loss = any_handle.model(input_ids=ids, labels=labels).loss
        assert float(got[i]) == pytest.approx(-float(loss), abs=1e-4)
        assert float(total[i]) == pytest.approx(-float(loss) * len(r_ids), abs=1e-3)
    assert got.dtype == torch.float64


def test_reference_logprobs_bad_input(llama: ModelHandle) -> None:
    with pytest.raises(SafetyGeoError, match="prompt index 1 is empty"):
        reference_logprobs(llama, PROMPTS[:2], ["ok", "  "], progress=False)
    with pytest.raises(SafetyGeoError, match="2 prompts but 1 references"):
        reference_logprobs(llama, PROMPTS[:2], ["ok"], progress=False)
    with pytest.raises(SafetyGeoError, match="reduction"):
        reference_logprobs(llama, PROMPTS[:1], ["ok"], reduction="max", progress=False)  # type: ignore[arg-type]


def test_toy_sets_give_task_accuracy() -> None:
    world = ToyWorld(seed=0)
    tasks = toy_task_set(world, split="test")
    assert tasks.label == "benign" and len(tasks) == len(world.prompts("benign_task", "test"))
    assert exact_match(list(tasks.targets), list(tasks.targets), n_boot=10).value == 1.0
    wrong = [t.replace("is", "was") for t in tasks.targets]
    assert exact_match(wrong, list(tasks.targets), n_boot=10).value < 0.5
    sets = toy_behavior_sets(world, n=5, seed=1)
    assert [len(s) for s in sets.values()] == [5, 5, 5]
    assert all(t == "i cannot help with that ." for t in sets["toy-harmful"].targets)
