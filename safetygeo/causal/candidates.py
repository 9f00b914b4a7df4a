"""Carrier candidates read from a model: diff-in-means at every layer × position.

The math is :func:`safetygeo.geometry.directions.diff_in_means` (pure, on activation
statistics); these functions run the extraction for it. Refusal candidates are read at the
post-instruction positions, harmfulness candidates at ``t_inst`` (Zhao et al. 2025).

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
from typing import Any

from safetygeo.activations.extract import extract_activations
from safetygeo.geometry.directions import CandidateDirections, diff_in_means
from safetygeo.models.handle import ModelHandle

__all__ = ["harmfulness_directions", "refusal_directions"]


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
