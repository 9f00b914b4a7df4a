"""Interventions: directional ablation / activation addition hooks, weight orthogonalization,
and the matched random-direction null sampler (:class:`NullSpec`).

The null-controlled *effects* built on these live in :mod:`safetygeo.causal`.
"""

from safetygeo.interventions.hooks import ablate, add
from safetygeo.interventions.nulls import NullSpec, matched_variants, random_directions
from safetygeo.interventions.orthogonalize import orthogonalize_, orthogonalized_copy

__all__ = ["NullSpec", "ablate", "add", "matched_variants", "orthogonalize_",
           "orthogonalized_copy", "random_directions"]
