"""Geometry of safety: pure math on activation statistics and directions — no model calls.

Definitions follow the literature exactly (see each module): diff-in-means candidates
(:mod:`.directions`), Roy–Vetterli effective rank and participation ratio (:mod:`.rank`),
principal angles and drift (:mod:`.angles`, :mod:`.subspaces`), geometric harmfulness–
refusal coupling (:mod:`.coupling`), PCA-of-differences and SOM direction finders
(:mod:`.finders`), refusal cones and random subspaces (:mod:`.cones`). Reading candidates from a model, carrier selection and
every intervention live in :mod:`safetygeo.causal`.

Names are imported lazily: ``import safetygeo.geometry.angles`` loads numpy and scipy only.

Example:
    >>> from safetygeo.geometry import effective_rank
    >>> round(effective_rank([[1.0, 0.0], [0.0, 1.0]]), 6)
    2.0
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "cosine": "angles", "direction_angle": "angles", "drift": "angles", "drift_summary": "angles",
    "orthonormal_basis": "angles", "principal_angles": "angles",
    "cosine_rows": "coupling", "geometric_coupling": "coupling",
    "CandidateDirections": "directions", "diff_in_means": "directions",
    "effective_rank": "rank", "participation_ratio": "rank", "spectrum": "rank",
    "subspace_rank_report": "rank",
    "carrier_drift": "subspaces", "carrier_rank": "subspaces", "direction_cosine": "subspaces",
    "FinderResult": "finders", "orthonormalize": "finders", "pca_directions": "finders",
    "som_directions": "finders",
    "random_subspaces": "cones", "sample_cone": "cones", "subspace_overlap": "cones",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"safetygeo.geometry.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'safetygeo.geometry' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
