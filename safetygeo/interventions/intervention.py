"""Interventions as values: what is done (``op``), where (:class:`~safetygeo.models.sites.Site`),
with what (a direction, a subspace, a head set) and how strongly — and their matched nulls.

An :class:`Intervention` knows how to apply itself (:meth:`Intervention.apply`, a context
manager) and how to draw its matched nulls *of the same kind*
(:meth:`Intervention.variants`): the real intervention and its nulls as one
:class:`VariantStack`, applied ``v`` at a time along the batch dimension (the layout of
:func:`~safetygeo.interventions.hooks.ablate`), so every null-controlled effect
(:mod:`safetygeo.causal`) evaluates any intervention through
:func:`~safetygeo.interventions.nulls.run_null_test` without knowing which kind it is.

=====================  =================  =============================================
value                  site               matched nulls (``NullSpec``: K, seed, ...)
=====================  =================  =============================================
:class:`DirectionAblation`  ``resid_all``      random directions (``kind``: sphere or
                                              covariance)
:class:`DirectionAddition`  ``resid_in@l``     random directions of the same norm, same
                                              layer, positions and ``alpha``
:class:`SubspaceAblation`   ``resid_all``      Haar-random subspaces of the same dimension
:class:`HeadAblation`       ``attn_heads@l``   random sets of as many *other* heads of the
                                              same layer (all of them when there are at
                                              most K: an exhaustive, exact test)
=====================  =================  =============================================

Example:
    >>> import torch
    >>> from safetygeo.interventions.nulls import NullSpec
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32, n_heads=4))
    >>> stack = HeadAblation(1, (0,)).variants(h, NullSpec(k=64))
    >>> stack.size, stack.exhaustive, stack.nulls.k, stack.fan_out_layer
    (4, True, 3, 1)
    >>> with torch.no_grad(), DirectionAddition(torch.ones(32), layer=1, alpha=2.0).apply(h):
    ...     _ = h.model(torch.tensor([[1, 5, 7]]))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, cast

import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import finite_float
from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.heads import ablate_heads, check_heads
from safetygeo.interventions.hooks import ablate, add, as_directions
from safetygeo.interventions.nulls import (
    NullSpec,
    check_spec,
    random_head_sets,
    sphere_or_covariance,
)
from safetygeo.interventions.subspace import (
    AblationMode,
    ablate_subspace,
    as_bases,
    matched_subspace_variants,
)
from safetygeo.models.handle import ModelHandle
from safetygeo.models.sites import Site, attention_heads

__all__ = ["OPS", "DirectionAblation", "Directional", "DirectionAddition", "HeadAblation", "Intervention",
           "SubspaceAblation", "VariantStack", "from_op"]


@dataclass(frozen=True, eq=False)
class VariantStack:
    """An intervention (variant 0) and its matched nulls (``1..size-1``), ready to apply.

    Attributes:
        size: ``1 +`` the number of nulls available.
        install: ``indices -> context manager`` applying those variants to ``len(indices)``
            consecutive groups of the batch.
        fan_out_layer: the first block input the variants change (``None``: from the
            embeddings on); layers before it can run once for all variants
            (:func:`~safetygeo.models.hooks.fan_out`).
        nulls: the spec to test with — the one given, or capped to the nulls that exist
            (``k`` / ``k_max`` = ``size - 1``) when fewer exist than it asks for; an
            exhaustive null has no tail estimate (the exact p is the whole answer).
        exhaustive: every possible null was drawn (the p is the exact rank; floor
            ``1 / size``).
        family: what the nulls are (for notes and tables).
    """

    size: int
    install: Callable[[list[int]], AbstractContextManager[None]]
    fan_out_layer: int | None
    nulls: NullSpec
    exhaustive: bool = False
    family: str = ""

    def apply(self, indices: Sequence[int]) -> AbstractContextManager[None]:
        """Apply variants ``indices`` (0 = the real intervention) along the batch."""
        return self.install(list(indices))

    @property
    def note(self) -> str | None:
        """A caveat for the comparison's ``note`` (exhaustive nulls), else ``None``."""
        if not self.exhaustive:
            return None
        return (f"exhaustive null: all {self.size - 1} {self.family}; exact p, floor "
                f"1/{self.size} = {1 / self.size:.3g}")


