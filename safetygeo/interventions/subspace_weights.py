"""Weight-space subspace ablation: edited copies equal to the activation-space versions.

:func:`ablated_copy` edits every matrix that writes to the residual stream — the token (and
learned position) embeddings, each attention and MLP output projection (and biases) — so
that the copy computes what :func:`~safetygeo.interventions.subspace.ablate_subspace`
(``mode="project"``) computes with hooks, for any ``k``-dimensional basis, strength and
layer window, and with per-layer (e.g. biprojected) bases:

* plain: ``W_out ← (I − sP) W_out`` (``P = BᵀB``), embedding rows ``e ← (I − sP) e``;
* ``norm_preserving=True`` (heretic's row-wise ``row_normalization="full"``; grimjim's
  column-wise edit is in :mod:`safetygeo.interventions.kernel`):
  ``W_out ← M W_out`` with :func:`~safetygeo.interventions.subspace.mpoa_matrix` (each row
  keeps its norm), biases ``b ← M b``, embedding rows projected and rescaled to their norm —
  equal to :func:`~safetygeo.interventions.subspace.mpoa_ablate`.

Mixture-of-experts writers are edited for the plain full-strength ablation only (through
:func:`safetygeo.interventions.orthogonalize.orthogonalize_`'s expert code);
architectures that normalize a block's output before the residual add (Gemma-2/3 post-norms)
raise, as in :func:`~safetygeo.interventions.orthogonalize.orthogonalized_copy`. The original
model is never modified; tied input/output embeddings are untied in the copy.

Example:
    >>> import torch
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> edited = ablated_copy(h, torch.randn(3, 32))
    >>> edited.model is not h.model, edited.model_id.endswith("+ablated-3d")
    (True, True)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from safetygeo.errors import SafetyGeoError, UnknownArchitectureError
from safetygeo.interventions.hooks import residual_writers
from safetygeo.interventions.orthogonalize import _orthogonalize_writer
from safetygeo.interventions.subspace import (
    _check_layers,
    _strength,
    _used_slots,
    as_bases,
    embedding_modules,
    fill_unused_slots,
    mpoa_matrix,
    output_projection,
)
from safetygeo.models.handle import ModelHandle

__all__ = ["ablated_copy"]


@torch.no_grad()
def _apply_rows(layer: nn.Module, m: Tensor) -> None:
    """``W ← M W`` on the output side of a Linear / Conv1D, and ``b ← M b``."""
    w = cast(Tensor, layer.weight)
    mm = m.to(w.device, torch.float64)
    if isinstance(layer, nn.Linear):  # [out=d, in]
        w.copy_((mm @ w.double()).to(w.dtype))
    elif type(layer).__name__ == "Conv1D":  # [in, out=d]
        w.copy_((w.double() @ mm.T).to(w.dtype))
    else:
        raise UnknownArchitectureError(f"cannot edit {type(layer).__name__}")
    bias = getattr(layer, "bias", None)
    if bias is not None:
        bias.copy_((mm @ bias.double()).to(bias.dtype))


@torch.no_grad()
def _edit(handle: ModelHandle, bases: Tensor, per_layer: bool, s: float,
          layers: Sequence[int] | None, norm_preserving: bool) -> None:
    for block in handle.blocks:
        children = dict(block.named_children())
        if "post_attention_layernorm" in children and "post_feedforward_layernorm" in children:
            raise UnknownArchitectureError(
                f"{type(block).__name__} normalizes its outputs before the residual add; a "
                "weight edit is not equivalent there — use ablate_subspace() instead")
    at = (lambda slot: bases[0, slot]) if per_layer else (lambda slot: bases[0])
    blocks = _check_layers(handle, layers, handle.n_layers - 1)
    d = handle.d_model
    if layers is None:
        inp = handle.model.get_input_embeddings()
        out = handle.model.get_output_embeddings()
        if out is not None and out.weight is inp.weight:
            out.weight = nn.Parameter(inp.weight.detach().clone())
            handle.model.config.tie_word_embeddings = False
        b0 = at(0)
        proj = torch.eye(d, dtype=torch.float64) - s * (b0.T @ b0)
        for emb in embedding_modules(handle):
            ew = cast(Tensor, emb.weight)
            new = ew.double() @ proj.to(ew.device)
            if norm_preserving:
                n_old, n_new = ew.double().norm(dim=1, keepdim=True), new.norm(dim=1, keepdim=True)
                new = torch.where(n_new > 0, new * n_old / n_new.clamp(min=1e-300), new)
            ew.copy_(new.to(ew.dtype))
    for l in blocks:
        b = at(l + 1)
        for writer in residual_writers(handle.blocks[l]):
            try:
                layer = output_projection(writer)
            except UnknownArchitectureError:
                if norm_preserving or s != 1.0:
                    raise
                for unit in b:  # MoE: full projection, one orthonormal direction at a time
                    _orthogonalize_writer(writer, unit, d)
                continue
            if norm_preserving:
                w = cast(Tensor, layer.weight)
                rows = w if isinstance(layer, nn.Linear) else w.T
                m = mpoa_matrix(rows, b, s)
            else:
                m = torch.eye(d, dtype=torch.float64) - s * (b.T @ b)
            _apply_rows(layer, m)


def ablated_copy(
    handle: ModelHandle,
    basis: Any,
    *,
    strength: float = 1.0,
    layers: Sequence[int] | None = None,
    per_layer: bool = False,
    norm_preserving: bool = False,
) -> ModelHandle:
    """A deep copy of ``handle`` with the subspace of ``basis`` ablated in its weights.

    Args:
        basis: ``[k, d]`` (or ``[d]``); with ``per_layer`` ``[L+1, k, d]`` (block ``l``'s
            writers use basis ``l + 1``, the embeddings basis ``0``).
        strength: ``s`` in ``[0, 1]``.
        layers: the blocks whose writers are edited; the embeddings are edited only when
            ``None`` (all).
        norm_preserving: magnitude-preserving rows (MPOA) instead of the plain projection.

    Returns:
        the edited copy (``model_id`` + ``"+ablated-{k}d"``, ``"+mpoa-{k}d"`` when norm
        preserving).
    """
    n_slots = handle.n_layers + 1
    if per_layer:
        basis = fill_unused_slots(basis, _used_slots(handle, layers, "project"))
    bases = as_bases(basis, handle.d_model, per_layer=n_slots if per_layer else None)
    if bases.shape[0] != 1:
        raise SafetyGeoError("ablated_copy takes one subspace, not variants")
    s = cast(float, _strength(strength))
    k = bases.shape[-2]
    model = copy.deepcopy(handle.model)
    tag = "mpoa" if norm_preserving else "ablated"
    edited = ModelHandle(model, handle.tokenizer, handle.arch,
                         model_id=f"{handle.model_id}+{tag}-{k}d", revision=handle.revision,
                         template=handle.template)
    _edit(edited, bases, per_layer, s, layers, norm_preserving)
    return edited
