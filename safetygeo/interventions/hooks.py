"""Activation-space interventions as context managers: directional ablation and addition.

* **Directional ablation** (Arditi et al. 2024): ``x ← x − (x·r̂) r̂`` at every layer and
  position — the input of every block, and the output of every module that writes to the
  residual stream (attention and MLP; for Gemma-2/3 the post-attention / post-feedforward
  norms, whose outputs are what is added). With all writes ablated, no residual stream the
  model computes has a component along ``r̂``.
* **Activation addition**: ``x ← x + α·r`` at the input of one block (all positions, or
  the given offsets from the end), ``r`` used raw (not normalized).

Several directions can be applied at once as a batch of *variants*: ``directions`` of
shape ``[k, d]`` with the batch laid out as ``k`` consecutive groups of ``b`` rows
(row ``i`` uses direction ``i // b``). This evaluates ``k`` directions — e.g. matched
random null controls — in one forward pass.

Hooks are removed when the context exits, also on exceptions.

Example:
    >>> import torch
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> r = torch.randn(32)
    >>> with torch.no_grad(), ablate(h, r):
    ...     out = h.model(torch.tensor([[1, 5, 7]]), output_hidden_states=True)
    >>> float(abs(out.hidden_states[1][0] @ (r / r.norm())).max()) < 1e-5
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from safetygeo._validate import finite_float
from safetygeo.errors import NonFiniteError, SafetyGeoError
from safetygeo.models.arch import BlockParts, block_parts
from safetygeo.models.handle import ModelHandle
from safetygeo.models.hooks import resid_module


def residual_writers(block: nn.Module, parts: BlockParts | None = None) -> list[nn.Module]:
    """Submodules of a block whose outputs are added to the residual stream
    (:attr:`safetygeo.models.arch.BlockParts.writers`; ``parts``: the model's, e.g.
    ``handle.arch.parts``, else derived from ``block``)."""
    return [block.get_submodule(p) for p in (parts or block_parts(block)).writers]


def as_directions(direction: Tensor, d_model: int, *, normalize: bool) -> Tensor:
    """Validate ``[d]`` or ``[k, d]`` directions; return ``[k, d]`` float (unit if ``normalize``)."""
    if not torch.is_tensor(direction):
        if isinstance(direction, (str, bytes)) or direction is None:
            raise SafetyGeoError(f"direction must be a tensor or array of numbers, got "
                                 f"{type(direction).__name__}")
        try:
            direction = torch.as_tensor(direction)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SafetyGeoError(f"direction must be numeric [d] or [k, d], got {direction!r}") from exc
    dirs = direction.detach().to(torch.float64)
    if dirs.ndim == 1:
        dirs = dirs[None]
    if dirs.ndim != 2 or dirs.shape[1] != d_model:
        raise SafetyGeoError(
            f"direction has shape {tuple(direction.shape)}; expected [d_model={d_model}] or "
            f"[k, {d_model}]"
        )
    if not torch.isfinite(dirs).all():
        raise NonFiniteError("direction contains NaN or inf")
    norms = dirs.norm(dim=-1)
    if (norms <= 1e-12).any():
        raise SafetyGeoError("direction has zero norm; a direction must be non-zero")
    return dirs / norms[:, None] if normalize else dirs


def project_out(x: Float[Tensor, "rows seq d"], units: Float[Tensor, "k d"]) -> Float[Tensor, "rows seq d"]:
    """``x − (x·û)û`` per row, with ``units[i]`` applied to the ``i``-th of ``k`` consecutive
    row groups of ``x`` (``k = 1``: one direction for every row).

    Computed as two (batched) matrix products — no ``[rows, seq, d]`` temporary besides the
    result — which is what makes ablation hooks cheap on wide models.

    Example:
        >>> x, u = torch.randn(4, 3, 8), torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
        >>> y = project_out(x, u)
        >>> bool((y[:2] @ u[0]).abs().max() < 1e-5 and (y[2:] @ u[1]).abs().max() < 1e-5)
        True
    """
    k = units.shape[0]
    u = units.to(device=x.device, dtype=x.dtype)
    if k == 1:
        return x.addcmul(x @ u[0, :, None], u[0], value=-1.0)
    if x.shape[0] % k:
        raise SafetyGeoError(f"batch of {x.shape[0]} rows is not {k} groups of equal size")
    xg = x.reshape(k, -1, x.shape[-1])
    coef = torch.bmm(xg, u[:, :, None])  # [k, rows/k * seq, 1]
    return torch.baddbmm(xg, coef, u[:, None, :], alpha=-1.0).view_as(x)


def _per_row(vectors: Tensor, x: Tensor) -> Tensor:
    """Expand ``[k, d]`` vectors to broadcast against ``x`` of shape ``[k*b, seq, d]``."""
    k = vectors.shape[0]
    v = vectors.to(device=x.device, dtype=x.dtype)
    if k == 1:
        return v[0]
    if x.shape[0] % k:
        raise SafetyGeoError(f"batch of {x.shape[0]} rows is not {k} groups of equal size")
    return v.repeat_interleave(x.shape[0] // k, dim=0)[:, None, :]


@contextlib.contextmanager
def installed_hooks(pre: Sequence[tuple[nn.Module, Callable[..., Any]]],
           post: Sequence[tuple[nn.Module, Callable[..., Any]]]) -> Iterator[None]:
    handles = []
    try:
        for module, fn in pre:
            handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
        for module, fn in post:
            handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


def replace_hidden(args: tuple, kwargs: dict, fn: Callable[[Tensor], Tensor]):
    """A forward pre-hook's (args, kwargs) with the hidden state (first positional, or the
    keyword families name it by) replaced by ``fn(hidden)``."""
    if args:
        return (fn(args[0]), *args[1:]), kwargs
    key = next(k for k in ("hidden_states", "x", "input", "hidden_state") if k in kwargs)
    return args, {**kwargs, key: fn(kwargs[key])}


def map_output(output: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """A module output (tensor, or tuple whose first item is the hidden state) with the
    hidden state replaced by ``fn(hidden)``."""
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    return fn(output)


@contextlib.contextmanager
def ablate(handle: ModelHandle, direction: Float[Tensor, "*k d"]) -> Iterator[None]:
    """Project ``direction`` out of the residual stream everywhere (see module docstring).

    Args:
        handle: the model.
        direction: ``[d]``, or ``[k, d]`` for ``k`` variants laid out in batch groups.
    """
    unit = as_directions(direction, handle.d_model, normalize=True)

    def pre(module: nn.Module, args: tuple, kwargs: dict):
        return replace_hidden(args, kwargs, lambda x: project_out(x, unit))

    def post(module: nn.Module, inputs: Any, output: Any):
        return map_output(output, lambda x: project_out(x, unit))

    pre_hooks = [(resid_module(handle, layer), pre) for layer in range(handle.n_layers + 1)]
    post_hooks = [(m, post) for block in handle.blocks
                  for m in residual_writers(block, handle.arch.parts)]
    with installed_hooks(pre_hooks, post_hooks):
        yield


@contextlib.contextmanager
def add(
    handle: ModelHandle,
    vector: Float[Tensor, "*k d"],
    layer: int,
    alpha: float = 1.0,
    *,
    offsets: Sequence[int] | None = None,
) -> Iterator[None]:
    """Add ``alpha * vector`` to the residual stream entering ``layer``.

    Args:
        handle: the model.
        vector: ``[d]`` (raw, not normalized), or ``[k, d]`` variants in batch groups.
        layer: ``0..L`` (``L`` = final-norm input).
        alpha: strength.
        offsets: only at these offsets from the end (left-padded batches); default all
            positions (as in Arditi et al.; during generation every new token too).
    """
    (layer,) = handle.check_layers(layer)
    vec = as_directions(vector, handle.d_model, normalize=False) * finite_float(alpha, "alpha")

    def shift(x: Tensor) -> Tensor:
        v = _per_row(vec, x)
        if offsets is None:
            return x + v
        out = x.clone()
        cols = [x.shape[1] + o for o in offsets if x.shape[1] + o >= 0]
        out[:, cols] = out[:, cols] + (v if v.ndim == 1 else v.expand(-1, len(cols), -1))
        return out

    def pre(module: nn.Module, args: tuple, kwargs: dict):
        return replace_hidden(args, kwargs, shift)

    with installed_hooks([(resid_module(handle, layer), pre)], []):
        yield
