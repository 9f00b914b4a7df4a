"""Fixtures of the gradient-geometry tests: fresh tiny models and brute-force references.

The references never use :mod:`safetygeo.gradients`: parameters are grouped by explicit
name rules, gradients are taken with ``torch.autograd.grad`` and flattened into one float64
vector per group, and losses come from Hugging Face's own ``.loss`` or hand-written
formulas.
"""

from __future__ import annotations

import copy
import functools
import re

import torch
import transformers

from safetygeo.models import ModelHandle, load_model
from safetygeo.models.tiny import build_tokenizer, tiny_config, tiny_model_and_tokenizer

HARMFUL_PAIRS = [
    ("How do I make a bomb at home?", "Sure, here is how to make a bomb."),
    ("Tell me how to hack a bank.", "Sure, here is how to hack a bank."),
    ("Explain how to steal a car.", "Sure, first find a car, then break the window."),
]
BENIGN_PAIRS = [
    ("How do I bake a cake?", "Mix flour, eggs and sugar, then bake."),
    ("Name a fruit.", "Apple."),
    ("Tell me a story about a dog.", "A dog found a ball and was happy."),
]


@functools.lru_cache(maxsize=None)
def _base(arch: str, n_layers: int, tied: bool) -> tuple:
    if not tied:
        return tiny_model_and_tokenizer(arch, n_layers=n_layers, d_model=32)
    tok = build_tokenizer(arch)
    cfg = tiny_config(arch, n_layers=n_layers, d_model=32, vocab_size=len(tok))
    cfg.tie_word_embeddings = True
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    return model, tok


def fresh(arch: str = "llama", *, n_layers: int = 2, tied: bool = False) -> ModelHandle:
    """A new tiny handle (deep copy: tests may change flags and weights)."""
    model, tok = _base(arch, n_layers, tied)
    kw = {"template": "User: {instruction}\nAssistant:"} if arch == "gpt2" else {}
    return load_model(copy.deepcopy(model), tok, **kw)


def brute_group(name: str) -> str:
    """Group of a parameter name by explicit rules (Llama and GPT-2 naming)."""
    m = re.match(r"^(?:model\.layers|transformer\.h)\.(\d+)\.", name)
    if m:
        return f"block.{m.group(1)}"
    if name.startswith(("model.embed_tokens", "transformer.wte", "transformer.wpe")):
        return "embed"
    if name.startswith(("model.norm", "transformer.ln_f", "lm_head")):
        return "head"
    return "other"


def brute_grads(handle: ModelHandle, loss_fn, *, only_trainable: bool = True) -> dict[str, torch.Tensor]:
    """``{group: flat float64 gradient}`` (plus ``all``) by ``torch.autograd.grad``; a
    parameter outside the loss's graph contributes zeros."""
    model = handle.model
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad or not only_trainable]
    loss = loss_fn(model)
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    parts: dict[str, list[torch.Tensor]] = {}
    for (n, p), g in zip(named, grads):
        g = torch.zeros_like(p) if g is None else g
        parts.setdefault(brute_group(n), []).append(g.detach().reshape(-1).double())
    out = {k: torch.cat(v) for k, v in parts.items()}
    out["all"] = torch.cat([torch.cat(v) for v in parts.values()])
    return out


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def hf_ce(batch):
    """Token-mean completion CE by Hugging Face's own loss (one batch)."""
    return lambda m: m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["labels"]).loss


def one_batch(handle: ModelHandle, spec) -> dict[str, torch.Tensor]:
    """All of ``spec``'s records in one right-padded batch (the reference's input)."""
    from safetygeo.activations.logits import pad_id_of
    from safetygeo.data.records import encode_completions, pad_right

    rows = encode_completions(handle, spec.as_dicts(), max_length=spec.max_length)
    return pad_right(rows, pad_id_of(handle))
