"""Model access for GCG: eval mode, prefix KV cache, one-hot token gradients."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from safetygeo.attacks.gcg.config import GCGError, ModelLike
from safetygeo.attacks.gcg.state import GCGItem
from safetygeo.models.arch import resolve_arch
from safetygeo.models.handle import ModelHandle


def _as_handle(model: ModelLike) -> ModelHandle:
    if isinstance(model, ModelHandle):
        return model
    if isinstance(model, tuple) and len(model) == 2:
        # no load_model(): it would switch a model being trained to eval mode for good
        return ModelHandle(model[0], model[1], resolve_arch(model[0]))
    raise GCGError(f"expected a ModelHandle or a (model, tokenizer) pair, got {type(model).__name__}")


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside; every submodule's own flag restored on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _forward_params(model: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _cache_kwarg(model: nn.Module) -> str:
    params = _forward_params(model)
    if "cache" in params:  # transformers >= 5
        return "cache"
    if "past_key_values" in params:
        return "past_key_values"
    import transformers

    return "cache" if int(transformers.__version__.split(".")[0]) >= 5 else "past_key_values"


def _logits(
    model: nn.Module, keep: int, *, input_ids: Tensor | None = None,
    inputs_embeds: Tensor | None = None, prefix: list[tuple] | None = None,
) -> Float[Tensor, "batch keep vocab"]:
    """Logits at the last ``keep`` positions (LM head skipped elsewhere when supported)."""
    batch = (input_ids if input_ids is not None else inputs_embeds).shape[0]  # type: ignore[union-attr]
    kwargs: dict[str, Any] = {}
    if "logits_to_keep" in _forward_params(model):
        kwargs["logits_to_keep"] = keep
    if prefix is not None:
        kwargs[_cache_kwarg(model)] = _expand_cache(prefix, batch)
        kwargs["use_cache"] = True
    else:
        kwargs["use_cache"] = False
    out = model(input_ids=input_ids, inputs_embeds=inputs_embeds, **kwargs)
    return out.logits[:, -keep:]


def _prefix_cache(model: nn.Module, before_ids: Tensor) -> list[tuple] | None:
    """Per-layer (key, value[, sliding]) tensors of the tokens before the suffix, or None."""
    if before_ids.numel() == 0:
        return None
    try:
        from transformers import DynamicCache
    except ImportError:  # pragma: no cover - very old transformers
        return None
    kwargs: dict[str, Any] = {"use_cache": True}
    if "logits_to_keep" in _forward_params(model):
        kwargs["logits_to_keep"] = 1
    with torch.no_grad():
        out = model(input_ids=before_ids[None], **kwargs)
    cache = out.get("cache") if "cache" in out else out.get("past_key_values")
    if type(cache) is not DynamicCache:
        return None
    try:
        layers = [tuple(entry) for entry in cache]
    except TypeError:  # pragma: no cover
        return None
    if any(e[0] is None or e[1] is None for e in layers):
        return None
    return layers


def _expand_cache(prefix: list[tuple], batch: int) -> Any:
    from transformers import DynamicCache

    data = []
    for entry in prefix:
        k, v = entry[0], entry[1]
        kv = (k.expand(batch, *k.shape[1:]), v.expand(batch, *v.shape[1:]))
        data.append(kv + tuple(e for e in entry[2:3] if e is not None))
    return DynamicCache(data)


def _embed_onehot(embed: nn.Module, onehot: Tensor) -> Tensor:
    """``onehot @ W_E``, with the embedding module's own scale if it has one (Gemma 3)."""
    out = onehot @ cast(Tensor, embed.weight)
    scale = getattr(embed, "embed_scale", None)
    if scale is not None:
        out = out * (scale.to(out.dtype) if torch.is_tensor(scale) else scale)
    return out


def _upcast(x: Tensor) -> Tensor:
    """float32 for half-precision logits; float64 stays float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _tensor(ids: Sequence[int], device: torch.device) -> Tensor:
    return torch.tensor(list(ids), dtype=torch.long, device=device)


# ----------------------------------------------------------------------------- the three steps
def token_gradient(
    model: ModelLike, item: GCGItem, *, use_prefix_cache: bool = True,
) -> tuple[Float[Tensor, "n_suffix vocab"], float]:
    """Gradient of the item's target loss w.r.t. the one-hot suffix, and that loss.

    The loss is the mean over the item's prompts of the mean target-token cross-entropy.
    The model runs in eval mode (modes restored after); parameter ``.grad`` is not touched.

    Returns:
        ``(grad, loss)``: float32 gradient ``[n_suffix, n_vocab]`` on CPU, and the loss.
    """
    lm = _as_handle(model).model
    with _eval_mode(lm):
        return _token_gradient(lm, item, _prefixes(lm, item, use_prefix_cache))


def _prefixes(lm: nn.Module, item: GCGItem, use: bool) -> list[list[tuple] | None]:
    device = next(lm.parameters()).device
    return [_prefix_cache(lm, _tensor(p.before_ids, device)) if use else None for p in item.prompts]


def _token_gradient(
    lm: nn.Module, item: GCGItem, prefixes: Sequence[list[tuple] | None]
) -> tuple[Tensor, float]:
    device = next(lm.parameters()).device
    # torch's nn.Module.__getattr__ stub types methods as Tensor | Module
    embed = lm.get_input_embeddings()  # type: ignore[operator]
    n_vocab = embed.weight.shape[0]
    ids = item.suffix_ids.to(device)
    grad = torch.zeros(len(ids), n_vocab, dtype=torch.float32)
    total = 0.0
    for p, prefix in zip(item.prompts, prefixes):
        onehot = torch.zeros(len(ids), n_vocab, device=device, dtype=embed.weight.dtype)
        onehot.scatter_(1, ids[:, None], 1.0)
        onehot.requires_grad_(True)
        with torch.no_grad():
            before = embed(_tensor(p.before_ids, device)) if prefix is None else None
            tail = embed(_tensor(p.after_ids + p.target_ids, device))
        parts = [_embed_onehot(embed, onehot), tail]
        if before is not None:
            parts.insert(0, before)
        seq = torch.cat(parts)[None]
        target = _tensor(p.target_ids, device)
        logits = _logits(lm, len(target) + 1, inputs_embeds=seq, prefix=prefix)[:, :-1]
        loss = F.cross_entropy(_upcast(logits[0]), target) / len(item.prompts)
        (g,) = torch.autograd.grad(loss, onehot)
        grad += g.float().cpu()
        total += float(loss.detach())
    return grad, total
