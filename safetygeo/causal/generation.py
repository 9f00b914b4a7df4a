"""Behaviour-level intervention effect: change of the refusal rate *on generations* under a
direction vs matched random-direction nulls.

:func:`safetygeo.causal.effects.intervention_effect` measures how an intervention moves the
*logit* refusal score; this measures what users see — whether completions refuse.
Protocol:

1. generate every prompt without intervention and label it (``classifier``; *refused* is
   :func:`safetygeo.behavior.classify.is_refusal`: full or partial refusal or empty) →
   base rate;
2. generate under the intervention (an :class:`~safetygeo.interventions.intervention.Intervention`:
   a direction ablated everywhere or added at a layer, a subspace, attention heads) and
   under ``K`` matched nulls of its kind (:class:`~safetygeo.interventions.nulls.NullSpec`:
   random directions of the same norm, uniform on the sphere or covariance-matched; random
   subspaces; random other heads), batched as variants along the batch dimension
   (``nulls.max_variants`` variants per forward pass), greedy by default;
3. effect = rate under the direction − base rate, for the real direction and each null
   (with a sequential ``NullSpec(h=...)`` the nulls are generated in batches until the
   test is settled; :func:`~safetygeo.interventions.nulls.run_null_test`);
   the result is a :class:`GenerationEffect` — a :class:`~safetygeo.results.NullComparison`
   (two-sided p centred on the null, z) with a paired bootstrap CI over prompts for the
   real effect (per-prompt refused-under-intervention minus refused-at-base), the base
   and real rates, and the generations for auditing.

With sampling, every variant of a prompt uses the same sampling seed (common random
numbers), so the real-vs-null comparison is not blurred by sampling noise.

Example:
    >>> from safetygeo.behavior.generate import GenerationSettings
    >>> from safetygeo.interventions.nulls import NullSpec
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> starts_with_refusal = lambda c: "full_refusal" if c.startswith("I") else "compliance"
    >>> eff = generation_refusal_effect(pm.handle, pm.direction, "ablate", pm.harmful[:4],
    ...     nulls=NullSpec(k=3), settings=GenerationSettings(max_new_tokens=2),
    ...     classifier=starts_with_refusal, n_boot=50)
    >>> eff.base_rate, eff.real_rate, eff.p
    (1.0, 0.0, 0.25)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import finite_float, positive_int, prompt_list
from safetygeo.behavior.classify import classify_refusal
from safetygeo.behavior.generate import Generations, GenerationSettings, generate, generate_variants
from safetygeo.behavior.metrics import mean_score, refused_indicator
from safetygeo.causal.effects import as_intervention, draw_comparisons
from safetygeo.interventions.intervention import Intervention
from safetygeo.interventions.nulls import NullSpec, check_spec, run_null_test
from safetygeo.models.handle import ModelHandle
from safetygeo.results import NullComparison

__all__ = ["GenerationEffect", "generation_refusal_effect"]


@dataclass(frozen=True, eq=False)
class GenerationEffect(NullComparison):
    """A :class:`~safetygeo.results.NullComparison` of the generation refusal rate, with the
    rates and generations behind it.

    Attributes (beyond NullComparison's):
        op, site, layer, alpha, heads: the intervention
            (:meth:`~safetygeo.interventions.intervention.Intervention.columns`).
        n: number of prompts.
        base_rate: refusal rate without intervention; ``real_rate``: under the direction.
        base_generations, real_generations: the completions, for auditing.
    """

    op: str = "ablate"
    layer: int | None = None
    alpha: float = 1.0
    site: str = "resid_all"
    heads: str | None = None
    n: int = 0
    base_rate: float = float("nan")
    real_rate: float = float("nan")
    base_generations: Generations | None = field(default=None, repr=False)
    real_generations: Generations | None = field(default=None, repr=False)

    def to_row(self, *, keep_null: bool = False) -> dict[str, Any]:
        return {**super().to_row(keep_null=keep_null), "op": self.op, "site": self.site,
                "layer": self.layer, "alpha": self.alpha, "heads": self.heads, "n": self.n, "base_rate": self.base_rate,
                "real_rate": self.real_rate}


def generation_refusal_effect(
    handle: ModelHandle,
    intervention: Intervention | Float[Tensor, " d"],
    op: Literal["ablate", "add"] | None = None,
    prompts: Sequence[str] = (),
    *,
    layer: int | None = None,
    alpha: float = 1.0,
    nulls: NullSpec = NullSpec(k=16, max_variants=8),
    settings: GenerationSettings = GenerationSettings(max_new_tokens=32),
    classifier: Callable[[str], str] = classify_refusal,
    batch_size: int = 8,
    n_boot: int = 1000,
    ci: float = 0.95,
    progress: bool = False,
) -> GenerationEffect:
    """Refusal-rate change on generations under an intervention vs matched nulls of its
    kind (``nulls.k``, or a sequential test of at most ``nulls.k_max``; all that exist when
    fewer do).

    Args:
        handle: the model.
        intervention: an :class:`~safetygeo.interventions.intervention.Intervention`; or
            (older API) a raw direction with ``op`` (``"ablate"``: its unit vector, every
            layer and position; ``"add"``: ``alpha * direction`` at ``layer``; nulls get
            its norm).
        prompts: e.g. harmful prompts (bypass) or harmless ones (induced refusal).
        nulls: null directions (``nulls.seed`` also seeds the bootstrap).
        settings: decoding (greedy by default; sampling uses common random numbers).
        classifier: ``completion -> label`` (ours by default).
        batch_size: prompts per forward pass.
        n_boot, ci: paired bootstrap of the real effect.
    """
    prompts = prompt_list(prompts)
    alpha = finite_float(alpha, "alpha")
    batch_size = positive_int(batch_size, "batch_size")
    iv = as_intervention(intervention, op, layer=layer, alpha=alpha).resolved(handle)
    stack = iv.variants(handle, check_spec(nulls))
    base = generate(handle, prompts, settings, batch_size=batch_size, progress=progress)
    base_ref = refused_indicator(base.completions, classifier)
    real_ref: list[np.ndarray] = []
    real_gens: list[Generations] = []

    def evaluate(idx: list[int]) -> np.ndarray:
        rates = np.empty(len(idx))
        for start in range(0, len(idx), nulls.max_variants):
            part = idx[start:start + nulls.max_variants]
            with torch.no_grad(), stack.apply(part):
                gens = generate_variants(handle, prompts, len(part), settings,
                                         batch_size=batch_size, progress=progress)
            for j, g in enumerate(gens):
                refused = refused_indicator(g.completions, classifier)
                rates[start + j] = refused.mean() - base_ref.mean()
                if part[j] == 0:
                    real_ref.append(refused)
                    real_gens.append(g)
        return rates[:, None]

    draws = run_null_test(stack.nulls, evaluate, [("d_refusal_rate_gen", "two-sided")])
    diff = mean_score(real_ref[0] - base_ref, metric="d_refusal_rate_gen", n_boot=n_boot, ci=ci,
                      seed=nulls.seed)
    cmp = replace(draw_comparisons(draws, stack)["d_refusal_rate_gen"], ci_low=diff.ci_low,
                  ci_high=diff.ci_high)
    cols = iv.columns()
    return GenerationEffect(
        **{f.name: getattr(cmp, f.name) for f in fields(NullComparison)},
        op=iv.op, site=cols["site"], heads=cols["heads"],
        layer=None if cols["layer"] != cols["layer"] else int(cols["layer"]),
        alpha=alpha if cols["alpha"] != cols["alpha"] else cols["alpha"], n=len(base_ref), base_rate=float(base_ref.mean()),
        real_rate=float(real_ref[0].mean()), base_generations=base, real_generations=real_gens[0])
