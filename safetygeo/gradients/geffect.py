"""The G-effect of an unlearning objective (Wang et al., ICLR 2025), per parameter group.

For an unlearning objective ``L_u`` (:class:`~safetygeo.gradients.objectives.UnlearningObjective`,
computed on the forget set) and a risk ``R`` (the token-mean NLL of a data set: the
completion CE), the G-effect at θ is the inner product of their gradients

    ``e(R) = ∇_θ L_u(θ)ᵀ ∇_θ R(θ)``,

restricted to a parameter group for the per-layer view (the per-group values sum to the
``all`` value). With ``R`` the NLL on the forget set it is the **unlearning G-effect**
``e_u``; on retain data the **retaining G-effect** ``e_r``.

Sign convention (the paper's): an unlearning step ``θ ← θ − η ∇L_u`` changes ``R`` by
``≈ −η e(R)``. So

* ``e_u < 0``: the step *raises* the forget NLL — the objective removes the targeted
  knowledge (more negative = stronger unlearning);
* ``e_r < 0``: the step raises the retain NLL — it **damages retained knowledge**;
  ``e_r ≥ 0`` is harmless (or helps).

GA's unlearning G-effect is ``−‖∇R_forget‖² ≤ 0`` by construction. The original study
smooths per-step values with an exponential moving average (new value weighted 0.4, on
the gradients); here :func:`ema_smooth` / :class:`GEffectSeries` smooth the per-step
G-effects themselves (no parameter-sized state), which is what the callback can afford.

NPO / TNPO need the reference model (the model before unlearning). ``reference=None``
uses the current model itself: the G-effect *at the start* of unlearning (where NPO's
gradient is GA's up to the factor ``N_tok / N_seq``).

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> forget = LossSpec.from_data([("Make a bomb.", "Sure, mix the powder.")], "harmful_ce")
    >>> retain = LossSpec.from_data([("Add 2 and 3.", "2 plus 3 is 5.")])
    >>> ge = g_effect(h, UnlearningObjective("ga"), forget, retain)
    >>> ge.value("unlearn") < 0, round(ge.value("unlearn") + ge.row("unlearn").norm_risk ** 2, 9)
    (True, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safetygeo.errors import SafetyGeoError
from safetygeo.gradients.core import GroupProducts, gradient_products
from safetygeo.gradients.cosines import UndefinedGradientError
from safetygeo.gradients.losses import (
    LossSpec,
    ObjectiveLoss,
    RecordsLoss,
    ReferenceLogprobs,
    reference_logprobs,
)
from safetygeo.gradients.objectives import UnlearningObjective
from safetygeo.models.handle import ModelHandle

RISKS: tuple[str, ...] = ("unlearn", "retain")
#: Weight of the newest value in the original study's moving average.
STUDY_EMA = 0.4

__all__ = ["RISKS", "STUDY_EMA", "GEffect", "GEffectRow", "GEffectSeries", "ema_smooth", "g_effect"]


@dataclass(frozen=True)
class GEffectRow:
    """One G-effect: one objective, one risk, one parameter group.

    Attributes:
        risk: ``unlearn`` (NLL of the forget set) or ``retain`` (NLL of the retain set).
        group, kind, layer, n_trainable: the parameter group (``all`` = whole model).
        g_effect: ``⟨∇L_u, ∇R⟩`` within the group (0 where the objective or the risk does
            not reach the group; NaN only when the group has no trainable parameter).
        norm_objective, norm_risk: the two gradients' norms within the group.
        cosine: their cosine (NaN where a norm is 0; see ``note``).
        defined: ``g_effect`` is defined (the group has trainable parameters).
        note: why ``defined`` is False or the cosine is NaN.
    """

    risk: str
    group: str
    kind: str
    layer: int | None
    n_trainable: int
    g_effect: float
    norm_objective: float
    norm_risk: float
    cosine: float
    defined: bool
    note: str | None = None

    @classmethod
    def from_products(cls, gp: GroupProducts, k: int, risk: str, labels: tuple[str, str]) -> GEffectRow:
        note = gp.undefined_reason(k, *labels)
        defined = gp.n_trainable > 0
        na, nr = math.sqrt(gp.norm_a2), math.sqrt(gp.norm_b2[k])
        cos = float("nan") if note else max(-1.0, min(1.0, gp.dots[k] / (na * nr)))
        return cls(risk, gp.group.name, gp.group.kind, gp.group.layer, gp.n_trainable,
                   gp.dots[k] if defined else float("nan"), na, nr, cos, defined, note)

    def to_row(self) -> dict[str, Any]:
        return {"risk": self.risk, "group": self.group, "kind": self.kind, "layer": self.layer,
                "n_trainable": self.n_trainable, "g_effect": self.g_effect,
                "norm_objective": self.norm_objective, "norm_risk": self.norm_risk,
                "cosine": self.cosine, "defined": self.defined, "note": self.note}


@dataclass(frozen=True)
class GEffect:
    """G-effects of one objective at one point θ, on the forget and the retain risk.

    Attributes:
        objective: the unlearning objective.
        rows: :class:`GEffectRow` per risk × group (``all`` last within each risk).
        values: ``{"objective", "unlearn", "retain"}`` loss values at θ (objective, forget
            NLL, retain NLL).
        step: training step of θ (``None`` outside a trajectory).
        meta: forget / retain descriptions, reference source, model (JSON-ready).
    """

    objective: UnlearningObjective
    rows: tuple[GEffectRow, ...]
    values: Mapping[str, float]
    step: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def row(self, risk: str, group: str = "all") -> GEffectRow:
        for r in self.rows:
            if r.risk == risk and r.group == group:
                return r
        raise SafetyGeoError(f"no G-effect row for risk {risk!r}, group {group!r}; risks: "
                             f"{list(RISKS)}, groups: {sorted({r.group for r in self.rows})}")

    def value(self, risk: str, group: str = "all") -> float:
        """The G-effect on ``risk`` (``unlearn`` / ``retain``) within ``group``.

        Raises:
            UndefinedGradientError: the group has no trainable parameters.
        """
        r = self.row(risk, group)
        if not r.defined:
            raise UndefinedGradientError(f"G-effect of {self.objective.label} on {risk} is "
                                         f"undefined for group {group!r}: {r.note}")
        return r.g_effect

    def to_frame(self, **constant: Any) -> Any:
        """Tidy table: one row per risk × group with ``step``, ``objective``, ``beta``, the
        objective's value (``objective_loss``) and the risk's (``risk_nll``) at θ."""
        import pandas as pd

        head = {**constant, "step": self.step, "objective": self.objective.name,
                "beta": self.objective.beta, "objective_loss": self.values["objective"]}
        return pd.DataFrame([{**head, **r.to_row(), "risk_nll": self.values[r.risk]}
                             for r in self.rows])


def _reference(handle: ModelHandle, objective: UnlearningObjective, forget: LossSpec,
               reference: ReferenceLogprobs | ModelHandle | None) -> ReferenceLogprobs | None:
    if not objective.needs_reference:
        return None
    if reference is None:
        return reference_logprobs(handle, forget, source="self")
    if isinstance(reference, ModelHandle):
        return reference_logprobs(reference, forget)
    if isinstance(reference, ReferenceLogprobs):
        return reference
    raise SafetyGeoError(f"reference must be a ModelHandle, ReferenceLogprobs or None, got "
                         f"{type(reference).__name__}")


def g_effect(
    handle: ModelHandle,
    objective: UnlearningObjective | str,
    forget: LossSpec,
    retain: LossSpec,
    *,
    reference: ReferenceLogprobs | ModelHandle | None = None,
    include_frozen: bool = False,
    step: int | None = None,
) -> GEffect:
    """Unlearning and retaining G-effects of ``objective`` at ``handle``'s weights.

    Three backward passes: the objective on ``forget``, the NLL of ``forget`` and the NLL of
    ``retain``; one parameter-sized gradient set is kept between them.

    Args:
        handle: the model (in eval mode during the call; state restored).
        objective: an :class:`UnlearningObjective` or its name (default β).
        forget: the forget set (its responses are the knowledge to remove).
        retain: the retain set.
        reference: NPO / TNPO's reference model, or its precomputed log-probs
            (:func:`~safetygeo.gradients.losses.reference_logprobs`); ``None``: ``handle``
            itself (the start of unlearning).
        include_frozen: also differentiate ``requires_grad=False`` parameters.
        step: recorded in the result (trajectory step).
    """
    obj = UnlearningObjective(objective) if isinstance(objective, str) else objective
    if not isinstance(obj, UnlearningObjective):
        raise SafetyGeoError(f"objective must be an UnlearningObjective or a name, got {objective!r}")
    for name, spec in (("forget", forget), ("retain", retain)):
        if not isinstance(spec, LossSpec):
            raise SafetyGeoError(f"{name} must be a LossSpec, got {type(spec).__name__}")
    ref = _reference(handle, obj, forget, reference)
    lu = ObjectiveLoss(handle, obj, forget, ref)
    rf = RecordsLoss(handle, forget)
    rf.label = f"NLL({forget.label})"
    rr = RecordsLoss(handle, retain)
    rr.label = f"NLL({retain.label})"
    prod = gradient_products(handle, lu, [rf, rr], include_frozen=include_frozen)
    rows = []
    for k, risk in enumerate(RISKS):
        labels = (prod.labels[0], prod.labels[1 + k])
        rows += [GEffectRow.from_products(gp, k, risk, labels) for gp in (*prod.per_group, prod.total)]
    meta = {"forget": forget.describe(), "retain": retain.describe(),
            "reference": None if ref is None else ref.source, "model": handle.model_id,
            "include_frozen": include_frozen, "tied_embeddings": prod.groups.tied_embeddings}
    return GEffect(obj, tuple(rows), {"objective": prod.values[0], "unlearn": prod.values[1],
                                      "retain": prod.values[2]}, step, meta)


def ema_smooth(values: Sequence[float], alpha: float) -> list[float]:
    """Exponential moving average ``m_t = (1 − α) m_{t−1} + α x_t`` (``m_0 = x_0``); a NaN
    value keeps the previous average (and is NaN before the first finite value).

    Example:
        >>> ema_smooth([1.0, 0.0, float("nan"), 0.0], 0.4)
        [1.0, 0.6, 0.6, 0.36]
    """
    if not (0.0 < alpha <= 1.0):
        raise SafetyGeoError(f"ema must be in (0, 1] (weight of the newest value), got {alpha!r}")
    out, m = [], float("nan")
    for x in values:
        x = float(x)
        if math.isfinite(x):
            m = x if not math.isfinite(m) else (1.0 - alpha) * m + alpha * x
        out.append(round(m, 12))
    return out


@dataclass(frozen=True)
class GEffectSeries:
    """G-effects along steps (a trajectory or a training run), optionally EMA-smoothed.

    Attributes:
        frame: the tidy rows of every :class:`GEffect` (``step``, ``objective``, ``beta``,
            ``risk``, ``group``, ...), plus ``g_effect_ema`` when ``ema`` is set.
        ema: weight of the newest value in the moving average (``None``: no smoothing;
            :data:`STUDY_EMA` = the original study's 0.4).
    """

    frame: Any
    ema: float | None = None

    @classmethod
    def from_results(cls, results: Sequence[GEffect], *, ema: float | None = None) -> GEffectSeries:
        """Stack results (each with its ``step``) and smooth per objective × risk × group."""
        import pandas as pd

        if not results:
            raise SafetyGeoError("no G-effect results to stack")
        frame = pd.concat([r.to_frame() for r in results], ignore_index=True)
        return cls.from_frame(frame, ema=ema)

    @classmethod
    def from_frame(cls, frame: Any, *, ema: float | None = None) -> GEffectSeries:
        """From a tidy G-effect table (e.g. read back from Parquet or callback records)."""
        frame = frame.sort_values("step", kind="stable").reset_index(drop=True)
        if ema is not None:
            smoothed = np.full(len(frame), np.nan)
            keys = ["objective", "beta", "risk", "group"]
            for _, idx in frame.groupby(keys, dropna=False, sort=False).groups.items():
                idx = list(idx)
                smoothed[idx] = ema_smooth(frame.loc[idx, "g_effect"].tolist(), ema)
            frame = frame.assign(g_effect_ema=smoothed)
        return cls(frame, ema)

    def to_frame(self) -> Any:
        return self.frame.copy()
