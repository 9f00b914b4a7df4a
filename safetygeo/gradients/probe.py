"""What to measure at each checkpoint of a trajectory (a settings object) and the tables it
produces: per-layer gradient cosines of two losses and G-effects of unlearning objectives.

A :class:`GradientProbe` is measured at one point with :meth:`GradientProbe.measure`
(→ :class:`GradientGeometry`), during training by
:class:`safetygeo.training.gradient_geometry.GradientGeometryCallback` (written to the
trajectory's ``callbacks.jsonl``), or after training over every saved checkpoint by
:func:`safetygeo.training.gradient_geometry.gradient_geometry_along`; both give a
:class:`GradientGeometrySeries` with the same numbers for the same checkpoint.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> harm = LossSpec.from_data([("Make a bomb.", "Sure, mix it.")], "harmful_ce")
    >>> benign = LossSpec.from_data([("Add 2 and 3.", "5.")])
    >>> probe = GradientProbe(loss_a=harm, loss_b=benign, objectives=("ga",), forget=harm,
    ...                       retain=benign)
    >>> geo = probe.measure(h, step=0)
    >>> series = GradientGeometrySeries.from_records([geo.to_record()])
    >>> len(series.cosines), sorted(series.g_effect.risk.unique())
    (5, ['retain', 'unlearn'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from safetygeo.errors import SettingsError
from safetygeo.gradients.cosines import GradientCosines, layer_gradient_cosines
from safetygeo.gradients.geffect import GEffect, GEffectSeries, g_effect
from safetygeo.gradients.losses import LossSpec, ReferenceLogprobs
from safetygeo.gradients.objectives import UnlearningObjective
from safetygeo.models.handle import ModelHandle

__all__ = ["GradientGeometry", "GradientGeometrySeries", "GradientProbe"]


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


@dataclass(frozen=True)
class GradientProbe:
    """Gradient measurements to take at a checkpoint.

    Attributes:
        loss_a, loss_b: the two losses whose per-layer gradient cosine is measured (e.g.
            harmful-compliance CE vs benign CE); both or neither.
        objectives: unlearning objectives whose G-effects are measured (names or
            :class:`UnlearningObjective`); need ``forget`` and ``retain``.
        forget, retain: the G-effect's forget and retain sets.
        include_frozen: also differentiate ``requires_grad=False`` parameters.

    Raises:
        SettingsError: nothing to measure, one loss of the pair missing, objectives without
            forget / retain sets.
    """

    loss_a: LossSpec | None = None
    loss_b: LossSpec | None = None
    objectives: tuple[UnlearningObjective, ...] = ()
    forget: LossSpec | None = None
    retain: LossSpec | None = None
    include_frozen: bool = False

    def __post_init__(self) -> None:
        objs = tuple(UnlearningObjective(o) if isinstance(o, str) else o for o in self.objectives)
        object.__setattr__(self, "objectives", objs)
        if (self.loss_a is None) != (self.loss_b is None):
            raise SettingsError("GradientProbe needs both loss_a and loss_b (or neither)")
        if objs and (self.forget is None or self.retain is None):
            raise SettingsError("GradientProbe objectives need a forget and a retain set")
        if self.loss_a is None and not objs:
            raise SettingsError("GradientProbe measures nothing: give loss_a/loss_b and/or objectives")
        for name in ("loss_a", "loss_b", "forget", "retain"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, LossSpec):
                raise SettingsError(f"GradientProbe.{name} must be a LossSpec, got {type(v).__name__}")

    @property
    def needs_reference(self) -> bool:
        return any(o.needs_reference for o in self.objectives)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (loss specs by kind, size and hash)."""
        d = lambda s: None if s is None else s.describe()  # noqa: E731
        return {"loss_a": d(self.loss_a), "loss_b": d(self.loss_b),
                "objectives": [o.to_dict() for o in self.objectives], "forget": d(self.forget),
                "retain": d(self.retain), "include_frozen": self.include_frozen}

    def measure(self, handle: ModelHandle, *, step: int | None = None,
                reference: ReferenceLogprobs | ModelHandle | None = None) -> GradientGeometry:
        """Measure at ``handle``'s current weights.

        Args:
            reference: NPO / TNPO's reference (``None``: the model itself).
        """
        cos = None
        if self.loss_a is not None and self.loss_b is not None:
            cos = layer_gradient_cosines(handle, self.loss_a, self.loss_b,
                                         include_frozen=self.include_frozen)
        ges = tuple(g_effect(handle, o, self.forget, self.retain, reference=reference,  # type: ignore[arg-type]
                             include_frozen=self.include_frozen, step=step)
                    for o in self.objectives)
        return GradientGeometry(cos, ges, step)


@dataclass(frozen=True)
class GradientGeometry:
    """The measurements of a :class:`GradientProbe` at one point.

    Attributes:
        cosines: per-layer cosines (``None`` if the probe has no loss pair).
        g_effects: one :class:`GEffect` per objective.
        step: training step (``None`` outside a trajectory).
    """

    cosines: GradientCosines | None
    g_effects: tuple[GEffect, ...]
    step: int | None = None

    def cosine_frame(self) -> Any:
        import pandas as pd

        return self.cosines.to_frame(step=self.step) if self.cosines else pd.DataFrame()

    def g_effect_frame(self) -> Any:
        import pandas as pd

        if not self.g_effects:
            return pd.DataFrame()
        return pd.concat([g.to_frame() for g in self.g_effects], ignore_index=True)

    def to_record(self) -> dict[str, Any]:
        """JSON-ready ``{"step", "cosines": [rows], "g_effect": [rows]}`` (NaN → null), as a
        training callback writes it."""
        def rows(df: Any) -> list[dict[str, Any]]:
            return [{k: _clean(v) for k, v in r.items()} for r in df.to_dict("records")]

        return {"step": self.step, "cosines": rows(self.cosine_frame()),
                "g_effect": rows(self.g_effect_frame())}


@dataclass(frozen=True)
class GradientGeometrySeries:
    """Gradient geometry along steps: two tidy tables with a ``step`` column.

    Attributes:
        cosines: :meth:`GradientCosines.to_frame` rows of every step.
        g_effect: :meth:`GEffect.to_frame` rows of every step (+ ``g_effect_ema`` with EMA).
        ema: the EMA weight used (``None``: none).
    """

    cosines: Any
    g_effect: Any
    ema: float | None = None

    @classmethod
    def from_results(cls, results: Sequence[GradientGeometry], *, ema: float | None = None
                     ) -> GradientGeometrySeries:
        return cls.from_records([r.to_record() for r in results], ema=ema)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], *, ema: float | None = None
                     ) -> GradientGeometrySeries:
        """From :meth:`GradientGeometry.to_record` dicts (e.g. read from ``callbacks.jsonl``);
        each record's ``step`` overrides the rows'."""
        import pandas as pd

        cos, ge = [], []
        for rec in records:
            cos += [{**r, "step": rec.get("step")} for r in rec.get("cosines", [])]
            ge += [{**r, "step": rec.get("step")} for r in rec.get("g_effect", [])]
        cos_df = pd.DataFrame(cos)
        if len(cos_df):
            cos_df = cos_df.sort_values("step", kind="stable").reset_index(drop=True)
        ge_df = pd.DataFrame(ge)
        if len(ge_df):
            ge_df = GEffectSeries.from_frame(ge_df, ema=ema).frame
        return cls(cos_df, ge_df, ema)
