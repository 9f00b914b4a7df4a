"""Sequential Monte Carlo p-values (``safetygeo.stats.sequential``, Besag & Clifford 1991) and
the driver that runs them over batched null directions (``interventions.nulls.run_null_test``):
by hand, batch invariance, the fixed-K special case, validity under H0 by simulation, and
that metrics sharing forward passes keep their own decisions."""

from __future__ import annotations

import numpy as np
import pytest

from safetygeo.errors import NonFiniteError, SafetyGeoError
from safetygeo.interventions.nulls import NullSpec, run_null_test
from safetygeo.stats import besag_clifford_p, empirical_p, schedule


def test_besag_clifford_by_hand() -> None:
    null = np.array([0.0, 2.0, -1.0, 3.0, 1.5, 4.0, -2.0, 0.5])
    # greater, real 1.0: exceedances at draws 2 (2.0), 4 (3.0), 5 (1.5), 6 (4.0)
    r = besag_clifford_p(1.0, null, "greater", h=3, k_max=8)
    assert (r.p, r.n_used, r.exceedances, r.stop_reason, r.settled) == (
        3 / 5, 5, 3, "h_exceedances", True)
    # looking only after every 4th draw: the 3rd exceedance (draw 5) falls in the 2nd batch,
    # and its position is used — the same p as one draw at a time
    assert besag_clifford_p(1.0, null, "greater", h=3, k_max=8, checkpoints=[4, 8]) == r
    # after 4 draws only 2 exceedances: not settled yet
    early = besag_clifford_p(1.0, null[:4], "greater", h=3, k_max=8, checkpoints=[4, 8])
    assert not early.settled and early.stop_reason == "running"
    # fewer than h exceedances by k_max: the fixed-K p of k_max nulls
    strong = besag_clifford_p(3.5, null, "greater", h=3, k_max=8)
    assert (strong.p, strong.stop_reason, strong.n_used) == (2 / 9, "k_max", 8)
    assert strong.p == empirical_p(3.5, null, "greater")
    # "less" counts nulls at or below the real effect (ties count)
    assert besag_clifford_p(0.0, null, "less", h=2, k_max=8).n_used == 3
    # h=None: the fixed-K test, settled once k_max nulls are there
    fixed = besag_clifford_p(1.0, null, "two-sided", h=None, k_max=8)
    assert fixed.stop_reason == "fixed" and fixed.p == empirical_p(1.0, null, "two-sided")
    assert not besag_clifford_p(1.0, null[:5], "greater", h=None, k_max=8).settled
    assert schedule(64, 16) == [16, 32, 48, 64] and schedule(50, 16) == [16, 32, 48, 50]
    assert schedule(40, 8, first=16) == [16, 24, 32, 40]


def test_two_sided_recentres_at_each_checkpoint() -> None:
    """Two-sided exceedances are re-counted around the median of the real effect and the
    nulls drawn so far."""
    null = np.array([10.0, 11.0, 9.0, 10.5, 0.0, 0.2, -0.1, 0.1])
    # after 4 draws the centre is 10 (of 0, 9, 10, 10.5, 11): 0 is 10 away, nothing reaches it
    four = besag_clifford_p(0.0, null[:4], "two-sided", h=2, k_max=8, checkpoints=[4, 8])
    assert not four.settled and four.exceedances == 0
    # after 8 the centre is 0.2: 10, 11, 9 and 10.5 are at least 0.2 away → stopped at draw 2
    eight = besag_clifford_p(0.0, null, "two-sided", h=2, k_max=8, checkpoints=[4, 8])
    assert (eight.p, eight.n_used, eight.stop_reason) == (1.0, 2, "h_exceedances")


