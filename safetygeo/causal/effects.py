"""Null-controlled effects of one intervention on the logit refusal score and on KL.

:func:`intervention_effect` applies one
:class:`~safetygeo.interventions.intervention.Intervention` (a direction ablated or added,
a subspace ablated, attention heads ablated) and ``K`` matched nulls of the same kind
(random directions with the same operation, layer, positions, strength and norm; random
subspaces of the same dimension; random other heads of the same layer;
:class:`~safetygeo.interventions.nulls.NullSpec`), all evaluated in batched forward passes
(variants ride along the batch dimension), and
returns one :class:`~safetygeo.results.NullComparison` per metric (with a sequential
``NullSpec(h=...)`` the nulls are drawn in batches and the cell stops once all three
metrics are settled; :func:`~safetygeo.interventions.nulls.run_null_test`):

* ``d_refusal_harmful`` / ``d_refusal_harmless``: change of the mean logit refusal score
  (two-sided, centred on the null distribution);
* ``kl_harmless``: mean KL(base ‖ intervened) of the next-token distribution (one-sided,
  greater).

Refusal is scored with a :class:`~safetygeo.activations.refusal.RefusalScoring` — pass the
carrier selection's (``sel.scoring``) so every step scores the same refusal definition.

Example:
    >>> from safetygeo.interventions.nulls import NullSpec
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> eff = intervention_effect(pm.handle, pm.direction * 4, "add", layer=2,
    ...                           harmful=pm.harmful[:4], harmless=pm.harmless[:4],
    ...                           nulls=NullSpec(k=8))
    >>> eff["d_refusal_harmless"].p <= 1 / 9 + 1e-12
    True
    >>> from safetygeo.interventions.intervention import HeadAblation
    >>> heads = intervention_effect(pm.handle, HeadAblation(0, (0,)), harmful=pm.harmful[:4],
    ...                             harmless=pm.harmless[:4], nulls=NullSpec(k=8))
    >>> heads["d_refusal_harmful"].k, heads["d_refusal_harmful"].note[:16]
    (3, 'exhaustive null:')

The older call ``intervention_effect(handle, direction, "ablate" | "add", layer=, alpha=)``
builds the intervention from the op string (:func:`~safetygeo.interventions.intervention.from_op`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import finite_float, positive_int, prompt_list
from safetygeo.activations.logits import last_logprobs
from safetygeo.activations.losses import kl_from_logprobs
from safetygeo.activations.refusal import RefusalScoring, refusal_score_from_logprobs
from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.intervention import Intervention, VariantStack, from_op
from safetygeo.interventions.nulls import NullDraws, NullSpec, check_spec, run_null_test
from safetygeo.models.handle import ModelHandle
from safetygeo.results import NullComparison
from safetygeo.stats.pvalues import Alternative

__all__ = ["METRICS", "Op", "RefusalBaseline", "as_intervention", "draw_comparisons",
           "intervention_effect", "refusal_baseline"]

Op = Literal["ablate", "add"]
METRICS = ("d_refusal_harmful", "d_refusal_harmless", "kl_harmless")
_ALTERNATIVE: dict[str, Alternative] = {"d_refusal_harmful": "two-sided",
                                        "d_refusal_harmless": "two-sided", "kl_harmless": "greater"}


@dataclass(frozen=True)
class RefusalBaseline:
    """Un-intervened read-outs shared by every cell of a sweep.

    Attributes:
        harmful, harmless: mean logit refusal score of each prompt set.
        lp_harmless: ``[n_harmless, vocab]`` float64 next-token log-probs (for KL).
        token_ids: the refusal token ids the scores used.
    """

    harmful: float
    harmless: float
    lp_harmless: Tensor
    token_ids: tuple[int, ...]


def refusal_baseline(handle: ModelHandle, harmful: Sequence[str], harmless: Sequence[str], *,
                     scoring: RefusalScoring = RefusalScoring(),
                     batch_size: int = 16) -> RefusalBaseline:
    """Refusal scores and harmless next-token log-probs without intervention."""
    ids = scoring.ids(handle.tokenizer)
    lp_h = last_logprobs(handle, prompt_list(harmful, "harmful"), batch_size=batch_size,
                         progress=False)
    lp_l = last_logprobs(handle, prompt_list(harmless, "harmless"), batch_size=batch_size,
                         progress=False).double()
    return RefusalBaseline(float(refusal_score_from_logprobs(lp_h, ids).mean()),
                           float(refusal_score_from_logprobs(lp_l, ids).mean()), lp_l, tuple(ids))


def _metrics(handle: ModelHandle, stack: VariantStack, variants: list[int],
             harmful: Sequence[str], harmless: Sequence[str], base: RefusalBaseline,
             batch_size: int, max_variants: int) -> np.ndarray:
    """[n_variants, 3] metrics, computed ``max_variants`` variants per forward pass.

    Harmful and harmless prompts share the passes; the layers before the first one the
    intervention changes run once per batch and fan out into the variants there.
    """
    out = np.empty((len(variants), len(METRICS)))
    prompts, n_h = [*harmful, *harmless], len(harmful)
    ids = list(base.token_ids)
    for start in range(0, len(variants), max_variants):
        idx = list(range(start, min(start + max_variants, len(variants))))
        with stack.apply([variants[i] for i in idx]):
            lp = last_logprobs(handle, prompts, batch_size=batch_size, repeat=len(idx),
                               fan_out_layer=stack.fan_out_layer,
                               progress=False).reshape(len(idx), len(prompts), -1)
        lp_h, lp_l = lp[:, :n_h], lp[:, n_h:].double()
        out[idx, 0] = (refusal_score_from_logprobs(lp_h, ids).mean(-1) - base.harmful).numpy()
        out[idx, 1] = (refusal_score_from_logprobs(lp_l, ids).mean(-1) - base.harmless).numpy()
        out[idx, 2] = kl_from_logprobs(base.lp_harmless, lp_l).mean(-1).numpy()
    return out


def as_intervention(intervention: Intervention | Tensor, op: str | None, *,
                    layer: int | None, alpha: float) -> Intervention:
    """``intervention`` itself, or the one ``op`` names with that direction (older API).

    Raises:
        SafetyGeoError: an Intervention with an op / layer / alpha too, or a direction
            without an op.
    """
    if isinstance(intervention, Intervention):
        if op is not None or layer is not None or alpha != 1.0:
            raise SafetyGeoError("pass either an Intervention or a direction with op / layer / "
                                 "alpha, not both")
        return intervention
    if op is None:
        raise SafetyGeoError("a bare direction needs an op ('ablate' or 'add'); or pass an "
                             "Intervention")
    return from_op(op, intervention, layer=layer, alpha=finite_float(alpha, "alpha"))


def draw_comparisons(draws: NullDraws, stack: VariantStack) -> dict[str, NullComparison]:
    """Every metric's comparison, with the stack's note (exhaustive nulls) added."""
    out = draws.comparisons()
    if stack.note is None:
        return out
    return {k: replace(c, note=stack.note if c.note is None else f"{c.note}; {stack.note}")
            for k, c in out.items()}


def intervention_effect(
    handle: ModelHandle,
    intervention: Intervention | Float[Tensor, " d"],
    op: Op | None = None,
    *,
    harmful: Sequence[str],
    harmless: Sequence[str],
    layer: int | None = None,
    alpha: float = 1.0,
    nulls: NullSpec = NullSpec(),
    scoring: RefusalScoring = RefusalScoring(),
    batch_size: int = 16,
    baseline: RefusalBaseline | None = None,
) -> dict[str, NullComparison]:
    """Effects of one intervention next to matched nulls of its kind (``nulls.k`` of them,
    or a sequential test of at most ``nulls.k_max``; all that exist when there are fewer —
    e.g. the other heads of a layer — with ``note`` saying the test is exhaustive).

    Args:
        intervention: an :class:`~safetygeo.interventions.intervention.Intervention`; or
            (older API) a raw direction with ``op`` (``"ablate"``: every layer and
            position; ``"add"``: ``alpha * direction`` at ``layer``).
        harmful, harmless: prompts (a bare string is one prompt).
        nulls: how many nulls, of which kind, seed, and how many per pass.
        scoring: the refusal definition (use the carrier selection's ``sel.scoring``).
        batch_size: prompts per forward pass.
        baseline: precomputed :func:`refusal_baseline` (a sweep computes it once); must
            have been computed with the same prompts and scoring.

    Returns:
        ``{metric: NullComparison}`` for ``d_refusal_harmful``, ``d_refusal_harmless``
        (two-sided, centred on the null) and ``kl_harmless`` (one-sided, greater). Each
        carries the nulls its p used (``n_null_used``), the stopping reason and, with
        ``nulls.tail``, a tail estimate; ``k`` (the same for all three) is the nulls drawn.
    """
    harmful, harmless = prompt_list(harmful, "harmful"), prompt_list(harmless, "harmless")
    alpha = finite_float(alpha, "alpha")
    batch_size = positive_int(batch_size, "batch_size")
    iv = as_intervention(intervention, op, layer=layer, alpha=alpha)
    stack = iv.variants(handle, check_spec(nulls))
    base = baseline or refusal_baseline(handle, harmful, harmless, scoring=scoring,
                                        batch_size=batch_size)

    def evaluate(idx: list[int]) -> np.ndarray:
        with torch.no_grad():
            return _metrics(handle, stack, idx, harmful, harmless, base, batch_size,
                            nulls.max_variants)

    draws = run_null_test(stack.nulls, evaluate,
                          [(name, _ALTERNATIVE[name]) for name in METRICS])
    return draw_comparisons(draws, stack)
