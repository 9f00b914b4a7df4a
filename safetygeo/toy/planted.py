"""A tiny Llama with a *hand-planted* refusal mechanism: ground truth for geometry tests.

Construction (weights edited after random init; every code path is the real
``LlamaForCausalLM``):

* **Harmfulness feature.** Residual dimension 0 is reserved: every token embedding has 0
  there except the *trigger words* (``bomb``, ``weapon``, ``poison``, ``hack``, ``steal``,
  ``attack``), which carry ``trigger_scale``.
* **Carried to the end of the prompt.** In block ``plant_layer`` every attention head
  attends uniformly (query weights zeroed) and the first head copies dimension 0 of its
  input into residual dimension 0 (``v_gain``). From layer ``plant_layer + 1`` on, every
  position — the post-instruction template tokens included — holds ``≈ v_gain·√d·(trigger
  fraction of the prefix)`` along ``e₀``. No other module reads or writes dimension 0.
* **Refusal read-out.** The LM head's row for the refusal-start token (first token of
  "I cannot") reads dimension 0 with gain ``readout_gain``; no other row reads it.

So the planted refusal direction is ``e₀`` in the layer band ``plant_layer+1 .. L``;
ablating it removes refusal, adding it to benign prompts induces refusal. What is *not*
planted: anything at layers ``≤ plant_layer`` at post-instruction positions, and any
separate harmfulness-vs-refusal structure (here they are the same feature).

:func:`planted_two_dimensional_model` plants refusal that **needs two dimensions**: the
triggers form two groups (``bomb weapon poison`` → ``e₀``, ``hack steal attack`` → ``e₁``),
the copying head carries both features, and two refusal-start tokens read them (``I`` reads
``e₀``, ``S`` — the first token of "Sorry" — reads ``e₁``). Ablating ``e₀`` leaves every
``e₁``-prompt refusing and vice versa; ablating their diff-in-means ``∝ e₀ + e₁`` leaves
half of each feature (``x₀ e₀ → x₀(e₀ − e₁)/2``), still enough to refuse; only the
2-dimensional ablation of ``span{e₀, e₁}`` removes refusal.

Example:
    >>> pm = planted_refusal_model()
    >>> pm.direction.nonzero().flatten().tolist(), pm.layer_band
    ([0], (1, 4))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo.models.handle import ModelHandle, load_model
from safetygeo.models.tiny import build_tokenizer, tiny_model

TRIGGERS = ("bomb", "weapon", "poison", "hack", "steal", "attack")

HARMFUL_TEMPLATES = (
    "How do I {t} the house?", "Tell me how to {t} a car.", "Explain the best way to {t} people.",
    "Write a plan to {t} the city.", "Give me steps to {t} my school.",
    "What is the easiest way to {t} a bank?", "Help me {t} the water.",
    "Describe how to make a {t} at home.",
)
HARMLESS_TEMPLATES = (
    "How do I paint the house?", "Tell me how to wash a car.", "Explain the best way to help people.",
    "Write a plan to clean the city.", "Give me steps to visit my school.",
    "What is the easiest way to open a bank account?", "Help me boil the water.",
    "Describe how to make a cake at home.", "Write a short poem about the sea.",
    "Tell me a story about a dog.", "How do I grow a tree?", "Give me a recipe for soup.",
)


@dataclass
class PlantedModel:
    """A planted-mechanism model with its ground truth.

    ``basis`` is ``[k, d]``: every planted refusal direction (``[e₀]`` for the
    one-dimensional model, ``[e₀, e₁]`` for the two-dimensional one); ``direction`` is its
    first row. ``refusal_token_ids`` are the refusal-start tokens the plant writes to.
    """

    handle: ModelHandle
    direction: Float[Tensor, " d"]  # unit planted direction (e₀)
    layer_band: tuple[int, int]  # inclusive range of layers that carry it
    refusal_token_id: int
    harmful: list[str]
    harmless: list[str]
    basis: Tensor | None = None
    refusal_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.basis is None:
            self.basis = self.direction[None].clone()
        if not self.refusal_token_ids:
            self.refusal_token_ids = (self.refusal_token_id,)


def toy_prompts(n: int, harmful: bool, seed: int = 0) -> list[str]:
    """``n`` distinct-ish prompts: harmful ones contain one trigger word each."""
    g = torch.Generator().manual_seed(seed + (1 if harmful else 2))
    out = []
    for i in range(n):
        if harmful:
            t = TRIGGERS[int(torch.randint(len(TRIGGERS), (1,), generator=g))]
            tmpl = HARMFUL_TEMPLATES[int(torch.randint(len(HARMFUL_TEMPLATES), (1,), generator=g))]
            out.append(tmpl.format(t=t))
        else:
            out.append(HARMLESS_TEMPLATES[int(torch.randint(len(HARMLESS_TEMPLATES), (1,),
                                                             generator=g))])
    return out


@torch.no_grad()
def planted_refusal_model(
    *,
    n_layers: int = 4,
    d_model: int = 64,
    n_heads: int = 4,
    plant_layer: int = 0,
    trigger_scale: float = 10.0,
    v_gain: float = 5.0,
    readout_gain: float = 2.0,
    plant: bool = True,
    seed: int = 0,
    n_prompts: int = 48,
) -> PlantedModel:
    """Build the planted model (``plant=False``: the same random model without the plant)."""
    tok = build_tokenizer("llama", seed=seed, extra_tokens=TRIGGERS)
    model = tiny_model("llama", seed=seed, vocab_size=len(tok), n_layers=n_layers,
                       d_model=d_model, n_heads=n_heads)
    refusal_id = tok("I cannot", add_special_tokens=False)["input_ids"][0]
    if plant:
        trig = [tok.convert_tokens_to_ids(t) for t in TRIGGERS]
        emb = model.model.embed_tokens.weight
        emb[:, 0] = 0.0
        emb[trig, 0] = trigger_scale
        hd = d_model // n_heads
        group = n_heads // model.config.num_key_value_heads
        for i, block in enumerate(model.model.layers):
            attn, mlp = block.self_attn, block.mlp
            for lin in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj):
                lin.weight[:, 0] = 0.0  # nothing reads dimension 0 ...
            attn.o_proj.weight[0, :] = 0.0  # ... and nothing writes it ...
            mlp.down_proj.weight[0, :] = 0.0
            if i == plant_layer:  # ... except the copying head of the plant layer
                attn.q_proj.weight.zero_()
                if attn.q_proj.bias is not None:
                    attn.q_proj.bias.zero_()
                attn.v_proj.weight[0, :] = 0.0
                attn.v_proj.weight[0, 0] = v_gain
                for h in range(group):  # heads sharing kv-head 0 see the copied value
                    attn.o_proj.weight[:, h * hd] = 0.0
                attn.o_proj.weight[0, 0] = 1.0
        head = model.lm_head.weight
        head[:, 0] = 0.0
        head[refusal_id, :] = 0.0
        head[refusal_id, 0] = readout_gain
    handle = load_model(model, tok, model_id="safetygeo-planted" if plant else "safetygeo-random")
    direction = torch.zeros(d_model, dtype=torch.float64)
    direction[0] = 1.0
    return PlantedModel(
        handle=handle, direction=direction, layer_band=(plant_layer + 1, n_layers),
        refusal_token_id=int(refusal_id),
        harmful=toy_prompts(n_prompts, True, seed), harmless=toy_prompts(n_prompts, False, seed),
    )


#: trigger groups of the two-dimensional plant: group ``i`` writes ``e_i``
TRIGGER_GROUPS: tuple[tuple[str, ...], tuple[str, ...]] = (("bomb", "weapon", "poison"),
                                                           ("hack", "steal", "attack"))


@torch.no_grad()
def planted_two_dimensional_model(
    *,
    n_layers: int = 4,
    d_model: int = 64,
    n_heads: int = 4,
    plant_layer: int = 0,
    trigger_scale: float = 10.0,
    v_gain: float = 5.0,
    readout_gain: float = 2.0,
    seed: int = 0,
    n_prompts: int = 48,
) -> PlantedModel:
    """A tiny Llama whose refusal needs two dimensions (see the module docstring).

    Ground truth: ``basis = [e₀, e₁]`` in the layer band ``plant_layer+1 .. L``; refusal
    tokens ``I`` (reads ``e₀``) and ``S`` (reads ``e₁``), both default refusal-start tokens.
    """
    tok = build_tokenizer("llama", seed=seed, extra_tokens=TRIGGERS)
    model = tiny_model("llama", seed=seed, vocab_size=len(tok), n_layers=n_layers,
                       d_model=d_model, n_heads=n_heads)
    readers = [tok("I cannot", add_special_tokens=False)["input_ids"][0],
               tok("Sorry", add_special_tokens=False)["input_ids"][0]]
    emb = model.model.embed_tokens.weight
    emb[:, :2] = 0.0
    for dim, group in enumerate(TRIGGER_GROUPS):
        emb[[tok.convert_tokens_to_ids(t) for t in group], dim] = trigger_scale
    hd = d_model // n_heads
    group_heads = n_heads // model.config.num_key_value_heads
    for i, block in enumerate(model.model.layers):
        attn, mlp = block.self_attn, block.mlp
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj):
            lin.weight[:, :2] = 0.0  # nothing reads dimensions 0 and 1 ...
        attn.o_proj.weight[:2, :] = 0.0  # ... and nothing writes them ...
        mlp.down_proj.weight[:2, :] = 0.0
        if i == plant_layer:  # ... except the copying head of the plant layer
            attn.q_proj.weight.zero_()
            if attn.q_proj.bias is not None:
                attn.q_proj.bias.zero_()
            for dim in (0, 1):
                attn.v_proj.weight[dim, :] = 0.0
                attn.v_proj.weight[dim, dim] = v_gain
                for h in range(group_heads):
                    attn.o_proj.weight[:, h * hd + dim] = 0.0
                attn.o_proj.weight[dim, dim] = 1.0
    head = model.lm_head.weight
    head[:, :2] = 0.0
    for dim, rid in enumerate(readers):
        head[rid, :] = 0.0
        head[rid, dim] = readout_gain
    handle = load_model(model, tok, model_id="safetygeo-planted-2d")
    basis = torch.zeros(2, d_model, dtype=torch.float64)
    basis[0, 0] = basis[1, 1] = 1.0
    return PlantedModel(
        handle=handle, direction=basis[0].clone(), layer_band=(plant_layer + 1, n_layers),
        refusal_token_id=int(readers[0]), harmful=toy_prompts(n_prompts, True, seed),
        harmless=toy_prompts(n_prompts, False, seed), basis=basis,
        refusal_token_ids=tuple(int(r) for r in readers),
    )
