"""Output entropy of generations: one distribution per generated token (+ the EOS step),
against an unpadded one-sequence reference and an exact uniform case."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from safetygeo.behavior import GenerationSettings, generate
from safetygeo.behavior.entropy import generation_entropies, output_entropy, token_entropies
from safetygeo.behavior.generate import Generations
from safetygeo.errors import SafetyGeoError
from tests.conftest import tiny_handle

PROMPTS = ["Hi", "Write a poem about the sea.", "How do I make a cake for my mother?"]


def _reference(h, prompt: str, ids: list[int], ended: bool) -> np.ndarray:
    p = h.encode([prompt]).input_ids[0]
    x = torch.tensor([p + ids])
    with torch.no_grad():
        logits = h.model(input_ids=x).logits[0].double()
    start = len(p) - 1
    lp = torch.log_softmax(logits[start:start + len(ids) + ended], dim=-1)
    return (-(lp.exp() * lp).sum(-1)).numpy()


def test_matches_unpadded_single_sequences_with_and_without_eos():
    h = tiny_handle()
    g = generate(h, PROMPTS, GenerationSettings(max_new_tokens=5), progress=False)
    ids = [list(t) for t in g.token_ids]
    ended = [True, False, True]
    got = token_entropies(h, PROMPTS, ids, ended=ended, batch_size=2)
    for i, p in enumerate(PROMPTS):
        ref = _reference(h, p, ids[i], ended[i])
        assert got[i].shape == (len(ids[i]) + ended[i],)
        np.testing.assert_allclose(got[i], ref, rtol=1e-5, atol=1e-6)
    means = generation_entropies(h, g)
    assert means.shape == (3,) and np.all(means > 0)
    est = output_entropy(h, g, n_boot=50)
    assert est.metric == "output_entropy" and est.value == pytest.approx(means.mean())


def test_uniform_next_token_distribution_has_entropy_log_vocab():
    h = tiny_handle()
    model = copy.deepcopy(h.model)  # the shared tiny model must not be mutated
    with torch.no_grad():
        model.lm_head.weight.zero_()
    from safetygeo.models import load_model

    hu = load_model(model, h.tokenizer)
    got = token_entropies(hu, ["Hi"], [[5, 6]], ended=[True])
    np.testing.assert_allclose(got[0], math.log(model.config.vocab_size), rtol=1e-12)


def test_empty_completion_has_its_eos_step_and_bad_input_is_named():
    h = tiny_handle()
    g = Generations(("Hi",), ("",), ((),), ("eos",))
    assert generation_entropies(h, g).shape == (1,)
    with pytest.raises(SafetyGeoError, match="no generation step"):
        token_entropies(h, ["Hi"], [[]], ended=[False])
    with pytest.raises(SafetyGeoError, match="2 prompts but 1 completions"):
        token_entropies(h, ["Hi", "Yo"], [[1]])
