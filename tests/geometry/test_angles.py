"""Principal angles (vs SciPy and vs constructed ground truth), direction angles, drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.linalg import subspace_angles

from safetygeo.errors import SafetyGeoError
from safetygeo.geometry.angles import (
    cosine,
    direction_angle,
    drift,
    drift_summary,
    orthonormal_basis,
    principal_angles,
)


def scipy_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SciPy's convention translated to ours: column spaces → rows, largest → smallest first."""
    return subspace_angles(np.atleast_2d(a).T, np.atleast_2d(b).T)[::-1]


def with_angles(thetas, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row-space pair with exactly the principal angles ``thetas`` (random orientation)."""
    k = len(thetas)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, 2 * k)))
    a = q[:, :k].T
    b = np.stack([np.cos(t) * q[:, i] + np.sin(t) * q[:, k + i] for i, t in enumerate(thetas)])
    return a, b


# (k_A, k_B, d) with k_A + k_B ≤ d: generic subspaces meet only at 0, angles well inside (0, π/2)
SHAPES = [(1, 1, 2), (1, 1, 50), (1, 3, 10), (2, 2, 4), (3, 2, 12), (4, 6, 10), (5, 5, 64),
          (8, 3, 100)]


@pytest.mark.parametrize(("ka", "kb", "d"), SHAPES)
def test_matches_scipy_on_random_subspaces(ka: int, kb: int, d: int) -> None:
    rng = np.random.default_rng(ka * 1000 + kb * 100 + d)
    for _ in range(5):
        a, b = rng.normal(size=(ka, d)), rng.normal(size=(kb, d))
        ours = principal_angles(a, b)
        assert ours.shape == (min(ka, kb),)
        assert np.all(np.diff(ours) >= 0)  # ascending
        assert np.all((ours >= 0) & (ours <= np.pi / 2))
        np.testing.assert_allclose(ours, scipy_angles(a, b), rtol=0, atol=1e-10)
        np.testing.assert_allclose(principal_angles(b, a), ours, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eps", [1e-3, 1e-6, 1e-9, 1e-12])
def test_nearly_identical_subspaces_tiny_angles(eps: float) -> None:
    rng = np.random.default_rng(11)
    a = rng.normal(size=(4, 30))
    b = a + eps * rng.normal(size=(4, 30))
    ours = principal_angles(a, b)
    np.testing.assert_allclose(ours, scipy_angles(a, b), rtol=0, atol=1e-10)
    assert 0 < ours.max() < 10 * eps  # resolved, not rounded to 0 (arccos would give ~1e-8)


def test_exact_angles_including_tiny_and_large_mixed() -> None:
    thetas = np.array([1e-9, 1e-6, 0.3, 1.2, np.pi / 2 - 1e-7])
    a, b = with_angles(thetas, d=40, seed=3)
    np.testing.assert_allclose(principal_angles(a, b), thetas, rtol=1e-7, atol=1e-15)
    # the same subspaces given by other spanning sets (random invertible mixing)
    rng = np.random.default_rng(4)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    np.testing.assert_allclose(principal_angles(m1 @ a, m2 @ b), thetas, rtol=1e-5, atol=1e-14)


def test_rank_deficient_inputs() -> None:
    rng = np.random.default_rng(5)
    d = 20
    a = rng.normal(size=(6, 3)) @ rng.normal(size=(3, d))  # 6 rows spanning 3 dims
    b = rng.normal(size=(4, 2)) @ rng.normal(size=(2, d))  # 4 rows spanning 2 dims
    assert orthonormal_basis(a).shape == (d, 3)
    ours = principal_angles(a, b)
    assert ours.shape == (2,)
    np.testing.assert_allclose(ours, scipy_angles(a, b), rtol=0, atol=1e-10)
    # duplicated rows do not change the subspace
    np.testing.assert_allclose(principal_angles(np.vstack([a, a]), b), ours, atol=1e-12)


def test_intersecting_subspaces_give_exact_zeros() -> None:
    rng = np.random.default_rng(6)
    shared = rng.normal(size=(2, 8))
    a = np.vstack([shared, rng.normal(size=(1, 8))])
    b = np.vstack([shared, rng.normal(size=(5, 8))])  # 3 + 7 > 8: they share ≥ 2 dims
    ours = principal_angles(a, b)
    np.testing.assert_allclose(ours[:2], 0.0, atol=1e-14)
    # SciPy agrees up to its arccos round-off on the zero angles (~1e-8)
    np.testing.assert_allclose(ours, scipy_angles(a, b), atol=1e-7)


def test_orthogonal_subspaces() -> None:
    eye = np.eye(6)
    np.testing.assert_allclose(principal_angles(eye[:2], eye[2:5]), [np.pi / 2] * 2, atol=1e-15)
    a, b = with_angles([np.pi / 2] * 3, d=10, seed=7)
    np.testing.assert_allclose(principal_angles(a, b), np.pi / 2, atol=1e-12)
    assert direction_angle(eye[0], eye[3]) == pytest.approx(np.pi / 2, abs=1e-15)


def test_one_dimensional_case_is_arccos_abs_cos() -> None:
    rng = np.random.default_rng(8)
    for d in (2, 3, 17, 300):
        u, v = rng.normal(size=d), rng.normal(size=d)
        c = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
        assert cosine(u, v) == pytest.approx(c, abs=1e-14)
        assert direction_angle(u, v) == pytest.approx(np.arccos(abs(c)), abs=1e-12)
        assert direction_angle(u, -v) == pytest.approx(direction_angle(u, v), abs=1e-15)
        assert cosine(u, -v) == pytest.approx(-c, abs=1e-14)
        (theta,) = principal_angles(u, v)
        assert theta == pytest.approx(np.arccos(abs(c)), abs=1e-12)
        assert principal_angles(u[None], v).shape == (1,)
    # accurate for nearly parallel directions
    u = np.array([1.0, 0.0, 0.0])
    v = np.array([1.0, 1e-9, 0.0])
    assert direction_angle(u, v) == pytest.approx(1e-9, rel=1e-6)
    assert principal_angles(u, v)[0] == pytest.approx(1e-9, rel=1e-6)


def test_torch_inputs() -> None:
    a, b = with_angles([0.1, 0.7], d=9, seed=9)
    np.testing.assert_allclose(principal_angles(torch.from_numpy(a), torch.from_numpy(b)),
                               [0.1, 0.7], atol=1e-12)
    assert direction_angle(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])) == pytest.approx(
        np.pi / 4)


def test_errors() -> None:
    with pytest.raises(SafetyGeoError, match=r"\(2, 5\).*\(3, 6\)"):
        principal_angles(np.ones((2, 5)), np.ones((3, 6)))
    with pytest.raises(SafetyGeoError, match="zero matrix"):
        principal_angles(np.zeros((2, 5)), np.ones((1, 5)))
    with pytest.raises(SafetyGeoError, match="zero matrix"):
        orthonormal_basis(torch.zeros(3, 4))
    with pytest.raises(SafetyGeoError, match="zero norm"):
        direction_angle(np.zeros(3), np.ones(3))
    with pytest.raises(SafetyGeoError, match="zero norm"):
        cosine(np.ones(3), np.zeros(3))
    with pytest.raises(SafetyGeoError, match="different dimensions"):
        cosine(np.ones(3), np.ones(4))
    with pytest.raises(SafetyGeoError, match="single 1-D direction"):
        direction_angle(np.eye(3), np.ones(3))
    with pytest.raises(SafetyGeoError, match="shape"):
        principal_angles(np.ones((2, 2, 2)), np.ones(2))
    with pytest.raises(SafetyGeoError, match="NaN"):
        principal_angles([np.nan, 1.0], [1.0, 0.0])


def test_drift_table_and_summary() -> None:
    ref, b = with_angles([0.2, 0.9], d=12, seed=10)
    ckpts = {"base": ref, "ft-1": b, "ft-2": ref[:1]}
    t = drift(ref, ckpts)
    assert list(t.columns) == ["checkpoint", "k", "angle_rad", "angle_deg"]
    assert t["checkpoint"].tolist() == ["base", "base", "ft-1", "ft-1", "ft-2"]
    assert t["k"].tolist() == [1, 2, 1, 2, 1]
    np.testing.assert_allclose(t["angle_rad"], [0, 0, 0.2, 0.9, 0], atol=1e-12)
    np.testing.assert_allclose(t["angle_deg"], np.degrees(t["angle_rad"]))
    s = drift_summary(t)
    assert s["checkpoint"].tolist() == ["base", "ft-1", "ft-2"]
    assert s["n_angles"].tolist() == [2, 2, 1]
    np.testing.assert_allclose(s["max_angle_rad"], [0, 0.9, 0], atol=1e-12)
    np.testing.assert_allclose(s["mean_angle_rad"], [0, 0.55, 0], atol=1e-12)
    np.testing.assert_allclose(s["max_angle_deg"], np.degrees(s["max_angle_rad"]))


def test_drift_sequences_and_stacks() -> None:
    rng = np.random.default_rng(12)
    ref = rng.normal(size=16)
    dirs = np.stack([ref + 0.1 * i * rng.normal(size=16) for i in range(4)])
    t_seq = drift(ref, list(dirs))
    t_arr = drift(ref, dirs)
    t_ten = drift(torch.from_numpy(ref), torch.from_numpy(dirs))
    assert t_seq["checkpoint"].tolist() == [0, 1, 2, 3]
    for t in (t_arr, t_ten):
        pd.testing.assert_frame_equal(t, t_seq)
    expected = [direction_angle(ref, v) for v in dirs]
    np.testing.assert_allclose(t_seq["angle_rad"], expected, atol=1e-12)


def test_drift_errors() -> None:
    with pytest.raises(SafetyGeoError, match="at least one checkpoint"):
        drift(np.ones(3), {})
    with pytest.raises(SafetyGeoError, match=r"'bad'.*\(1, 3\).*\(1, 4\)"):
        drift(np.ones(3), {"ok": np.ones(3), "bad": np.ones(4)})
    with pytest.raises(SafetyGeoError, match="mapping"):
        drift(np.ones(3), "ckpt")
    with pytest.raises(SafetyGeoError, match="not a drift table"):
        drift_summary(pd.DataFrame({"x": [1]}))
