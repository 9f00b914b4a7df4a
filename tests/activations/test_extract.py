"""Extraction is checked against HF ``output_hidden_states`` on unpadded single prompts."""

from __future__ import annotations

import pytest
import torch

from safetygeo.activations import extract_activations
from safetygeo.errors import (
    ChatTemplateError,
    EmptyPromptSetError,
    LayerIndexError,
    PositionError,
    PromptTooLongError,
)
from safetygeo.models import load_model
from safetygeo.models.hooks import resid_module
from safetygeo.models.tiny import tiny_model_and_tokenizer
from tests.conftest import PROMPTS, tiny_handle

# fp32 forward passes of the same tokens in a padded batch vs alone: observed max abs
# difference ~1e-8 on these models; the tolerance leaves room for BLAS differences.
ATOL = 1e-5


def hf_reference(handle, prompts, offsets):
    """Per prompt, unpadded: hidden_states[l] (l < L) at the offsets, plus HF's final
    (normed) hidden state, which we compare after applying the final norm to ours."""
    enc = handle.encode(prompts)
    pre, normed = [], []
    for ids in enc.input_ids:
        with torch.no_grad():
            out = handle.model(torch.tensor([ids]), output_hidden_states=True)
        cols = [len(ids) + o for o in offsets]
        hs = torch.stack(out.hidden_states)[:, 0]  # [L+1, T, d]
        pre.append(hs[:-1, cols])
        normed.append(hs[-1, cols])
    return torch.stack(pre).double(), torch.stack(normed).double()


@pytest.mark.parametrize("positions", ["t_inst+post_instruction", "last"])
def test_means_match_hf_hidden_states_with_left_padding(any_handle, positions) -> None:
    stats = extract_activations(any_handle, PROMPTS, positions=positions, batch_size=4,
                                keep_vectors=True, progress=False)
    ref_pre, ref_normed = hf_reference(any_handle, PROMPTS, stats.positions.offsets)
    L = any_handle.n_layers
    assert stats.layers == tuple(range(L + 1))
    assert stats.count == len(PROMPTS)
    torch.testing.assert_close(stats.mean[:L], ref_pre.mean(0), atol=ATOL, rtol=0)
    torch.testing.assert_close(stats.vectors[:, :L].double(), ref_pre, atol=ATOL, rtol=0)
    with torch.no_grad():
        ours_normed = any_handle.final_norm(stats.vectors[:, L]).double()
    torch.testing.assert_close(ours_normed, ref_normed, atol=ATOL, rtol=0)


def test_padded_batches_equal_single_prompts(llama) -> None:
    batched = extract_activations(llama, PROMPTS, batch_size=5, progress=False)
    single = extract_activations(llama, PROMPTS, batch_size=1, progress=False)
    torch.testing.assert_close(batched.mean, single.mean, atol=ATOL, rtol=0)


def test_same_seed_same_numbers_bit_for_bit(llama) -> None:
    a = extract_activations(llama, PROMPTS, batch_size=2, second_moment="diag", progress=False)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    b = extract_activations(llama, PROMPTS, batch_size=2, second_moment="diag", progress=False)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.mean_sq, b.mean_sq)
    # extraction leaves the caller's global RNG alone
    assert torch.equal(torch.get_rng_state(), state)


