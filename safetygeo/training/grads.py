"""Parameter-space helpers for methods whose update is not the gradient of one loss at θ.

CTRAP takes the gradient of a loss at a *look-ahead* point θ' and applies it at θ; SEAM
adds a finite-difference estimate of ∇cos(g_a, g_b). Both are built from:

* :func:`trainable` — the parameters the trainer optimizes (``requires_grad``; under LoRA
  the adapters; tied weights once), read from the unwrapped module (DDP's ``.module``);
* :func:`grads_at` — ``(L, ∇L)`` at θ, or at θ + s·d for a direction ``d`` (evaluated with
  ``torch.func.functional_call``: the parameters are never modified in place, so nothing
  has to be restored, the optimizer state is untouched and an exception cannot leave the
  model perturbed). Gradients come from ``torch.autograd.grad`` and never touch ``.grad``;
* :func:`dot` / :func:`norm` — float64 reductions over lists of tensors;
* :func:`linear_surrogate` — a term of value 0 whose gradient is a given vector ``v``:
  ``Σ⟨v, θ⟩ − Σ⟨v, θ⟩.detach()``. Added to a method's loss, it makes the trainer's one
  ``backward()`` apply ``v`` together with the ordinary gradient — accumulation, clipping,
  mixed precision and the optimizer stay the trainer's.

Distributed training: the auxiliary gradients are taken on the unwrapped module with the
rank's own micro-batch (no all-reduce inside a step); the surrogate's gradient then goes
through the same DDP reduction as the loss's. Tested single-process only.

Example:
    >>> lin = torch.nn.Linear(2, 1, bias=False)
    >>> names, params = trainable(lin)
    >>> v = [torch.ones_like(params[0])]
    >>> (linear_surrogate(params, v) * 3).backward()
    >>> names, lin.weight.grad.tolist()
    (['weight'], [[3.0, 3.0]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Shifted", "dot", "grads_at", "linear_surrogate", "norm", "trainable", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a DDP / DataParallel wrapper (the model itself otherwise)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def trainable(model: nn.Module) -> tuple[list[str], list[nn.Parameter]]:
    """Names and parameters with ``requires_grad`` (shared parameters once), in module order."""
    names, params = [], []
    for n, p in unwrap(model).named_parameters():
        if p.requires_grad:
            names.append(n)
            params.append(p)
    return names, params


def dot(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> float:
    """``Σ_i ⟨x_i, y_i⟩`` accumulated in float64."""
    parts = [torch.dot(x.reshape(-1).double(), y.reshape(-1).double())
             for x, y in zip(xs, ys, strict=True)]
    return float(torch.stack(parts).sum()) if parts else 0.0


def norm(xs: Sequence[Tensor]) -> float:
    """``sqrt(Σ_i ‖x_i‖²)`` accumulated in float64."""
    return dot(xs, xs) ** 0.5


class Shifted:
    """A callable standing in for ``module`` with parameters ``θ + scale·direction``.

    Calling it runs ``functional_call(module, {name: θ + scale·d}, kwargs=...)``; the
    shifted tensors are fresh leaves (``.leaves``) that gradients can be taken against.
    """

    def __init__(self, module: nn.Module, names: Sequence[str], params: Sequence[Tensor],
                 direction: Sequence[Tensor], scale: float) -> None:
        self.module = module
        with torch.no_grad():
            self.leaves = [(p + scale * d.to(p.dtype)).detach().requires_grad_(True)
                           for p, d in zip(params, direction, strict=True)]
        self._values = dict(zip(names, self.leaves))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(self.module, self._values, args, kwargs)


def grads_at(
    model: nn.Module,
    loss_fn: Callable[[Any], Tensor],
    *,
    direction: Sequence[Tensor] | None = None,
    scale: float = 0.0,
    params: tuple[list[str], list[nn.Parameter]] | None = None,
) -> tuple[float, list[Tensor]]:
    """``(L, ∇L)`` at θ (``direction=None``) or at θ + ``scale``·``direction``.

    Args:
        model: the (possibly wrapped) model; the unwrapped module is called.
        loss_fn: ``loss_fn(callable_model) -> scalar`` (called with the module itself at θ,
            with a :class:`Shifted` stand-in at a shifted point).
        direction, scale: where to evaluate (one tensor per trainable parameter).
        params: ``trainable(model)`` when already at hand.

    Returns:
        The loss value and one gradient tensor per trainable parameter (zeros where the loss
        does not depend on it); no ``.grad`` is written.
    """
    names, ps = params if params is not None else trainable(model)
    module = unwrap(model)
    with torch.enable_grad():
        if direction is None:
            loss = loss_fn(module)
            wrt: list[Tensor] = list(ps)
        else:
            shifted = Shifted(module, names, ps, direction, scale)
            loss = loss_fn(shifted)
            wrt = shifted.leaves
        gs = torch.autograd.grad(loss, wrt, allow_unused=True)
    return float(loss.detach()), [torch.zeros_like(p) if g is None else g.detach()
                                  for p, g in zip(ps, gs)]


def linear_surrogate(params: Sequence[Tensor], vector: Sequence[Tensor]) -> Tensor:
    """A scalar of value 0 whose gradient w.r.t. ``params`` is ``vector`` (see the module
    docstring)."""
    terms = [(p * v.detach().to(p.dtype)).sum() for p, v in zip(params, vector, strict=True)]
    s = torch.stack(terms).sum() if terms else torch.zeros(())
    return s - s.detach()
