"""Null-controlled effects of one intervention on the logit refusal score and on KL.

:func:`intervention_effect` applies one operation with a real direction and with ``K``
matched random directions (same operation, layer, positions, strength; for addition the
same norm as the real vector; :class:`~safetygeo.interventions.nulls.NullSpec`), all
evaluated in batched forward passes (directions ride along the batch dimension), and
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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import finite_float, positive_int, prompt_list
from safetygeo.activations.logits import last_logprobs
from safetygeo.activations.refusal import RefusalScoring, refusal_score_from_logprobs
from safetygeo.interventions.hooks import ablate, add
from safetygeo.interventions.nulls import NullSpec, matched_variants, run_null_test
from safetygeo.models.handle import ModelHandle
from safetygeo.results import NullComparison
from safetygeo.stats.pvalues import Alternative

__all__ = ["METRICS", "Op", "RefusalBaseline", "intervention_effect", "refusal_baseline"]

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


def _metrics(handle: ModelHandle, variants: Tensor, op: Op, layer: int | None, alpha: float,
             harmful: Sequence[str], harmless: Sequence[str], base: RefusalBaseline,
             batch_size: int, max_variants: int) -> np.ndarray:
    """[n_variants, 3] metrics, computed ``max_variants`` directions per forward pass.

    Harmful and harmless prompts share the passes; for addition the layers before ``layer``
    run once per batch and fan out into the variants there.
    """
    out = np.empty((len(variants), len(METRICS)))
    prompts, n_h = [*harmful, *harmless], len(harmful)
    ids = list(base.token_ids)
    for start in range(0, len(variants), max_variants):
        idx = list(range(start, min(start + max_variants, len(variants))))
        ctx = ablate(handle, variants[idx]) if op == "ablate" else add(
            handle, variants[idx], layer, alpha)  # type: ignore[arg-type]
        with ctx:
            lp = last_logprobs(handle, prompts, batch_size=batch_size, repeat=len(idx),
                               fan_out_layer=layer if op == "add" else None,
                               progress=False).reshape(len(idx), len(prompts), -1)
        lp_h, lp_l = lp[:, :n_h], lp[:, n_h:].double()
        out[idx, 0] = (refusal_score_from_logprobs(lp_h, ids).mean(-1) - base.harmful).numpy()
        out[idx, 1] = (refusal_score_from_logprobs(lp_l, ids).mean(-1) - base.harmless).numpy()
        blp = base.lp_harmless
        out[idx, 2] = (blp.exp() * (blp - lp_l)).sum(-1).mean(-1).numpy()
    return out


def intervention_effect(
    handle: ModelHandle,
    direction: Float[Tensor, " d"],
    op: Op,
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
    """Effects of one intervention next to matched random directions (``nulls.k`` of them,
    or a sequential test of at most ``nulls.k_max``).

    Args:
        direction: the real direction (raw vector; ablation uses its unit direction,
            addition adds ``alpha * direction``).
        op: ``"ablate"`` (every layer and position) or ``"add"`` (at ``layer``).
        harmful, harmless: prompts (a bare string is one prompt).
        alpha: addition strength (finite).
        nulls: how many null directions, of which kind, seed, and how many per pass.
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
    variants, layer = matched_variants(handle, direction, op, nulls, layer=layer)
    base = baseline or refusal_baseline(handle, harmful, harmless, scoring=scoring,
                                        batch_size=batch_size)

    def evaluate(idx: list[int]) -> np.ndarray:
        with torch.no_grad():
            return _metrics(handle, variants[idx], op, layer, alpha, harmful, harmless, base,
                            batch_size, nulls.max_variants)

    draws = run_null_test(nulls, evaluate,
                          [(name, _ALTERNATIVE[name]) for name in METRICS])
    return draws.comparisons()
