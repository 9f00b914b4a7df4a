"""Causal analysis: carrier candidates and admissible selection, null-controlled intervention
effects (logit and generation level), causal H/R coupling, resumable sweeps, direction
finders beside diff-in-means (PCA, SOM, RDO, RCO, RepInd) and the refusals-vs-KL frontier
with the minimal refusal dimension, and abliteration (held-out refusals/N @ KL of a kernel
edit, the Optuna kernel search with random-direction nulls, shippable checkpoints).

Every real-vs-null comparison here is a :class:`~safetygeo.results.NullComparison`; nulls
are specified by :class:`~safetygeo.interventions.nulls.NullSpec`; refusal is scored with
the carrier selection's :class:`~safetygeo.activations.refusal.RefusalScoring`.
"""

from safetygeo.causal.abliteration import search_abliteration, write_checkpoint
from safetygeo.causal.candidates import harmfulness_directions, refusal_directions
from safetygeo.causal.carriers import (
    CarrierSelection,
    CarrierThresholds,
    null_ablation_kl,
    score_candidates,
    select_refusal_carrier,
)
from safetygeo.causal.cones import cone_dimension, cone_property
from safetygeo.causal.coupling import causal_coupling, readout
from safetygeo.causal.effects import RefusalBaseline, intervention_effect, refusal_baseline
from safetygeo.causal.finders import (
    DirectionOptimization,
    OptimizedDirections,
    finder_directions,
    rco,
    rdo,
    repind_direction,
    representational_independence,
)
from safetygeo.causal.frontier import (
    FrontierPoint,
    RefusalDimension,
    SubspaceEdit,
    frontier_point,
    min_refusal_dimension,
    refusal_frontier,
)
from safetygeo.causal.generation import GenerationEffect, generation_refusal_effect
from safetygeo.causal.sweep import read_sweep, run_sweep

__all__ = [
    "null_ablation_kl",
    "CarrierSelection", "CarrierThresholds", "DirectionOptimization", "FrontierPoint",
    "GenerationEffect", "OptimizedDirections", "RefusalBaseline", "RefusalDimension",
    "SubspaceEdit", "cone_dimension", "cone_property", "finder_directions", "frontier_point",
    "min_refusal_dimension", "rco", "rdo", "refusal_frontier", "repind_direction",
    "representational_independence",
    "causal_coupling", "generation_refusal_effect", "harmfulness_directions",
    "intervention_effect", "read_sweep", "readout", "refusal_baseline", "refusal_directions",
    "run_sweep", "score_candidates", "search_abliteration", "select_refusal_carrier",
    "write_checkpoint",
]
