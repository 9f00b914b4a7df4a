"""``ablation``: ablating the admissible carrier against matched random directions.

:func:`safetygeo.causal.intervention_effect` with op ``"ablate"`` on the held-out (test)
prompts, refusal scored with the carrier selection's scoring. Rows (one per
:class:`~safetygeo.results.NullComparison`): ``d_refusal_harmful``, ``d_refusal_harmless``,
``kl_harmless`` with ``value`` = the real effect, ``p`` from the ``k`` nulls, and the nulls'
2.5–97.5 % band (``null_q025``, ``null_q975``); ``layer`` / ``position`` = the carrier.
"""

from __future__ import annotations

from dataclasses import dataclass

from safetygeo.errors import SafetyGeoError
from safetygeo.reports.registry import (
    CheckpointContext,
    ProtocolStep,
    StepOutput,
    null_row,
    register_step,
)
from safetygeo.reports.steps.carriers import carrier_of

__all__ = ["AblationSettings"]


@dataclass(frozen=True)
class AblationSettings:
    """Settings of the ``ablation`` step (a :class:`~safetygeo.interventions.NullSpec`).

    Attributes:
        k: matched random directions (p floor ``1 / (k + 1)``).
        kind: ``"sphere"`` (uniform directions).
        seed: null-direction seed.
        max_variants: directions per forward pass.
    """

    k: int = 64
    kind: str = "sphere"
    seed: int = 0
    max_variants: int = 16

    def __post_init__(self) -> None:
        if self.kind != "sphere":
            raise SafetyGeoError("kind: only 'sphere' nulls are available in reports")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise SafetyGeoError(f"k must be an int >= 1, got {self.k!r}")


def run(ctx: CheckpointContext, s: AblationSettings) -> StepOutput:
    from safetygeo.causal import intervention_effect
    from safetygeo.interventions import NullSpec

    carrier = carrier_of(ctx)
    if carrier is None:
        return StepOutput([{"metric": m, "value": float("nan"), "method": "null-controlled",
                            "note": "no admissible carrier"}
                           for m in ("d_refusal_harmful", "d_refusal_harmless", "kl_harmless")])
    layer, position, vector, scoring = carrier
    eff = intervention_effect(ctx.handle, vector, "ablate",
                              harmful=ctx.sets.split("harmful", "test"),
                              harmless=ctx.sets.split("harmless", "test"),
                              nulls=NullSpec(k=s.k, seed=s.seed, max_variants=s.max_variants),
                              scoring=scoring, batch_size=ctx.batch_size)
    return StepOutput([null_row(e, layer=layer, position=position) for e in eff.values()])


register_step(ProtocolStep(
    "ablation", AblationSettings, run, needs=("carriers",), sets=("harmful", "harmless"),
    order=50, description="ablating the admissible carrier vs matched random directions"))
