"""Weight orthogonalization: a permanently edited copy equivalent to directional ablation.

Every matrix that writes to the residual stream is projected off ``r̂``: the token (and
learned position) embeddings, each attention output projection and each MLP output
projection — in mixture-of-experts blocks every expert's and any shared expert's — (and
their biases): ``W_out ← W_out − r̂ r̂ᵀ W_out``. Then no write has a
component along ``r̂`` and the model computes exactly what activation-space ablation
(:func:`safetygeo.interventions.hooks.ablate`) computes, up to floating-point rounding.

Architectures that normalize a block's output before adding it (Gemma-2/3 post-norms)
cannot be orthogonalized this way and raise.

Example:
    >>> import torch
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> edited = orthogonalized_copy(h, torch.randn(32))
    >>> edited.model is not h.model
    True
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from jaxtyping import Float
from torch import Tensor, nn

from safetygeo.errors import UnknownArchitectureError
from safetygeo.interventions.hooks import as_directions, residual_writers
from safetygeo.models.arch import find_output_projection
from safetygeo.models.handle import ModelHandle

_output_projection = find_output_projection


@torch.no_grad()
def _orthogonalize_experts(experts: nn.Module, unit: Tensor, d_model: int) -> None:
    """Mixture-of-experts: every expert's output projection, as modules or fused ``[E, d, ff]``
    parameters (transformers' ``F.linear(x, down_proj[e])`` layout; ``[E, ff, d]`` for
    ``x @ W`` layouts is recognized when ``ff != d``)."""
    if isinstance(experts, nn.ModuleList):
        for expert in experts:
            proj = _output_projection(expert)
            if proj is None:
                raise UnknownArchitectureError(
                    f"cannot find the output projection of expert {type(expert).__name__}")
            _orthogonalize_output(proj, unit)
        return
    fused = [p for n, p in experts.named_parameters(recurse=False) if n in ("down_proj", "w2")]
    if not fused or fused[0].ndim != 3:
        raise UnknownArchitectureError(
            f"cannot find the experts' output projections in {type(experts).__name__}")
    w: Tensor = fused[0]
    u = unit.to(w.dtype)
    if w.shape[1] == d_model:  # [E, out=d, in]
        w -= u[None, :, None] * (u @ w)[:, None, :]
    elif w.shape[2] == d_model:  # [E, in, out=d]
        w -= (w @ u)[:, :, None] * u[None, None, :]
    else:
        raise UnknownArchitectureError(
            f"{type(experts).__name__} has an output projection of shape {tuple(w.shape)} "
            f"with no dimension equal to d_model={d_model}")
    bias = getattr(experts, "down_proj_bias", None)
    if isinstance(bias, torch.Tensor) and bias.shape[-1] == d_model:
        bias -= (bias @ u)[..., None] * u


@torch.no_grad()
def _orthogonalize_writer(writer: nn.Module, unit: Tensor, d_model: int) -> None:
    """Project ``unit`` out of everything ``writer`` (attention, MLP, MoE block) adds."""
    proj = _output_projection(writer)
    if proj is not None:
        _orthogonalize_output(proj, unit)
        return
    children = dict(writer.named_children())
    if "experts" not in children:
        raise UnknownArchitectureError(
            f"cannot find the output projection of {type(writer).__name__} "
            f"(children: {sorted(children)})"
        )
    _orthogonalize_experts(children["experts"], unit, d_model)
    for name in ("shared_expert", "shared_experts", "shared_mlp"):  # always-on experts
        if name in children:
            _orthogonalize_writer(children[name], unit, d_model)


@torch.no_grad()
def _orthogonalize_output(layer: nn.Module, unit: Tensor) -> None:
    w = cast(Tensor, layer.weight)
    u = unit.to(w.dtype)
    if isinstance(layer, nn.Linear):  # weight [out=d, in]
        w -= torch.outer(u, u @ w)
    elif type(layer).__name__ == "Conv1D":  # GPT-2 style, weight [in, out=d]
        w -= torch.outer(w @ u, u)
    else:
        raise UnknownArchitectureError(f"cannot orthogonalize {type(layer).__name__}")
    bias = getattr(layer, "bias", None)
    if bias is not None:
        bias -= (bias @ u) * u


@torch.no_grad()
def orthogonalize_(handle: ModelHandle, direction: Float[Tensor, " d"]) -> ModelHandle:
    """Orthogonalize ``handle``'s weights in place against ``direction``; returns the handle."""
    unit = as_directions(direction, handle.d_model, normalize=True)[0]
    blocks = list(handle.blocks)
    for block in blocks:
        children = dict(block.named_children())
        if "post_attention_layernorm" in children and "post_feedforward_layernorm" in children:
            raise UnknownArchitectureError(
                f"{type(block).__name__} normalizes its outputs before the residual add; "
                "weight orthogonalization is not equivalent there — use ablate() instead"
            )
    inp = handle.model.get_input_embeddings()
    out = handle.model.get_output_embeddings()
    if out is not None and out.weight is inp.weight:
        # untie: activation ablation leaves the unembedding alone, so must we
        out.weight = nn.Parameter(inp.weight.detach().clone())
        handle.model.config.tie_word_embeddings = False
    embeddings = [inp]
    for name in ("wpe", "embed_positions"):
        trunk_child = getattr(handle.trunk, name, None)
        if isinstance(trunk_child, nn.Embedding):
            embeddings.append(trunk_child)
    for emb in embeddings:
        ew = cast(Tensor, emb.weight)
        u = unit.to(ew.dtype)
        ew -= torch.outer(ew @ u, u)
    for block in blocks:
        for writer in residual_writers(block):
            _orthogonalize_writer(writer, unit, handle.d_model)
    return handle


def orthogonalized_copy(handle: ModelHandle, direction: Float[Tensor, " d"]) -> ModelHandle:
    """A deep copy of ``handle`` with weights orthogonalized against ``direction``.

    Tied input/output embeddings are untied in the copy (only the input side is edited),
    so the copy matches activation ablation exactly; the original model is never modified.
    """
    model = copy.deepcopy(handle.model)
    edited = ModelHandle(model, handle.tokenizer, handle.arch,
                         model_id=f"{handle.model_id}+orthogonalized", revision=handle.revision,
                         template=handle.template)
    return orthogonalize_(edited, direction)
