"""Tail p-values beyond the Monte Carlo floor: a normal tail, or a generalized Pareto (GPD)
fit to the upper tail of the null sample (Knijnenburg et al. 2009). **Approximations.**

With ``K`` null effects the exact Monte Carlo p cannot go below ``1 / (K + 1)``; when no
null reaches the real effect, :func:`tail_p` extrapolates the null distribution's tail to
the real effect instead. It never replaces the exact p: callers report both (see
:class:`~safetygeo.results.NullComparison`).

The tail is that of the test statistic: the null effects themselves (``"greater"``), their
negatives (``"less"``) or their distance from the median of the real effect and the nulls
(``"two-sided"``, as in :func:`~safetygeo.stats.pvalues.exceedances`). Two estimators, tried in this order:

1. **gpd** (Knijnenburg, Wessels, Reinders & Shmulevich 2009, *Bioinformatics*
   25:i161–i168): take the ``N_exc`` largest statistics, threshold ``t`` = midway between
   the ``N_exc``-th and ``(N_exc + 1)``-th largest, fit a GPD to the excesses over ``t``
   by maximum likelihood, and check the fit with an Anderson–Darling test; if the test
   rejects at ``gof_alpha``, retry with fewer exceedances (Knijnenburg et al. start at 250
   and step down by 10; here the start is ``min(250, K // 2)`` and the step
   ``min(10, max(2, start // 4))``, down to ``min_tail`` points). The estimate is
   ``p = (N_exc / K) · (1 − F_GPD(real − t))``.
2. **normal**: when no GPD fit passes and a Shapiro–Wilk test does not reject normality
   of the null sample at ``normal_alpha``, the tail probability of ``N(mean, sd²)``
   (sample mean and sd); for a two-sided test ``P(|X − m| ≥ |real − m|)`` with ``m`` the
   two-sided centre (:func:`~safetygeo.stats.pvalues.two_sided_centre`).

Why the GPD first: with ``K = 64`` a normality test cannot see the tails, and a normal tail
fitted to a heavier-tailed null underestimates small p-values by orders of magnitude. In a
simulation under the null (real effect drawn from the null distribution, K = 64, the tail
used wherever no null reaches the real effect), the normal-first order gave
``P(p ≤ 0.001) ≈ 0.008`` for t₅ nulls (two-sided), the GPD-first order ≈ 0.003; for normal
nulls GPD-first is conservative. The null effects of random directions measured on the
planted model are far from normal (skewness up to 12), so GPD-first is also the accurate
order there (``benchmarks/RESULTS.md``, "Null controls").

Choices made here (documented, not taken from the paper):

* the GPD shape is constrained to ``ξ ≥ 0`` (exponential or heavier tails). An
  unconstrained fit often gives ``ξ < 0``, a *bounded* tail, and then ``p = 0`` for any
  real effect beyond the fitted endpoint (a known failure of GPD tail p-values; see
  Peschel et al. 2026, *permApprox*); the exponential tail (``ξ = 0``) is the lightest
  unbounded one, so the constraint errs on the conservative side — but an exponential
  (or normal) tail with a small scale still underflows to an exact 0 far beyond the nulls
  (a bounded null, e.g. uniform, fitted at ``ξ = 0``); every estimate below
  :data:`TAIL_P_MIN` is therefore reported as that bound (``TailP.bound``, with a note);
* the Anderson–Darling p-value comes from a seeded parametric bootstrap (``n_boot`` GPD
  samples of the same size, each refitted), which accounts for the estimated parameters;
* fewer than ``min_null`` null effects, a zero-spread null, or no accepted fit give
  ``p = NaN`` with a note — never a number that was not earned.

How far off these estimates are on this package's null distributions is measured against
a 5,000-direction exact p in ``benchmarks/nulls.py`` (``benchmarks/RESULTS.md``).

Example:
    >>> import numpy as np
    >>> null = np.random.default_rng(0).normal(0.0, 1.0, 64)
    >>> t = tail_p(4.0, null, "greater")
    >>> t.method, bool(1e-6 < t.p < 1 / 65), t.n_tail
    ('gpd', True, 32)
    >>> skewed = np.random.default_rng(1).exponential(1.0, 200)
    >>> g = tail_p(12.0, skewed, "greater")
    >>> g.method, bool(1e-7 < g.p < 1 / 201), g.n_tail <= 100
    ('gpd', True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from safetygeo.errors import SafetyGeoError
from safetygeo.stats.pvalues import (
    ALTERNATIVES,
    Alternative,
    _null_array,
    _real_value,
    two_sided_centre,
)

__all__ = ["TAIL_METHODS", "TAIL_P_MIN", "TailP", "gpd_fit", "gpd_sf", "tail_p"]

#: What produced a tail estimate (``None``: no estimate).
TAIL_METHODS: tuple[str, ...] = ("normal", "gpd")

#: The smallest tail probability reported as an estimate. A fit to ~64 nulls extrapolated
#: to 1e-10 is already far beyond anything it was checked on (``benchmarks/nulls.py``: the
#: estimates spread over orders of magnitude at 1e-3); below this a fitted tail (an
#: exponential one with a small scale, or a normal one many sd out) underflows towards an
#: exact 0, which BH would turn into q = 0. Such a value is reported as this bound instead.
TAIL_P_MIN = 1e-10

_NAN = float("nan")


@dataclass(frozen=True)
class TailP:
    """A tail p-value estimate and how it was made.

    Attributes:
        p: the estimate (NaN when no method was accepted; see ``note``).
        method: ``"normal"``, ``"gpd"`` or ``None``.
        n_tail: null values the estimate rests on (all ``K`` for the normal tail, the
            ``N_exc`` largest for the GPD).
        gof_p: p-value of the check that accepted it (Shapiro–Wilk for the normal tail,
            Anderson–Darling for the GPD); NaN without an estimate.
        shape, scale, threshold: the GPD's ``ξ``, ``σ`` and ``t`` (NaN for the normal tail).
        note: why there is no estimate, or why ``p`` is a bound; else ``None``.
        bound: ``p`` is an upper bound, not an estimate: the fitted tail put the real
            effect beyond :data:`TAIL_P_MIN` (possibly at an exact 0), so only
            ``p < TAIL_P_MIN`` is reported.
    """

    p: float
    method: str | None
    n_tail: int = 0
    gof_p: float = _NAN
    shape: float = _NAN
    scale: float = _NAN
    threshold: float = _NAN
    note: str | None = None
    bound: bool = False


# -- the generalized Pareto distribution (location 0) ----------------------------------

def gpd_sf(z: np.ndarray | float, shape: float, scale: float) -> np.ndarray:
    """Survival function ``(1 + ξ z / σ)^(−1/ξ)`` (``exp(−z / σ)`` at ``ξ = 0``), ``z ≥ 0``.

    Example:
        >>> float(gpd_sf(1.0, 0.0, 1.0)) == float(np.exp(-1.0)), float(gpd_sf(3.0, 1.0, 1.0))
        (True, 0.25)
    """
    z = np.maximum(np.asarray(z, dtype=np.float64), 0.0)
    if shape == 0.0:
        return np.exp(-z / scale)
    return np.exp(-np.log1p(shape * z / scale) / shape)


_GRID = np.concatenate([[0.0], np.logspace(-4.0, 4.0, 161)])


def _profile(theta: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Profile log-likelihood per point and the shape ξ at ``θ = ξ/σ ≥ 0``.

    ``theta`` is ``[..., G]`` (G candidate values per sample), ``y`` is ``[..., n]``.
    """
    xi = np.log1p(theta[..., :, None] * y[..., None, :]).mean(-1)
    ybar = y.mean(-1)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(theta > 0, xi / np.where(theta > 0, theta, 1.0), ybar)
    return -(np.log(ratio) + xi + 1.0), xi


