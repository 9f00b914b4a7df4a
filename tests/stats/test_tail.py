"""Tail p-value estimates (``safetygeo.stats.tail``): the GPD fit and survival function, the
estimate against known tails, its calibration under H0 as BH would use it, and the cases
where it must refuse to give a number."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from safetygeo.errors import NonFiniteError, SafetyGeoError
from safetygeo.results import NullComparison
from safetygeo.stats import SequentialP, tail_p
from safetygeo.stats.tail import gpd_fit, gpd_sf


def test_gpd_fit_and_sf() -> None:
    rng = np.random.default_rng(0)
    y = stats.genpareto(0.25, scale=2.0).rvs(20000, random_state=rng)
    xi, sigma = gpd_fit(y)
    assert float(xi) == pytest.approx(0.25, abs=0.03) and float(sigma) == pytest.approx(2.0, rel=0.05)
    # the same fit vectorized over samples (as the bootstrap uses it)
    ys = stats.expon(scale=3.0).rvs((4, 5000), random_state=rng)
    xis, sigmas = gpd_fit(ys)
    assert xis.shape == (4,) and np.all(xis < 0.05) and np.allclose(sigmas, 3.0, rtol=0.1)
    # a bounded tail (ξ < 0) is fitted at the constraint ξ = 0: the exponential MLE
    bounded = rng.uniform(0.0, 1.0, 5000)
    xi_b, sigma_b = gpd_fit(bounded)
    assert float(xi_b) == 0.0 and float(sigma_b) == pytest.approx(bounded.mean())
    z = np.array([0.0, 1.0, 5.0])
    np.testing.assert_allclose(gpd_sf(z, 0.3, 1.5), stats.genpareto(0.3, scale=1.5).sf(z))
    np.testing.assert_allclose(gpd_sf(z, 0.0, 1.5), np.exp(-z / 1.5))


@pytest.mark.parametrize("dist,max_err", [("normal", 1.5), ("expon", 0.5), ("gamma3", 1.0)])
def test_tail_estimate_tracks_the_true_tail(dist: str, max_err: float) -> None:
    """K = 64 nulls, real effect where the true p is 1e-3 (below the floor 1/65): the median
    over repetitions of log10(estimate / truth) is small; the normal null errs on the
    conservative side (an exponential tail for a Gaussian one)."""
    d = {"normal": stats.norm(), "expon": stats.expon(), "gamma3": stats.gamma(3)}[dist]
    rng = np.random.default_rng(5)
    x0 = float(d.isf(1e-3))
    errs = []
    for _ in range(40):
        null = d.rvs(64, random_state=rng)
        if (null >= x0).any():
            continue
        est = tail_p(x0, null, "greater")
        assert est.method is not None and 0 < est.p < 1
        errs.append(np.log10(est.p / 1e-3))
    med = float(np.median(errs))
    assert abs(med) < max_err, (dist, med)
    assert np.mean(np.asarray(errs) < np.log10(1 / 65 / 1e-3)) > 0.5  # mostly below the floor
    if dist == "normal":
        assert med > -0.25  # conservative


def test_alternatives_are_mirror_images() -> None:
    null = np.random.default_rng(2).gamma(2.0, 1.0, 80)
    g = tail_p(9.0, null, "greater")
    assert tail_p(-9.0, -null, "less") == g
    two = tail_p(9.0, null, "two-sided")  # distance from the pooled median
    assert two.method is not None and two.p > 0
    m = float(np.median(np.append(null, 9.0)))
    assert tail_p(abs(9.0 - m), np.abs(null - m), "greater").p == two.p  # the distance's tail


def test_no_number_without_grounds() -> None:
    assert np.isnan(tail_p(5.0, np.arange(10.0)).p)  # too few nulls
    flat = tail_p(1.0, np.zeros(64))
    assert np.isnan(flat.p) and flat.method is None and "zero spread" in (flat.note or "")
    inside = tail_p(0.0, np.random.default_rng(0).normal(size=64))
    assert np.isnan(inside.p) and "not in the tail" in (inside.note or "")
    with pytest.raises(NonFiniteError):
        tail_p(np.nan, np.zeros(30))
    with pytest.raises(SafetyGeoError, match="alternative"):
        tail_p(1.0, np.arange(30.0), "up")  # type: ignore[arg-type]


@pytest.mark.parametrize("dist", ["normal", "expon"])
def test_p_used_by_bh_is_calibrated_under_h0(dist: str) -> None:
    """The p BH uses (the tail estimate where it is below the exact p, else the exact p),
    with the real effect drawn from the null: ``P(p ≤ α) ≤ α`` within Monte Carlo error,
    also for α = 0.01 and 0.005, which only the tail estimate can reach with K = 64."""
    d = {"normal": stats.norm(), "expon": stats.expon()}[dist]
    rng = np.random.default_rng(9)
    reps, k = 3000, 64
    x = d.rvs((reps, k + 1), random_state=rng)
    p_bh = np.array([NullComparison.from_null("m", r[0], r[1:], "greater", tail=True).p_bh
                     for r in x])
    for alpha in (0.005, 0.01, 0.05, 0.1):
        rate = float((p_bh <= alpha).mean())
        se = np.sqrt(alpha * (1 - alpha) / reps)
        assert rate <= alpha + 3 * se, (dist, alpha, rate)


def test_no_tail_for_a_test_stopped_as_clearly_null() -> None:
    """A two-sided sequential stop uses the centre of the nulls drawn by then; with all the
    nulls the real effect may lie beyond every one of them (a bimodal null). The stop
    stands, and no tail estimate is made (it would contradict the exact decision)."""
    null = np.concatenate([np.full(8, -9.0) + np.linspace(0, 0.1, 8), np.linspace(-1.0, -0.3, 56)])
    stop = SequentialP(p=4 / 9, n_used=9, exceedances=4, stop_reason="h_exceedances", settled=True)
    c = NullComparison.from_null("m", 0.2, null, "two-sided", sequential=stop, tail=True)
    assert c.p == 4 / 9 and np.isnan(c.p_tail) and c.p_used == "exact"
    ran = SequentialP(p=1 / 65, n_used=64, exceedances=0, stop_reason="k_max", settled=True)
    c2 = NullComparison.from_null("m", 5.0, np.random.default_rng(0).normal(size=64),
                                  "two-sided", sequential=ran, tail=True)
    assert c2.p_tail_method is not None and c2.p_used == "tail"


def test_a_tail_p_is_never_zero_but_a_stated_bound() -> None:
    """Issue 26: a bounded null (uniform on [0, 1]) whose tail fit puts the real effect
    beyond its reach. An unconstrained GPD fit (scipy) has a finite endpoint below the real
    effect, so its tail probability there is exactly 0; our ξ ≥ 0 fit's survival underflows
    to 0 too. Reported: p_tail = TAIL_P_MIN with ``bound=True``, the row's note says so,
    and BH gives q > 0."""
    from safetygeo.results import p_for_bh, rows_frame
    from safetygeo.stats import benjamini_hochberg
    from safetygeo.stats.tail import TAIL_P_MIN

    null, real = np.random.default_rng(1).uniform(0.0, 1.0, 64), 1e3
    est = tail_p(real, null)
    assert est.method == "gpd" and est.bound and est.p == TAIL_P_MIN
    # the raw estimate, recomputed with scipy from the fitted parameters, is exactly 0
    raw = est.n_tail / 64 * stats.genpareto.sf(real - est.threshold, est.shape, scale=est.scale)
    assert raw == 0.0
    desc = np.sort(null)[::-1]
    c, _, scale = stats.genpareto.fit(desc[:est.n_tail] - est.threshold, floc=0.0)
    assert c < 0 and est.threshold + scale / -c < real  # a finite endpoint below the real effect
    assert "upper bound (p < 1e-10)" in (est.note or "")
    # an estimate above the bound is untouched
    near = tail_p(1.3, null)
    assert not near.bound and TAIL_P_MIN < near.p < 1 / 65 and near.note is None
    cmp = NullComparison.from_null("m", real, null, "greater", tail=True)
    assert cmp.p_tail == TAIL_P_MIN and cmp.p_used == "tail"
    rows = rows_frame([cmp, NullComparison.from_null("n", 0.5, null, "greater", tail=True)])
    assert "p_tail is an upper bound" in rows.note.iloc[0] and not isinstance(rows.note.iloc[1], str)
    q = benjamini_hochberg(p_for_bh(rows))
    assert q[0] > 0 and q[0] == pytest.approx(2 * TAIL_P_MIN)
