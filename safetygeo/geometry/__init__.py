"""Geometry of safety: carriers, admissible selection, rank, angles, drift, H/R coupling.

Definitions follow the literature exactly (see each module): diff-in-means candidates
(:mod:`.directions`), Arditi et al.'s admissible-carrier filters with a held-out test split
(:mod:`.carriers`), Roy–Vetterli effective rank and participation ratio (:mod:`.rank`),
principal angles and drift (:mod:`.angles`, :mod:`.subspaces`), harmfulness–refusal
coupling (:mod:`.coupling`), and bootstrap CIs (:mod:`.stats`).
"""

from safetygeo.geometry.angles import (
    cosine,
    direction_angle,
    drift,
    orthonormal_basis,
    principal_angles,
)
from safetygeo.geometry.carriers import CarrierSelection, CarrierThresholds, select_refusal_carrier
from safetygeo.geometry.coupling import CausalEffect, causal_coupling, geometric_coupling
from safetygeo.geometry.directions import (
    CandidateDirections,
    diff_in_means,
    harmfulness_directions,
    refusal_directions,
)
from safetygeo.geometry.rank import effective_rank, participation_ratio, subspace_rank_report
from safetygeo.geometry.stats import BootstrapResult, bootstrap_ci, bootstrap_indices
from safetygeo.geometry.subspaces import carrier_drift, carrier_rank, direction_cosine

__all__ = [
    "BootstrapResult", "CandidateDirections", "CarrierSelection", "CarrierThresholds",
    "CausalEffect", "bootstrap_ci", "bootstrap_indices", "carrier_drift", "carrier_rank",
    "causal_coupling", "cosine", "diff_in_means", "direction_angle", "direction_cosine", "drift",
    "effective_rank", "geometric_coupling", "harmfulness_directions", "orthonormal_basis",
    "participation_ratio", "principal_angles", "refusal_directions", "select_refusal_carrier",
    "subspace_rank_report",
]
