"""Model edits as :class:`~safetygeo.interventions.intervention.Intervention` values, so that
the refusals-vs-KL frontier and the abliteration search evaluate any of them, and their
matched nulls, through :func:`~safetygeo.interventions.nulls.run_null_test` without knowing
which kind they are.

=================================  ==============================  =========================
value                              what                            matched nulls
=================================  ==============================  =========================
:class:`WindowAblation`            ablate a subspace at strength   Haar-random subspaces of
                                   ``s`` in a layer window (writes  the same dimension (the
                                   or rescaled inputs; optionally   same biprojection)
                                   biprojected per layer)
:class:`MagnitudePreservingAblation`  magnitude-preserving rows    as above; one variant per
                                   (``mpoa_ablate``)               forward pass
:class:`KernelAbliteration`        heretic-style kernel edit of    random directions in every
                                   the weights                     slot (one for all slots
                                   (:mod:`~safetygeo.interventions.kernel`)  with a global index),
                                                                   the same kernel; one
                                                                   variant per pass
=================================  ==============================  =========================

``one_variant_per_pass`` says that variants cannot ride along the batch (weight edits, or a
map that depends on the basis through the weights); callers then apply them one at a time.

Example:
    >>> import torch
    >>> from safetygeo.interventions.nulls import NullSpec
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> stack = WindowAblation(torch.randn(2, 32), strength=0.5, layers=(1,)).variants(h, NullSpec(k=3))
    >>> stack.size, stack.family
    (4, 'random 2-dim subspaces')
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.intervention import Intervention
from safetygeo.interventions.kernel import AbliterationKernel, block_directions, edited_weights
from safetygeo.interventions.nulls import NullSpec, random_directions
from safetygeo.interventions.subspace import (
    AblationMode,
    ablate_subspace,
    as_bases,
    biprojected_bases,
    matched_subspace_variants,
    mpoa_ablate,
)
from safetygeo.models.handle import ModelHandle
from safetygeo.models.sites import Site

__all__ = ["KernelAbliteration", "MagnitudePreservingAblation", "WindowAblation"]


def _sphere_only(nulls: NullSpec, what: str) -> None:
    if nulls.kind != "sphere":
        raise SafetyGeoError(f"{what} nulls are uniformly random; NullSpec.kind={nulls.kind!r} "
                             "applies to direction nulls only")


@dataclass(frozen=True, eq=False)
class WindowAblation(Intervention):
    """Ablate ``span(basis)`` at ``strength`` in ``layers`` (``mode`` ``project``: the writes
    of those blocks, weight-equivalent; ``norm_preserving``: those layer inputs, rescaled to
    their norm; :func:`~safetygeo.interventions.subspace.ablate_subspace`). With
    ``harmless_means`` (``[L+1, d]``) the basis is biprojected per layer
    (:func:`~safetygeo.interventions.subspace.biprojected_bases`), and so are the nulls."""

    basis: Tensor
    strength: float = 1.0
    layers: tuple[int, ...] | None = None
    mode: AblationMode = "project"
    harmless_means: Tensor | None = field(default=None, repr=False)
    op: ClassVar[str] = "subspace_ablate"
    generation_set: ClassVar[Literal["harmful", "harmless"]] = "harmful"
    one_variant_per_pass: ClassVar[bool] = False

    @property
    def site(self) -> Site:
        return Site("resid_all")

    def resolved(self, handle: ModelHandle) -> WindowAblation:
        b = self.basis if self.basis.ndim == 3 else as_bases(self.basis, handle.d_model)[0]
        return replace(self, basis=b)

    def target(self) -> Tensor:
        return self.basis

    def with_target(self, target: Any) -> WindowAblation:
        return replace(self, basis=target)

    def _per_layer(self, b: Tensor) -> Tensor:
        if self.harmless_means is None:
            return b
        return biprojected_bases(b, self.harmless_means)

    def _stack(self, handle: ModelHandle, nulls: NullSpec) -> tuple[Any, bool, str]:
        _sphere_only(nulls, "subspace")
        flat = self.basis if self.basis.ndim == 2 else self.basis[0]
        allb = matched_subspace_variants(flat, nulls.n_max, seed=nulls.seed)
        if self.harmless_means is not None:
            allb = torch.stack([self._per_layer(b) for b in allb])
        return allb, False, f"random {flat.shape[0]}-dim subspaces"

    def apply(self, handle: ModelHandle) -> AbstractContextManager[None]:
        iv = self.resolved(handle)
        return iv._install(handle, iv._per_layer(iv.basis)[None])

    def _install(self, handle: ModelHandle, targets: Any) -> AbstractContextManager[None]:
        return ablate_subspace(handle, targets, mode=self.mode, strength=self.strength,
                               layers=self.layers, per_layer=self.harmless_means is not None)


@dataclass(frozen=True, eq=False)
class MagnitudePreservingAblation(WindowAblation):
    """Magnitude-preserving row ablation (heretic's "full" row normalization at a constant
    weight; :func:`~safetygeo.interventions.subspace.mpoa_ablate`) of ``span(basis)``."""

    op: ClassVar[str] = "mpoa_ablate"
    one_variant_per_pass: ClassVar[bool] = True

    def _install(self, handle: ModelHandle, targets: Any) -> AbstractContextManager[None]:
        if len(targets) != 1:
            raise SafetyGeoError("a magnitude-preserving ablation applies one variant at a time")
        return mpoa_ablate(handle, targets[0], strength=self.strength, layers=self.layers,
                           per_layer=self.harmless_means is not None)


@dataclass(frozen=True, eq=False)
class KernelAbliteration(Intervention):
    """The weight edit of :mod:`safetygeo.interventions.kernel` with ``directions``
    (``[L+1, d]``, one per slot), ``kernel`` and ``harmless_means`` (projected modes),
    applied in place and undone after the ``with`` block. Nulls: random unit directions in
    every slot (the same one in all slots when the kernel has a global direction index),
    edited with the same kernel."""

    directions: Tensor
    kernel: AbliterationKernel = field(default_factory=AbliterationKernel)
    harmless_means: Tensor | None = field(default=None, repr=False)
    op: ClassVar[str] = "abliterate"
    generation_set: ClassVar[Literal["harmful", "harmless"]] = "harmful"
    one_variant_per_pass: ClassVar[bool] = True

    @property
    def site(self) -> Site:
        return Site("resid_all")

    def resolved(self, handle: ModelHandle) -> KernelAbliteration:
        block_directions(self.directions, self.kernel, handle.n_layers, self.harmless_means)
        return replace(self, directions=torch.as_tensor(self.directions).detach().double().cpu())

    def target(self) -> Tensor:
        return self.directions

    def with_target(self, target: Any) -> KernelAbliteration:
        return replace(self, directions=target)

    def describe(self) -> dict[str, Any]:
        """The frontier table's columns: ``edit, mode, k, strength`` (largest weight),
        ``layers`` (the direction scope)."""
        k = self.kernel
        scope = ("per layer" if k.direction_index is None
                 else f"slot {k.direction_index:.3g}")
        return {"edit": "abliterate", "mode": f"{k.norm}+{k.projected}", "k": 1,
                "strength": max(k.attention.max_weight, k.mlp.max_weight), "layers": scope}

    def _stack(self, handle: ModelHandle, nulls: NullSpec) -> tuple[Any, bool, str]:
        _sphere_only(nulls, "abliteration")
        n_slots, d = self.directions.shape
        n = nulls.n_max
        if self.kernel.direction_index is not None:
            one = random_directions(n, d, seed=nulls.seed)
            rand = one[:, None, :].expand(n, n_slots, d)
            family = "random directions (one for all blocks), same kernel"
        else:
            rand = random_directions(n * n_slots, d, seed=nulls.seed).reshape(n, n_slots, d)
            family = "random directions per layer, same kernel"
        return torch.cat([self.directions[None], rand]), False, family

    def _install(self, handle: ModelHandle, targets: Any) -> AbstractContextManager[None]:
        if len(targets) != 1:
            raise SafetyGeoError("a weight edit applies one variant at a time")
        return edited_weights(handle, targets[0], self.kernel, self.harmless_means)
