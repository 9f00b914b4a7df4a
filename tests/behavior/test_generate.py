"""Generation: padded batches vs single prompts, HF ``generate`` as the greedy reference,
seeded sampling (batch-invariant, distribution = tempered softmax), stop reasons,
interventions (ablate == weight orthogonalization, batched variants == separate runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safetygeo.models.batching import left_pad
from safetygeo.activations.logits import last_logprobs
from safetygeo.behavior.generate import generate, generate_variants
from safetygeo.errors import EmptyPromptSetError, PromptTooLongError, SafetyGeoError
from safetygeo.interventions.hooks import ablate, add
from safetygeo.interventions.orthogonalize import orthogonalized_copy
from safetygeo.models import ModelHandle, load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer

from ..conftest import GPT2_TEMPLATE, PROMPTS


def _until_eos(ids: list[int], eos: int = 2) -> list[int]:
    return ids[:ids.index(eos)] if eos in ids else ids


def test_padded_batch_equals_each_prompt_alone(any_handle: ModelHandle) -> None:
    batch = generate(any_handle, PROMPTS, max_new_tokens=12, batch_size=len(PROMPTS), progress=False)
    for i, p in enumerate(PROMPTS):
        alone = generate(any_handle, [p], max_new_tokens=12, progress=False)
        assert batch.token_ids[i] == alone.token_ids[0], f"prompt {i} differs when padded"
        assert batch.completions[i] == alone.completions[0]
    assert batch.prompts == tuple(PROMPTS)
    assert all(len(t) == 12 for t in batch.token_ids)  # random tiny models rarely emit EOS


def test_greedy_equals_hf_generate(any_handle: ModelHandle) -> None:
    """Reference: transformers' own greedy ``model.generate``, unpadded and left-padded."""
    ours = generate(any_handle, PROMPTS, max_new_tokens=10, batch_size=3, progress=False)
    ids = any_handle.encode(PROMPTS).input_ids
    model = any_handle.model
    for i, row in enumerate(ids):
        ref = model.generate(torch.tensor([row]), attention_mask=torch.ones(1, len(row), dtype=torch.long),
                             max_new_tokens=10, do_sample=False, pad_token_id=0)
        assert list(ours.token_ids[i]) == _until_eos(ref[0, len(row):].tolist())
    input_ids, mask, _ = left_pad(ids, 0)
    ref = model.generate(input_ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                         pad_token_id=0)
    for i in range(len(ids)):
        assert list(ours.token_ids[i]) == _until_eos(ref[i, input_ids.shape[1]:].tolist())


def test_seeded_sampling_is_reproducible_and_batch_invariant(llama: ModelHandle) -> None:
    kw = dict(max_new_tokens=8, do_sample=True, temperature=0.9, progress=False)
    a = generate(llama, PROMPTS, seed=3, batch_size=5, **kw)
    b = generate(llama, PROMPTS, seed=3, batch_size=5, **kw)
    assert a.token_ids == b.token_ids
    # other batch sizes give the same sample per prompt (each row has its own RNG stream)
    c = generate(llama, PROMPTS, seed=3, batch_size=2, **kw)
    assert c.token_ids == a.token_ids
    d = generate(llama, PROMPTS[:1], seed=3, **kw)
    assert d.token_ids[0] == a.token_ids[0]
    # ... and not on the other prompts in the batch (HF generate's shared RNG fails this)
    e = generate(llama, [PROMPTS[0], PROMPTS[3]], seed=3, batch_size=2, **kw)
    assert e.token_ids[0] == a.token_ids[0]
    greedy = generate(llama, PROMPTS, max_new_tokens=8, progress=False)
    assert a.token_ids != greedy.token_ids
    assert generate(llama, PROMPTS, seed=4, batch_size=5, **kw).token_ids != a.token_ids


def test_sampling_follows_the_tempered_top_k_softmax(llama: ModelHandle) -> None:
    """Reference: the next-token distribution from ``last_logprobs``, tempered and top-k'd
    by hand. 600 rows of one prompt give 600 independent first-token draws."""
    prompt, n, temp, k = PROMPTS[0], 600, 0.05, 4
    g = generate(llama, [prompt] * n, max_new_tokens=1, do_sample=True, temperature=temp,
                 top_k=k, seed=11, batch_size=n, progress=False)
    first = np.array([t[0] for t in g.token_ids])
    logits = last_logprobs(llama, [prompt], progress=False)[0].double()
    top = torch.topk(logits, k)
    probs = torch.softmax(top.values / temp, -1).numpy()
    ids = top.indices.numpy()
    assert set(first.tolist()) <= set(ids.tolist())
    counts = np.array([(first == t).sum() for t in ids])
    sd = np.sqrt(n * probs * (1 - probs)) + 1e-9
    assert np.all(np.abs(counts - n * probs) <= 4 * sd + 1), (counts, n * probs)
    # the check has power: the untempered distribution is far from what was sampled
    flat = torch.softmax(top.values, -1).numpy()
    assert np.any(np.abs(counts - n * flat) > 4 * np.sqrt(n * flat * (1 - flat)) + 1)


