"""Candidate directions: difference in means, harmful − harmless, in float64.

``r[l, p] = mean(harmful acts at layer l, position p) − mean(harmless acts at l, p)``, read at
the residual stream entering block ``l`` (``l = L``: final-norm input). Read at the
post-instruction positions these are the *refusal* carrier candidates; read at ``t_inst``
they are the *harmfulness* carrier candidates (Zhao et al. 2025).

This module is pure math on activation statistics; reading them from a model is
:func:`safetygeo.causal.candidates.refusal_directions` / ``harmfulness_directions``.

Example:
    >>> import torch
    >>> from safetygeo.activations.extract import ActivationStats
    >>> from safetygeo.activations.positions import resolve_positions
    >>> pos = resolve_positions("post_instruction", 2)
    >>> a = ActivationStats(torch.ones(2, 2, 4), 3, (0, 1), pos, 2)
    >>> b = ActivationStats(torch.zeros(2, 2, 4), 3, (0, 1), pos, 2)
    >>> diff_in_means(a, b).vector(1, "eoi-1").tolist()
    [1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo.activations.extract import ActivationStats
from safetygeo.activations.positions import PositionSelection
from safetygeo.errors import NonFiniteError, SafetyGeoError


@dataclass
class CandidateDirections:
    """Diff-in-means vectors per layer × position, with what they were computed from.

    Attributes:
        vectors: float64 ``[layer, pos, d]`` raw (unnormalized) differences.
        layers: layer index of each slot.
        positions: the positions (offsets from the end and labels).
        kind: ``"refusal"`` (post-instruction), ``"harmfulness"`` (``t_inst``) or ``"custom"``.
        n_harmful, n_harmless: prompts behind each mean.
        harmful, harmless: the per-class statistics (kept for bootstrap / provenance).
        method: the finder (``"diff-in-means"``; ``"pca"``, ``"som"``, ``"rdo"``, ``"rco"``,
            ``"repind"`` from :mod:`safetygeo.causal.finders`).
        components: ``[layer, pos, k, d]`` unit directions of a multi-direction finder, most
            important first (``None`` for diff-in-means). ``vectors`` then holds the first
            component scaled to the diff-in-means norm of its slot, so additions of every
            finder use the same strength.
    """

    vectors: Float[Tensor, "layer pos d"]
    layers: tuple[int, ...]
    positions: PositionSelection
    kind: str
    n_harmful: int
    n_harmless: int
    harmful: ActivationStats | None = field(default=None, repr=False)
    harmless: ActivationStats | None = field(default=None, repr=False)
    method: str = "diff-in-means"
    components: Float[Tensor, "layer pos k d"] | None = field(default=None, repr=False)

    def basis(self, layer: int, position: str | int, k: int | None = None) -> Float[Tensor, "k d"]:
        """Orthonormal basis of the first ``k`` directions at ``layer`` and ``position``
        (ordered Gram–Schmidt: row ``i`` spans what direction ``i`` adds); without
        ``components`` the unit direction ``[1, d]``.

        Raises:
            SafetyGeoError: ``k`` larger than the directions available.
        """
        from safetygeo.geometry.finders import orthonormalize

        if self.components is None:
            dirs = self.unit(layer, position)[None]
        else:
            if layer not in self.layers:
                raise SafetyGeoError(f"layer {layer} not among candidate layers {self.layers}")
            dirs = self.components[self.layers.index(layer), self.positions.index(position)]
        k = len(dirs) if k is None else k
        if not 1 <= k <= len(dirs):
            raise SafetyGeoError(f"{self.method} has {len(dirs)} directions here; asked for {k}")
        return orthonormalize(dirs[:k])

    def vector(self, layer: int, position: str | int) -> Float[Tensor, " d"]:
        """Raw difference vector at ``layer`` and ``position`` (label or offset)."""
        if layer not in self.layers:
            raise SafetyGeoError(f"layer {layer} not among candidate layers {self.layers}")
        return self.vectors[self.layers.index(layer), self.positions.index(position)]

    def unit(self, layer: int, position: str | int) -> Float[Tensor, " d"]:
        """Unit-norm direction; zero-norm candidates raise."""
        v = self.vector(layer, position)
        n = v.norm()
        if n <= 1e-12:
            raise SafetyGeoError(f"candidate at layer {layer}, position {position!r} has zero norm")
        return v / n

    @property
    def norms(self) -> Float[Tensor, "layer pos"]:
        return self.vectors.norm(dim=-1)


def diff_in_means(
    harmful: ActivationStats, harmless: ActivationStats, *, kind: str = "custom"
) -> CandidateDirections:
    """``harmful.mean − harmless.mean`` after checking the two are comparable.

    Raises:
        SafetyGeoError: different layers, positions, widths (``d_model``), templates or
            models.
        NonFiniteError: NaN / inf activation means.
    """
    if harmful.layers != harmless.layers:
        raise SafetyGeoError(f"layers differ: {harmful.layers} vs {harmless.layers}")
    if harmful.positions != harmless.positions:
        raise SafetyGeoError(
            f"positions differ: {harmful.positions.labels} vs {harmless.positions.labels}"
        )
    if harmful.mean.shape[-1] != harmless.mean.shape[-1]:
        raise SafetyGeoError(
            f"harmful and harmless activations have different widths (d_model "
            f"{harmful.mean.shape[-1]} vs {harmless.mean.shape[-1]}): they come from different "
            "models")
    th, tl = harmful.meta.get("template"), harmless.meta.get("template")
    if th is not None and tl is not None and (th["prefix"], th["suffix"]) != (
        tl["prefix"], tl["suffix"]
    ):
        raise SafetyGeoError(
            "harmful and harmless activations were extracted with different chat templates "
            f"(suffix {th['suffix']!r} vs {tl['suffix']!r}); positions would not correspond"
        )
    mh, ml = harmful.meta.get("model_id"), harmless.meta.get("model_id")
    if mh is not None and ml is not None and mh != ml:
        raise SafetyGeoError(f"harmful and harmless come from different models: {mh!r} vs {ml!r}")
    for name, st in (("harmful", harmful), ("harmless", harmless)):
        bad = ~torch.isfinite(st.mean)
        if bad.any():
            raise NonFiniteError(
                f"{name} activation means contain {int(bad.sum())} NaN/inf values (first at "
                f"layer {st.layers[int(bad.nonzero()[0, 0])]}); the model produced non-finite "
                "activations (overflow in low precision?)")
    return CandidateDirections(
        vectors=harmful.mean.double() - harmless.mean.double(), layers=harmful.layers,
        positions=harmful.positions, kind=kind, n_harmful=harmful.count,
        n_harmless=harmless.count, harmful=harmful, harmless=harmless,
    )
