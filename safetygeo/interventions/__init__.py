"""Causal interventions (ablation, addition, weight orthogonalization) against matched nulls."""

from safetygeo.interventions.hooks import ablate, add
from safetygeo.interventions.nulls import benjamini_hochberg, empirical_p, random_directions, zscore
from safetygeo.interventions.orthogonalize import orthogonalize_, orthogonalized_copy
from safetygeo.interventions.sweep import intervention_effect, run_sweep, sweep_figure

__all__ = [
    "ablate", "add", "benjamini_hochberg", "empirical_p", "intervention_effect", "orthogonalize_",
    "orthogonalized_copy", "random_directions", "run_sweep", "sweep_figure", "zscore",
]