def test_two_sided_on_a_bimodal_null_is_a_known_limit() -> None:
    """A bimodal null (as the planted model's addition at layer 0): with 24 nulls the median
    falls between the modes and the test stops as clearly null, although with all 64 nulls
    the real effect lies beyond every one of them (the module docstring's "known limit")."""
    rng = np.random.default_rng(0)
    low, high = rng.normal(-9.0, 0.8, 40), rng.uniform(-1.0, -0.3, 24)
    null = np.empty(64)
    null[0::2][:24], null[1::2][:24] = low[:24], high  # the first 48 alternate between modes
    null[48:] = low[24:]
    real = 0.2
    m = np.median(np.append(null[:24], real))
    plain = int((np.abs(null[:24] - m) >= abs(real - m)).sum())
    assert plain >= 4  # the re-centred count alone would stop here
    r = besag_clifford_p(real, null[:24], "two-sided", h=4, k_max=64, checkpoints=[24, 64])
    assert r.stop_reason == "h_exceedances" and r.p >= 4 / 24
    assert empirical_p(real, null, "two-sided") == 1 / 65  # the fixed-K verdict


def test_bad_arguments() -> None:
    with pytest.raises(SafetyGeoError, match="h must be"):
        besag_clifford_p(0.0, [1.0], h=1, k_max=8)
    with pytest.raises(SafetyGeoError, match="k_max"):
        besag_clifford_p(0.0, [1.0], h=2, k_max=0)
    with pytest.raises(SafetyGeoError, match="checkpoints"):
        besag_clifford_p(0.0, [1.0], h=2, k_max=8, checkpoints=[4, 2])
    with pytest.raises(SafetyGeoError, match="alternative"):
        besag_clifford_p(0.0, [1.0], "bigger", h=2, k_max=8)  # type: ignore[arg-type]
    with pytest.raises(NonFiniteError):
        besag_clifford_p(np.nan, [1.0], h=2, k_max=8)
    with pytest.raises(NonFiniteError):
        besag_clifford_p(0.0, [1.0, np.inf], h=2, k_max=8)


# (h, k_max, batch, first look): the sweep default, batches of a full pass, a small h looking
# early and often, a long test
CONFIGS = [(4, 64, 8, 16), (4, 64, 16, 16), (2, 64, 8, 8), (10, 200, 25, 25)]


@pytest.mark.parametrize("dist", ["normal", "exponential", "t3"])
def test_sequential_p_is_valid_under_h0(dist: str) -> None:
    """Real effect and nulls from the same distribution: ``P(p ≤ α) ≤ α`` for
    α ∈ {0.01, 0.05, 0.1} within Monte Carlo error (3 se), for one- and two-sided tests
    (the two-sided centre is re-estimated at each checkpoint), and the test stops early
    — on average far fewer draws than k_max."""
    rng = np.random.default_rng(11)
    draw = {"normal": lambda n: rng.normal(-2.0, 0.3, n),
            "exponential": lambda n: rng.exponential(1.0, n),
            "t3": lambda n: rng.standard_t(3, n)}[dist]
    reps = 5000
    for h, k_max, batch, first in CONFIGS:
        cps = schedule(k_max, batch, first)
        for alt in ("greater", "two-sided"):
            ps, used = np.empty(reps), np.empty(reps)
            for i in range(reps):
                x = draw(k_max + 1)
                r = besag_clifford_p(x[0], x[1:], alt, h=h, k_max=k_max, checkpoints=cps)
                assert r.settled
                ps[i], used[i] = r.p, r.n_used
            assert ps.min() >= 1 / (k_max + 1) and ps.max() <= 1.0
            for alpha in (0.01, 0.05, 0.1):
                rate = float((ps <= alpha).mean())
                se = np.sqrt(alpha * (1 - alpha) / reps)
                assert rate <= alpha + 3 * se, (dist, h, k_max, batch, alt, alpha, rate)
            assert used.mean() < 0.6 * k_max, (h, k_max, used.mean())