def test_second_moments_match_per_prompt_vectors(llama) -> None:
    full = extract_activations(llama, PROMPTS, batch_size=2, second_moment="full",
                               keep_vectors=True, progress=False)
    diag = extract_activations(llama, PROMPTS, batch_size=3, second_moment="diag", progress=False)
    v = full.vectors.double()  # [n, layer, pos, d]
    ref_outer = torch.einsum("nlpi,nlpj->lpij", v, v) / v.shape[0]
    torch.testing.assert_close(full.mean_outer, ref_outer, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(diag.mean_sq, (v * v).mean(0), atol=1e-5, rtol=1e-6)
    ref_cov = torch.stack([
        torch.stack([torch.cov(v[:, li, p].T, correction=0) for p in range(v.shape[2])])
        for li in range(v.shape[1])
    ])
    torch.testing.assert_close(full.covariance(), ref_cov, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(diag.variance(), v.var(0, unbiased=False), atol=1e-5, rtol=1e-5)


def test_layer_subset_equals_all_layers_slice(llama) -> None:
    everything = extract_activations(llama, PROMPTS, progress=False)
    subset = extract_activations(llama, PROMPTS, layers=[1], progress=False)  # stops early
    assert subset.layers == (1,)
    torch.testing.assert_close(subset.mean[0], everything.mean[1], atol=0, rtol=0)
    assert torch.equal(subset.at(1, "eoi-1"), everything.at(1, -1))


def test_hooks_removed_after_forward_raises(llama) -> None:
    block = llama.blocks[1]
    original = block.forward

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    block.forward = boom
    try:
        with pytest.raises(RuntimeError, match="boom"):
            extract_activations(llama, PROMPTS, layers=[0, 2], progress=False)
    finally:
        block.forward = original
    for layer in range(llama.n_layers + 1):
        assert not resid_module(llama, layer)._forward_pre_hooks
    # and the model still works normally
    extract_activations(llama, PROMPTS[:1], progress=False)


def test_prompt_set_objects_are_accepted(llama) -> None:
    class Named:
        prompts = tuple(PROMPTS[:2])
        name = "demo"
        label = "harmless"

    stats = extract_activations(llama, Named(), progress=False)
    assert stats.meta["prompt_set"]["name"] == "demo"
    assert stats.meta["prompt_set"]["label"] == "harmless"
    assert len(stats.meta["prompt_set"]["sha256"]) == 64


def test_bad_input_errors(llama) -> None:
    with pytest.raises(EmptyPromptSetError, match="empty"):
        extract_activations(llama, [], progress=False)
    with pytest.raises(LayerIndexError, match="out of range"):
        extract_activations(llama, PROMPTS, layers=[9], progress=False)
    with pytest.raises(PositionError, match="negative"):
        extract_activations(llama, PROMPTS, positions=[0], progress=False)
    with pytest.raises(PositionError, match="unknown position"):
        extract_activations(llama, PROMPTS, positions="middle", progress=False)
    with pytest.raises(PositionError, match="before the start"):
        extract_activations(llama, PROMPTS, positions=[-200], progress=False)


def test_prompt_longer_than_context() -> None:
    model, tok = tiny_model_and_tokenizer("llama", n_layers=2, d_model=32, max_positions=24)
    h = load_model(model, tok)
    with pytest.raises(PromptTooLongError, match="prompt 1 is .* context is 24"):
        extract_activations(h, ["Hi", "word " * 40], progress=False)


def test_tokenizer_without_template_and_no_override() -> None:
    model, tok = tiny_model_and_tokenizer("gpt2", n_layers=2, d_model=32)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        extract_activations(load_model(model, tok), PROMPTS, progress=False)


def test_bf16_model_means_are_float64() -> None:
    h = tiny_handle("llama", dtype="bf16")
    try:
        stats = extract_activations(h, PROMPTS, positions="t_inst", progress=False)
        assert stats.mean.dtype == torch.float64
        ref = extract_activations(tiny_handle("llama", dtype="float32"), PROMPTS,
                                  positions="t_inst", progress=False)
        # layer 0 is the embedding: bf16 rounding only
        torch.testing.assert_close(stats.mean[0], ref.mean[0], atol=2e-2, rtol=2e-2)
    finally:
        h.model.float()  # the cached tiny model is shared across tests


def test_streamed_tokenization_equals_all_at_once_bit_for_bit(llama, monkeypatch) -> None:
    """Issue 26: prompts are tokenized per batch (lengths first, in chunks), never all at
    once. The reference is the all-at-once path: every prompt encoded together, the
    batches of ``iter_batches`` on those ids, the same backend and accumulator."""
    import safetygeo.activations.extract as ex
    from safetygeo.activations.positions import resolve_positions
    from safetygeo.activations.reducers import MomentAccumulator
    from safetygeo.models.batching import iter_batches

    prompts = [f"{p} ({i})" * (1 + i % 3) for i, p in enumerate(PROMPTS * 4)]
    monkeypatch.setattr(ex, "TOKENIZE_CHUNK", 5)  # several chunks
    got = extract_activations(llama, prompts, batch_size=3, positions="eoi", progress=False,
                              second_moment="diag", keep_vectors=True)
    enc = llama.encode(prompts)  # the reference: all at once
    assert ex.token_lengths(llama, prompts, chunk=5) == (enc.lengths, enc.n_eoi)
    sel = resolve_positions("eoi", enc.n_eoi)
    layers = llama.check_layers("all")
    acc = MomentAccumulator(len(layers), len(sel), llama.d_model, len(prompts),
                            second_moment="diag", keep_vectors=True, device=llama.device)
    capture = ex.get_backend("native")
    for batch in iter_batches(enc.input_ids, 3, llama.tokenizer.pad_token_id):
        acts = capture(llama, batch, layers, sel.offsets)
        for slot, layer in enumerate(layers):
            acc.update(slot, acts[layer], batch.indices)
    assert torch.equal(got.mean, acc.mean()) and torch.equal(got.mean_sq, acc.mean_sq())
    assert torch.equal(got.vectors, acc.vectors)