def test_stop_reasons(llama: ModelHandle) -> None:
    base = generate(llama, PROMPTS[:2], max_new_tokens=6, progress=False)
    assert base.stop_reasons == ("length", "length")
    # a stop token: the first greedy token of prompt 0 ends it at once
    first = base.token_ids[0][0]
    g = generate(llama, PROMPTS[:2], max_new_tokens=6, stop_token_ids=[first], progress=False)
    assert g.stop_reasons[0] == "eos" and g.token_ids[0] == () and g.completions[0] == ""
    # a stop string: the completion is cut right before it
    text = base.completions[1]
    stop = text[len(text) // 2:len(text) // 2 + 2]
    assert stop.strip(), text
    g = generate(llama, PROMPTS[:2], max_new_tokens=6, stop_strings=[stop], progress=False)
    assert g.stop_reasons[1] == "stop_string" and g.completions[1] == text[:text.find(stop)]
    # the context window
    m, tok = tiny_model_and_tokenizer("llama", n_layers=1, d_model=16, max_positions=64)
    h = load_model(m, tok)
    n_prompt = len(h.encode([PROMPTS[2]]).input_ids[0])
    g = generate(h, [PROMPTS[2]], max_new_tokens=50, progress=False)
    assert g.stop_reasons == ("context",) and len(g.token_ids[0]) == 64 - n_prompt
    with pytest.raises(PromptTooLongError, match="prompt 0"):
        generate(h, [" ".join(["word"] * 60)], max_new_tokens=2, progress=False)


def _fresh_double(arch: str) -> ModelHandle:
    m, tok = tiny_model_and_tokenizer(arch, n_layers=2, d_model=32, seed=1)
    return load_model(m.double(), tok, template=GPT2_TEMPLATE if arch == "gpt2" else None)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_ablate_equals_orthogonalized_weights_and_add_changes_output(arch: str) -> None:
    h = _fresh_double(arch)
    r = torch.randn(32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    base = generate(h, PROMPTS, max_new_tokens=10, progress=False)
    with ablate(h, r):
        hooked = generate(h, PROMPTS, max_new_tokens=10, progress=False)
    edited = generate(orthogonalized_copy(h, r), PROMPTS, max_new_tokens=10, progress=False)
    assert hooked.token_ids == edited.token_ids
    assert hooked.token_ids != base.token_ids  # the intervention changes generations
    with add(h, r * 20, layer=1):
        pushed = generate(h, PROMPTS, max_new_tokens=10, progress=False)
    assert pushed.token_ids != base.token_ids
    assert generate(h, PROMPTS, max_new_tokens=10, progress=False).token_ids == base.token_ids


def test_variants_equal_separate_runs(llama: ModelHandle) -> None:
    dirs = torch.randn(3, llama.d_model, generator=torch.Generator().manual_seed(2)) * 8
    with add(llama, dirs, layer=1):
        batched = generate_variants(llama, PROMPTS, 3, max_new_tokens=6, batch_size=2,
                                    progress=False)
    for j in range(3):
        with add(llama, dirs[j], layer=1):
            alone = generate(llama, PROMPTS, max_new_tokens=6, progress=False)
        assert batched[j].token_ids == alone.token_ids
    assert len({b.token_ids for b in batched}) > 1
    plain = generate_variants(llama, PROMPTS[:2], 2, max_new_tokens=4, progress=False)
    assert plain[0].token_ids == plain[1].token_ids


def test_bad_input(llama: ModelHandle) -> None:
    with pytest.raises(EmptyPromptSetError):
        generate(llama, [], progress=False)
    for kw, msg in ((dict(max_new_tokens=0), "max_new_tokens"), (dict(temperature=0.0), "temperature"),
                    (dict(top_p=0.0), "top_p"), (dict(top_k=-1), "top_k"),
                    (dict(batch_size=0), "batch_size"), (dict(stop_strings=[""]), "stop")):
        with pytest.raises(SafetyGeoError, match=msg):
            generate(llama, PROMPTS[:1], progress=False, **kw)
    frame = generate(llama, PROMPTS[:2], max_new_tokens=3, progress=False).to_frame()
    assert list(frame.columns) == ["index", "prompt", "completion", "n_tokens", "stop_reason",
                                   "token_ids"]
    assert frame.n_tokens.tolist() == [3, 3]


def test_a_row_at_the_context_edge_does_not_disturb_learned_positions() -> None:
    """GPT-2 has a position table of max_positions rows: a row that stops at the context edge
    keeps being fed (its outputs unread) next to a short row, and must not index past it."""
    m, tok = tiny_model_and_tokenizer("gpt2", n_layers=1, d_model=16, max_positions=48)
    h = load_model(m, tok, template=GPT2_TEMPLATE)
    long = " ".join(["word"] * 19)
    assert len(h.encode([long]).input_ids[0]) == 47
    for sample in (False, True):
        g = generate(h, [long, "Hi"], max_new_tokens=30, do_sample=sample, progress=False)
        assert g.stop_reasons == ("context", "length") and len(g.token_ids[0]) == 1
        alone = generate(h, [long, "Hi"], max_new_tokens=30, do_sample=sample, batch_size=1,
                         progress=False)
        assert g.token_ids == alone.token_ids
