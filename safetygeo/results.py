"""Shared result types: every number with a CI is an :class:`Estimate`, every real-vs-null
comparison a :class:`NullComparison`; tables are built from their ``to_row()``.

Example:
    >>> import numpy as np
    >>> e = Estimate(0.25, 0.1, 0.4, n=40, metric="asr")
    >>> e.to_row()["ci_high"], e.contains(0.3)
    (0.4, True)
    >>> c = NullComparison.from_null("d_refusal", -3.0, np.linspace(-0.5, 0.5, 64))
    >>> c.p, c.k, abs(round(c.null_mean, 6))
    (0.015384615384615385, 64, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from safetygeo.errors import SafetyGeoError
from safetygeo.stats.pvalues import ALTERNATIVES, Alternative, empirical_p, zscore, zscore_note

__all__ = ["Estimate", "NullComparison", "rows_frame"]


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval.

    Attributes:
        value: the estimate (on the original sample).
        ci_low, ci_high: the interval (NaN when it cannot be computed, e.g. n < 2).
        n: the number of sampling units behind it (prompts, seeds, ...).
        method: what produced the value — a labeller or estimator (``"ours"``, ``"judge"``,
            ``"gcg_prefix"``, ``"xstest_strmatch"``, ``"diff-in-means"``, ...).
        metric: what is estimated (``"asr"``, ``"erank"``, ...).
        ci: the confidence level.
        ci_method: how the interval was made (``"bootstrap-percentile"``, ``"bootstrap-bca"``,
            ``"none"`` when not computed).
        extra: further named numbers that belong with the estimate (e.g. ``n_boot``, ``layer``).
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    method: str = "ours"
    metric: str | None = None
    ci: float = 0.95
    ci_method: str = "bootstrap-percentile"
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_bootstrap(cls, res: Any, *, metric: str | None = None, method: str = "ours",
                       **extra: Any) -> Estimate:
        """From a scalar :class:`~safetygeo.stats.bootstrap.BootstrapResult`.

        Example:
            >>> from safetygeo.stats import bootstrap_ci
            >>> e = Estimate.from_bootstrap(bootstrap_ci(np.mean, np.arange(10.0), n_boot=50))
            >>> e.value, e.n, e.ci_method
            (4.5, 10, 'bootstrap-percentile')
        """
        if np.ndim(res.estimate) != 0:
            raise SafetyGeoError("Estimate.from_bootstrap needs a scalar statistic")
        n = int(res.n[0]) if len(res.n) == 1 else int(sum(res.n))
        return cls(float(res.estimate), float(res.ci_low), float(res.ci_high), n, method, metric,
                   float(res.ci), f"bootstrap-{res.method}", {"n_boot": res.n_boot, **extra})

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies inside the interval (False when the interval is NaN)."""
        return bool(self.ci_low <= x <= self.ci_high)

    def to_row(self) -> dict[str, Any]:
        """``{metric, method, value, ci_low, ci_high, n, ci, ci_method, **extra}``."""
        return {"metric": self.metric, "method": self.method, "value": _f(self.value),
                "ci_low": _f(self.ci_low), "ci_high": _f(self.ci_high), "n": int(self.n),
                "ci": self.ci, "ci_method": self.ci_method, **dict(self.extra)}

    def __float__(self) -> float:
        return float(self.value)


@dataclass(frozen=True, eq=False)
class NullComparison:
    """A real effect next to the effects of ``k`` matched null controls.

    Attributes:
        metric: what the effect measures (``"d_refusal_harmful"``, ...).
        real: the real direction's effect.
        null: ``[k]`` null effects (float64).
        p: Monte Carlo p-value (:func:`~safetygeo.stats.pvalues.empirical_p`).
        z: z-score of ``real`` against the null sample (may be ±inf/NaN: see ``note``).
        alternative: ``"greater"``, ``"less"`` or ``"two-sided"`` (centred on the null).
        k: number of null controls used.
        ci_low, ci_high: optional CI of the real effect (e.g. paired bootstrap over prompts).
        note: why a number is not finite or otherwise needs a caveat (``None`` if nothing).
        extra: further fields for the table row (e.g. ``base_rate``, stopping details).
    """

    metric: str
    real: float
    null: np.ndarray
    p: float
    z: float
    alternative: str
    k: int
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    note: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_null(cls, metric: str, real: float, null: np.ndarray | Sequence[float],
                  alternative: Alternative = "two-sided", *, ci_low: float = float("nan"),
                  ci_high: float = float("nan"), **extra: Any) -> NullComparison:
        """Compute p, z and the note from the real effect and the null sample."""
        if alternative not in ALTERNATIVES:
            raise SafetyGeoError(f"unknown alternative {alternative!r}; use one of {ALTERNATIVES}")
        arr = np.asarray(null, dtype=np.float64).ravel().copy()
        p = empirical_p(real, arr, alternative)
        return cls(metric=metric, real=float(real), null=arr, p=p, z=zscore(real, arr),
                   alternative=alternative, k=int(arr.size), ci_low=float(ci_low),
                   ci_high=float(ci_high), note=zscore_note(arr), extra=dict(extra))

    @property
    def null_mean(self) -> float:
        return float(self.null.mean())

    @property
    def null_std(self) -> float:
        return float(self.null.std(ddof=1)) if self.null.size > 1 else 0.0

    def null_quantile(self, q: float) -> float:
        """Quantile of the null sample (linear interpolation)."""
        return float(np.quantile(self.null, q))

    @property
    def p_floor(self) -> float:
        """The smallest p this comparison could give: ``1 / (1 + k)``."""
        return 1.0 / (1 + self.k)

    def with_extra(self, **extra: Any) -> NullComparison:
        """A copy with more ``extra`` fields."""
        return replace(self, extra={**self.extra, **extra})

    def to_row(self, *, keep_null: bool = False) -> dict[str, Any]:
        """Flat record: ``metric, real, ci_low, ci_high, null_mean, null_std, null_q025,
        null_q975, p, z, alternative, k, note`` (+ ``extra``; + ``null`` as a list)."""
        row: dict[str, Any] = {
            "metric": self.metric, "real": self.real, "ci_low": self.ci_low,
            "ci_high": self.ci_high, "null_mean": self.null_mean, "null_std": self.null_std,
            "null_q025": self.null_quantile(0.025), "null_q975": self.null_quantile(0.975),
            "p": self.p, "z": self.z, "alternative": self.alternative, "k": self.k,
            "note": self.note, **dict(self.extra)}
        if keep_null:
            row["null"] = [float(v) for v in self.null]
        return row

    def __repr__(self) -> str:
        return (f"NullComparison({self.metric}: real={self.real:.4g}, null {self.null_mean:.3g}"
                f"±{self.null_std:.2g} (k={self.k}), p={self.p:.3g}, z={self.z:.3g})")


def rows_frame(items: Sequence[Any], **constant: Any) -> Any:
    """A pandas DataFrame of ``item.to_row()`` for each item, with ``constant`` columns first.

    Example:
        >>> rows_frame([Estimate(1.0, 0.5, 1.5, 3, metric="m")], step=10).columns[:4].tolist()
        ['step', 'metric', 'method', 'value']
    """
    import pandas as pd

    recs = [{**constant, **it.to_row()} for it in items]
    return pd.DataFrame(recs)
