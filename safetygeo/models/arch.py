"""Where the residual stream and the modules that write it live in a Hugging Face decoder.

An :class:`ArchSpec` names three module paths: the list of decoder blocks (hooked at
their input = ``resid_pre``), the final norm (hooked at its input = the residual stream
after the last block, "layer L"), and the token embedding. Known families are looked
up by ``config.model_type``; anything else is derived from the module tree (the one
``nn.ModuleList`` holding ``num_hidden_layers`` blocks of one class, and the norm module
beside it). If that is ambiguous the user names the paths.

Inside a block, :class:`BlockParts` names (relative to the block) the attention module,
the MLP, the attention output projection (``o_proj`` / ``c_proj`` / ``dense`` /
``out_proj``: its *input* is the concatenation of the heads' outputs, the site of head
interventions) and the modules whose outputs are added to the residual stream (attention
and MLP; Gemma-2/3: their post-norms). :func:`block_parts` derives them from the module
tree — this module holds the only lists of guessed module names — and
:func:`resolve_arch` stores them in ``ArchSpec.parts``. Hook *sites* built on these names
are :class:`safetygeo.models.sites.Site`.

Example:
    >>> from safetygeo.models.tiny import tiny_model
    >>> spec = resolve_arch(tiny_model("gpt2", n_layers=2, d_model=16, n_heads=2))
    >>> spec.layers_path, spec.parts.attn_out, spec.parts.writers
    ('transformer.h', 'attn.c_proj', ('attn', 'mlp'))
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from safetygeo.errors import UnknownArchitectureError

#: Names an attention / MLP submodule of a block goes by (the first present is taken).
ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe")
#: Names of the linear map whose output a residual writer adds (attention or MLP).
OUT_PROJ_NAMES = ("o_proj", "c_proj", "out_proj", "dense", "down_proj", "fc_out", "fc2",
                  "dense_4h_to_h", "w2")
#: Gemma-2/3: norms applied to the attention / MLP outputs before the residual add.
_POST_NORMS = ("post_attention_layernorm", "post_feedforward_layernorm")


@dataclass(frozen=True)
class BlockParts:
    """Submodule paths of one decoder block (dotted, relative to the block).

    Attributes:
        attn: the attention module (its output is the block's attention write).
        mlp: the MLP (or mixture-of-experts) module.
        attn_out: the attention output projection; its input is the heads' outputs
            concatenated (``[.., n_heads * head_dim]``). ``None`` if not found.
        writers: modules whose outputs are added to the residual stream.
    """

    attn: str
    mlp: str
    attn_out: str | None
    writers: tuple[str, ...]


@dataclass(frozen=True)
class ArchSpec:
    """Module paths of one decoder architecture (dotted, relative to the causal-LM model).

    ``parts`` (the block's submodules, :class:`BlockParts`) is filled by
    :func:`resolve_arch`; ``None`` where the block's attention / MLP cannot be found
    (residual-stream reading still works; interventions on writes or heads raise).
    """

    layers_path: str
    final_norm_path: str
    embed_path: str | None = None
    source: str = "registry"  # "registry" | "module-tree" | "user"
    parts: BlockParts | None = None

    def block_parts(self, block: nn.Module) -> BlockParts:
        """``parts``, or derived from ``block`` (:func:`block_parts`) when not stored."""
        return self.parts if self.parts is not None else block_parts(block)


def find_output_projection(module: nn.Module) -> nn.Module | None:
    """The child of ``module`` named like an output projection (``o_proj``, ``down_proj``,
    ...), or ``None``."""
    children = dict(module.named_children())
    return next((children[n] for n in OUT_PROJ_NAMES if n in children), None)


def block_parts(block: nn.Module) -> BlockParts:
    """Derive a block's :class:`BlockParts` from its module tree.

    Raises:
        UnknownArchitectureError: no attention or no MLP child under a known name.

    Example:
        >>> from safetygeo.models.tiny import tiny_model
        >>> block_parts(tiny_model("llama", n_layers=1).model.layers[0])
        BlockParts(attn='self_attn', mlp='mlp', attn_out='self_attn.o_proj', writers=('self_attn', 'mlp'))
    """
    children = dict(block.named_children())
    attn = next((n for n in ATTN_NAMES if n in children), None)
    mlp = next((n for n in MLP_NAMES if n in children), None)
    if attn is None or mlp is None:
        raise UnknownArchitectureError(
            f"cannot find the attention and MLP submodules of {type(block).__name__} "
            f"(children: {sorted(children)})"
        )
    attn_out = None
    # the shallowest output projection inside the attention (GPT-Neo nests one level)
    for name, mod in sorted(children[attn].named_modules(), key=lambda nm: nm[0].count(".")):
        proj = find_output_projection(mod)
        if proj is not None:
            sub = next(n for n, m in mod.named_children() if m is proj)
            attn_out = ".".join(p for p in (attn, name, sub) if p)
            break
    writers = _POST_NORMS if all(n in children for n in _POST_NORMS) else (attn, mlp)
    return BlockParts(attn, mlp, attn_out, tuple(writers))


_LLAMA_LIKE = ArchSpec("model.layers", "model.norm", "model.embed_tokens")

KNOWN_ARCHS: dict[str, ArchSpec] = {
    **{
        t: _LLAMA_LIKE
        for t in (
            "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma",
            "gemma2", "gemma3_text", "phi3", "olmo", "olmo2", "granite", "cohere", "starcoder2",
        )
    },
    "gpt2": ArchSpec("transformer.h", "transformer.ln_f", "transformer.wte"),
    "gpt_neo": ArchSpec("transformer.h", "transformer.ln_f", "transformer.wte"),
    "gptj": ArchSpec("transformer.h", "transformer.ln_f", "transformer.wte"),
    "gpt_neox": ArchSpec("gpt_neox.layers", "gpt_neox.final_layer_norm", "gpt_neox.embed_in"),
    "phi": ArchSpec("model.layers", "model.final_layernorm", "model.embed_tokens"),
}

_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm")


def get_module(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule at dotted ``path`` or raise :class:`UnknownArchitectureError`."""
    try:
        return model.get_submodule(path)
    except AttributeError as exc:
        raise UnknownArchitectureError(
            f"{type(model).__name__} has no submodule {path!r}"
        ) from exc


def _n_layers_from_config(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    cfg = getattr(cfg, "text_config", None) or cfg
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(getattr(cfg, key, None), int):
            return int(getattr(cfg, key))
    return None


def _derive(model: nn.Module) -> ArchSpec:
    n = _n_layers_from_config(model)
    candidates = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList)
        and len(mod) > 0
        and (n is None or len(mod) == n)
        and len({type(m) for m in mod}) == 1
    ]
    # Keep outermost lists only (a block may itself hold a ModuleList of experts, heads...).
    candidates = [
        (name, mod) for name, mod in candidates
        if not any(name != other and name.startswith(other + ".") for other, _ in candidates)
    ]
    if len(candidates) != 1:
        found = [c[0] for c in candidates] or "none"
        raise UnknownArchitectureError(
            f"cannot locate the decoder blocks of {type(model).__name__} "
            f"(model_type={getattr(getattr(model, 'config', None), 'model_type', None)!r}): "
            f"ModuleList candidates with {n} blocks: {found}. Pass layers_path=... and "
            "final_norm_path=... (e.g. layers_path='model.layers', final_norm_path='model.norm')."
        )
    layers_path = candidates[0][0]
    parent_path = layers_path.rsplit(".", 1)[0] if "." in layers_path else ""
    parent = model.get_submodule(parent_path) if parent_path else model
    norms = [
        name for name, mod in parent.named_children()
        if name in _NORM_NAMES or ("norm" in type(mod).__name__.lower() and "norm" in name)
    ]
    if len(norms) != 1:
        raise UnknownArchitectureError(
            f"found decoder blocks at {layers_path!r} but no unique final norm beside them "
            f"(candidates: {norms or 'none'}); pass final_norm_path=..."
        )
    final_norm_path = f"{parent_path}.{norms[0]}" if parent_path else norms[0]
    embed = None
    get_emb = getattr(model, "get_input_embeddings", None)
    if get_emb is not None:
        emb_mod = get_emb()
        embed = next((nm for nm, m in model.named_modules() if m is emb_mod), None)
    return ArchSpec(layers_path, final_norm_path, embed, source="module-tree")


def resolve_arch(
    model: nn.Module,
    *,
    layers_path: str | None = None,
    final_norm_path: str | None = None,
) -> ArchSpec:
    """Find the block list and final norm of ``model``.

    Args:
        model: a Hugging Face causal LM (or any module with a block list).
        layers_path: override: dotted path of the ``nn.ModuleList`` of blocks.
        final_norm_path: override: dotted path of the final norm.

    Raises:
        UnknownArchitectureError: the paths cannot be found or derived unambiguously.
    """
    spec: ArchSpec | None
    if layers_path is not None or final_norm_path is not None:
        if layers_path is None or final_norm_path is None:
            raise UnknownArchitectureError("pass both layers_path and final_norm_path")
        spec = ArchSpec(layers_path, final_norm_path, None, source="user")
    else:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        spec = KNOWN_ARCHS.get(model_type) if model_type else None
        if spec is not None:
            try:
                get_module(model, spec.layers_path)
                get_module(model, spec.final_norm_path)
            except UnknownArchitectureError:
                spec = None  # e.g. a base model without the LM head wrapper: derive instead
        if spec is None:
            spec = _derive(model)
    blocks = get_module(model, spec.layers_path)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise UnknownArchitectureError(
            f"{spec.layers_path!r} is {type(blocks).__name__}, not a non-empty nn.ModuleList of blocks"
        )
    get_module(model, spec.final_norm_path)
    if spec.parts is None:
        try:
            spec = replace(spec, parts=block_parts(blocks[0]))
        except UnknownArchitectureError:
            pass  # residual-stream reading works without; write / head sites raise on use
    return spec
