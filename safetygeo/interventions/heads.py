"""Attention-head ablation: zero the chosen heads' outputs in one layer.

Ablating head ``h`` of block ``l`` sets that head's slice of the attention output
projection's input (site ``attn_heads@l``, :class:`~safetygeo.models.sites.Site`) to zero
— **zero-ablation**, equal to zeroing the projection's weight columns of that head (the
projection's bias, if any, is kept). Zero-ablation is the default and only mode here:
mean-ablation would need a reference activation set, which a null comparison against
random heads does not.

Several head sets can ride along the batch as *variants*: ``head_sets`` of length ``v``
with the batch laid out as ``v`` consecutive groups (row ``i`` uses set ``i // (rows/v)``),
the layout of :func:`~safetygeo.interventions.hooks.ablate` — e.g. real heads and their
random-head nulls in one forward pass.

Example:
    >>> import torch
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> ids = torch.tensor([[1, 5, 7]])
    >>> with torch.no_grad():
    ...     base = h.model(ids).logits
    ...     with ablate_heads(h, 1, [()]):
    ...         same = h.model(ids).logits
    ...     with ablate_heads(h, 1, [(0, 2)]):
    ...         other = h.model(ids).logits
    >>> bool(torch.equal(base, same)), bool((base - other).abs().max() > 0)
    (True, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from safetygeo.errors import SafetyGeoError, UnknownArchitectureError
from safetygeo.interventions.hooks import installed_hooks, replace_hidden
from safetygeo.models.handle import ModelHandle
from safetygeo.models.sites import attention_heads

__all__ = ["ablate_heads", "check_heads"]


def check_heads(heads: Sequence[int], n_heads: int, *, layer: int) -> tuple[int, ...]:
    """Sorted distinct head indices, each in ``0..n_heads-1``.

    Raises:
        SafetyGeoError: a non-integer, repeated or out-of-range head.
    """
    out = []
    for h in heads:
        if isinstance(h, bool) or not isinstance(h, int):
            raise SafetyGeoError(f"head index must be an integer, got {h!r}")
        if not 0 <= h < n_heads:
            raise SafetyGeoError(f"head {h} out of range: layer {layer} has heads 0..{n_heads - 1}")
        out.append(int(h))
    if len(set(out)) != len(out):
        raise SafetyGeoError(f"heads {list(heads)} repeat a head")
    return tuple(sorted(out))


@contextlib.contextmanager
def ablate_heads(handle: ModelHandle, layer: int,
                 head_sets: Sequence[Sequence[int]]) -> Iterator[None]:
    """Zero-ablate heads of block ``layer``: one head set per batch group (see module docstring).

    Args:
        handle: the model.
        layer: the block (``0..L-1``; negative from the end).
        head_sets: ``v`` sets of head indices (``[(h,)]`` for one head, ``v = 1``).

    Raises:
        LayerIndexError: no such block; SafetyGeoError: bad heads;
        UnknownArchitectureError: the block's attention output projection is unknown.
    """
    proj, n_heads, head_dim = attention_heads(handle, layer)
    if not head_sets:
        raise SafetyGeoError("no head sets to ablate")
    keep = torch.ones(len(head_sets), n_heads)
    for i, hs in enumerate(head_sets):
        keep[i, list(check_heads(hs, n_heads, layer=layer))] = 0.0
    mask = keep.repeat_interleave(head_dim, dim=1)  # [v, n_heads * head_dim]
    v = mask.shape[0]

    def zero(x: Tensor) -> Tensor:
        if x.shape[-1] != mask.shape[1]:
            raise UnknownArchitectureError(f"attention output projection input has width "
                                           f"{x.shape[-1]}, expected {mask.shape[1]}")
        m = mask.to(device=x.device, dtype=x.dtype)
        if v == 1:
            return x * m[0]
        if x.shape[0] % v:
            raise SafetyGeoError(f"batch of {x.shape[0]} rows is not {v} groups of equal size")
        shape = (v,) + (1,) * (x.ndim - 1) + (m.shape[1],)
        return (x.reshape(v, -1, *x.shape[1:]) * m.reshape(shape)).reshape(x.shape)

    def pre(module: nn.Module, args: tuple, kwargs: dict):
        return replace_hidden(args, kwargs, zero)

    with installed_hooks([(proj, pre)], []):
        yield