def gpd_fit(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood GPD ``(shape ξ ≥ 0, scale σ)`` of excesses ``y`` (``[..., n]``, ≥ 0).

    Profiles out σ (for ``θ = ξ/σ`` the likelihood is maximized by ``ξ = mean log(1 + θy)``,
    Grimshaw 1993), searches ``θ`` on a log grid relative to the mean excess and refines the
    best grid cell by golden-section search. Vectorized over leading dimensions (a
    bootstrap fits all its samples at once). ``ξ = 0`` is the exponential tail.

    Example:
        >>> y = np.random.default_rng(0).exponential(2.0, 4000)
        >>> xi, sigma = gpd_fit(y)
        >>> round(float(xi), 1), round(float(sigma), 1)
        (0.0, 2.0)
    """
    y = np.asarray(y, dtype=np.float64)
    ybar = y.mean(-1)
    scale_free = _GRID / np.maximum(ybar[..., None], 1e-300)  # [..., G]
    ll, _ = _profile(scale_free, y)
    best = ll.argmax(-1)
    g = len(_GRID)
    lo = np.take_along_axis(scale_free, np.clip(best - 1, 0, g - 1)[..., None], -1)[..., 0]
    hi = np.take_along_axis(scale_free, np.clip(best + 1, 0, g - 1)[..., None], -1)[..., 0]
    invphi = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    for _ in range(40):
        c, d = b - invphi * (b - a), a + invphi * (b - a)
        fc, _ = _profile(c[..., None], y)
        fd, _ = _profile(d[..., None], y)
        left = fc[..., 0] >= fd[..., 0]
        b = np.where(left, d, b)
        a = np.where(left, a, c)
    theta = (a + b) / 2.0
    theta_best = np.take_along_axis(scale_free, best[..., None], -1)[..., 0]
    ll_t, _ = _profile(theta[..., None], y)
    ll_b, _ = _profile(theta_best[..., None], y)
    theta = np.where(ll_t[..., 0] >= ll_b[..., 0], theta, theta_best)
    xi = np.log1p(theta[..., None] * y).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(theta > 0, xi / np.where(theta > 0, theta, 1.0), ybar)
    return xi, sigma


def _gpd_logcdf_logsf(y: np.ndarray, xi: np.ndarray, sigma: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    xi, sigma = xi[..., None], sigma[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        logsf = np.where(xi > 0, -np.log1p(xi * y / sigma) / np.where(xi > 0, xi, 1.0),
                         -y / sigma)
    logcdf = np.log(-np.expm1(logsf))
    return logcdf, logsf


def _anderson_darling(y_sorted: np.ndarray, xi: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """A² of ascending samples ``[..., n]`` against GPD(ξ, σ)."""
    n = y_sorted.shape[-1]
    logcdf, logsf = _gpd_logcdf_logsf(y_sorted, xi, sigma)
    i = np.arange(1, n + 1)
    return -n - ((2 * i - 1) * (logcdf + logsf[..., ::-1])).sum(-1) / n


def _gpd_gof(y: np.ndarray, xi: float, sigma: float, n_boot: int,
             rng: np.random.Generator) -> float:
    """Anderson–Darling p-value of a GPD fit, by parametric bootstrap (refitting each)."""
    ys = np.sort(y)
    a2 = float(_anderson_darling(ys, np.asarray(xi), np.asarray(sigma)))
    u = rng.random((n_boot, y.size))
    sim = (-sigma * np.log1p(-u) if xi == 0.0 else sigma / xi * np.expm1(-xi * np.log1p(-u)))
    sim.sort(-1)
    bxi, bsigma = gpd_fit(sim)
    a2_boot = _anderson_darling(sim, bxi, bsigma)
    return float((1 + np.sum(a2_boot >= a2)) / (n_boot + 1))


# -- the tail estimate -----------------------------------------------------------------

def _normal_tail(real: float, null: np.ndarray, alternative: str) -> float:
    from scipy.stats import norm

    mu, sd = float(null.mean()), float(null.std(ddof=1))
    if alternative == "greater":
        return float(norm.sf(real, mu, sd))
    if alternative == "less":
        return float(norm.cdf(real, mu, sd))
    m = two_sided_centre(real, null)
    d = abs(real - m)
    return float(norm.sf(m + d, mu, sd) + norm.cdf(m - d, mu, sd))


def _statistic(real: float, null: np.ndarray, alternative: str) -> tuple[float, np.ndarray]:
    if alternative == "greater":
        return real, null
    if alternative == "less":
        return -real, -null
    m = two_sided_centre(real, null)
    return abs(real - m), np.abs(null - m)


def _bounded(est: TailP, k: int, min_p: float) -> TailP:
    """``est``, or the bound ``min_p`` (with a note) where the fitted tail is below it."""
    if est.p >= min_p:
        return est
    return replace(est, p=float(min_p), bound=True, note=(
        f"p_tail is an upper bound (p < {min_p:g}): the fitted {est.method} tail gives "
        f"{est.p:.3g} at the real effect, below the smallest tail probability reported from "
        f"a fit to {k} nulls"))


def tail_p(
    real: float,
    null: np.ndarray | Sequence[float],
    alternative: Alternative = "greater",
    *,
    normal_alpha: float = 0.05,
    gof_alpha: float = 0.05,
    n_boot: int = 200,
    min_tail: int = 10,
    min_null: int = 20,
    seed: int = 0,
    min_p: float = TAIL_P_MIN,
) -> TailP:
    """Tail estimate of the p-value of ``real`` against ``null`` (see the module docstring).

    Meant for real effects beyond every null (where the exact Monte Carlo p sits at its
    floor ``1 / (K + 1)``); for a real effect inside the GPD's threshold it returns NaN.

    Args:
        real, null, alternative: as for :func:`~safetygeo.stats.pvalues.empirical_p`.
        normal_alpha: Shapiro–Wilk level below which normality is rejected.
        gof_alpha: Anderson–Darling level below which a GPD fit is rejected.
        n_boot: parametric bootstrap samples of the Anderson–Darling test.
        min_tail: fewest exceedances a GPD is fitted to.
        min_null: fewest null effects for any estimate.
        seed: seed of the bootstrap (the estimate is deterministic).
        min_p: the smallest value reported as an estimate; a fitted tail below it (or at
            an exact 0) gives ``p = min_p`` with ``bound=True`` and a note.

    Raises:
        NonFiniteError: a non-finite real or null effect.
        SafetyGeoError: an unknown alternative.

    Example:
        >>> tail_p(5.0, np.arange(10.0)).note
        'too few null effects for a tail estimate (10 < 20)'
        >>> far = tail_p(1e3, np.random.default_rng(1).uniform(0.0, 1.0, 64))  # fit: 0.0
        >>> far.p, far.bound, far.note  # doctest: +ELLIPSIS
        (1e-10, True, 'p_tail is an upper bound (p < 1e-10): the fitted gpd tail gives 0 ...')
    """
    if alternative not in ALTERNATIVES:
        raise SafetyGeoError(f"unknown alternative {alternative!r}; use one of {ALTERNATIVES}")
    r, arr = _real_value(real), _null_array(null)
    k = arr.size
    if k < min_null:
        return TailP(_NAN, None, note=f"too few null effects for a tail estimate ({k} < {min_null})")
    if float(arr.std()) == 0.0:
        return TailP(_NAN, None, note="the null sample has zero spread: no tail to extrapolate")
    from scipy.stats import shapiro

    x0, stat = _statistic(r, arr, alternative)
    desc = np.sort(stat)[::-1]
    start = min(250, k // 2)
    step = min(10, max(2, start // 4))
    rng = np.random.default_rng(seed)
    last_gof = _NAN
    for n_exc in range(start, min_tail - 1, -step):
        t = (desc[n_exc - 1] + desc[n_exc]) / 2.0
        if x0 <= t:
            return TailP(_NAN, None, note="the real effect is not in the tail of the null sample")
        y = desc[:n_exc] - t
        xi_a, sigma_a = gpd_fit(y)
        xi, sigma = float(xi_a), float(sigma_a)
        if not (sigma > 0 and np.isfinite(xi)):
            continue
        last_gof = _gpd_gof(y, xi, sigma, n_boot, rng)
        if last_gof >= gof_alpha:
            p = n_exc / k * float(gpd_sf(x0 - t, xi, sigma))
            return _bounded(TailP(p, "gpd", n_exc, last_gof, xi, sigma, float(t)), k, min_p)
    sw = float(shapiro(arr).pvalue)
    if sw >= normal_alpha:
        return _bounded(TailP(_normal_tail(r, arr, alternative), "normal", k, sw), k, min_p)
    return TailP(_NAN, None, gof_p=last_gof,
                 note=f"no GPD tail passed the Anderson–Darling check at {gof_alpha:g} and "
                      f"normality was rejected (Shapiro–Wilk p={sw:.2g})")
