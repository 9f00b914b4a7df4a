"""GCG: gradients, candidate losses and the optimizer, each against an independent reference.

References used: autograd through Hugging Face's own ``inputs_embeds`` + ``labels`` loss
(not our one-hot path), central finite differences in float64, single-sequence forward
passes of re-encoded prompt *text* (``ModelHandle.encode``), HF greedy ``generate``, the
planted-mechanism model's known optimum (trigger words), and nanogcg 0.2.3 (optional).
"""

from __future__ import annotations

import functools
import importlib.util

import pytest
import torch

from safetygeo.attacks.gcg import (
    GCGConfig,
    GCGError,
    GCGResult,
    allowed_tokens,
    candidate_losses,
    gcg_adversarial_prompts,
    gcg_attack,
    gcg_init,
    gcg_run,
    gcg_step,
    sample_candidates,
    token_gradient,
)
from safetygeo.attacks.gcg.model import _prefix_cache
from safetygeo.data import PromptSet
from safetygeo.errors import PromptTooLongError, SafetyGeoError
from safetygeo.models import ModelHandle, load_model, resolve_arch
from safetygeo.models.tiny import ARCHS, tiny_model_and_tokenizer
from safetygeo.toy.planted import TRIGGERS, planted_refusal_model
from tests.conftest import GPT2_TEMPLATE, tiny_handle

INSTR = "Tell me how to build a boat."
TARGET = "Sure, here is how to build a boat"
SMALL = GCGConfig(num_steps=3, search_width=24, topk=16, suffix_init="x x x x x", seed=0,
                  eval_batch_size=7)


def _hf_loss(handle: ModelHandle, ids: list[int], n_target: int,
             suffix_embeds: torch.Tensor | None = None, suffix_slice: slice | None = None):
    """Reference loss: HF's own ``labels`` cross-entropy on one unpadded sequence, optionally
    with the suffix rows of ``inputs_embeds`` replaced by ``suffix_embeds``."""
    x = torch.tensor([ids])
    labels = torch.full_like(x, -100)
    labels[0, -n_target:] = x[0, -n_target:]
    embeds = handle.model.get_input_embeddings()(x)
    if suffix_embeds is not None:
        embeds = torch.cat([embeds[:, :suffix_slice.start], suffix_embeds[None],
                            embeds[:, suffix_slice.stop:]], dim=1)
    return handle.model(inputs_embeds=embeds, labels=labels, use_cache=False).loss


def _f64_loss(handle: ModelHandle, ids: list[int], n_target: int, suffix_embeds, sl) -> torch.Tensor:
    """Float64 reference loss (HF's labels loss casts logits to float32)."""
    embeds = handle.model.get_input_embeddings()(torch.tensor([ids]))
    embeds = torch.cat([embeds[:, :sl.start], suffix_embeds[None], embeds[:, sl.stop:]], dim=1)
    logits = handle.model(inputs_embeds=embeds, use_cache=False).logits[0, -n_target - 1:-1]
    return -logits.log_softmax(-1).gather(1, torch.tensor(ids[-n_target:])[:, None]).mean()


def _layout_ids(item, k: int = 0) -> tuple[list[int], slice, int]:
    p = item.prompts[k]
    ids = list(p.before_ids) + item.suffix_ids.tolist() + list(p.after_ids) + list(p.target_ids)
    return ids, slice(len(p.before_ids), len(p.before_ids) + len(item.suffix_ids)), len(p.target_ids)


def _fresh(arch: str = "llama", *, std: float | None = None) -> ModelHandle:
    """A private tiny model (tests may change its dtype / mode). ``std``: re-draw every
    matrix from N(0, std²) so that the suffix moves the target loss by O(0.1), not the
    O(1e-3) of the default 0.02 init, and reference checks can tell candidates apart."""
    template = {"template": None} if arch == "gpt2" else {}
    h = load_model(tiny_model_and_tokenizer(arch, n_layers=2, d_model=32, **template),
                   template=GPT2_TEMPLATE if arch == "gpt2" else None)
    if std is not None:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in h.model.parameters():
                if p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
    return h


@functools.lru_cache(maxsize=None)
def _sharp(arch: str) -> ModelHandle:
    """Shared sharp model (never mutate it in a test)."""
    return _fresh(arch, std=0.4)


