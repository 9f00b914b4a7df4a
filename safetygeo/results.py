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
    >>> null = np.random.default_rng(0).normal(0.0, 0.2, 64)
    >>> t = NullComparison.from_null("d_refusal", -3.0, null, tail=True)
    >>> t.p_used, t.p_tail_method, bool(t.p_tail < t.p), t.p_bh == t.p_tail
    ('tail', 'gpd', True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from safetygeo.errors import SafetyGeoError
from safetygeo.stats.pvalues import (
    ALTERNATIVES,
    Alternative,
    empirical_p,
    exceedances,
    zscore,
    zscore_note,
)
from safetygeo.stats.sequential import SequentialP
from safetygeo.stats.tail import tail_p

__all__ = ["P_USED", "Estimate", "NullComparison", "p_for_bh", "rows_frame"]

#: Which p-value of a comparison Benjamini–Hochberg uses: the exact Monte Carlo ``p``, or
#: the tail estimate ``p_tail`` (only where it refines ``p`` below the Monte Carlo floor).
P_USED: tuple[str, ...] = ("exact", "tail")


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
        null: ``[k]`` null effects (float64): every null drawn for this comparison, in
            draw order (with a sequential test, those drawn after this metric's decision
            too — they still describe the null for ``z`` and the band).
        p: exact Monte Carlo p-value: fixed K (:func:`~safetygeo.stats.pvalues.empirical_p`)
            or sequential (:func:`~safetygeo.stats.sequential.besag_clifford_p`).
        z: z-score of ``real`` against the null sample (may be ±inf/NaN: see ``note``).
        alternative: ``"greater"``, ``"less"`` or ``"two-sided"`` (centred on the null).
        k: number of null effects in ``null``.
        ci_low, ci_high: optional CI of the real effect (e.g. paired bootstrap over prompts).
        note: why a number is not finite or otherwise needs a caveat (a non-finite z; a
            ``p_tail`` that is only a bound), ``None`` if nothing.
        extra: further fields for the table row (e.g. ``base_rate``).
        n_null_used: nulls the exact ``p`` used (``k`` for a fixed K; for a sequential stop
            ``l``, the draw that brought the h-th exceedance, so ``p = h / l``).
        stop_reason: ``"fixed"``, ``"h_exceedances"`` (clearly not significant) or
            ``"k_max"`` (:data:`~safetygeo.stats.sequential.STOP_REASONS`).
        p_tail: tail estimate of p (:func:`~safetygeo.stats.tail.tail_p`) — an
            **approximation**, computed only when asked for and no null reaches the real
            effect; NaN otherwise. Never 0: a fitted tail below
            :data:`~safetygeo.stats.tail.TAIL_P_MIN` is reported as that bound, and ``note``
            (a column of the row) says ``p_tail is an upper bound``.
        p_tail_method: ``"gpd"``, ``"normal"`` or ``None`` (no estimate; see ``tail_note``).
        p_used: which p Benjamini–Hochberg uses (:data:`P_USED`): ``"tail"`` when
            ``p_tail`` is below the exact ``p`` (it refines the floor ``1 / (k + 1)``),
            else ``"exact"``. :attr:`p_bh` is that value.
        tail_note: why there is no tail estimate (``None`` if there is one or none was asked).
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
    n_null_used: int = -1
    stop_reason: str = "fixed"
    p_tail: float = float("nan")
    p_tail_method: str | None = None
    p_used: str = "exact"
    tail_note: str | None = None

    def __post_init__(self) -> None:
        if self.n_null_used < 0:  # fixed K: every null was used
            object.__setattr__(self, "n_null_used", int(self.k))
        if self.p_used not in P_USED:
            raise SafetyGeoError(f"p_used must be one of {P_USED}, got {self.p_used!r}")

    @classmethod
    def from_null(cls, metric: str, real: float, null: np.ndarray | Sequence[float],
                  alternative: Alternative = "two-sided", *, ci_low: float = float("nan"),
                  ci_high: float = float("nan"), sequential: SequentialP | None = None,
                  tail: bool = False, **extra: Any) -> NullComparison:
        """Compute p, z and the note from the real effect and the null sample.

        Args:
            sequential: the decision of a sequential test over ``null`` (its ``p``,
                ``n_used`` and ``stop_reason`` are taken over); ``None`` = fixed K.
            tail: also estimate a tail p when no null reaches the real effect and the test
                ran to its end (not for a sequential test stopped as clearly null; a
                two-sided stop uses an earlier centre, so "no exceedance among all nulls"
                alone is not enough) (:func:`~safetygeo.stats.tail.tail_p`); BH then uses
                it where it is below the exact p.
            **extra: further row fields.
        """
        if alternative not in ALTERNATIVES:
            raise SafetyGeoError(f"unknown alternative {alternative!r}; use one of {ALTERNATIVES}")
        arr = np.asarray(null, dtype=np.float64).ravel().copy()
        if sequential is None:
            p, n_used, stop = empirical_p(real, arr, alternative), int(arr.size), "fixed"
        else:
            if not sequential.settled:
                raise SafetyGeoError("a sequential test must be settled before it is reported")
            p, n_used, stop = sequential.p, sequential.n_used, sequential.stop_reason
        p_tail, method, used, tnote = float("nan"), None, "exact", None
        ran_out = sequential is None or sequential.stop_reason == "k_max"
        note = zscore_note(arr)
        if tail and ran_out and exceedances(real, arr, alternative) == 0:
            est = tail_p(real, arr, alternative)
            p_tail, method, tnote = est.p, est.method, est.note
            if method is not None and p_tail < p:
                used = "tail"
            if est.bound:  # the row says p_tail is a bound, not an estimate
                note = f"{note}; {est.note}" if note else est.note
        return cls(metric=metric, real=float(real), null=arr, p=p, z=zscore(real, arr),
                   alternative=alternative, k=int(arr.size), ci_low=float(ci_low),
                   ci_high=float(ci_high), note=note, extra=dict(extra),
                   n_null_used=n_used, stop_reason=stop, p_tail=p_tail, p_tail_method=method,
                   p_used=used, tail_note=tnote)

    @property
    def p_bh(self) -> float:
        """The p-value Benjamini–Hochberg uses (``p_tail`` if ``p_used == "tail"``, else ``p``)."""
        return self.p_tail if self.p_used == "tail" else self.p

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
        null_q975, p, z, alternative, k, note, n_null_used, stop_reason, p_tail,
        p_tail_method, p_used`` (+ ``extra``; + ``null`` as a list)."""
        row: dict[str, Any] = {
            "metric": self.metric, "real": self.real, "ci_low": self.ci_low,
            "ci_high": self.ci_high, "null_mean": self.null_mean, "null_std": self.null_std,
            "null_q025": self.null_quantile(0.025), "null_q975": self.null_quantile(0.975),
            "p": self.p, "z": self.z, "alternative": self.alternative, "k": self.k,
            "note": self.note, "n_null_used": self.n_null_used, "stop_reason": self.stop_reason,
            "p_tail": self.p_tail, "p_tail_method": self.p_tail_method, "p_used": self.p_used,
            **dict(self.extra)}
        if keep_null:
            row["null"] = [float(v) for v in self.null]
        return row

    def __repr__(self) -> str:
        seq = "" if self.stop_reason == "fixed" else f", {self.stop_reason} after {self.n_null_used}"
        tail = (f", p_tail≈{self.p_tail:.3g} ({self.p_tail_method})"
                if self.p_tail_method is not None else "")
        return (f"NullComparison({self.metric}: real={self.real:.4g}, null {self.null_mean:.3g}"
                f"±{self.null_std:.2g} (k={self.k}{seq}), p={self.p:.3g}{tail}, z={self.z:.3g})")


def p_for_bh(table: Any) -> np.ndarray:
    """The p-values Benjamini–Hochberg uses for a table of :meth:`NullComparison.to_row`
    rows: ``p_tail`` where ``p_used == "tail"``, else ``p`` (tables written before the tail
    columns existed use ``p``).

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"p": [0.5, 1 / 65], "p_tail": [float("nan"), 1e-9],
        ...                   "p_used": ["exact", "tail"]})
        >>> p_for_bh(t).tolist()
        [0.5, 1e-09]
    """
    p = np.asarray(table["p"], dtype=np.float64)
    if "p_used" not in table or "p_tail" not in table:
        return p
    use_tail = np.asarray(table["p_used"] == "tail", dtype=bool)
    return np.where(use_tail, np.asarray(table["p_tail"], dtype=np.float64), p)


def rows_frame(items: Sequence[Any], **constant: Any) -> Any:
    """A pandas DataFrame of ``item.to_row()`` for each item, with ``constant`` columns first.

    Example:
        >>> rows_frame([Estimate(1.0, 0.5, 1.5, 3, metric="m")], step=10).columns[:4].tolist()
        ['step', 'metric', 'method', 'value']
    """
    import pandas as pd

    recs = [{**constant, **it.to_row()} for it in items]
    return pd.DataFrame(recs)
