from __future__ import annotations

import pytest
import torch

from safetygeo.activations.logits import last_logprobs
from safetygeo.errors import UnknownArchitectureError
from safetygeo.interventions.hooks import ablate
from safetygeo.interventions.orthogonalize import orthogonalized_copy
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer
from tests.conftest import PROMPTS, tiny_handle

# fp32: the two computations round differently; observed max |Δ log p| ~1e-6.
ATOL = 1e-4


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "gemma", "gpt2"])
def test_weight_orthogonalization_equals_activation_ablation(arch: str) -> None:
    h = tiny_handle(arch)
    before = {k: v.clone() for k, v in h.model.state_dict().items()}
    r = torch.randn(h.d_model) * 3
    with ablate(h, r):
        ablated = last_logprobs(h, PROMPTS, progress=False)
    edited = orthogonalized_copy(h, r)
    ortho = last_logprobs(edited, PROMPTS, progress=False)
    base = last_logprobs(h, PROMPTS, progress=False)
    torch.testing.assert_close(ortho, ablated, atol=ATOL, rtol=0)
    assert (base - ablated).abs().max() > 10 * ATOL  # the edit does something
    # the original model is untouched
    for k, v in h.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_post_norm_architectures_refuse() -> None:
    model, tok = tiny_model_and_tokenizer("llama", n_layers=2, d_model=32)
    h = load_model(model, tok)
    for block in h.blocks:
        block.post_feedforward_layernorm = torch.nn.Identity()
    with pytest.raises(UnknownArchitectureError, match="use ablate"):
        orthogonalized_copy(h, torch.randn(32))
