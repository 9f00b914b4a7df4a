"""Interventions: directional ablation / activation addition hooks, attention-head ablation,
weight orthogonalization, the matched null samplers (:class:`NullSpec`: random directions,
subspaces, other heads), subspace ablation (plain, norm-preserving, biprojected,
magnitude-preserving; activation and weight space), the abliteration kernel (heretic's
layer kernel, the peers' row / column norm-preserving edits and projections;
:mod:`.kernel`), and :class:`Intervention` values that apply themselves and draw their own
matched nulls (model edits among them: :mod:`.edits`).

The null-controlled *effects* built on these live in :mod:`safetygeo.causal`.
"""

from safetygeo.interventions.edits import (
    KernelAbliteration,
    MagnitudePreservingAblation,
    WindowAblation,
)
from safetygeo.interventions.heads import ablate_heads
from safetygeo.interventions.hooks import ablate, add
from safetygeo.interventions.intervention import (
    DirectionAblation,
    DirectionAddition,
    HeadAblation,
    Intervention,
    SubspaceAblation,
)
from safetygeo.interventions.kernel import AbliterationKernel, LayerKernel, abliterated_copy
from safetygeo.interventions.nulls import NullSpec, matched_variants, random_directions
from safetygeo.interventions.orthogonalize import orthogonalize_, orthogonalized_copy
from safetygeo.interventions.subspace import (
    ablate_subspace,
    add_vector,
    biprojected_bases,
    matched_subspace_variants,
    mpoa_ablate,
)
from safetygeo.interventions.subspace_weights import ablated_copy

__all__ = ["AbliterationKernel", "KernelAbliteration", "LayerKernel",
           "MagnitudePreservingAblation", "WindowAblation", "abliterated_copy",
           "DirectionAblation", "DirectionAddition", "HeadAblation", "Intervention", "NullSpec",
           "SubspaceAblation", "ablate", "ablate_heads", "ablate_subspace", "ablated_copy", "add", "add_vector",
           "biprojected_bases", "matched_subspace_variants", "matched_variants", "mpoa_ablate",
           "orthogonalize_", "orthogonalized_copy", "random_directions"]
