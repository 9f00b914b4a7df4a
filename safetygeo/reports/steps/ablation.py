"""``ablation``: ablating the admissible carrier against matched random directions.

:func:`safetygeo.causal.intervention_effect` with op ``"ablate"`` on the held-out (test)
prompts, refusal scored with the carrier selection's scoring. Rows (one per
:class:`~safetygeo.results.NullComparison`): ``d_refusal_harmful``, ``d_refusal_harmless``,
``kl_harmless`` with ``value`` = the real effect, ``p`` the exact Monte Carlo p of the
nulls (sequential by default, as in sweeps: ``n`` = the nulls drawn), ``p_tail`` the tail
estimate where no null reaches the real effect (NaN otherwise), and the nulls' 2.5–97.5 %
band (``null_q025``, ``null_q975``); ``layer`` / ``position`` = the carrier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.nulls import NullSpec
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
    """Settings of the ``ablation`` step.

    Attributes:
        nulls: the matched random directions and the test, as in sweeps
            (:class:`~safetygeo.interventions.NullSpec`; default
            :meth:`NullSpec.sequential() <safetygeo.interventions.NullSpec.sequential>`:
            up to 64 nulls, stopped early where the effect is clearly null, tail p-values
            where no null reaches it). In a protocol: ``ablation: {nulls: {k: 16}}`` for a
            fixed K = 16 (p floor 1/17), ``ablation: {nulls: {h: 4, k: 200}}``, ...

    Example:
        >>> AblationSettings().nulls == NullSpec.sequential()
        True
    """

    nulls: NullSpec = field(default_factory=NullSpec.sequential)

    def __post_init__(self) -> None:
        if not isinstance(self.nulls, NullSpec):
            raise SafetyGeoError(f"nulls must be a NullSpec (a mapping in a protocol), got "
                                 f"{type(self.nulls).__name__}")
        if self.nulls.kind != "sphere":
            raise SafetyGeoError("nulls.kind: only 'sphere' nulls are available in reports")


def run(ctx: CheckpointContext, s: AblationSettings) -> StepOutput:
    from safetygeo.causal import intervention_effect

    carrier = carrier_of(ctx)
    if carrier is None:
        return StepOutput([{"metric": m, "value": float("nan"), "method": "null-controlled",
                            "note": "no admissible carrier"}
                           for m in ("d_refusal_harmful", "d_refusal_harmless", "kl_harmless")])
    layer, position, vector, scoring = carrier
    eff = intervention_effect(ctx.handle, vector, "ablate",
                              harmful=ctx.sets.split("harmful", "test"),
                              harmless=ctx.sets.split("harmless", "test"),
                              nulls=s.nulls, scoring=scoring, batch_size=ctx.batch_size)
    return StepOutput([null_row(e, layer=layer, position=position) for e in eff.values()])


register_step(ProtocolStep(
    "ablation", AblationSettings, run, needs=("carriers",), sets=("harmful", "harmless"),
    order=50, description="ablating the admissible carrier vs matched random directions"))
