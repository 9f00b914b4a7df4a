from __future__ import annotations

import pytest
import torch

from safetygeo.activations import extract_activations
from safetygeo.activations.logits import last_logprobs
from safetygeo.errors import LayerIndexError, NonFiniteError, SafetyGeoError
from safetygeo.interventions.hooks import ablate, add, residual_writers
from safetygeo.models.tiny import ARCHS
from tests.conftest import PROMPTS, tiny_handle


def _all_resid(handle, ids):
    """Every residual-stream tensor the model computes: block inputs/outputs and the
    intermediate stream after attention (captured through forward hooks)."""
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, a, k: seen.append(a[0] if a else k["hidden_states"]),
                                         with_kwargs=True) for b in handle.blocks]
    hooks += [w.register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, tuple) else o))
              for b in handle.blocks for w in residual_writers(b)]
    hooks.append(handle.final_norm.register_forward_pre_hook(lambda m, a: seen.append(a[0])))
    try:
        with torch.no_grad():
            handle.model(ids)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("arch", ARCHS)
def test_ablation_makes_every_hooked_activation_orthogonal(arch: str) -> None:
    h = tiny_handle(arch)
    r = torch.randn(h.d_model)
    unit = (r / r.norm()).float()
    ids = torch.tensor([[1, 7, 9, 11, 13, 5]])
    with ablate(h, r):
        seen = _all_resid(h, ids)
    assert len(seen) == 3 * h.n_layers + 1
    assert max(float((t @ unit).abs().max()) for t in seen) <= 1e-5
    # without ablation the same activations are not orthogonal (the test can fail)
    assert max(float((t @ unit).abs().max()) for t in _all_resid(h, ids)) > 1e-3


def test_addition_with_alpha_zero_is_identity_and_context_restores(llama) -> None:
    base = last_logprobs(llama, PROMPTS, progress=False)
    with add(llama, torch.randn(llama.d_model), layer=1, alpha=0.0):
        same = last_logprobs(llama, PROMPTS, progress=False)
    torch.testing.assert_close(same, base, atol=0, rtol=0)
    with add(llama, torch.randn(llama.d_model) * 5, layer=1):
        moved = last_logprobs(llama, PROMPTS, progress=False)
    assert (moved - base).abs().max() > 1e-3
    torch.testing.assert_close(last_logprobs(llama, PROMPTS, progress=False), base, atol=0, rtol=0)


def test_addition_matches_manual_residual_edit(llama) -> None:
    v = torch.randn(llama.d_model)
    with add(llama, v, layer=2, alpha=0.5):
        out = extract_activations(llama, PROMPTS, layers=[2], positions=[-1, -3], progress=False)
    ref = extract_activations(llama, PROMPTS, layers=[2], positions=[-1, -3], progress=False)
    torch.testing.assert_close(out.mean, ref.mean + 0.5 * v.double(), atol=1e-6, rtol=0)
    # only at the given offsets
    with add(llama, v, layer=2, offsets=[-1]):
        part = extract_activations(llama, PROMPTS, layers=[2], positions=[-1, -3], progress=False)
    torch.testing.assert_close(part.mean[0, 0], ref.mean[0, 0] + v.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(part.mean[0, 1], ref.mean[0, 1], atol=0, rtol=0)


def test_hooks_removed_after_exception(llama) -> None:
    def count() -> int:  # transformers registers hooks of its own: compare counts
        return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in llama.model.modules())

    before = count()
    with pytest.raises(RuntimeError, match="inside"):
        with ablate(llama, torch.randn(llama.d_model)):
            assert count() > before
            raise RuntimeError("inside")
    assert count() == before
    with pytest.raises(RuntimeError, match="inside"):
        with add(llama, torch.randn(llama.d_model), layer=1):
            raise RuntimeError("inside")
    assert count() == before


def test_variants_in_one_pass_equal_one_at_a_time(llama) -> None:
    dirs = torch.randn(3, llama.d_model)
    with ablate(llama, dirs):
        batched = last_logprobs(llama, PROMPTS, repeat=3, progress=False)
    for i in range(3):
        with ablate(llama, dirs[i]):
            single = last_logprobs(llama, PROMPTS, progress=False)
        torch.testing.assert_close(batched[i], single, atol=1e-5, rtol=0)
    with add(llama, dirs, layer=1):
        batched = last_logprobs(llama, PROMPTS, repeat=3, progress=False)
    with add(llama, dirs[2], layer=1):
        torch.testing.assert_close(batched[2], last_logprobs(llama, PROMPTS, progress=False),
                                   atol=1e-5, rtol=0)


def test_bad_directions(llama) -> None:
    with pytest.raises(SafetyGeoError, match="zero norm"):
        with ablate(llama, torch.zeros(llama.d_model)):
            pass
    with pytest.raises(SafetyGeoError, match="expected \\[d_model=32\\]"):
        with ablate(llama, torch.ones(7)):
            pass
    with pytest.raises(LayerIndexError):
        with add(llama, torch.ones(llama.d_model), layer=9):
            pass
    with pytest.raises(SafetyGeoError, match="NaN"):
        with add(llama, torch.full((llama.d_model,), float("nan")), layer=0):
            pass


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_alpha_is_refused(llama, alpha: float) -> None:
    before = last_logprobs(llama, PROMPTS[:2], progress=False)
    with pytest.raises(NonFiniteError, match="alpha"):
        with add(llama, torch.ones(llama.d_model), layer=1, alpha=alpha):
            pass
    # nothing stays hooked
    assert torch.equal(last_logprobs(llama, PROMPTS[:2], progress=False), before)
