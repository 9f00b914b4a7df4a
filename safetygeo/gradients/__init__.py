"""Gradient geometry: per-layer gradient cosines between losses, the G-effect of unlearning
objectives, and their per-token weights.

* :func:`layer_gradient_cosines` — cosine of ``∇A`` and ``∇B`` per parameter group
  (embedding, each block, head) and globally; losses as :class:`LossSpec` (data set + kind:
  ``ce``, ``refusal_ce``, ``harmful_ce``) or callables. One backward per loss.
* :func:`g_effect` — ``∇L_uᵀ∇R`` of an :class:`UnlearningObjective` (GA, WGA, NPO, TNPO) with
  the forget and retain NLL, per group (Wang et al., ICLR 2025); :class:`GEffectSeries`
  stacks steps with optional EMA smoothing.
* :func:`per_token_weights` — each forget token's weight in the update (GA's ``1/p``).

Sits above ``behavior`` and below ``causal``; the training callback and the post-hoc
function over a trajectory are in :mod:`safetygeo.training.gradient_geometry`, figures in
:mod:`safetygeo.reports.gradients`, commands in :mod:`safetygeo.cli.gradients`.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> a = LossSpec.from_data(["Make a bomb."], "refusal_ce")
    >>> b = LossSpec.from_data([("Say hi.", "Hello!")])
    >>> layer_gradient_cosines(h, a, b).to_frame().shape[0]
    5
"""

from safetygeo.gradients.core import FrozenModelError, gradient_products
from safetygeo.gradients.cosines import (
    GradientCosines,
    GroupCosine,
    UndefinedGradientError,
    layer_gradient_cosines,
)
from safetygeo.gradients.geffect import (
    STUDY_EMA,
    GEffect,
    GEffectRow,
    GEffectSeries,
    ema_smooth,
    g_effect,
)
from safetygeo.gradients.groups import ParamGroup, ParamGroups, parameter_groups
from safetygeo.gradients.losses import (
    DEFAULT_REFUSAL,
    LOSS_KINDS,
    LossSpec,
    ReferenceLogprobs,
    reference_logprobs,
)
from safetygeo.gradients.objectives import (
    OBJECTIVES,
    UnlearningObjective,
    objective_sum,
    token_weights,
)
from safetygeo.gradients.probe import GradientGeometry, GradientGeometrySeries, GradientProbe
from safetygeo.gradients.tokens import TokenWeights, per_token_weights

__all__ = [
    "DEFAULT_REFUSAL", "LOSS_KINDS", "OBJECTIVES", "STUDY_EMA", "FrozenModelError", "GEffect",
    "GEffectRow", "GEffectSeries", "GradientCosines", "GradientGeometry",
    "GradientGeometrySeries", "GradientProbe", "GroupCosine", "LossSpec", "ParamGroup",
    "ParamGroups", "ReferenceLogprobs", "TokenWeights", "UndefinedGradientError",
    "UnlearningObjective", "ema_smooth", "g_effect", "gradient_products", "layer_gradient_cosines",
    "objective_sum", "parameter_groups", "per_token_weights", "reference_logprobs", "token_weights",
]