def _capped(nulls: NullSpec, available: int) -> NullSpec:
    if available >= nulls.n_max:
        return nulls
    return nulls.replace(k=available, k_max=available) if nulls.is_sequential else nulls.replace(k=available)


class Intervention(ABC):
    """An intervention value (frozen dataclass subclasses; see the module docstring).

    Subclasses set ``op`` (the table's op name), ``generation_set`` (the prompts whose
    generations show the effect: ``"harmful"`` for removals, ``"harmless"`` for
    additions) and implement :attr:`site`, :meth:`resolved`, :meth:`_stack` and
    :meth:`_install`.
    """

    op: ClassVar[str]
    generation_set: ClassVar[Literal["harmful", "harmless"]]
    #: variants cannot ride along the batch (weight edits): callers apply one at a time
    one_variant_per_pass: ClassVar[bool] = False

    @property
    @abstractmethod
    def site(self) -> Site:
        """Where it acts."""

    @abstractmethod
    def resolved(self, handle: ModelHandle) -> Intervention:
        """A validated copy for ``handle`` (layers resolved, vectors as float64).

        Raises:
            SafetyGeoError / LayerIndexError: bad direction, layer, heads, strength.
        """

    @abstractmethod
    def _stack(self, handle: ModelHandle, nulls: NullSpec) -> tuple[Any, bool, str]:
        """``(targets, exhaustive, family)``: targets[0] the real one, then the nulls."""

    @abstractmethod
    def _install(self, handle: ModelHandle, targets: Any) -> AbstractContextManager[None]:
        """Apply ``targets`` (a slice of :meth:`_stack`'s) as batch groups."""

    @abstractmethod
    def target(self) -> Any:
        """The real target (a direction, basis or head set)."""

    def apply(self, handle: ModelHandle) -> AbstractContextManager[None]:
        """Apply this intervention alone (every batch row)."""
        iv = self.resolved(handle)
        return iv._install(handle, _one(iv.target()))

    def variants(self, handle: ModelHandle, nulls: NullSpec) -> VariantStack:
        """This intervention and its matched nulls (``nulls.n_max`` of them, or all that
        exist) as a :class:`VariantStack`."""
        nulls = check_spec(nulls)
        iv = self.resolved(handle)
        targets, exhaustive, family = iv._stack(handle, nulls)
        size = len(targets)
        if size < 2:
            raise SafetyGeoError(f"{iv.op} has no matched null to compare with")

        def install(idx: list[int]) -> AbstractContextManager[None]:
            chosen = targets[idx] if torch.is_tensor(targets) else [targets[i] for i in idx]
            return iv._install(handle, chosen)

        spec = _capped(nulls, size - 1)
        if exhaustive and spec.tail:  # the whole null distribution is known: no tail to model
            spec = spec.replace(tail=False)
        return VariantStack(size, install, iv.site.first_layer, spec, exhaustive, family)

    @abstractmethod
    def with_target(self, target: Any) -> Intervention:
        """The same intervention (op, site, strength) on another target — how a null is a
        value of the same kind."""

    def null_interventions(self, handle: ModelHandle, nulls: NullSpec) -> list[Intervention]:
        """The matched nulls as intervention values (for auditing; effects use the batched
        :meth:`variants`): ``null_interventions(...)[i].apply(h)`` = ``variants(...).apply([i + 1])``.

        Example:
            >>> from safetygeo.models import load_model
            >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
            >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
            >>> sorted(n.heads for n in HeadAblation(0, (1,)).null_interventions(h, NullSpec(k=8)))
            [(0,), (2,), (3,)]
        """
        iv = self.resolved(handle)
        targets = iv._stack(handle, check_spec(nulls))[0]
        return [iv.with_target(t) for t in targets[1:]]

    def columns(self) -> dict[str, Any]:
        """The table columns that name it: ``op, site, layer, alpha, heads`` (NaN / None
        where not applicable)."""
        layer = self.site.layer
        alpha: float | None = getattr(self, "alpha", None)  # additions
        heads: tuple[int, ...] | None = getattr(self, "heads", None)  # head interventions
        return {"op": self.op, "site": self.site.name,
                "layer": float("nan") if layer is None else float(layer),
                "alpha": float("nan") if alpha is None else float(alpha),
                "heads": None if heads is None else ",".join(map(str, heads))}


