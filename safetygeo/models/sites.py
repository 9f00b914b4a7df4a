"""Named hook sites: where in a decoder an intervention acts.

A :class:`Site` is a place in the forward pass named by the model's
:class:`~safetygeo.models.arch.ArchSpec` (never by guessing module names at the call site):

* ``resid_in`` (layer ``l`` in ``0..L``): the residual stream entering block ``l``
  (``L``: entering the final norm) — a forward *pre*-hook on that module;
* ``resid_out`` (``l`` in ``0..L-1``): the residual stream leaving block ``l`` = ``resid_in``
  of ``l + 1``;
* ``attn_out`` / ``mlp_out`` (``l`` in ``0..L-1``): the output of block ``l``'s attention /
  MLP module (a forward hook; tuple outputs: their first item);
* ``attn_heads`` (``l`` in ``0..L-1``): the *input* of block ``l``'s attention output
  projection, ``[.., n_heads * head_dim]`` — the heads' outputs side by side (a pre-hook);
  head ``h`` is the slice ``[h * head_dim, (h + 1) * head_dim)``;
* ``resid_all``: every residual stream the model computes (every block input, the final
  norm input and every residual write) — the site of directional ablation; no layer.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("gpt2", n_layers=2, d_model=16, n_heads=4))
    >>> s = Site("attn_heads", 1)
    >>> s.label, type(s.module(h)).__name__, s.hook, attention_heads(h, 1)[1:]
    ('attn_heads@1', 'Conv1D', 'pre', (4, 4))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from torch import Tensor, nn

from safetygeo.errors import LayerIndexError, SafetyGeoError, UnknownArchitectureError
from safetygeo.models.handle import ModelHandle

__all__ = ["SITE_NAMES", "Site", "SiteName", "attention_heads", "n_heads"]

SiteName = Literal["resid_in", "resid_out", "attn_out", "mlp_out", "attn_heads", "resid_all"]
SITE_NAMES: tuple[str, ...] = ("resid_in", "resid_out", "attn_out", "mlp_out", "attn_heads",
                               "resid_all")


@dataclass(frozen=True)
class Site:
    """A hook site: ``name`` (see the module docstring) and its ``layer`` (``None`` only
    for ``resid_all``). Negative layers count from the end and are resolved by
    :meth:`resolved` (``resid_in``: ``-1`` = ``L``, the final-norm input; block sites:
    ``-1`` = the last block ``L - 1``)."""

    name: SiteName
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.name not in SITE_NAMES:
            raise SafetyGeoError(f"unknown site {self.name!r}; use one of {SITE_NAMES}")
        if (self.name == "resid_all") != (self.layer is None):
            raise SafetyGeoError(f"site {self.name!r} "
                                 + ("takes no layer" if self.name == "resid_all" else "needs a layer"))

    @property
    def label(self) -> str:
        """``name@layer`` (``resid_all``: the name)."""
        return self.name if self.layer is None else f"{self.name}@{self.layer}"

    def resolved(self, handle: ModelHandle) -> Site:
        """This site with its layer checked against ``handle`` (negative → from the end).

        Raises:
            LayerIndexError: the layer does not exist for this site.
        """
        if self.layer is None:
            return self
        if self.name == "resid_in":
            (layer,) = handle.check_layers(self.layer)
            return Site(self.name, layer)
        n = handle.n_layers  # a block site: -1 is the last block
        layer = self.layer + n if isinstance(self.layer, int) and self.layer < 0 else self.layer
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
            raise LayerIndexError(f"site {self.name!r} needs a block: layer {self.layer!r} is "
                                  f"out of range 0..{n - 1} (or -{n}..-1)")
        return Site(self.name, layer)

    @property
    def hook(self) -> Literal["pre", "post"]:
        """Whether the site is a module's input (``pre``) or output (``post``)."""
        return "post" if self.name in ("attn_out", "mlp_out") else "pre"

    @property
    def first_layer(self) -> int | None:
        """The first block input whose value the site changes (``None``: the embeddings);
        everything before it is identical across variants (:func:`~safetygeo.models.hooks.fan_out`)."""
        if self.layer is None:
            return None
        return self.layer + 1 if self.name == "resid_out" else self.layer

    def module(self, handle: ModelHandle) -> nn.Module:
        """The module hooked at this site (``resid_all`` has many: raises).

        Raises:
            SafetyGeoError: ``resid_all``; UnknownArchitectureError: the block's parts are
            not known.
        """
        site = self.resolved(handle)
        layer = cast(int, site.layer)
        if site.name == "resid_all":
            raise SafetyGeoError("resid_all is every residual stream, not one module")
        if site.name in ("resid_in", "resid_out"):
            at = layer + (site.name == "resid_out")
            return handle.blocks[at] if at < handle.n_layers else handle.final_norm
        block = handle.blocks[layer]
        parts = handle.arch.block_parts(block)
        path = {"attn_out": parts.attn, "mlp_out": parts.mlp, "attn_heads": parts.attn_out}[site.name]
        if path is None:
            raise UnknownArchitectureError(
                f"cannot find the attention output projection of {type(block).__name__}")
        return block.get_submodule(path)


def n_heads(handle: ModelHandle) -> int:
    """Attention heads per layer (from the config).

    Raises:
        UnknownArchitectureError: the config names no head count.
    """
    cfg = handle.model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    for key in ("num_attention_heads", "n_head", "num_heads"):
        if isinstance(getattr(cfg, key, None), int):
            return int(getattr(cfg, key))
    raise UnknownArchitectureError(f"{type(handle.model).__name__}'s config names no head count")


def attention_heads(handle: ModelHandle, layer: int) -> tuple[nn.Module, int, int]:
    """``(output projection, n_heads, head_dim)`` of block ``layer``'s attention.

    Raises:
        UnknownArchitectureError: the projection's input width is not ``n_heads × head_dim``.
    """
    proj = Site("attn_heads", layer).module(handle)
    w = cast(Tensor, getattr(proj, "weight", None))
    if isinstance(proj, nn.Linear):
        width = proj.in_features
    elif type(proj).__name__ == "Conv1D" and w is not None:  # GPT-2: weight [in, out]
        width = int(w.shape[0])
    else:
        raise UnknownArchitectureError(f"cannot read the heads of {type(proj).__name__}")
    h = n_heads(handle)
    if width % h:
        raise UnknownArchitectureError(f"attention output projection has {width} inputs, not a "
                                       f"multiple of {h} heads")
    return proj, h, width // h
