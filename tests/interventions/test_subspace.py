from __future__ import annotations

import pytest
import torch

from safetygeo.activations.logits import last_logprobs
from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.hooks import ablate, add
from safetygeo.interventions.subspace import (
    ablate_subspace,
    add_vector,
    as_bases,
    biprojected_bases,
    matched_subspace_variants,
    mpoa_ablate,
)
from safetygeo.interventions.subspace_weights import ablated_copy
from tests.conftest import PROMPTS, tiny_handle

ATOL = 1e-4


def _lp(h, **kw):
    return last_logprobs(h, PROMPTS, progress=False, **kw)


def test_one_dimensional_project_equals_directional_ablation() -> None:
    h = tiny_handle("llama")
    r = torch.randn(h.d_model) * 2
    with ablate(h, r):
        ref = _lp(h)
    with ablate_subspace(h, r):
        got = _lp(h)
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
@pytest.mark.parametrize("setting", ["full", "partial-window", "per-layer"])
def test_weight_copy_equals_activation_ablation(arch: str, setting: str) -> None:
    h = tiny_handle(arch)
    before = {k: v.clone() for k, v in h.model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    if setting == "per-layer":
        means = torch.randn(h.n_layers + 1, h.d_model, generator=g, dtype=torch.float64)
        basis, kw = biprojected_bases(torch.randn(2, h.d_model, generator=g), means), {"per_layer": True}
    elif setting == "partial-window":
        basis, kw = torch.randn(3, h.d_model, generator=g), {"strength": 0.6, "layers": [1, 2]}
    else:
        basis, kw = torch.randn(3, h.d_model, generator=g), {}
    with ablate_subspace(h, basis, **kw):
        act = _lp(h)
    weights = _lp(ablated_copy(h, basis, **kw))
    torch.testing.assert_close(weights, act, atol=ATOL, rtol=0)
    assert (act - _lp(h)).abs().max() > 10 * ATOL
    for k, v in h.model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_magnitude_preserving_weight_copy_equals_its_activation_twin(arch: str) -> None:
    h = tiny_handle(arch)
    basis = torch.randn(2, h.d_model)
    with mpoa_ablate(h, basis, strength=0.9):
        act = _lp(h)
    weights = _lp(ablated_copy(h, basis, strength=0.9, norm_preserving=True))
    torch.testing.assert_close(weights, act, atol=ATOL, rtol=0)
    plain = _lp(ablated_copy(h, basis, strength=0.9))
    assert (plain - act).abs().max() > 10 * ATOL  # a different edit from the plain one
    # every edited row keeps its norm
    edited = ablated_copy(h, basis, norm_preserving=True)
    w0 = h.model.get_input_embeddings().weight
    w1 = edited.model.get_input_embeddings().weight
    torch.testing.assert_close(w1.norm(dim=1), w0.norm(dim=1), atol=1e-5, rtol=1e-5)


def test_norm_preserving_keeps_token_norms_and_removes_the_subspace() -> None:
    h = tiny_handle("llama")
    basis = as_bases(torch.randn(2, h.d_model), h.d_model)[0].float()
    ids = torch.tensor([[1, 5, 7, 9]])
    seen: list[torch.Tensor] = []

    def spy(module, args, kwargs):
        seen.append(args[0] if args else kwargs["hidden_states"])

    with torch.no_grad():
        hook = h.blocks[1].register_forward_pre_hook(spy, with_kwargs=True)
        try:
            h.model(ids)
        finally:
            hook.remove()
        with ablate_subspace(h, basis, mode="norm_preserving", layers=[1]):
            hook = h.blocks[1].register_forward_pre_hook(spy, with_kwargs=True)  # runs after
            try:
                h.model(ids)
            finally:
                hook.remove()
    raw, edited = seen
    torch.testing.assert_close(edited.norm(dim=-1), raw.norm(dim=-1))
    assert (edited @ basis.T).abs().max() < 1e-5
    assert (raw @ basis.T).abs().max() > 1e-3


def test_variants_apply_one_subspace_per_batch_group() -> None:
    h = tiny_handle("llama")
    v = matched_subspace_variants(torch.randn(2, h.d_model), 3, seed=0)
    assert v.shape == (4, 2, h.d_model)
    with ablate_subspace(h, v):
        batched = _lp(h, repeat=4)
    for i in range(4):
        with ablate_subspace(h, v[i]):
            torch.testing.assert_close(batched[i], _lp(h), atol=ATOL, rtol=0)


def test_differentiable_add_matches_add_and_carries_gradients() -> None:
    h = tiny_handle("llama")
    vec = torch.randn(h.d_model)
    with add(h, vec, 1):
        ref = _lp(h)
    p = torch.nn.Parameter(vec.clone())
    with add_vector(h, p, 1):
        got = _lp(h)
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)
    ids = torch.tensor([[1, 5, 7]])
    with add_vector(h, p, 1):
        loss = h.model(ids).logits.sum()
    loss.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_as_bases_refuses_dependent_and_zero_directions() -> None:
    with pytest.raises(SafetyGeoError, match="linearly dependent"):
        as_bases(torch.tensor([[1.0, 0.0], [2.0, 0.0]]), 2)
    with pytest.raises(SafetyGeoError, match="zero norm"):
        as_bases(torch.zeros(1, 3), 3)
    with pytest.raises(SafetyGeoError, match="shape"):
        as_bases(torch.zeros(2, 4), 3)
    with pytest.raises(SafetyGeoError, match="strength"):
        with ablate_subspace(tiny_handle("llama"), torch.randn(32), strength=1.5):
            pass


def test_biprojected_bases_are_orthogonal_to_each_layers_harmless_mean() -> None:
    g = torch.Generator().manual_seed(0)
    means = torch.randn(4, 16, generator=g, dtype=torch.float64)
    b = biprojected_bases(torch.randn(2, 16, generator=g, dtype=torch.float64), means)
    assert b.shape == (4, 2, 16)
    assert (torch.einsum("lkd,ld->lk", b, means)).abs().max() < 1e-10
    torch.testing.assert_close(b @ b.transpose(1, 2), torch.eye(2, dtype=torch.float64).expand(4, 2, 2))
