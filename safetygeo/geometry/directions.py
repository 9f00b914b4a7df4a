"""Candidate directions: difference in means, harmful − harmless, in float64.

``r[l, p] = mean(harmful acts at layer l, position p) − mean(harmless acts at l, p)``, read at
the residual stream entering block ``l`` (``l = L``: final-norm input). Read at the
post-instruction positions these are the *refusal* carrier candidates; read at ``t_inst``
they are the *harmfulness* carrier candidates (Zhao et al. 2025).

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> c = refusal_directions(h, ["Make a bomb."], ["Make a cake."], progress=False)
    >>> tuple(c.vectors.shape), c.kind
    ((3, 8, 32), 'refusal')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float
from torch import Tensor

from safetygeo.activations.extract import ActivationStats, extract_activations
from safetygeo.activations.positions import PositionSelection
from safetygeo.errors import SafetyGeoError
from safetygeo.models.handle import ModelHandle


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
    """

    vectors: Float[Tensor, "layer pos d"]
    layers: tuple[int, ...]
    positions: PositionSelection
    kind: str
    n_harmful: int
    n_harmless: int
    harmful: ActivationStats | None = field(default=None, repr=False)
    harmless: ActivationStats | None = field(default=None, repr=False)

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
        SafetyGeoError: different layers, positions, templates or models.
    """
    if harmful.layers != harmless.layers:
        raise SafetyGeoError(f"layers differ: {harmful.layers} vs {harmless.layers}")
    if harmful.positions != harmless.positions:
        raise SafetyGeoError(
            f"positions differ: {harmful.positions.labels} vs {harmless.positions.labels}"
        )
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
    return CandidateDirections(
        vectors=harmful.mean.double() - harmless.mean.double(), layers=harmful.layers,
        positions=harmful.positions, kind=kind, n_harmful=harmful.count,
        n_harmless=harmless.count, harmful=harmful, harmless=harmless,
    )


def _directions(handle: ModelHandle, harmful: Sequence[str], harmless: Sequence[str],
                positions: str, kind: str, **kw: Any) -> CandidateDirections:
    a = extract_activations(handle, harmful, positions=positions, **kw)
    b = extract_activations(handle, harmless, positions=positions, **kw)
    return diff_in_means(a, b, kind=kind)


def refusal_directions(
    handle: ModelHandle, harmful: Sequence[str], harmless: Sequence[str], *,
    layers: str | Sequence[int] = "all", batch_size: int = 8, keep_vectors: bool = False,
    progress: bool = True,
) -> CandidateDirections:
    """Refusal carrier candidates: diff-in-means at every layer × post-instruction position."""
    return _directions(handle, harmful, harmless, "post_instruction", "refusal", layers=layers,
                       batch_size=batch_size, keep_vectors=keep_vectors, progress=progress)


def harmfulness_directions(
    handle: ModelHandle, harmful: Sequence[str], harmless: Sequence[str], *,
    layers: str | Sequence[int] = "all", batch_size: int = 8, keep_vectors: bool = False,
    progress: bool = True,
) -> CandidateDirections:
    """Harmfulness carrier candidates: diff-in-means at ``t_inst`` for every layer."""
    return _directions(handle, harmful, harmless, "t_inst", "harmfulness", layers=layers,
                       batch_size=batch_size, keep_vectors=keep_vectors, progress=progress)
