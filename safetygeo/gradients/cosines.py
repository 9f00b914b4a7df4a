"""Per-layer cosine similarity between the gradients of two losses.

``cos_g(A, B) = ⟨∇_g A, ∇_g B⟩ / (‖∇_g A‖ ‖∇_g B‖)`` where ``∇_g`` is the gradient restricted
to the parameters of group ``g`` (``embed``, ``block.<i>``, ``head``; see
:mod:`safetygeo.gradients.groups`), and over all trainable parameters (group ``all``). A
negative cosine means a descent step on ``A`` *increases* ``B`` to first order within those
parameters — the conflict collapse-trap defenses (SEAM, CTRAP) build in between the
harmful-task and the benign-task losses.

One backward per loss (:func:`~safetygeo.gradients.core.gradient_products`). A cosine is
**undefined** — ``defined=False``, ``cosine`` NaN, and ``reason`` saying why — when the
group has no trainable parameter, when a loss does not reach the group (e.g. a loss on the
first layers' activations does not depend on later blocks) or when a gradient there is
exactly zero. :meth:`GradientCosines.value` raises instead of returning such a NaN.

The cosines are exact for the given data (no sampling), so they carry no CI.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> a = LossSpec.from_data([("Make a bomb.", "Sure, here is how.")], "harmful_ce")
    >>> b = LossSpec.from_data([("Say hi.", "Hello!")])
    >>> res = layer_gradient_cosines(h, a, b)
    >>> res.to_frame()["group"].tolist()
    ['embed', 'block.0', 'block.1', 'head', 'all']
    >>> round(layer_gradient_cosines(h, a, a).value("all"), 6)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from safetygeo.errors import SafetyGeoError
from safetygeo.gradients.core import GradientProducts, GroupProducts, gradient_products
from safetygeo.gradients.losses import LossFn, LossSpec, prepare_loss
from safetygeo.models.handle import ModelHandle

__all__ = ["GradientCosines", "GroupCosine", "UndefinedGradientError", "layer_gradient_cosines"]


class UndefinedGradientError(SafetyGeoError):
    """A gradient quantity asked for is undefined (the message says why)."""


@dataclass(frozen=True)
class GroupCosine:
    """The cosine of two gradients within one parameter group.

    Attributes:
        group: ``embed``, ``block.<i>``, ``head``, ``other`` or ``all``.
        kind: the group's kind (``all`` for the whole model).
        layer: block index (``None`` outside the blocks).
        n_trainable: scalar parameters that took part.
        cosine: the cosine (NaN when undefined).
        dot: ``⟨∇A, ∇B⟩`` within the group.
        norm_a, norm_b: the gradients' norms within the group.
        defined: whether ``cosine`` is defined.
        reason: why not (``None`` when defined).
    """

    group: str
    kind: str
    layer: int | None
    n_trainable: int
    cosine: float
    dot: float
    norm_a: float
    norm_b: float
    defined: bool
    reason: str | None = None

    @classmethod
    def from_products(cls, gp: GroupProducts, k: int, label_a: str, label_b: str) -> GroupCosine:
        reason = gp.undefined_reason(k, label_a, label_b)
        na, nb = math.sqrt(gp.norm_a2), math.sqrt(gp.norm_b2[k])
        cos = float("nan") if reason else max(-1.0, min(1.0, gp.dots[k] / (na * nb)))
        return cls(gp.group.name, gp.group.kind, gp.group.layer, gp.n_trainable, cos,
                   gp.dots[k], na, nb, reason is None, reason)

    def to_row(self) -> dict[str, Any]:
        """``{group, kind, layer, n_trainable, cosine, dot, norm_a, norm_b, defined, reason}``."""
        return {"group": self.group, "kind": self.kind, "layer": self.layer,
                "n_trainable": self.n_trainable, "cosine": self.cosine, "dot": self.dot,
                "norm_a": self.norm_a, "norm_b": self.norm_b, "defined": self.defined,
                "reason": self.reason}


@dataclass(frozen=True)
class GradientCosines:
    """Per-group cosines of ``∇A`` and ``∇B`` (the result of :func:`layer_gradient_cosines`).

    Attributes:
        loss_a, loss_b: the losses' labels.
        groups: one :class:`GroupCosine` per group, ``all`` last.
        loss_values: ``(A, B)`` at the point where the gradients were taken.
        tied_embeddings: the head shares the embedding matrix (counted in ``embed``).
        meta: model and loss descriptions (JSON-ready).
    """

    loss_a: str
    loss_b: str
    groups: tuple[GroupCosine, ...]
    loss_values: tuple[float, float]
    tied_embeddings: bool
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __getitem__(self, group: str) -> GroupCosine:
        for g in self.groups:
            if g.group == group:
                return g
        raise SafetyGeoError(f"no group {group!r}; groups: {[g.group for g in self.groups]}")

    def value(self, group: str = "all") -> float:
        """The cosine of ``group``.

        Raises:
            UndefinedGradientError: the cosine is undefined there (the reason is given).
        """
        g = self[group]
        if not g.defined:
            raise UndefinedGradientError(f"cosine({self.loss_a}, {self.loss_b}) is undefined for "
                                         f"group {group!r}: {g.reason}")
        return g.cosine

    def to_frame(self, **constant: Any) -> Any:
        """Tidy table: one row per group (``constant`` columns first, then ``loss_a``,
        ``loss_b`` and :meth:`GroupCosine.to_row`)."""
        import pandas as pd

        return pd.DataFrame([{**constant, "loss_a": self.loss_a, "loss_b": self.loss_b,
                              **g.to_row()} for g in self.groups])

    def to_row(self) -> dict[str, Any]:
        """One summary row: the global cosine (NaN if undefined) and the losses."""
        g = self["all"]
        return {"loss_a": self.loss_a, "loss_b": self.loss_b, "cosine": g.cosine,
                "defined": g.defined, "reason": g.reason, "value_a": self.loss_values[0],
                "value_b": self.loss_values[1]}


def cosines_from_products(prod: GradientProducts, k: int = 0,
                          meta: Mapping[str, Any] | None = None) -> GradientCosines:
    """Build :class:`GradientCosines` for loss ``k`` of ``prod.labels[1:]``."""
    la, lb = prod.labels[0], prod.labels[1 + k]
    rows = tuple(GroupCosine.from_products(gp, k, la, lb) for gp in (*prod.per_group, prod.total))
    return GradientCosines(la, lb, rows, (prod.values[0], prod.values[1 + k]),
                           prod.groups.tied_embeddings, dict(meta or {}))


def layer_gradient_cosines(
    handle: ModelHandle,
    loss_a: LossSpec | LossFn,
    loss_b: LossSpec | LossFn,
    *,
    include_frozen: bool = False,
    label_a: str | None = None,
    label_b: str | None = None,
) -> GradientCosines:
    """Cosine between ``∇A`` and ``∇B`` per parameter group and globally.

    Args:
        handle: the model (gradients at its current weights, in eval mode).
        loss_a, loss_b: a :class:`LossSpec` (data set + loss kind) or a callable
            ``(model) -> scalar tensor``.
        include_frozen: also differentiate parameters with ``requires_grad=False``
            (otherwise they are left out and an all-frozen group is undefined).
        label_a, label_b: labels for callables (default: their ``__name__``; equal labels
            get ``a:`` / ``b:`` prefixes).

    Raises:
        FrozenModelError: nothing is trainable; NonFiniteError: a loss or gradient is not
        finite; DatasetFormatError / SettingsError: bad loss specs.
    """
    a = prepare_loss(handle, loss_a, label_a)
    b = prepare_loss(handle, loss_b, label_b)
    if a.label == b.label and a is not b:
        a.label, b.label = f"a:{a.label}", f"b:{b.label}"
    meta = {"model": handle.describe(),
            "loss_a": loss_a.describe() if isinstance(loss_a, LossSpec) else {"callable": a.label},
            "loss_b": loss_b.describe() if isinstance(loss_b, LossSpec) else {"callable": b.label},
            "include_frozen": include_frozen}
    prod = gradient_products(handle, a, [b], include_frozen=include_frozen)
    return cosines_from_products(prod, 0, meta)
