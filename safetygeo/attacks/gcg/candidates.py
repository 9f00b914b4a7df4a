"""Allowed tokens, candidate sampling and exact candidate losses."""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from safetygeo.attacks.gcg.config import GCGError, ModelLike
from safetygeo.attacks.gcg.model import _as_handle, _eval_mode, _logits, _prefixes, _tensor, _upcast
from safetygeo.attacks.gcg.state import GCGItem, GCGPrompt

_ALLOWED_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple, Tensor]] = weakref.WeakKeyDictionary()


def allowed_tokens(
    tokenizer: PreTrainedTokenizerBase,
    n_vocab: int,
    *,
    allow_non_ascii: bool = False,
    forbidden_token_ids: Sequence[int] = (),
) -> Bool[Tensor, " n_vocab"]:
    """Mask of the token ids GCG may place in a suffix.

    Excluded: special tokens (declared, or added with ``special=True``), ids ``>=
    len(tokenizer)`` (embedding rows with no token), ``forbidden_token_ids`` and, unless
    ``allow_non_ascii``, tokens whose decoded text is empty, non-ASCII or non-printable.

    Example:
        >>> from safetygeo.models.tiny import build_tokenizer
        >>> tok = build_tokenizer("llama")
        >>> m = allowed_tokens(tok, 520)
        >>> bool(m[tok.bos_token_id]), bool(m[515]), bool(m[tok.convert_tokens_to_ids("x")])
        (False, False, True)
    """
    key = (n_vocab, len(tokenizer), allow_non_ascii, tuple(forbidden_token_ids))
    try:
        per_tok = _ALLOWED_CACHE.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable
        per_tok = {}
    if key in per_tok:
        return per_tok[key].clone()
    n_tok = min(len(tokenizer), n_vocab)
    mask = torch.zeros(n_vocab, dtype=torch.bool)
    mask[:n_tok] = True
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for idx, tok in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(tok, "special", False):
            special.add(int(idx))
    for idx in special | {int(i) for i in forbidden_token_ids}:
        if 0 <= idx < n_vocab:
            mask[idx] = False
    if not allow_non_ascii:
        texts = tokenizer.batch_decode([[i] for i in range(n_tok)],
                                       clean_up_tokenization_spaces=False)
        for i, text in enumerate(texts):
            if not (text and text.isascii() and text.isprintable()):
                mask[i] = False
    per_tok[key] = mask
    return mask.clone()


# ----------------------------------------------------------------------------- model plumbing

def sample_candidates(
    suffix_ids: Int[Tensor, " n_suffix"],
    grad: Float[Tensor, "n_suffix vocab"],
    allowed: Bool[Tensor, " vocab"],
    *,
    search_width: int,
    topk: int,
    n_replace: int = 1,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "search_width n_suffix"]:
    """Sample GCG candidates: ``n_replace`` uniform positions, uniform top-k tokens each.

    ``topk`` is capped at the number of allowed tokens and ``n_replace`` at the suffix
    length. Sampling runs on CPU, so a seeded ``generator`` gives the same candidates on
    any device.

    Example:
        >>> g = torch.zeros(3, 5); g[:, 4] = -1.0  # token 4 lowers the loss everywhere
        >>> c = sample_candidates(torch.tensor([0, 0, 0]), g, torch.ones(5, dtype=torch.bool),
        ...                       search_width=4, topk=1, generator=torch.Generator().manual_seed(0))
        >>> sorted(set(c.sum(1).tolist()))  # one 0 -> 4 swap per candidate
        [4]
    """
    n = suffix_ids.shape[0]
    n_allowed = int(allowed.sum())
    if n_allowed == 0:
        raise GCGError("no allowed tokens to sample from (check allow_non_ascii / forbidden ids)")
    k = min(topk, n_allowed)
    r = min(n_replace, n)
    scores = grad.detach().float().cpu().masked_fill(~allowed.cpu(), math.inf)
    top = (-scores).topk(k, dim=1).indices  # [n, k]
    pos = torch.rand(search_width, n, generator=generator).argsort(dim=1)[:, :r]
    choice = torch.randint(0, k, (search_width, r), generator=generator)
    out = suffix_ids.detach().cpu().repeat(search_width, 1)
    out.scatter_(1, pos, top[pos, choice])
    return out


