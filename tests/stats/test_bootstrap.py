"""Seeded multi-sample bootstrap: coverage, width, determinism, array and two-sample stats."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats as sps

from safetygeo.errors import SafetyGeoError
from safetygeo.stats.bootstrap import BootstrapResult, bootstrap_ci, bootstrap_indices


def test_mean_ci_covers_truth_with_normal_width() -> None:
    n, mu, sigma = 2000, 3.0, 2.0
    x = np.random.default_rng(0).normal(mu, sigma, size=n)
    r = bootstrap_ci(np.mean, x, n_boot=2000, seed=1)
    assert r.estimate == pytest.approx(x.mean())
    assert r.ci_low < mu < r.ci_high
    assert r.ci_high - r.ci_low == pytest.approx(2 * 1.96 * sigma / np.sqrt(n), rel=0.15)
    assert r.se == pytest.approx(sigma / np.sqrt(n), rel=0.15)
    assert isinstance(r.estimate, float) and isinstance(r.ci_low, float)
    assert r.samples.shape == (2000,) and r.n == (n,) and r.n_boot == 2000 and r.ci == 0.95


def test_seed_determinism() -> None:
    x = np.random.default_rng(2).normal(size=50)
    a = bootstrap_ci(np.median, x, n_boot=200, seed=7)
    b = bootstrap_ci(np.median, x, n_boot=200, seed=7)
    c = bootstrap_ci(np.median, x, n_boot=200, seed=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert not np.array_equal(a.samples, c.samples)


def test_uses_bootstrap_indices_resamples() -> None:
    x, y = np.arange(6.0), np.arange(4.0) * 10
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def stat(a: np.ndarray, b: np.ndarray) -> float:
        seen.append((a.copy(), b.copy()))
        return float(a.sum() + b.sum())

    bootstrap_ci(stat, x, y, n_boot=10, seed=3)
    draws = list(bootstrap_indices([6, 4], 10, seed=3))
    assert len(seen) == 11  # the estimate, then 10 resamples
    for (a, b), (ia, ib) in zip(seen[1:], draws):
        np.testing.assert_array_equal(a, x[ia])
        np.testing.assert_array_equal(b, y[ib])
    single = list(bootstrap_indices(6, 3, seed=0))
    assert all(i.shape == (6,) and i.min() >= 0 and i.max() < 6 for i in single)
    assert [i.tolist() for i in single] == [i.tolist() for i in bootstrap_indices(6, 3, seed=0)]


def test_elementwise_array_statistic() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(loc=[0.0, 10.0, -5.0], scale=[1.0, 0.1, 3.0], size=(400, 3))
    r = bootstrap_ci(lambda a: a.mean(0), x, n_boot=500, seed=0)
    assert r.estimate.shape == r.ci_low.shape == r.ci_high.shape == (3,)
    assert r.samples.shape == (500, 3)
    assert np.all(r.ci_low < r.estimate) and np.all(r.estimate < r.ci_high)
    assert np.all(r.ci_low < [0.0, 10.0, -5.0]) and np.all([0.0, 10.0, -5.0] < r.ci_high)
    widths = r.ci_high - r.ci_low
    np.testing.assert_allclose(widths, 2 * 1.96 * np.array([1.0, 0.1, 3.0]) / 20, rtol=0.2)
    # each element equals the scalar bootstrap of that column with the same resamples
    r1 = bootstrap_ci(lambda a: a[:, 1].mean(), x, n_boot=500, seed=0)
    assert r1.ci_low == pytest.approx(r.ci_low[1]) and r1.ci_high == pytest.approx(r.ci_high[1])
    d = r.to_dict()
    assert isinstance(d["ci_low"], list) and len(d["ci_low"]) == 3


def test_two_sample_difference_of_means() -> None:
    rng = np.random.default_rng(5)
    harmful = rng.normal(1.0, 1.0, size=(300, 4))
    harmless = rng.normal(0.0, 2.0, size=(500, 4))
    r = bootstrap_ci(lambda a, b: a.mean(0) - b.mean(0), harmful, harmless, n_boot=800, seed=2)
    assert r.n == (300, 500)
    assert np.all(r.ci_low < 1.0) and np.all(1.0 < r.ci_high)
    se = np.sqrt(1.0 / 300 + 4.0 / 500)
    np.testing.assert_allclose(r.ci_high - r.ci_low, 2 * 1.96 * se, rtol=0.15)


def test_torch_samples_stay_tensors() -> None:
    x = torch.randn(100, 3, dtype=torch.float64)
    types: set[type] = set()

    def stat(a: torch.Tensor) -> torch.Tensor:
        types.add(type(a))
        return a.mean(0)

    r = bootstrap_ci(stat, x, n_boot=50, seed=0)
    ref = bootstrap_ci(lambda a: a.mean(0), x.numpy(), n_boot=50, seed=0)
    assert types == {torch.Tensor}
    np.testing.assert_allclose(r.samples, ref.samples, rtol=1e-12)


def test_bca_close_to_scipy() -> None:
    rng = np.random.default_rng(6)
    x = rng.exponential(size=80)
    ours = bootstrap_ci(np.mean, x, n_boot=4000, seed=0, method="bca")
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="BCa",
                        random_state=np.random.default_rng(1)).confidence_interval
    width = ref.high - ref.low
    assert ours.method == "bca"
    assert ours.ci_low == pytest.approx(ref.low, abs=0.05 * width)
    assert ours.ci_high == pytest.approx(ref.high, abs=0.05 * width)
    # skewed data: BCa shifts the interval right of the percentile one
    pct = bootstrap_ci(np.mean, x, n_boot=4000, seed=0)
    assert ours.ci_high > pct.ci_high
    # two-sample, array-valued
    y = rng.exponential(2.0, size=(60, 2))
    r = bootstrap_ci(lambda a, b: b.mean(0) - a.mean(), x, y, n_boot=500, seed=0, method="bca")
    assert r.ci_low.shape == (2,) and np.all(r.ci_low < r.estimate) and np.all(
        r.estimate < r.ci_high)


def test_result_is_frozen_and_serializable() -> None:
    r = bootstrap_ci(np.mean, np.arange(10.0), n_boot=20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.estimate = 0.0  # type: ignore[misc]
    d = r.to_dict()
    assert d["estimate"] == 4.5 and d["n"] == (10,) and d["n_boot"] == 20
    assert d["method"] == "percentile" and d["ci"] == 0.95
    assert isinstance(r, BootstrapResult)
    # one resample is refused (issue 26: its "interval" could exclude the estimate)
    with pytest.raises(SafetyGeoError, match=r"n_boot=1 is too few.*need ≥ 10"):
        bootstrap_ci(np.mean, np.arange(3.0), n_boot=1)


def test_errors() -> None:
    with pytest.raises(SafetyGeoError,
                       match=r"fewer prompts than bootstrap needs: got n=1, need ≥ 2"):
        bootstrap_ci(np.mean, np.array([1.0]))
    with pytest.raises(SafetyGeoError, match=r"sample 1.*got n=1"):
        bootstrap_ci(lambda a, b: a.mean() - b.mean(), np.ones(5), np.ones(1))
    with pytest.raises(SafetyGeoError, match=r"need ≥ 5"):
        bootstrap_ci(np.mean, np.ones(4), min_n=5)
    with pytest.raises(SafetyGeoError, match="n_boot"):
        bootstrap_ci(np.mean, np.ones(4), n_boot=0)
    with pytest.raises(SafetyGeoError, match="n_boot"):
        bootstrap_indices(4, 0)
    with pytest.raises(SafetyGeoError, match="ci"):
        bootstrap_ci(np.mean, np.ones(4), ci=1.0)
    with pytest.raises(SafetyGeoError, match="unknown bootstrap method"):
        bootstrap_ci(np.mean, np.ones(4), method="studentized")  # type: ignore[arg-type]
    with pytest.raises(SafetyGeoError, match="at least one sample"):
        bootstrap_ci(np.mean)
    with pytest.raises(SafetyGeoError, match="fixed shape"):
        bootstrap_ci(lambda a: np.unique(a), np.array([0, 1, 2, 3]), n_boot=50)
    with pytest.raises(SafetyGeoError, match="scalar"):
        bootstrap_ci(np.mean, 3.0)