def test_driver_shares_forwards_but_decides_per_metric() -> None:
    """Three metrics evaluated together: the cell stops when the last one settles, each
    metric's p is exactly its own Besag–Clifford p on the same null sequence, and the
    nulls are a prefix of the fixed-K sample (so h=∞ is the fixed-K test)."""
    rng = np.random.default_rng(3)
    vals = rng.normal(size=(1 + 64, 3))
    vals[0] = [8.0, 0.0, 2.2]  # strong, null-like, borderline
    calls: list[list[int]] = []

    def evaluate(idx: list[int]) -> np.ndarray:
        calls.append(idx)
        return vals[idx]

    metrics = [("a", "two-sided"), ("b", "two-sided"), ("c", "greater")]
    spec = NullSpec.sequential(h=4, k_max=64, batch=16)
    draws = run_null_test(spec, evaluate, metrics)  # type: ignore[arg-type]
    assert calls[0][0] == 0 and calls[0][1:] == list(range(1, 17))  # real rides in batch 1
    assert draws.k == 64  # the strong metric needs all of k_max
    for j, (name, alt) in enumerate(metrics):
        alone = besag_clifford_p(vals[0, j], vals[1:, j], alt, h=4, k_max=64,  # type: ignore[arg-type]
                                 checkpoints=spec.checkpoints())
        c = draws.comparison(j)
        assert (c.p, c.n_null_used, c.stop_reason) == (alone.p, alone.n_used, alone.stop_reason)
        assert c.k == 64 and c.metric == name
    assert draws.comparison(0).stop_reason == "k_max"
    assert draws.comparison(1).stop_reason == "h_exceedances"
    # the whole cell null-like: one batch
    calls.clear()
    null_like = run_null_test(spec, lambda idx: rng.normal(size=(len(idx), 3)), metrics)  # type: ignore[arg-type]
    assert null_like.k == 16 and all(c.stop_reason == "h_exceedances"
                                     for c in null_like.comparisons().values())
    # h = ∞ is the fixed-K test over the same nulls
    fixed = run_null_test(NullSpec(k=64, h=float("inf")), evaluate, metrics)  # type: ignore[arg-type]
    for j, (_, alt) in enumerate(metrics):
        c = fixed.comparison(j)
        assert c.stop_reason == "fixed" and c.p == empirical_p(vals[0, j], vals[1:, j], alt)  # type: ignore[arg-type]


def test_null_spec_sequential_fields() -> None:
    spec = NullSpec.sequential()
    assert (spec.h, spec.n_max, spec.step, spec.first_look, spec.tail) == (4, 64, 8, 16, True)
    assert spec.checkpoints() == list(range(16, 65, 8)) and NullSpec(k=8).checkpoints() == [8]
    assert NullSpec.sequential(batch=32).checkpoints() == [32, 64]
    assert NullSpec.sequential(k_max=8).checkpoints() == [8]
    assert NullSpec(k=32, h=3, k_max=128, batch=32).checkpoints() == [32, 64, 96, 128]
    assert NullSpec(h=float("inf")).h is None  # h = ∞ is the fixed-K test
    ident = NullSpec(k=64, h=5, batch=8).identity()
    assert ident["sequential"] == {"h": 5, "k_max": 64, "batch": 8, "first": 16}
    assert "tail" not in ident
    # fixed K without tails: the identity of before (old sweep tables still resume)
    assert NullSpec(k=8).identity() == {"k": 8, "kind": "sphere", "seed": 0,
                                        "covariance_sha256": None}
    assert NullSpec(k=8, tail=True).identity()["tail"] is True
    for bad, match in ((dict(h=1), "h"), (dict(h=2.5), "h"), (dict(h=5, k_max=0), "k_max"),
                       (dict(h=5, batch=0), "batch"), (dict(k_max=64), "sequential"),
                       (dict(batch=8), "sequential"), (dict(first=8), "sequential"),
                       (dict(h=4, first=0), "first"), (dict(tail="yes"), "tail")):
        with pytest.raises(SafetyGeoError, match=match):
            NullSpec(**bad)  # type: ignore[arg-type]
