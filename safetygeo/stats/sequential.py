"""Sequential Monte Carlo p-values (Besag & Clifford 1991): spend null draws only where the
decision needs them.

A fixed-K Monte Carlo test draws ``K`` null effects for every real effect. Besag & Clifford
(1991, *Biometrika* 78:301–304) draw them one at a time and stop as soon as the real effect
is clearly not significant:

* draw nulls until **h** of them are at least as extreme as the real effect, or until
  ``k_max`` have been drawn;
* stopped by the h-th exceedance after ``l`` draws: ``p = h / l``;
* ran to ``k_max`` with ``g < h`` exceedances: ``p = (g + 1) / (k_max + 1)`` — the usual
  fixed-K Monte Carlo p (:func:`~safetygeo.stats.pvalues.empirical_p`) with ``K = k_max``.

The p-value is valid: under the null hypothesis ``P(p ≤ α) ≤ α`` (exactly at the points of
its support), and its smallest value is the fixed-K floor ``1 / (k_max + 1)``. Where the
real effect is null-like, ``l`` is typically ``≈ h / p`` draws instead of ``k_max``.
"Exceedance" and ties follow :func:`~safetygeo.stats.pvalues.exceedances`: a null counts
when it is *at least as extreme* (``≥`` / ``≤``), so ties never make p smaller.

**Batches.** Draws come in batches (``checkpoints`` = the numbers of nulls drawn after
which the procedure looks). The h-th exceedance may fall inside a batch; the p-value then
uses its position ``l`` (the nulls after it in the batch are drawn but not used), so for a
one-sided test the result is *exactly* the one-at-a-time Besag–Clifford p, whatever the
batch size.

**Two-sided tests** measure distance from the centre of the pooled sample: the median of the
real effect and the nulls drawn so far (:func:`~safetygeo.stats.pvalues.two_sided_centre`;
the same rule as the fixed-K test, so ``h = ∞`` reproduces it exactly). At each checkpoint the centre
is recomputed from every null drawn so far and the exceedances are **re-counted** from
scratch with it; the stop (and ``l``) is decided on that count. Because the centre moves,
exactness is no longer guaranteed by the argument above; validity was checked by simulation
(``tests/stats/test_sequential.py``, ``benchmarks/nulls.py simulate``: normal, exponential
and t₃ nulls, several ``h``, ``k_max``, batch sizes and first looks: ``P(p ≤ α) ≤ α`` for
α ∈ {0.01, 0.05, 0.1} within Monte Carlo error). With ``h = 1`` the re-estimated centre made
the two-sided p anti-conservative (``P(p ≤ 0.1) ≈ 0.105`` at ``k_max = 64``, batches of 16),
so ``h ≥ 2`` is required.

**Known limit: multimodal nulls.** A centre estimated from few nulls can sit between the
modes of a multimodal null: on the planted model's addition at layer 0 (where nothing is
planted) the median of 24 nulls did, and a metric stopped at p = 4/9 whose real effect lies
beyond all 64 nulls of the fixed-K test (p = 1/65). Callers therefore look for the first
time only after a pilot of 16 nulls
(:attr:`~safetygeo.interventions.nulls.NullSpec.first_look`), which does not remove the
risk. Two remedies were tried and dropped: stopping only if the h exceedances held for every
centre in the median's 95 % interval, postponing the stop otherwise, was anti-conservative
(``P(p ≤ 0.1) = 0.105`` in 120,000 simulated runs: a later centre moves earlier exceedances
out of the count); running such a test to ``k_max`` instead was valid but sent most
random-direction cells of the planted model to all 64 nulls (their nulls are heavy-tailed).
Use a fixed K (``h=None``) where a null is known to be multimodal.

Example:
    >>> import numpy as np
    >>> null = np.array([3.0, 0.5, 2.0, 4.0, 1.0, 5.0])
    >>> r = besag_clifford_p(1.5, null, "greater", h=2, k_max=64)
    >>> r.p, r.n_used, r.stop_reason  # 3.0 and 2.0 reach 1.5: the 2nd exceedance is draw 3
    (0.6666666666666666, 3, 'h_exceedances')
    >>> besag_clifford_p(9.0, null, "greater", h=2, k_max=6).p  # ran to k_max: (0 + 1) / 7
    0.14285714285714285
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from safetygeo.errors import SafetyGeoError
from safetygeo.stats.pvalues import (
    ALTERNATIVES,
    Alternative,
    _null_array,
    _real_value,
    empirical_p,
    exceedances,
    two_sided_centre,
)

__all__ = ["STOP_REASONS", "SequentialP", "besag_clifford_p", "schedule"]

#: ``fixed``: a fixed-K test; ``h_exceedances``: stopped by the h-th exceedance (clearly not
#: significant); ``k_max``: ran to the most nulls allowed.
STOP_REASONS: tuple[str, ...] = ("fixed", "h_exceedances", "k_max")


@dataclass(frozen=True)
class SequentialP:
    """The state of one sequential Monte Carlo test after the nulls drawn so far.

    Attributes:
        p: the p-value when ``settled``; before, the provisional fixed-K p of the draws so
            far (not a valid p-value of the sequential procedure).
        n_used: nulls the p-value uses: ``l`` (the position of the h-th exceedance) when
            stopped by ``h``, else the nulls drawn.
        exceedances: nulls at least as extreme as the real effect among those ``n_used``.
        stop_reason: one of :data:`STOP_REASONS`, or ``"running"`` when not settled.
        settled: whether the decision is final (more nulls would not change it).
    """

    p: float
    n_used: int
    exceedances: int
    stop_reason: str
    settled: bool


def schedule(k_max: int, batch: int, first: int | None = None) -> list[int]:
    """Null counts after which a sequential test looks: ``first, first + batch, …, k_max``
    (``first`` defaults to ``batch``).

    Example:
        >>> schedule(64, 16), schedule(10, 4), schedule(40, 8, first=16)
        ([16, 32, 48, 64], [4, 8, 10], [16, 24, 32, 40])
    """
    first = batch if first is None else first
    if k_max < 1 or batch < 1 or first < 1:
        raise SafetyGeoError(f"k_max, batch and first must be >= 1, got {k_max}, {batch}, {first}")
    return [*range(first, k_max, batch), k_max]


def _indicator(real: float, null: np.ndarray, alternative: str) -> np.ndarray:
    if alternative == "greater":
        return null >= real
    if alternative == "less":
        return null <= real
    m = two_sided_centre(real, null)
    return np.abs(null - m) >= abs(real - m)


def besag_clifford_p(
    real: float,
    null: np.ndarray | Sequence[float],
    alternative: Alternative = "greater",
    *,
    h: int | None,
    k_max: int,
    checkpoints: Sequence[int] | None = None,
) -> SequentialP:
    """Besag–Clifford sequential p of ``real`` given the nulls drawn so far, in draw order.

    Args:
        real: the real effect.
        null: the null effects drawn so far (a prefix of the null sequence; at most
            ``k_max`` are used).
        alternative: ``"greater"``, ``"less"`` or ``"two-sided"`` (centred on the median of
            the real effect and the nulls drawn up to each checkpoint; see the module
            docstring).
        h: exceedances that stop the test (≥ 2); ``None`` = a fixed-K test of ``k_max``
            nulls (settled only when all ``k_max`` are drawn).
        k_max: the most nulls the test may draw.
        checkpoints: increasing null counts at which the test looks (default: after every
            draw); ``k_max`` is always a checkpoint.

    Returns:
        a :class:`SequentialP`; ``settled=False`` when neither ``h`` exceedances nor
        ``k_max`` nulls have been reached at the last checkpoint covered by ``null``.

    Raises:
        NonFiniteError: a non-finite real or null effect.
        SafetyGeoError: bad ``h``, ``k_max``, checkpoints or alternative.

    Example:
        >>> besag_clifford_p(0.0, [1.0, 2.0], "greater", h=2, k_max=8)
        SequentialP(p=1.0, n_used=2, exceedances=2, stop_reason='h_exceedances', settled=True)
        >>> besag_clifford_p(0.0, [-1.0, 2.0], "greater", h=2, k_max=8).settled
        False
    """
    if alternative not in ALTERNATIVES:
        raise SafetyGeoError(f"unknown alternative {alternative!r}; use one of {ALTERNATIVES}")
    if isinstance(k_max, bool) or not isinstance(k_max, (int, np.integer)) or k_max < 1:
        raise SafetyGeoError(f"k_max must be an integer >= 1, got {k_max!r}")
    if h is not None and (isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 2):
        raise SafetyGeoError(f"h must be an integer >= 2 (or None for a fixed K), got {h!r}")
    r = _real_value(real)
    arr = _null_array(null)[:k_max]
    n = arr.size
    if h is None:
        if n < k_max:
            g = exceedances(r, arr, alternative)
            return SequentialP((g + 1) / (n + 1), n, g, "running", False)
        g = exceedances(r, arr, alternative)
        return SequentialP(empirical_p(r, arr, alternative), n, g, "fixed", True)
    cps = list(range(1, k_max + 1)) if checkpoints is None else [int(c) for c in checkpoints]
    if any(b <= a for a, b in zip(cps, cps[1:])) or (cps and cps[0] < 1):
        raise SafetyGeoError(f"checkpoints must be increasing positive counts, got {cps}")
    cps = [c for c in cps if c < k_max] + [k_max]
    for c in cps:
        if c > n:
            break
        ind = _indicator(r, arr[:c], alternative)
        g = int(ind.sum())
        if g >= h:
            l_h = int(np.flatnonzero(ind)[h - 1]) + 1
            return SequentialP(h / l_h, l_h, h, "h_exceedances", True)
        if c == k_max:
            return SequentialP((g + 1) / (k_max + 1), k_max, g, "k_max", True)
    g = int(_indicator(r, arr, alternative).sum())
    return SequentialP((g + 1) / (n + 1), n, g, "running", False)
