"""Empirical p-values against a null sample, z-scores and Benjamini–Hochberg q-values.

One definition for the whole package (interventions, causal effects, sweeps, reports):

* **one-sided** ``"greater"``: ``p = (1 + #{null ≥ real}) / (1 + K)``; ``"less"``: ``≤``.
* **two-sided**: distance from the *centre of the pooled sample* (the real effect and
  the nulls), not from 0: with ``m = median(real, null_1, …, null_K)``,
  ``p = (1 + #{|null − m| ≥ |real − m|}) / (1 + K)``. A real effect equal to the typical
  null effect gets p ≈ 1 wherever the null sits; an effect far from it in either direction
  gets the floor ``1 / (1 + K)``. (Counting ``|null| ≥ |real|`` around 0 gives nonsense
  when the null is not centred on 0: with nulls ~ N(−2, 0.3) a real effect of −2.0 would
  look significant and 0.0 would not.) The centre includes the real effect so that it is
  a symmetric function of all ``K + 1`` values: under H0 they are exchangeable, the real
  distance's rank is uniform and ``P(p ≤ α) ≤ α`` holds exactly. Centring on the nulls'
  median alone treats the real effect differently from the nulls and is anti-conservative:
  ``P(p ≤ 0.2) ≈ 0.206`` at ``K = 64`` (``tests/stats/test_pvalues.py``).
* **NaN is an error, never a p-value**: a non-finite real effect or null sample raises
  :class:`~safetygeo.errors.NonFiniteError`.
* **z** = ``(real − mean(null)) / std(null)`` (sample std). With a zero-spread null, z is
  ``±inf`` (or NaN when real equals the null value) and :func:`zscore_note` says why;
  :class:`~safetygeo.results.NullComparison` carries that note.

Example:
    >>> import numpy as np
    >>> empirical_p(5.0, np.array([1.0, 2.0, 6.0]))
    0.5
    >>> null = np.random.default_rng(0).normal(-2.0, 0.3, 64)
    >>> empirical_p(-2.0, null, "two-sided") > 0.9, empirical_p(0.0, null, "two-sided")
    (True, 0.015384615384615385)
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.5]).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from safetygeo.errors import NonFiniteError, SafetyGeoError

__all__ = ["ALTERNATIVES", "Alternative", "benjamini_hochberg", "empirical_p", "exceedances",
           "two_sided_centre", "zscore", "zscore_note"]

Alternative = Literal["greater", "less", "two-sided"]
ALTERNATIVES: tuple[str, ...] = ("greater", "less", "two-sided")


def _null_array(null: np.ndarray | Sequence[float], what: str = "null sample") -> np.ndarray:
    arr = np.asarray(null, dtype=np.float64).ravel()
    if arr.size < 1:
        raise SafetyGeoError(f"empty {what}: need at least one null effect")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise NonFiniteError(
            f"{what} has {int(bad.sum())} non-finite value(s) (first at index "
            f"{int(np.argmax(bad))}): a NaN/inf effect cannot be compared")
    return arr


def _real_value(real: float) -> float:
    try:
        r = float(real)
    except (TypeError, ValueError):
        raise SafetyGeoError(f"real effect must be a number, got {real!r}") from None
    if not np.isfinite(r):
        raise NonFiniteError(f"real effect is {r}: a non-finite effect has no p-value")
    return r


def two_sided_centre(real: float, null: np.ndarray | Sequence[float]) -> float:
    """The centre two-sided tests measure distance from: the median of the pooled sample
    (``real`` and every null value; see the module docstring for why the real one counts).

    Example:
        >>> two_sided_centre(-1.0, [0.0, 1.0, 2.0, 4.0])
        1.0
    """
    arr = _null_array(null)
    return float(np.median(np.append(arr, _real_value(real))))


def exceedances(real: float, null: np.ndarray | Sequence[float],
                alternative: Alternative = "greater") -> int:
    """``#{null at least as extreme as real}`` under ``alternative`` (see module docstring).

    Example:
        >>> exceedances(1.0, [0.0, 1.0, 2.0]), exceedances(1.0, [0.0, 1.0, 2.0], "less")
        (2, 2)
    """
    r, arr = _real_value(real), _null_array(null)
    if alternative == "greater":
        return int(np.sum(arr >= r))
    if alternative == "less":
        return int(np.sum(arr <= r))
    if alternative == "two-sided":
        m = two_sided_centre(r, arr)
        return int(np.sum(np.abs(arr - m) >= abs(r - m)))
    raise SafetyGeoError(f"unknown alternative {alternative!r}; use one of {ALTERNATIVES}")


def empirical_p(real: float, null: np.ndarray | Sequence[float],
                alternative: Alternative = "greater") -> float:
    """Monte Carlo p-value ``(1 + exceedances) / (1 + K)`` (Davison & Hinkley 1997, §4.2).

    Raises:
        NonFiniteError: ``real`` or a null value is NaN / inf.
        SafetyGeoError: empty null sample or unknown ``alternative``.

    Example:
        >>> empirical_p(3.0, [0.0, 1.0, 2.0]), empirical_p(3.0, [0.0, 1.0, 2.0], "less")
        (0.25, 1.0)
    """
    k = exceedances(real, null, alternative)
    return float((1 + k) / (1 + np.asarray(null).size))


def zscore(real: float, null: np.ndarray | Sequence[float]) -> float:
    """``(real − mean(null)) / std(null)`` with the sample std (``ddof=1``).

    A null with zero spread (or a single value) gives ``±inf`` when ``real`` differs from
    it and NaN when it does not; :func:`zscore_note` explains such a value.

    Example:
        >>> zscore(3.0, [0.0, 1.0, 2.0]), zscore(1.0, [1.0, 1.0])
        (2.0, nan)
    """
    r, arr = _real_value(real), _null_array(null)
    sd = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    diff = r - float(arr.mean())
    if sd == 0.0:
        return float("nan") if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / sd)


def zscore_note(null: np.ndarray | Sequence[float]) -> str | None:
    """Why :func:`zscore` is not a finite number for this null sample (``None`` if it is).

    Example:
        >>> zscore_note([0.5, 0.5])
        'every null effect equals 0.5 (zero spread): z is undefined (±inf or NaN)'
    """
    arr = _null_array(null)
    if arr.size < 2:
        return "a single null effect has no spread: z is undefined (±inf or NaN)"
    if float(arr.std(ddof=1)) == 0.0:
        return f"every null effect equals {arr[0]:g} (zero spread): z is undefined (±inf or NaN)"
    return None


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), in the input order.

    Raises:
        NonFiniteError: a NaN p-value (a NaN effect must never be silently ranked).
        SafetyGeoError: empty input or values outside [0, 1].

    Example:
        >>> benjamini_hochberg([0.01, 0.02]).tolist()
        [0.02, 0.02]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise SafetyGeoError("p_values must be a non-empty 1-D sequence")
    if np.isnan(p).any():
        raise NonFiniteError(f"{int(np.isnan(p).sum())} p-value(s) are NaN; BH needs every "
                             "test's p-value (drop or fix the NaN cells first)")
    if np.any((p < 0) | (p > 1)):
        raise SafetyGeoError("p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    out = np.empty(m)
    out[order] = q
    return out
