"""Shared result types: :class:`Estimate` and :class:`NullComparison` (``safetygeo.results``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safetygeo.errors import NonFiniteError, SafetyGeoError
from safetygeo.results import Estimate, NullComparison, rows_frame
from safetygeo.stats import bootstrap_ci, empirical_p, zscore

NULL_ROW_KEYS = ["metric", "real", "ci_low", "ci_high", "null_mean", "null_std", "null_q025",
                 "null_q975", "p", "z", "alternative", "k", "note", "n_null_used", "stop_reason",
                 "p_tail", "p_tail_method", "p_used"]


def test_estimate_row_and_interval() -> None:
    e = Estimate(0.25, 0.1, 0.4, n=40, metric="asr", method="gcg_prefix", extra={"layer": 3})
    row = e.to_row()
    assert list(row) == ["metric", "method", "value", "ci_low", "ci_high", "n", "ci",
                         "ci_method", "layer"]
    assert row == {"metric": "asr", "method": "gcg_prefix", "value": 0.25, "ci_low": 0.1,
                   "ci_high": 0.4, "n": 40, "ci": 0.95, "ci_method": "bootstrap-percentile",
                   "layer": 3}
    assert e.contains(0.1) and e.contains(0.4) and not e.contains(0.41)
    assert float(e) == 0.25
    nan = Estimate(1.0, math.nan, math.nan, n=1, ci_method="none")
    assert not nan.contains(1.0)  # a NaN interval contains nothing
    assert math.isnan(nan.to_row()["ci_low"])


def test_estimate_from_bootstrap() -> None:
    x = np.arange(20.0)
    res = bootstrap_ci(np.mean, x, n_boot=200, seed=1)
    e = Estimate.from_bootstrap(res, metric="mean", layer=2)
    assert e.value == res.estimate == 9.5 and e.n == 20
    assert (e.ci_low, e.ci_high) == (float(res.ci_low), float(res.ci_high))
    assert e.ci_method == f"bootstrap-{res.method}" and e.extra == {"n_boot": 200, "layer": 2}
    vec = bootstrap_ci(lambda a: np.array([a.mean(), a.std()]), x, n_boot=20)
    with pytest.raises(SafetyGeoError, match="scalar"):
        Estimate.from_bootstrap(vec)


def test_null_comparison_from_null_uses_the_stats_functions() -> None:
    null = np.random.default_rng(0).normal(-2.0, 0.3, 64)
    for real, alt in ((-1.2, "two-sided"), (-2.0, "two-sided"), (-1.5, "greater"),
                      (-2.5, "less")):
        c = NullComparison.from_null("d_refusal_harmful", real, null, alt, ci_low=-1.3,
                                     ci_high=-1.1, op="add", layer=2)
        assert c.p == empirical_p(real, null, alt)
        assert c.z == zscore(real, null)
        assert c.k == 64 and c.alternative == alt and c.real == real and c.note is None
        assert c.p_floor == 1 / 65
        np.testing.assert_array_equal(c.null, null)
    c = NullComparison.from_null("m", -1.2, list(null), ci_low=-1.3, ci_high=-1.1, op="add")
    assert c.null.dtype == np.float64
    assert c.null_mean == pytest.approx(null.mean())
    assert c.null_std == pytest.approx(null.std(ddof=1))
    assert c.null_quantile(0.025) == pytest.approx(np.quantile(null, 0.025))
    row = c.to_row()
    assert list(row) == [*NULL_ROW_KEYS, "op"]
    assert row["p"] == c.p and row["z"] == c.z and row["k"] == 64 and row["op"] == "add"
    assert row["null_q975"] == pytest.approx(np.quantile(null, 0.975))
    assert "null" not in row and c.to_row(keep_null=True)["null"] == [float(v) for v in null]
    assert c.with_extra(layer=5).extra == {"op": "add", "layer": 5} and c.extra == {"op": "add"}
    null[0] = 99.0  # the comparison holds its own copy of the null sample
    assert c.null[0] != 99.0


def test_null_comparison_notes_a_zero_spread_null() -> None:
    c = NullComparison.from_null("kl", 0.5, [0.0, 0.0, 0.0], "greater")
    assert c.z == np.inf and c.p == 0.25
    assert c.note is not None and "zero spread" in c.note
    assert c.to_row()["note"] == c.note
    same = NullComparison.from_null("kl", 0.0, [0.0, 0.0, 0.0], "greater")
    assert np.isnan(same.z) and same.p == 1.0 and "zero spread" in same.note
    one = NullComparison.from_null("kl", 1.0, [0.0])
    assert one.null_std == 0.0 and "single" in one.note


def test_null_comparison_refuses_bad_input() -> None:
    with pytest.raises(NonFiniteError):
        NullComparison.from_null("m", float("nan"), [0.0, 1.0])
    with pytest.raises(NonFiniteError):
        NullComparison.from_null("m", 0.0, [0.0, float("inf")])
    with pytest.raises(SafetyGeoError, match="alternative"):
        NullComparison.from_null("m", 0.0, [0.0, 1.0], "bigger")  # type: ignore[arg-type]


def test_rows_frame() -> None:
    items = [Estimate(1.0, 0.5, 1.5, 3, metric="a"), Estimate(2.0, 1.5, 2.5, 4, metric="b")]
    df = rows_frame(items, step=10)
    assert list(df.columns[:4]) == ["step", "metric", "method", "value"]
    assert df.value.tolist() == [1.0, 2.0] and (df.step == 10).all()
    nc = rows_frame([NullComparison.from_null("m", 1.0, [0.0, 0.5])], cell=1)
    assert list(nc.columns) == ["cell", *NULL_ROW_KEYS]
