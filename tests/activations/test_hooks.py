"""`fan_out`: computing the shared prefix once must equal repeating the input k times."""

from __future__ import annotations

import pytest
import torch

from safetygeo.models.hooks import fan_out
from safetygeo.activations.logits import last_logprobs
from safetygeo.interventions.hooks import add
from safetygeo.models.tiny import ARCHS
from tests.conftest import PROMPTS, tiny_handle


@pytest.mark.parametrize("arch", ARCHS)
def test_fan_out_equals_repeated_input_with_left_padding(arch: str) -> None:
    h = tiny_handle(arch)
    k, layer = 3, 1
    vecs = torch.randn(k, h.d_model, dtype=torch.float64) * 4
    with add(h, vecs, layer):
        repeated = last_logprobs(h, PROMPTS, repeat=k, progress=False)
        fanned = last_logprobs(h, PROMPTS, repeat=k, fan_out_layer=layer, progress=False)
    assert fanned.shape == (k, len(PROMPTS), repeated.shape[-1])
    torch.testing.assert_close(fanned, repeated, atol=2e-5, rtol=0)
    # the variants really differ (so the comparison above could fail)
    assert float((repeated[0] - repeated[1]).abs().max()) > 1e-3


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_fan_out_at_first_and_last_layers(layer: int) -> None:
    h = tiny_handle("llama")
    vecs = torch.randn(2, h.d_model, dtype=torch.float64) * 4
    with add(h, vecs, layer):
        repeated = last_logprobs(h, PROMPTS, repeat=2, progress=False)
        fanned = last_logprobs(h, PROMPTS, repeat=2, fan_out_layer=layer, progress=False)
    torch.testing.assert_close(fanned, repeated, atol=2e-5, rtol=0)


def test_fan_out_hooks_removed_after_exception() -> None:
    h = tiny_handle("llama")
    before = [len(b._forward_pre_hooks) for b in h.blocks]
    with pytest.raises(RuntimeError, match="boom"), fan_out(h, 1, 2):
        raise RuntimeError("boom")
    assert [len(b._forward_pre_hooks) for b in h.blocks] == before
    with pytest.raises(ValueError, match="k >= 1"), fan_out(h, 1, 0):
        pass