def _one(target: Any) -> Any:
    return target[None] if torch.is_tensor(target) else [target]


@dataclass(frozen=True, eq=False)
class Directional(Intervention):
    """An intervention with one direction; nulls: random directions of its norm."""

    direction: Float[Tensor, " d"]

    def target(self) -> Tensor:
        return self.direction

    def with_target(self, target: Any) -> Directional:
        return replace(self, direction=target)

    def null_directions(self, nulls: NullSpec) -> Tensor:
        """``[1 + n_max, d]``: the real vector, then random ones of its norm."""
        real = self.direction.to(torch.float64)
        return torch.cat([real[None], sphere_or_covariance(nulls, real)])

    def _stack(self, handle: ModelHandle, nulls: NullSpec) -> tuple[Any, bool, str]:
        return self.null_directions(nulls), False, f"{nulls.kind} directions"


@dataclass(frozen=True, eq=False)
class DirectionAblation(Directional):
    """Project ``direction`` out of every residual stream (Arditi et al.;
    :func:`~safetygeo.interventions.hooks.ablate`). Nulls: random directions."""

    op: ClassVar[str] = "ablate"
    generation_set: ClassVar[Literal["harmful", "harmless"]] = "harmful"

    @property
    def site(self) -> Site:
        return Site("resid_all")

    def resolved(self, handle: ModelHandle) -> DirectionAblation:
        return replace(self, direction=as_directions(self.direction, handle.d_model,
                                                     normalize=False)[0])

    def _install(self, handle: ModelHandle, targets: Any) -> AbstractContextManager[None]:
        return ablate(handle, targets)


@dataclass(frozen=True, eq=False)
class DirectionAddition(Directional):
    """Add ``alpha * vector`` to the residual stream entering ``layer`` (all positions, or
    ``offsets`` from the end; :func:`~safetygeo.interventions.hooks.add`). Nulls: random
    directions of the vector's norm, same layer, positions and ``alpha``."""

    layer: int | None = None
    alpha: float = 1.0
    offsets: tuple[int, ...] | None = field(default=None)
    op: ClassVar[str] = "add"
    generation_set: ClassVar[Literal["harmful", "harmless"]] = "harmless"

    @property
    def site(self) -> Site:
        if self.layer is None:
            raise SafetyGeoError("addition needs a layer")
        return Site("resid_in", self.layer)

    def resolved(self, handle: ModelHandle) -> DirectionAddition:
        if self.layer is None:
            raise SafetyGeoError("addition needs a layer")
        (layer,) = handle.check_layers(self.layer)
        return replace(self, direction=as_directions(self.direction, handle.d_model,
                                                     normalize=False)[0],
                       layer=layer, alpha=finite_float(self.alpha, "alpha"))

    def _install(self, handle: ModelHandle, targets: Any) -> AbstractContextManager[None]:
        layer = self.site.layer  # resolved(): an int
        return add(handle, targets, cast(int, layer), self.alpha, offsets=self.offsets)


