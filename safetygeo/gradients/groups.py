"""Parameter groups of a decoder: the embedding, each block, and the head.

Gradient geometry is reported per *group* of parameters, in the order the residual stream
meets them:

* ``embed``: the token embedding (and any other ``nn.Embedding`` outside the blocks, e.g.
  GPT-2's position embedding);
* ``block.0`` … ``block.{L-1}``: every parameter under the block list
  (``handle.arch.layers_path``), LoRA adapters injected into a block included;
* ``head``: the final norm and the output projection (``lm_head``);
* ``other``: anything else (listed only when non-empty).

**Tied embeddings** (``lm_head.weight is embed_tokens.weight``, as in the toy world and
Gemma): the shared matrix is one parameter with one gradient (the sum of its use as
embedding and as unembedding); it is counted once, in ``embed``, and ``head`` then holds
only the final norm (and an output bias, if any). :attr:`ParamGroups.tied_embeddings` says
so.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> g = parameter_groups(load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32)))
    >>> g.names, g.tied_embeddings
    (('embed', 'block.0', 'block.1', 'head'), False)
    >>> g["head"].params
    ('model.norm.weight', 'lm_head.weight')
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from torch import nn

from safetygeo.errors import SafetyGeoError
from safetygeo.models.handle import ModelHandle

GroupKind = Literal["embed", "block", "head", "other", "all"]

__all__ = ["GroupKind", "ParamGroup", "ParamGroups", "parameter_groups"]


@dataclass(frozen=True)
class ParamGroup:
    """One group of parameters.

    Attributes:
        name: ``embed``, ``block.<i>``, ``head`` or ``other``.
        kind: ``embed``, ``block``, ``head`` or ``other``.
        layer: the block index for blocks, else ``None``.
        params: parameter names (as ``model.named_parameters()`` yields them, shared
            parameters once), in module order.
        numel: number of scalar parameters in the group.
    """

    name: str
    kind: GroupKind
    layer: int | None
    params: tuple[str, ...]
    numel: int


@dataclass(frozen=True)
class ParamGroups:
    """The groups of a model, in residual-stream order (see the module docstring).

    Attributes:
        groups: ``embed``, ``block.0`` … , ``head`` (+ ``other`` when non-empty).
        tied_embeddings: the output projection shares the embedding matrix (counted in
            ``embed``).
    """

    groups: tuple[ParamGroup, ...]
    tied_embeddings: bool

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def __getitem__(self, name: str) -> ParamGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise SafetyGeoError(f"no parameter group {name!r}; groups: {list(self.names)}")

    def __iter__(self) -> Iterator[ParamGroup]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def group_of(self) -> dict[str, str]:
        """``{parameter name: group name}``."""
        return {p: g.name for g in self.groups for p in g.params}


def _module_name(model: nn.Module, target: nn.Module | None) -> str | None:
    if target is None:
        return None
    return next((n for n, m in model.named_modules() if m is target), None)


def _under(name: str, prefix: str | None) -> bool:
    if prefix is None:
        return False
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def parameter_groups(handle: ModelHandle) -> ParamGroups:
    """Map every parameter of ``handle.model`` to its group (see the module docstring).

    Raises:
        UnknownArchitectureError: the block list cannot be located (from the handle).
    """
    model = handle.model
    layers_path = handle.arch.layers_path
    n_layers = handle.n_layers
    in_emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embed_prefixes = {p for p in (_module_name(model, in_emb), handle.arch.embed_path) if p}
    head_prefixes = {p for p in (_module_name(model, out_emb), handle.arch.final_norm_path) if p}
    for name, mod in model.named_modules():  # other embeddings outside the blocks (wpe ...)
        if isinstance(mod, nn.Embedding) and not _under(name, layers_path):
            embed_prefixes.add(name)
    tied = (in_emb is not None and out_emb is not None
            and getattr(out_emb, "weight", None) is not None
            and out_emb.weight is getattr(in_emb, "weight", None))

    buckets: dict[str, list[tuple[str, int]]] = {}
    for name, p in model.named_parameters():  # shared (tied) parameters once, first name
        if _under(name, layers_path):
            idx = name[len(layers_path) + 1:].split(".", 1)[0]
            key = f"block.{int(idx)}" if idx.isdigit() else "other"
        elif any(_under(name, e) for e in embed_prefixes):
            key = "embed"
        elif any(_under(name, h) for h in head_prefixes):
            key = "head"
        else:
            key = "other"
        buckets.setdefault(key, []).append((name, p.numel()))

    order = ["embed", *(f"block.{i}" for i in range(n_layers)), "head", "other"]
    groups = []
    for key in order:
        items = buckets.get(key, [])
        if key == "other" and not items:
            continue
        kind: GroupKind = key.split(".")[0]  # type: ignore[assignment]
        layer = int(key.split(".")[1]) if kind == "block" else None
        groups.append(ParamGroup(key, kind, layer, tuple(n for n, _ in items),
                                 sum(k for _, k in items)))
    return ParamGroups(tuple(groups), bool(tied))