@torch.no_grad()
def candidate_losses(
    model: ModelLike,
    item: GCGItem,
    candidates: Int[Tensor, "n_cand n_suffix"],
    *,
    eval_batch_size: int = 128,
    use_prefix_cache: bool = True,
) -> tuple[Float[Tensor, " n_cand"], Bool[Tensor, " n_cand"]]:
    """Exact target losses of candidate suffixes and whether each makes the model greedily
    produce every target (all prompts of the item). The model runs in eval mode (modes
    restored after).

    Returns:
        ``(loss, greedy)`` on CPU: float32 mean-CE per candidate, and the greedy-match flag.
    """
    lm = _as_handle(model).model
    with _eval_mode(lm):
        return _candidate_losses(lm, item, candidates, _prefixes(lm, item, use_prefix_cache),
                                 eval_batch_size)


@torch.no_grad()
def _candidate_losses(
    lm: nn.Module, item: GCGItem, candidates: Tensor, prefixes: Sequence[list[tuple] | None],
    eval_batch_size: int,
) -> tuple[Tensor, Tensor]:
    device = next(lm.parameters()).device
    n_cand = candidates.shape[0]
    loss = torch.zeros(n_cand, dtype=torch.float32)
    greedy = torch.ones(n_cand, dtype=torch.bool)
    for p, prefix in zip(item.prompts, prefixes):
        before = _tensor(p.before_ids, device)
        tail = _tensor(p.after_ids + p.target_ids, device)
        target = _tensor(p.target_ids, device)
        for start in range(0, n_cand, eval_batch_size):
            cand = candidates[start:start + eval_batch_size].to(device)
            b = cand.shape[0]
            parts = [cand, tail.expand(b, -1)]
            if prefix is None:
                parts.insert(0, before.expand(b, -1))
            logits = _logits(lm, len(target) + 1, input_ids=torch.cat(parts, 1),
                             prefix=prefix)[:, :-1]
            logits = _upcast(logits)
            tgt = target.expand(b, -1)
            ce = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none").mean(1)
            loss[start:start + b] += ce.cpu() / len(item.prompts)
            greedy[start:start + b] &= (logits.argmax(-1) == tgt).all(1).cpu()
    return loss, greedy


def _suffix_texts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[GCGPrompt], candidates: Tensor
) -> tuple[list[str | None], Bool[Tensor, " n_cand"]]:
    """Text of each candidate as it reads after the instruction, and whether the whole
    formatted prompt re-tokenizes to exactly ``before + candidate + after`` (every prompt).

    The text is decoded in context (after the instruction's last token) so tokenizers that
    drop a leading space when decoding a sequence's first token still give the exact text;
    it must be the same after every prompt of the item.
    """
    rows = candidates.tolist()
    texts: list[str | None] = [None] * len(rows)
    live = list(range(len(rows)))
    for j, p in enumerate(prompts):
        anchor = list(p.before_ids[-1:])
        anchor_text = (cast(str, tokenizer.decode(anchor, clean_up_tokenization_spaces=False))
                       if anchor else "")
        decoded = tokenizer.batch_decode([anchor + rows[i] for i in live],
                                         clean_up_tokenization_spaces=False)
        here: dict[int, str] = {}
        for i, d in zip(live, decoded):
            if d.startswith(anchor_text) and (j == 0 or d[len(anchor_text):] == texts[i]):
                here[i] = d[len(anchor_text):]
        live = list(here)
        if not live:
            break
        full = tokenizer([p.before_text + here[i] + p.after_text for i in live],
                         add_special_tokens=False)["input_ids"]
        head, tail = list(p.before_ids), list(p.after_ids)
        live = [i for i, got in zip(live, full) if list(got) == head + rows[i] + tail]
        for i in live:
            texts[i] = here[i]
    ok = torch.zeros(len(rows), dtype=torch.bool)
    ok[torch.tensor(live, dtype=torch.long)] = True
    return [t if ok[i] else None for i, t in enumerate(texts)], ok


# ----------------------------------------------------------------------------- init / step / run
