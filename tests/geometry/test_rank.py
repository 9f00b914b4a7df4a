"""Effective rank (Roy & Vetterli 2007), participation ratio and spectrum of direction stacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safetygeo.errors import SafetyGeoError
from safetygeo.geometry.rank import (
    effective_rank,
    participation_ratio,
    spectrum,
    subspace_rank_report,
)


def _with_singular_values(s, d: int, seed: int = 0) -> np.ndarray:
    """A ``len(s) × d`` matrix with singular values ``s`` in random orientations."""
    rng = np.random.default_rng(seed)
    k = len(s)
    u, _ = np.linalg.qr(rng.normal(size=(k, k)))
    v, _ = np.linalg.qr(rng.normal(size=(d, k)))
    return u @ np.diag(s) @ v.T


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_identity_gives_k(k: int) -> None:
    assert effective_rank(np.eye(k)) == pytest.approx(k, abs=1e-12)
    assert participation_ratio(np.eye(k)) == pytest.approx(k, abs=1e-12)
    # k orthogonal rows of equal norm in a bigger space, any orientation
    m = _with_singular_values(np.full(k, 2.5), d=40, seed=k)
    assert effective_rank(m) == pytest.approx(k, abs=1e-9)
    assert participation_ratio(m) == pytest.approx(k, abs=1e-9)


def test_rank_one_gives_one() -> None:
    rng = np.random.default_rng(1)
    m = rng.normal(size=(7, 1)) * rng.normal(size=(1, 30))  # 7 multiples of one direction
    assert effective_rank(m) == 1.0
    assert participation_ratio(m) == pytest.approx(1.0, abs=1e-12)
    assert effective_rank(rng.normal(size=30)) == 1.0  # 1-D vector = 1 × d


def test_known_spectrum_hand_computed() -> None:
    m = _with_singular_values([3.0, 1.0], d=10, seed=2)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(m) == pytest.approx(expected, rel=1e-12)
    assert participation_ratio(m) == pytest.approx((9 + 1) ** 2 / (81 + 1), rel=1e-12)
    np.testing.assert_allclose(spectrum(m), [3.0, 1.0], rtol=1e-12)
    # a different quantity from the effective rank
    assert participation_ratio(m) < effective_rank(m)


def test_bounds_and_scaling_invariance() -> None:
    rng = np.random.default_rng(3)
    m = rng.normal(size=(6, 20)) @ np.diag(np.linspace(0.1, 3, 20))
    er, pr = effective_rank(m), participation_ratio(m)
    assert 1.0 <= pr <= er <= 6.0
    for c in (1e-8, 0.5, -3.0, 1e8):
        assert effective_rank(c * m) == pytest.approx(er, rel=1e-12)
        assert participation_ratio(c * m) == pytest.approx(pr, rel=1e-12)


def test_rank_deficient_stays_below_rank() -> None:
    rng = np.random.default_rng(4)
    m = rng.normal(size=(10, 3)) @ rng.normal(size=(3, 50))  # rank 3, 10 rows
    assert 1.0 <= effective_rank(m) <= 3.0
    assert subspace_rank_report(m)["numerical_rank"] == 3


def test_torch_numpy_and_lists_agree() -> None:
    rng = np.random.default_rng(5)
    m = rng.normal(size=(4, 9))
    ref = effective_rank(m)
    assert effective_rank(torch.from_numpy(m).float()) == pytest.approx(ref, rel=1e-6)
    assert effective_rank(torch.from_numpy(m)) == ref
    assert effective_rank(m.tolist()) == ref
    assert participation_ratio(torch.from_numpy(m)) == participation_ratio(m)


def test_center_and_normalize() -> None:
    rng = np.random.default_rng(6)
    base = rng.normal(size=30)
    noise = 1e-3 * rng.normal(size=(8, 30))
    m = base + noise  # 8 noisy copies of one direction
    assert effective_rank(m) == pytest.approx(1.0, abs=0.05)
    assert effective_rank(m, center=True) > 4  # the spread around the mean is isotropic
    # normalize: norms no longer matter
    scaled = np.diag([1.0, 1000.0]) @ np.eye(2, 5)
    assert effective_rank(scaled) < 1.1
    assert effective_rank(scaled, normalize=True) == pytest.approx(2.0, abs=1e-12)
    # centering before SVD = PCA of the rows
    c = m - m.mean(0)
    np.testing.assert_allclose(spectrum(m, center=True), np.linalg.svd(c, compute_uv=False))


def test_report() -> None:
    m = _with_singular_values([3.0, 1.0, 0.0], d=6, seed=7)
    r = subspace_rank_report(torch.from_numpy(m))
    assert (r["n_directions"], r["dim"], r["numerical_rank"]) == (3, 6, 2)
    assert r["effective_rank"] == pytest.approx(effective_rank(m))
    assert r["participation_ratio"] == pytest.approx(participation_ratio(m))
    np.testing.assert_allclose(r["singular_values"], [3.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(r["explained_variance"], [0.9, 0.1, 0.0], atol=1e-12)
    assert r["center"] is False and r["normalize"] is False


def test_errors() -> None:
    with pytest.raises(SafetyGeoError, match="zero matrix"):
        effective_rank(np.zeros((3, 4)))
    with pytest.raises(SafetyGeoError, match="zero matrix"):
        participation_ratio(torch.zeros(2, 5))
    with pytest.raises(SafetyGeoError, match="after centering"):
        effective_rank(np.ones((4, 3)), center=True)  # identical rows
    with pytest.raises(SafetyGeoError, match="zero norm"):
        effective_rank([[1.0, 0.0], [0.0, 0.0]], normalize=True)
    with pytest.raises(SafetyGeoError, match=r"\(2, 3, 4\)"):
        effective_rank(np.ones((2, 3, 4)))
    with pytest.raises(SafetyGeoError, match="NaN"):
        spectrum([[1.0, np.nan]])
    with pytest.raises(SafetyGeoError, match="empty"):
        subspace_rank_report(np.zeros((0, 4)))
    assert issubclass(SafetyGeoError, ValueError)
