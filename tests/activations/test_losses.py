"""Loss building blocks against Hugging Face's own causal-LM loss and unpadded references."""

from __future__ import annotations

import copy
import types

import pytest
import torch

from safetygeo.activations.losses import completion_ce, completion_logprobs, sequence_logprob
from safetygeo.data.records import encode_completions, pad_right


@pytest.fixture
def toy():
    """``toy.fresh()``: a new tiny llama (2 layers, d=32; a deep copy), as in the training
    tests' fixture of the same name (this file moved here from tests/training)."""
    from safetygeo.models import load_model
    from safetygeo.models.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer("llama", n_layers=2, d_model=32, seed=0)
    return types.SimpleNamespace(fresh=lambda: load_model(copy.deepcopy(model), tok))


def _batch(h):
    recs = [{"prompt": "Write a poem about the sea.", "response": "The sea is blue and wide."},
            {"prompt": "Hi", "response": "Hello!"}]
    return encode_completions(h, recs, max_length=128)


def test_completion_ce_equals_hf_loss_on_a_padded_batch(toy):
    h = toy.fresh()
    rows = _batch(h)
    b = pad_right(rows, pad_id=0)
    with torch.no_grad():
        ref = h.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                      labels=b["labels"]).loss
        ours = completion_ce(h.model, b)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)


def test_padded_rows_score_like_unpadded_rows(toy):
    h = toy.fresh()
    rows = _batch(h)
    b = pad_right(rows, pad_id=0)
    with torch.no_grad():
        batched = sequence_logprob(h.model, b)
        for i, row in enumerate(rows):
            alone = sequence_logprob(h.model, pad_right([row], pad_id=0))
            assert torch.allclose(batched[i], alone[0], atol=1e-5), (batched[i], alone)


def test_completion_logprobs_by_hand(toy):
    h = toy.fresh()
    row = _batch(h)[1]
    b = pad_right([row], pad_id=0)
    with torch.no_grad():
        logp, mask = completion_logprobs(h.model, b)
        logits = h.model(input_ids=b["input_ids"]).logits[0].float()
    ids, labels = row["input_ids"], row["labels"]
    expect = sum(torch.log_softmax(logits[t], -1)[ids[t + 1]] for t in range(len(ids) - 1)
                 if labels[t + 1] != -100)
    assert mask.sum() == sum(x != -100 for x in labels[1:])
    assert torch.allclose(logp.sum(), expect, atol=1e-5)


def test_token_ce_and_kl_against_torch_references():
    """The one CE and the one KL (issue 26: 3 copies each before) against torch's own
    ``cross_entropy(ignore_index=-100)`` and ``kl_div(log_target=True)``."""
    import torch.nn.functional as F

    from safetygeo.activations.losses import kl_from_logprobs, token_ce, token_logprobs
    from safetygeo.training.losses import token_ce as training_token_ce

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 11, (3, 6), generator=g)
    labels[0, :3] = -100
    labels[2, 4:] = -100
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1),
                          ignore_index=-100)
    assert torch.allclose(token_ce(logits, labels), ref, atol=1e-12, rtol=0)
    assert training_token_ce is token_ce  # training re-exports it, no copy
    logp, mask = token_logprobs(logits, labels)
    assert logp.dtype == torch.float64 and not bool(logp[~mask].any())
    assert token_logprobs(logits.half(), labels)[0].dtype == torch.float32  # softmax in fp32
    p_lp = torch.log_softmax(torch.randn(4, 7, generator=g, dtype=torch.float64), -1)
    q_lp = torch.log_softmax(torch.randn(4, 7, generator=g, dtype=torch.float64), -1)
    ref_kl = F.kl_div(q_lp, p_lp, log_target=True, reduction="none").sum(-1)  # KL(p ‖ q)
    assert torch.allclose(kl_from_logprobs(p_lp, q_lp), ref_kl, atol=1e-12, rtol=0)
    assert torch.allclose(kl_from_logprobs(p_lp, p_lp), torch.zeros(4, dtype=torch.float64))
