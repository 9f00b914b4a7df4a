"""The engine: inner products of one loss's gradient with others', per parameter group.

:func:`gradient_products` runs **one backward per loss** and never flattens a gradient:

1. backward of the first loss ``A``; its ``.grad`` tensors are *moved* (not copied) into a
   stash and ``‖∇A‖²`` is reduced per group;
2. for each further loss ``B``: backward, then per parameter ``⟨∇A, ∇B⟩`` and ``‖∇B‖²`` are
   reduced into the parameter's group, and ``.grad`` is released.

Peak memory is therefore that of two plain backward passes plus the stash — one
parameter-sized set of gradients, in the parameters' dtype. Reductions run under
``torch.no_grad``: dot products over blocks of 2^16 elements (2^20 on an accelerator) —
float32 for float32 gradients, float64 for bf16 / fp16 ones (upcast one block at a time) —
accumulated in float64 across blocks. For float32 this agrees with a full float64 dot to
~1e-6 relative (a single float32 dot over 16M elements was off by 1.5e-4) at a tenth of the
cost of converting everything to float64.

Model state is left as found: train / eval mode, every ``requires_grad`` flag, and every
``.grad`` (gradients present before the call are restored; none are left behind). The
model runs in **eval mode** (dropout off: the same loss gives the same gradient, so a loss
paired with itself has cosine exactly 1). Parameters with ``requires_grad=False`` are left
out (a group with none is undefined, with a reason); ``include_frozen=True`` includes them
(their flags are switched on for the call and restored).

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
    >>> ids = torch.tensor([[1, 5, 9, 3]])
    >>> f = lambda m: m(input_ids=ids, labels=ids).loss
    >>> out = gradient_products(h, CallableLoss(f, "a"), [CallableLoss(lambda m: -f(m), "b")])
    >>> round(out.total.dots[0] / out.total.norm_a2, 6)
    -1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from safetygeo.errors import NonFiniteError, SafetyGeoError
from safetygeo.gradients.groups import ParamGroup, ParamGroups, parameter_groups
from safetygeo.gradients.losses import CallableLoss, PreparedLoss  # noqa: F401  (doctest)
from safetygeo.models.handle import ModelHandle

#: Elements per float32 block of a dot product on the CPU / on an accelerator (the blocks'
#: results are summed in float64).
BLOCK_CPU = 1 << 16
BLOCK_GPU = 1 << 20

__all__ = ["BLOCK_CPU", "BLOCK_GPU", "FrozenModelError", "GradientProducts", "GroupProducts", "gradient_products"]


class FrozenModelError(SafetyGeoError):
    """No parameter of the model has ``requires_grad=True`` (pass ``include_frozen=True``)."""


@dataclass(frozen=True)
class GroupProducts:
    """Reductions over one parameter group (or over all trainable parameters).

    Attributes:
        group: the group (``name="all"`` for the whole model).
        n_trainable: scalar parameters of the group that took part.
        norm_a2: ``‖∇A‖²`` restricted to the group.
        a_unused: no parameter of the group is in ``A``'s graph (every ``.grad`` stayed None).
        dots: ``⟨∇A, ∇B_k⟩`` per further loss.
        norm_b2: ``‖∇B_k‖²`` per further loss.
        b_unused: per further loss, whether it does not reach the group at all.
    """

    group: ParamGroup
    n_trainable: int
    norm_a2: float
    a_unused: bool
    dots: tuple[float, ...]
    norm_b2: tuple[float, ...]
    b_unused: tuple[bool, ...]

    def undefined_reason(self, k: int, label_a: str, label_b: str) -> str | None:
        """Why the cosine of ``A`` with loss ``k`` is undefined here (``None`` if defined)."""
        if self.n_trainable == 0:
            return "no trainable parameters (all requires_grad=False)"
        reasons = []
        for label, unused, n2 in ((label_a, self.a_unused, self.norm_a2),
                                  (label_b, self.b_unused[k], self.norm_b2[k])):
            if unused:
                reasons.append(f"{label!r} does not depend on these parameters")
            elif n2 == 0.0:
                reasons.append(f"the gradient of {label!r} is exactly zero here")
        return "; ".join(reasons) or None


@dataclass(frozen=True)
class GradientProducts:
    """What :func:`gradient_products` returns.

    Attributes:
        groups: the parameter groups.
        per_group: reductions per group, in group order.
        total: reductions over every trainable parameter (``group.name == "all"``).
        labels: the losses' labels (``A`` first).
        values: the losses' values (``A`` first).
    """

    groups: ParamGroups
    per_group: tuple[GroupProducts, ...]
    total: GroupProducts
    labels: tuple[str, ...]
    values: tuple[float, ...]


def _dot64(x: Tensor, y: Tensor) -> Tensor:
    """``⟨x, y⟩`` (a 0-dim float64 tensor on x's device): dots over blocks of
    :data:`BLOCK_CPU` / :data:`BLOCK_GPU` elements in the gradients' dtype when that is
    float32 / float64 (bf16 / fp16 blocks are upcast to float64), accumulated in float64
    across blocks."""
    x = x.reshape(-1)
    same = y is x or y.data_ptr() == x.data_ptr()
    y = x if same else y.reshape(-1)
    block = BLOCK_CPU if x.device.type == "cpu" else BLOCK_GPU
    up = x.dtype not in (torch.float32, torch.float64)
    parts = []
    for i in range(0, x.numel(), block):
        xs = x[i:i + block].double() if up else x[i:i + block]
        ys = xs if same else (y[i:i + block].double() if up else y[i:i + block])
        parts.append(torch.dot(xs, ys))
    if not parts:
        return torch.zeros((), dtype=torch.float64, device=x.device)
    return torch.stack(parts).double().sum()


def gradient_products(
    handle: ModelHandle,
    first: PreparedLoss,
    others: Sequence[PreparedLoss],
    *,
    include_frozen: bool = False,
) -> GradientProducts:
    """Per-group ``‖∇A‖²``, ``⟨∇A, ∇B_k⟩`` and ``‖∇B_k‖²`` (see the module docstring).

    Args:
        handle: the model (its parameters' current values are the point θ).
        first: the loss ``A`` whose gradient is kept.
        others: the losses ``B_k`` compared with it (one backward each).
        include_frozen: also differentiate parameters with ``requires_grad=False``.

    Raises:
        FrozenModelError: no trainable parameter (and ``include_frozen`` is False).
        NonFiniteError: a loss or a gradient is NaN / infinite (named).
    """
    model = handle.model
    groups = parameter_groups(handle)
    named = dict(model.named_parameters())
    flags = {n: p.requires_grad for n, p in named.items()}
    active = [n for n, p in named.items() if p.requires_grad or include_frozen]
    if not active:
        raise FrozenModelError(
            f"every parameter of {handle.model_id!r} has requires_grad=False, so no gradient "
            "can be taken; pass include_frozen=True to differentiate them anyway")
    params = {n: named[n] for n in active}
    saved_grads = {n: p.grad for n, p in params.items()}
    was_training = model.training
    stash: dict[str, Tensor | None] = {}
    try:
        for p in params.values():
            p.grad = None
            p.requires_grad_(True)
        model.eval()
        with torch.enable_grad():
            v_a = first.backward(model)
        for n, p in params.items():
            stash[n] = p.grad
            p.grad = None
        values = [v_a]
        a_unused = {g.name: all(stash.get(n) is None for n in g.params) for g in groups}
        na2: dict[str, float] = {}
        dots: dict[str, list[float]] = {g.name: [] for g in groups}
        nb2: dict[str, list[float]] = {g.name: [] for g in groups}
        b_unused: dict[str, list[bool]] = {g.name: [] for g in groups}
        with torch.no_grad():
            for g in groups:
                acc = [_dot64(t, t) for t in (stash.get(n) for n in g.params) if t is not None]
                na2[g.name] = float(torch.stack(acc).sum()) if acc else 0.0
                if not math.isfinite(na2[g.name]):
                    raise NonFiniteError(f"the gradient of {first.label!r} has non-finite "
                                         f"entries in parameter group {g.name!r}")
        for other in others:
            with torch.enable_grad():
                values.append(other.backward(model))
            with torch.no_grad():
                for g in groups:
                    ab, bb, seen = [], [], False
                    for n in g.params:
                        param = params.get(n)
                        if param is None or param.grad is None:
                            continue
                        seen = True
                        a = stash.get(n)
                        bb.append(_dot64(param.grad, param.grad))
                        if a is not None:
                            ab.append(_dot64(a, param.grad))
                    dots[g.name].append(float(torch.stack(ab).sum()) if ab else 0.0)
                    nb2[g.name].append(float(torch.stack(bb).sum()) if bb else 0.0)
                    b_unused[g.name].append(not seen)
                    if not math.isfinite(nb2[g.name][-1]):
                        raise NonFiniteError(f"the gradient of {other.label!r} has non-finite "
                                             f"entries in parameter group {g.name!r}")
            for p in params.values():
                p.grad = None
    finally:
        stash.clear()
        for n, p in params.items():
            p.grad = saved_grads[n]
            p.requires_grad_(flags[n])
        model.train(was_training)

    per_group = []
    for g in groups:
        n_tr = sum(named[n].numel() for n in g.params if n in params)
        per_group.append(GroupProducts(g, n_tr, na2[g.name], a_unused[g.name],
                                       tuple(dots[g.name]), tuple(nb2[g.name]),
                                       tuple(b_unused[g.name])))
    k = len(others)
    all_group = ParamGroup("all", "all", None, tuple(active), sum(g.group.numel for g in per_group))
    total = GroupProducts(
        all_group, sum(g.n_trainable for g in per_group), sum(g.norm_a2 for g in per_group),
        all(g.a_unused for g in per_group),
        tuple(sum(g.dots[i] for g in per_group) for i in range(k)),
        tuple(sum(g.norm_b2[i] for g in per_group) for i in range(k)),
        tuple(all(g.b_unused[i] for g in per_group) for i in range(k)))
    return GradientProducts(groups, tuple(per_group), total,
                            (first.label, *(o.label for o in others)), tuple(values))