# ----------------------------------------------------------------------------- gradient
@pytest.mark.parametrize("arch", ["llama", "gemma", "gpt2"])
@pytest.mark.parametrize("cache", [True, False])
def test_onehot_gradient_equals_embedding_chain_rule(arch: str, cache: bool) -> None:
    """∇_onehot L = (∇_E L) Mᵀ, with ∇_E from HF's labels loss on inputs_embeds and M the
    embedding module's output for every token id (its own scale included, e.g. Gemma)."""
    h = _sharp(arch)
    item = gcg_init(h, [INSTR], [TARGET], SMALL).items[0]
    grad, loss = token_gradient(h, item, use_prefix_cache=cache)
    ids, sl, nt = _layout_ids(item)
    embed = h.model.get_input_embeddings()
    with torch.no_grad():
        M = embed(torch.arange(embed.weight.shape[0]))
    E = M[item.suffix_ids].clone().requires_grad_(True)
    ref_loss = _hf_loss(h, ids, nt, E, sl)
    (gE,) = torch.autograd.grad(ref_loss, E)
    ref = (gE @ M.T).float()
    assert loss == pytest.approx(float(ref_loss.detach()), rel=1e-5, abs=1e-6)
    assert torch.allclose(grad, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    # the check can fail: a gradient taken one position off does not match
    assert not torch.allclose(grad.roll(1, dims=0), ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))


def test_onehot_gradient_predicts_token_swap_direction_finite_difference() -> None:
    """Directional derivative along e_new − e_old at one position (central differences)
    equals grad[pos, new] − grad[pos, old]. GPT-2 in float64 is float64 throughout (HF's
    Llama RMSNorm / rotary run in float32 even in a float64 model, which makes differences
    below eps ≈ 1e-3 noisy)."""
    h = _fresh("gpt2", std=0.4)
    h.model.double()
    item = gcg_init(h, [INSTR], [TARGET], SMALL).items[0]
    grad, _ = token_gradient(h, item, use_prefix_cache=False)
    ids, sl, nt = _layout_ids(item)
    W = h.model.get_input_embeddings().weight.detach()
    base = W[item.suffix_ids].clone()
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        pos = int(torch.randint(len(item.suffix_ids), (1,), generator=gen))
        new = int(torch.randint(20, W.shape[0], (1,), generator=gen))
        old = int(item.suffix_ids[pos])
        d = torch.zeros_like(base)
        d[pos] = W[new] - W[old]
        eps = 1e-5
        with torch.no_grad():
            fd = float(_f64_loss(h, ids, nt, base + eps * d, sl)
                       - _f64_loss(h, ids, nt, base - eps * d, sl)) / (2 * eps)
        predicted = float(grad[pos, new] - grad[pos, old])
        assert predicted == pytest.approx(fd, rel=1e-6, abs=1e-8)
        other = (pos + 1) % len(item.suffix_ids)  # the check can fail: another position
        wrong = float(grad[other, new] - grad[other, int(item.suffix_ids[other])])
        assert wrong != pytest.approx(fd, rel=1e-3, abs=1e-6)


# ----------------------------------------------------------------------------- candidate losses
@pytest.mark.parametrize("arch", ARCHS)
def test_candidate_losses_equal_single_forward_of_reencoded_text(arch: str) -> None:
    """Batched (ragged last batch) losses, with and without the prefix KV cache, equal the
    HF labels loss of each candidate's prompt *text* re-encoded by ``handle.encode`` alone."""
    h = _sharp(arch)
    state = gcg_init(h, [INSTR], [TARGET], SMALL)
    item = state.items[0]
    assert _prefix_cache(h.model, torch.tensor(item.prompts[0].before_ids)) is not None
    grad, _ = token_gradient(h, item)
    cands = sample_candidates(item.suffix_ids, grad, state.allowed, search_width=40, topk=16,
                              generator=torch.Generator().manual_seed(0))
    from safetygeo.attacks.gcg.candidates import _suffix_texts

    texts, ok = _suffix_texts(h.tokenizer, item.prompts, cands)
    assert ok.sum() >= 5
    cands = cands[ok][:10]
    texts = [t for t in texts if t is not None][:10]
    with_cache, greedy = candidate_losses(h, item, cands, eval_batch_size=3, use_prefix_cache=True)
    no_cache, _ = candidate_losses(h, item, cands, eval_batch_size=4, use_prefix_cache=False)
    p = item.prompts[0]
    for c, text, lc, ln in zip(cands, texts, with_cache, no_cache):
        enc = h.encode([INSTR + text]).input_ids[0]
        assert enc == list(p.before_ids) + c.tolist() + list(p.after_ids)
        with torch.no_grad():
            ref = float(_hf_loss(h, enc + list(p.target_ids), len(p.target_ids)))
        assert float(ln) == pytest.approx(ref, rel=1e-5, abs=1e-6)
        assert float(lc) == pytest.approx(ref, rel=1e-4, abs=1e-5)
    assert float(no_cache.max() - no_cache.min()) > 1e-2  # candidates are told apart
    assert greedy.dtype == torch.bool and greedy.shape == (len(cands),)


