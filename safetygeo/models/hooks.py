"""The native hot path: forward pre-hooks that copy selected positions of the residual stream.

:func:`capture_resid` runs one batch through the model's trunk (embedding → blocks → final
norm, no LM head) with a pre-hook on each requested block (``resid_pre``) and on the final
norm (layer ``L``). Each hook keeps only ``x[:, cols, :]`` — ``[batch, n_pos, d]`` — so the
extra memory does not grow with sequence length. The forward stops right after the
deepest requested layer. Hooks are removed in ``finally``, also when the forward raises.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> from safetygeo.models.batching import iter_batches
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> b = next(iter_batches(h.encode(["Hi"]).input_ids, 1, pad_id=0))
    >>> acts = capture_resid(h, b, layers=(0, 2), offsets=(-1,))
    >>> sorted(acts), tuple(acts[2].shape)
    ([0, 2], (1, 1, 32))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from safetygeo.errors import SafetyGeoError, UnknownArchitectureError
from safetygeo.models.batching import Batch
from safetygeo.models.handle import ModelHandle


class _StopForward(Exception):
    """Raised inside a hook once the deepest requested layer has been read."""


def resid_module(handle: ModelHandle, layer: int) -> nn.Module:
    """The module whose *input* is the residual stream at ``layer`` (block or final norm)."""
    return handle.blocks[layer] if layer < handle.n_layers else handle.final_norm


def hidden_from_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
    """The residual-stream tensor among a block's (or norm's) forward inputs."""
    if args:
        return args[0]
    for key in ("hidden_states", "x", "input", "hidden_state"):
        if key in kwargs:
            return kwargs[key]
    raise UnknownArchitectureError(f"cannot find the hidden states among the block's inputs {list(kwargs)}")


@contextlib.contextmanager
def pre_hooks(
    modules: Sequence[tuple[nn.Module, Callable[..., Any]]]
) -> Iterator[None]:
    """Register ``(module, hook)`` forward pre-hooks (with kwargs); always remove them."""
    handles = []
    try:
        for module, hook in modules:
            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


def _repeat_rows(t: Any, b: int, k: int) -> Any:
    """Repeat a per-row tensor (or tuple of them) ``k`` times along dim 0 (``b`` rows)."""
    if isinstance(t, tuple):
        return tuple(_repeat_rows(x, b, k) for x in t)
    if torch.is_tensor(t) and t.ndim >= 2 and t.shape[0] == b:
        return t.repeat(k, *([1] * (t.ndim - 1)))
    return t


@contextlib.contextmanager
def fan_out(handle: ModelHandle, layer: int, k: int) -> Iterator[None]:
    """Run layers ``< layer`` once and everything from ``layer`` on as ``k`` batch copies.

    At the input of block ``layer`` (or the final norm for ``layer = L``) the batch of ``b``
    rows becomes ``k`` consecutive groups of ``b`` rows — the layout of
    :func:`safetygeo.interventions.hooks.add` / ``ablate`` variants — and per-row keyword
    inputs of every later block (attention mask, rotary embeddings, position ids) are
    repeated to match. The result equals repeating the input ``k`` times, but the shared
    prefix of the network is computed once: an addition at layer ``l`` of ``k`` directions
    costs ``(l + k·(L − l)) / (k·L)`` of the repeated forward. Single forward passes without
    a KV cache only (not generation). The hook is prepended, so it runs before interventions
    registered on the same block.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
        >>> with torch.no_grad(), fan_out(h, 1, 3):
        ...     out = h.model(torch.tensor([[1, 5, 7]]))
        >>> tuple(out.logits.shape[:2])
        (3, 3)
    """
    (layer,) = handle.check_layers(layer)
    if k < 1:
        raise SafetyGeoError(f"fan_out needs k >= 1, got {k}")
    if k == 1:
        yield
        return
    rows: dict[str, int] = {}

    def repeat_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]):
        b = rows["b"]  # rows with batch size b are per-row inputs (GPT-2 passes masks by position)
        return (tuple(_repeat_rows(a, b, k) for a in args),
                {key: _repeat_rows(v, b, k) for key, v in kwargs.items()})

    def first(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        rows["b"] = hidden_from_inputs(args, kwargs).shape[0]
        return repeat_inputs(args, kwargs)

    def later(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        return repeat_inputs(args, kwargs)

    handles = [resid_module(handle, layer).register_forward_pre_hook(
        first, with_kwargs=True, prepend=True)]
    try:
        for later_layer in range(layer + 1, handle.n_layers):
            handles.append(handle.blocks[later_layer].register_forward_pre_hook(
                later, with_kwargs=True, prepend=True))
        yield
    finally:
        for h in handles:
            h.remove()


def forward_trunk(handle: ModelHandle, batch: Batch) -> None:
    """Run the trunk (no LM head) on a batch with explicit position ids and no KV cache."""
    handle.trunk(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )


def capture_resid(
    handle: ModelHandle,
    batch: Batch,
    layers: Sequence[int],
    offsets: Sequence[int],
) -> dict[int, Float[Tensor, "batch pos d"]]:
    """Residual stream at ``layers`` × ``offsets`` (from the end) for one left-padded batch.

    Returns tensors in the model's dtype on the model's device.
    """
    seq = batch.input_ids.shape[1]
    cols = torch.tensor([seq + o for o in offsets], device=batch.input_ids.device)
    out: dict[int, Tensor] = {}
    deepest = max(layers)

    def make_hook(layer: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            out[layer] = hidden_from_inputs(args, kwargs).index_select(1, cols)
            if layer == deepest:
                raise _StopForward

        return hook

    with pre_hooks([(resid_module(handle, layer), make_hook(layer)) for layer in layers]):
        try:
            with torch.inference_mode():
                forward_trunk(handle, batch)
        except _StopForward:
            pass
    return out