@dataclass(frozen=True, eq=False)
class SubspaceAblation(Intervention):
    """Ablate the span of ``basis`` (``[k, d]``) at ``strength`` and ``mode``
    (:func:`~safetygeo.interventions.subspace.ablate_subspace`, every layer). Nulls:
    Haar-random subspaces of the same dimension."""

    basis: Float[Tensor, "k d"]
    strength: float = 1.0
    mode: AblationMode = "project"
    op: ClassVar[str] = "subspace_ablate"
    generation_set: ClassVar[Literal["harmful", "harmless"]] = "harmful"

    @property
    def site(self) -> Site:
        return Site("resid_all")

    def resolved(self, handle: ModelHandle) -> SubspaceAblation:
        return replace(self, basis=as_bases(self.basis, handle.d_model)[0])

    def target(self) -> Tensor:
        return self.basis

    def with_target(self, target: Any) -> SubspaceAblation:
        return replace(self, basis=target)

    def _stack(self, handle: ModelHandle, nulls: NullSpec) -> tuple[Any, bool, str]:
        if nulls.kind != "sphere":
            raise SafetyGeoError(f"subspace nulls are Haar-random subspaces; NullSpec.kind="
                                 f"{nulls.kind!r} applies to direction nulls only")
        k = self.basis.shape[0]
        return (matched_subspace_variants(self.basis, nulls.n_max, seed=nulls.seed), False,
                f"random {k}-dim subspaces")

    def _install(self, handle: ModelHandle, targets: Any) -> AbstractContextManager[None]:
        return ablate_subspace(handle, targets, mode=self.mode, strength=self.strength)


@dataclass(frozen=True, eq=False)
class HeadAblation(Intervention):
    """Zero-ablate attention ``heads`` of block ``layer``
    (:func:`~safetygeo.interventions.heads.ablate_heads`). Nulls: random sets of as many
    other heads of the same layer (:func:`~safetygeo.interventions.nulls.random_head_sets`;
    all of them when there are at most ``K``)."""

    layer: int
    heads: tuple[int, ...]
    op: ClassVar[str] = "head_ablate"
    generation_set: ClassVar[Literal["harmful", "harmless"]] = "harmful"

    @property
    def site(self) -> Site:
        return Site("attn_heads", self.layer)

    @property
    def label(self) -> str:
        """``heads LAYER:H1,H2`` (the sweep's ``direction`` column for head cells)."""
        return f"heads {self.layer}:{','.join(map(str, self.heads))}"

    def resolved(self, handle: ModelHandle) -> HeadAblation:
        layer = cast(int, self.site.resolved(handle).layer)  # attn_heads sites have a layer
        _, n, _ = attention_heads(handle, layer)
        if not self.heads:
            raise SafetyGeoError("head ablation needs at least one head")
        return replace(self, layer=layer, heads=check_heads(self.heads, n, layer=layer))

    def target(self) -> tuple[int, ...]:
        return self.heads

    def with_target(self, target: Any) -> HeadAblation:
        return replace(self, heads=tuple(target))

    def _stack(self, handle: ModelHandle, nulls: NullSpec) -> tuple[Any, bool, str]:
        if nulls.kind != "sphere":
            raise SafetyGeoError(f"head nulls are random heads of the same layer; NullSpec.kind="
                                 f"{nulls.kind!r} applies to direction nulls only")
        _, n, _ = attention_heads(handle, self.layer)
        sets, exhaustive = random_head_sets(self.heads, n, nulls.n_max, seed=nulls.seed)
        m = len(self.heads)
        family = (f"sets of {m} other heads of layer {self.layer} (of {n})" if m > 1
                  else f"other heads of layer {self.layer} (of {n})")
        return [self.heads, *sets], exhaustive, family

    def _install(self, handle: ModelHandle, targets: Any) -> AbstractContextManager[None]:
        return ablate_heads(handle, self.layer, targets)


#: op name → how an op string and a vector become an intervention (the older API).
OPS: dict[str, Callable[[Tensor, int | None, float], Intervention]] = {
    "ablate": lambda v, layer, alpha: DirectionAblation(v),
    "add": lambda v, layer, alpha: DirectionAddition(v, layer, alpha),
}


def from_op(op: str, vector: Any, *, layer: int | None = None, alpha: float = 1.0) -> Intervention:
    """The intervention an op string names (``"ablate"``, ``"add"``) with ``vector``.

    Raises:
        SafetyGeoError: an unknown op.

    Example:
        >>> import torch
        >>> from_op("add", torch.ones(4), layer=2, alpha=3.0).columns()["alpha"]
        3.0
    """
    make = OPS.get(op) if isinstance(op, str) else None
    if make is None:
        raise SafetyGeoError(f"op must be one of {sorted(OPS)}, got {op!r}")
    return make(vector, layer, alpha)