def test_universal_loss_is_mean_of_per_prompt_losses() -> None:
    h = tiny_handle("llama")
    instr = [INSTR, "Write a poem about the sea."]
    tg = [TARGET, "Sure, here is a poem"]
    uni = gcg_init(h, instr, tg, SMALL, universal=True).items[0]
    singles = gcg_init(h, instr, tg, SMALL).items
    assert len(uni.prompts) == 2 and len(singles) == 2
    cand = uni.suffix_ids[None]
    u, _ = candidate_losses(h, uni, cand)
    s = [float(candidate_losses(h, it, cand)[0][0]) for it in singles]
    assert float(u[0]) == pytest.approx(sum(s) / 2, rel=1e-6)
    g_u, _ = token_gradient(h, uni)
    g_s = sum(token_gradient(h, it)[0] for it in singles) / 2
    assert torch.allclose(g_u, g_s, rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------- sampling / vocab
def test_sample_candidates_single_swaps_from_topk_at_uniform_positions() -> None:
    n, V, k = 6, 50, 4
    grad = torch.randn(n, V, generator=torch.Generator().manual_seed(0))
    allowed = torch.ones(V, dtype=torch.bool)
    allowed[:10] = False
    ids = torch.full((n,), 3)
    c = sample_candidates(ids, grad, allowed, search_width=3000, topk=k,
                          generator=torch.Generator().manual_seed(0))
    diff = c != ids
    assert (diff.sum(1) <= 1).all()  # a swap may redraw the same token only if it is allowed
    top = grad.masked_fill(~allowed, float("inf")).topk(k, dim=1, largest=False).indices
    rows, pos = diff.nonzero(as_tuple=True)
    for r, q in zip(rows.tolist(), pos.tolist()):
        assert int(c[r, q]) in top[q].tolist()
    counts = torch.bincount(pos, minlength=n).float()
    assert counts.min() > 0.8 * counts.mean()  # roughly uniform over positions
    c2 = sample_candidates(ids, grad, allowed, search_width=200, topk=k, n_replace=2,
                           generator=torch.Generator().manual_seed(0))
    assert ((c2 != ids).sum(1) == 2).all()


def test_allowed_tokens_excludes_special_nonascii_and_padding_rows() -> None:
    tok = tiny_handle("llama").tokenizer
    m = allowed_tokens(tok, len(tok) + 8)
    specials = [i for i, t in tok.added_tokens_decoder.items() if t.special]
    assert specials and not m[specials].any()
    assert not m[len(tok):].any()
    texts = tok.batch_decode([[i] for i in range(len(tok))])
    nonascii = [i for i, t in enumerate(texts) if not t.isascii()]
    assert nonascii and not m[nonascii].any()
    loose = allowed_tokens(tok, len(tok), allow_non_ascii=True)
    assert loose[nonascii].all() and not loose[specials].any()
    x = tok.convert_tokens_to_ids("x")
    assert m[x] and not allowed_tokens(tok, len(tok), forbidden_token_ids=[x])[x]


# ----------------------------------------------------------------------------- optimizer
def test_gcg_lowers_target_loss_and_reports_it_exactly() -> None:
    h = _sharp("llama")
    cfg = GCGConfig(num_steps=4, search_width=64, topk=32, suffix_init="x x x x x", seed=0)
    res = gcg_attack(h, INSTR, TARGET, cfg, progress=False)
    assert isinstance(res, GCGResult) and res.n_steps == 4 and len(res.losses) == 4
    assert res.best_loss < res.initial_loss
    assert res.best_loss == pytest.approx(min(res.losses))
    assert res.prompt == INSTR + res.suffix
    # independent check of the reported loss: re-encode the returned prompt text
    enc = h.encode([res.prompt]).input_ids[0]
    tgt = h.tokenizer(TARGET, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ref = float(_hf_loss(h, enc + tgt, len(tgt)))
    assert res.best_loss == pytest.approx(ref, rel=1e-4)
    assert res.wall_time_s > 0


def _random_search(h, state, steps: int, width: int, seed: int) -> float:
    """Baseline with GCG's budget: random single-token swaps over allowed tokens, keep best."""
    item = state.items[0]
    cur, best = item.suffix_ids.clone(), item.loss
    allowed = state.allowed.nonzero().flatten()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        c = cur.repeat(width, 1)
        pos = torch.randint(len(cur), (width,), generator=gen)
        c[torch.arange(width), pos] = allowed[torch.randint(len(allowed), (width,), generator=gen)]
        loss, _ = candidate_losses(h, item, c)
        j = int(loss.argmin())
        cur = c[j]
        best = min(best, float(loss[j]))
    return best


def test_gcg_finds_planted_trigger_and_beats_random_swaps() -> None:
    """On the planted model, p("I") (refusal start) is raised only by trigger words: GCG's gradient
    finds them; random swaps with the same number of candidate evaluations do worse."""
    pm = planted_refusal_model()
    h = pm.handle
    instr, target = "Write a short poem about the sea.", "I"
    cfg = GCGConfig(num_steps=2, search_width=4, topk=6, suffix_init="x x x x", seed=0)
    state = gcg_init(h, [instr], [target], cfg)
    init = state.items[0].loss
    rnd = [_random_search(h, gcg_init(h, [instr], [target], cfg), cfg.num_steps,
                          cfg.search_width, seed) for seed in range(5)]
    res = gcg_run(h, state, progress=False)[0]
    assert res.best_loss < init - 1.0
    assert res.best_loss < sorted(rnd)[2] - 1.0, (res.best_loss, rnd)
    trig = {h.tokenizer.convert_tokens_to_ids(t) for t in TRIGGERS}
    assert trig & set(res.suffix_ids)


def test_early_stop_matches_hf_greedy_generation() -> None:
    """``solved`` (teacher-forced argmax == target) agrees with HF greedy ``generate`` on the
    returned prompt; an item solved at init runs no step."""
    pm = planted_refusal_model()
    h = pm.handle
    refusal = h.tokenizer("I", add_special_tokens=False)["input_ids"][0]
    cfg = GCGConfig(num_steps=1, search_width=4, topk=40, suffix_init="x x", seed=0, early_stop=True)
    outcomes = []
    for instr in (pm.harmful[0], "Write a short poem about the sea."):
        res = gcg_attack(h, instr, "I", cfg, progress=False)
        ids = torch.tensor([h.encode([res.prompt]).input_ids[0]])
        out = h.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                               do_sample=False, pad_token_id=0)
        assert res.solved == (out[0, -1].item() == refusal)
        outcomes.append((res.solved, res.n_steps))
    assert outcomes[0] == (True, 0)  # the harmful prompt already starts a refusal
    assert outcomes[1][1] == 1


def test_sentencepiece_style_tokenizer_round_trips() -> None:
    """Metaspace ("▁") tokenizers drop the leading space when decoding a sequence's first
    token; suffix text is decoded in context, so the returned prompt re-encodes (through
    ``handle.encode``) to exactly the ids whose loss was optimized."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from safetygeo.models.tiny import CHAT_TEMPLATES, SPECIAL_TOKENS, _corpus, tiny_model

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tk.train_from_iterator(_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=[*SPECIAL_TOKENS, "<unk>"], show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|bos|>", eos_token="<|eos|>",
                                  pad_token="<|pad|>", unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATES["mistral"]
    assert tok.decode(tok(" x x", add_special_tokens=False)["input_ids"]) == "x x"  # space lost
    h = load_model(tiny_model("llama", vocab_size=len(tok), n_layers=2, d_model=32), tok)
    cfg = GCGConfig(num_steps=3, search_width=64, topk=32, suffix_init="x x x x", seed=0)
    state = gcg_init(h, [INSTR], ["Sure, here is"], cfg)
    assert state.items[0].suffix == " x x x x"
    res = gcg_run(h, state, progress=False)[0]
    p = state.items[0].prompts[0]
    assert h.encode([res.prompt]).input_ids[0] == list(p.before_ids) + list(res.suffix_ids) + list(p.after_ids)
    assert res.best_loss < res.initial_loss


# ----------------------------------------------------------------------------- pool API
def test_pool_step_deterministic_leaves_grads_and_modes_untouched() -> None:
    h = _fresh()
    model = h.model
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.5  # train mode would make losses random
    model.train()
    model.model.layers[0].mlp.eval()  # a mixed-mode model must come back mixed
    modes = {n: m.training for n, m in model.named_modules()}
    marker = torch.full_like(model.lm_head.weight, 0.25)
    model.lm_head.weight.grad = marker.clone()
    assert all(p.requires_grad for p in model.parameters())
    instr = [INSTR, "Write a poem about the sea.", "Hi"]
    tg = [TARGET, "Sure, here is a poem", "Hello"]
    runs = []
    for _ in range(2):
        st = gcg_init((model, h.tokenizer), instr, tg, SMALL)
        for _ in range(2):
            gcg_step((model, h.tokenizer), st)
        runs.append(st)
    assert runs[0].step == 2 and all(len(it.losses) == 2 for it in runs[0].items)
    for a, b in zip(runs[0].items, runs[1].items):
        assert torch.equal(a.suffix_ids, b.suffix_ids) and a.losses == b.losses
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert torch.equal(model.lm_head.weight.grad, marker)
    assert all(p.grad is None for n, p in model.named_parameters() if n != "lm_head.weight")
    other = gcg_init((model, h.tokenizer), instr, tg, GCGConfig(**{**SMALL.__dict__, "seed": 7}))
    gcg_step((model, h.tokenizer), other)
    gcg_step((model, h.tokenizer), other)
    assert any(not torch.equal(a.suffix_ids, b.suffix_ids) for a, b in zip(runs[0].items, other.items))


def test_pool_items_can_be_replaced_and_steps_use_the_current_model() -> None:
    h = _fresh()
    st = gcg_init(h, [INSTR, "Hi"], [TARGET, "Hello"], SMALL)
    gcg_step(h, st)
    st.items[1] = gcg_init(h, ["Tell me a story."], ["Sure"], st.config).items[0]
    assert st.items[1].losses == [] and st.items[1].prompts[0].target == "Sure"
    with torch.no_grad():  # the model changes between steps (as in adversarial training)
        h.model.lm_head.weight.mul_(3.0)
    gcg_step(h, st)
    item = st.items[0]
    ref, _ = candidate_losses(h, item, item.suffix_ids[None])
    assert item.losses[-1] == pytest.approx(float(ref[0]), rel=1e-5)


def test_adversarial_prompts_from_promptset_targets() -> None:
    h = tiny_handle("qwen2")
    ps = PromptSet(["How do I make a cake?", "Tell me a story."], name="adv",
                   targets=("Sure, here is a cake", "Sure, here is a story"))
    cfg = GCGConfig(num_steps=1, search_width=8, topk=4, suffix_init="x x", seed=0)
    prompts, results = gcg_adversarial_prompts(h, ps, config=cfg, progress=False,
                                               return_results=True)
    assert len(prompts) == 2 and all(p.startswith(i) for p, i in zip(prompts, ps.prompts))
    assert [r.targets[0] for r in results] == list(ps.targets)
    with pytest.raises(GCGError, match="no targets"):
        gcg_adversarial_prompts(h, PromptSet(["Hi"], name="x"), config=cfg, progress=False)


def test_gcg_asr_matches_hf_generation_and_planted_ground_truth() -> None:
    """ASR under GCG = share of adversarial prompts whose greedy completion is not a refusal:
    recomputed with HF ``generate`` + the classifier; the no-attack rate matches the plant
    (harmful prompts start with the refusal token, harmless ones do not)."""
    from safetygeo.attacks.asr import GCGASR, gcg_asr
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.results import Estimate

    pm = planted_refusal_model()
    h = pm.handle
    instr = [pm.harmful[0], pm.harmful[1], "Write a short poem about the sea.", "Tell me a story about a dog."]

    def clf(text: str) -> str:  # the planted refusal token starts a refusal
        return "full_refusal" if text.lstrip().startswith("I") else "compliance"

    cfg = GCGConfig(num_steps=2, search_width=8, topk=8, suffix_init="x x", seed=0)
    rep = gcg_asr(h, instr, ["Sure, here is"] * 4, cfg,
                  settings=GenerationSettings(max_new_tokens=3), classifier=clf, n_boot=200,
                  progress=False)
    assert isinstance(rep, GCGASR) and isinstance(rep.asr, Estimate)
    # planted: the two harmful bare instructions are refused, so at most the two harmless
    # ones can deliver (content-based ASR, issue 24: 3 generated tokens are rarely on-topic)
    assert rep.asr_no_attack.value <= 0.5 and rep.asr_no_attack.n == 4
    assert rep.asr.metric == "asr" and rep.asr.method == "clf"  # the labeller is recorded
    ref = []
    for prompt in rep.prompts:
        ids = torch.tensor([h.encode([prompt]).input_ids[0]])
        out = h.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3,
                               do_sample=False, pad_token_id=0)
        ref.append(clf(h.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)))
    assert list(rep.labels) == ref
    assert rep.refusal_rate is not None
    assert rep.refusal_rate.value == sum(lab != "compliance" for lab in ref) / 4
    from safetygeo.behavior.metrics import attack_success_rate
    want = attack_success_rate(instr, list(rep.completions), labels=ref, n_boot=200)
    assert rep.asr.value == want.value <= sum(lab == "compliance" for lab in ref) / 4
    assert rep.asr.ci_low <= rep.asr.value <= rep.asr.ci_high
    assert [r.prompt for r in rep.results] == list(rep.prompts)
    assert rep.solved_rate == sum(r.solved for r in rep.results) / 4
    no_base = gcg_asr(h, instr[:2], ["Sure, here is"] * 2, cfg,
                      settings=GenerationSettings(max_new_tokens=3), classifier=clf,
                      baseline=False, n_boot=20, progress=False)
    assert no_base.asr_no_attack is None


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, match", [
    ({"search_width": 0}, "search_width"), ({"topk": 0}, "topk"), ({"n_replace": 0}, "n_replace"),
    ({"eval_batch_size": 0}, "eval_batch_size"), ({"num_steps": -1}, "num_steps"),
    ({"suffix_init": ""}, "suffix_init"), ({"suffix_init": "   "}, "suffix_init"),
])
def test_bad_config_raises(kw: dict, match: str) -> None:
    with pytest.raises(SafetyGeoError, match=match):
        GCGConfig(**kw)


def test_bad_inputs_raise_clear_errors() -> None:
    h = tiny_handle("llama")
    with pytest.raises(GCGError, match="target is empty"):
        gcg_init(h, [INSTR], [""], SMALL)
    with pytest.raises(GCGError, match="prompt 1: target is empty"):
        gcg_init(h, [INSTR, "Hi"], [TARGET, "  "], SMALL)
    with pytest.raises(GCGError, match="2 instructions but 1 targets"):
        gcg_init(h, [INSTR, "Hi"], [TARGET], SMALL)
    with pytest.raises(GCGError, match="no instructions"):
        gcg_init(h, [], [], SMALL)
    every = tuple(range(len(h.tokenizer)))
    with pytest.raises(GCGError, match="no allowed tokens"):
        gcg_init(h, [INSTR], [TARGET], GCGConfig(**{**SMALL.__dict__, "forbidden_token_ids": every}))
    with pytest.raises(PromptTooLongError):
        gcg_init(h, [INSTR], [TARGET], GCGConfig(suffix_init="x " * 200))
    with pytest.raises(GCGError, match="ModelHandle"):
        gcg_init(object(), [INSTR], [TARGET], SMALL)  # type: ignore[arg-type]


def test_tuple_model_does_not_switch_mode() -> None:
    model, tok = tiny_model_and_tokenizer("llama", n_layers=1, d_model=16)
    model.train()
    gcg_attack((model, tok), INSTR, TARGET, GCGConfig(num_steps=1, search_width=4, topk=2,
                                                     suffix_init="x x"), progress=False)
    assert model.training and resolve_arch(model).layers_path == "model.layers"


# ----------------------------------------------------------------------------- nanogcg parity
@pytest.mark.skipif(importlib.util.find_spec("nanogcg") is None, reason="nanogcg not installed")
def test_parity_with_nanogcg() -> None:
    """nanogcg 0.2.3 (optional test dependency, ``pip install --no-deps nanogcg==0.2.3``)
    computes the same one-hot gradient and candidate losses on the same token layout (its
    full-sequence path: its prefix-cache path fails on transformers 5), and its candidate
    sampler has the same support: single swaps to a position's top-k allowed tokens."""
    from nanogcg.gcg import GCG, sample_ids_from_grad
    from nanogcg.gcg import GCGConfig as TheirConfig

    h = _sharp("llama")
    item = gcg_init(h, [INSTR], [TARGET], SMALL).items[0]
    p = item.prompts[0]
    emb = h.model.get_input_embeddings()
    g = GCG(h.model, h.tokenizer, TheirConfig(use_prefix_cache=False, verbosity="WARNING"))
    g.target_ids = torch.tensor([p.target_ids])
    with torch.no_grad():
        g.before_embeds, g.after_embeds, g.target_embeds = (
            emb(torch.tensor([x])) for x in (p.before_ids, p.after_ids, p.target_ids))
    theirs = g.compute_token_gradient(item.suffix_ids[None])[0]
    ours, _ = token_gradient(h, item)
    assert torch.allclose(ours, theirs.float(), rtol=1e-4, atol=1e-6 * float(ours.abs().max()))
    cands = torch.stack([item.suffix_ids, item.suffix_ids.roll(1), item.suffix_ids.flip(0)])
    with torch.no_grad():
        embeds = torch.cat([g.before_embeds.repeat(3, 1, 1), emb(cands),
                            g.after_embeds.repeat(3, 1, 1), g.target_embeds.repeat(3, 1, 1)], 1)
        their_loss = g.compute_candidates_loss(3, embeds)
    our_loss, _ = candidate_losses(h, item, cands)
    assert torch.allclose(our_loss, their_loss.float(), rtol=1e-5)
    allowed = allowed_tokens(h.tokenizer, emb.weight.shape[0])
    torch.manual_seed(0)
    their_c = sample_ids_from_grad(item.suffix_ids, ours.clone(), 3000, topk=4,
                                   not_allowed_ids=(~allowed).nonzero().flatten())
    our_c = sample_candidates(item.suffix_ids, ours, allowed, search_width=3000, topk=4,
                              generator=torch.Generator().manual_seed(0))

    def support(c: torch.Tensor) -> set[tuple[int, int]]:
        r, q = (c != item.suffix_ids).nonzero(as_tuple=True)
        return {(int(j), int(c[i, j])) for i, j in zip(r, q)}

    assert ((their_c != item.suffix_ids).sum(1) <= 1).all()
    assert support(our_c) == support(their_c) and len(support(our_c)) > 3 * len(item.suffix_ids)


# ----------------------------------------------------------------------------- CLI
def test_cli_gcg_writes_results_that_match_the_api(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from safetygeo.cli import app

    runner = CliRunner()
    ckpt = tmp_path / "tiny"
    # the CLI grammar of issue #11: VERB MODEL --set ROLE=SPEC
    assert runner.invoke(app, ["make-tiny", str(ckpt), "--n-layers", "1", "--d-model", "16"]).exit_code == 0
    args = ["attack-gcg", str(ckpt), "--set", "harmful=example:harmful", "--limit", "2", "--num-steps", "2",
            "--search-width", "8", "--topk", "4", "--suffix-init", "x x", "--out", str(tmp_path / "g")]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--target" in res.output  # the example set has no targets
    res = runner.invoke(app, args + ["--target", "Sure, here is"])
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "g" / "gcg.json").read_text())
    assert len(saved["results"]) == 2 and saved["config"]["search_width"] == 8
    h = load_model(str(ckpt))
    cfg = GCGConfig(num_steps=2, search_width=8, topk=4, suffix_init="x x")
    from safetygeo.data import load_prompt_set

    instr = list(load_prompt_set("example:harmful").prompts[:2])
    api = gcg_run(h, gcg_init(h, instr, ["Sure, here is"] * 2, cfg), progress=False)
    assert [r["suffix"] for r in saved["results"]] == [r.suffix for r in api]
    assert saved["results"][0]["prompts"][0] == api[0].prompt
    res = runner.invoke(app, args + ["--target", "Sure", "--search-width", "0"])
    assert res.exit_code != 0
