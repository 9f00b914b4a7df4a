from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import false_discovery_control

from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.nulls import (
    benjamini_hochberg,
    empirical_p,
    random_directions,
    zscore,
)


def test_random_directions_are_unit_and_isotropic() -> None:
    dirs = random_directions(4000, 8, seed=1)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(4000, dtype=torch.float64))
    # uniform on the sphere: E[u uᵀ] = I/d
    second = dirs.T @ dirs / 4000
    torch.testing.assert_close(second, torch.eye(8, dtype=torch.float64) / 8, atol=0.01, rtol=0)
    assert torch.equal(random_directions(3, 8, seed=1), dirs[:3])
    assert not torch.equal(random_directions(3, 8, seed=2), dirs[:3])
    scaled = random_directions(5, 8, seed=0, norm=3.0)
    torch.testing.assert_close(scaled.norm(dim=-1), torch.full((5,), 3.0, dtype=torch.float64))


def test_covariance_matched_directions_follow_the_covariance() -> None:
    cov = torch.diag(torch.tensor([100.0, 1.0, 1.0, 1.0]))
    dirs = random_directions(2000, 4, seed=0, covariance=cov)
    assert float(dirs[:, 0].abs().mean()) > 0.8  # mostly along the high-variance axis
    with pytest.raises(SafetyGeoError, match="covariance has shape"):
        random_directions(2, 3, covariance=cov)
    with pytest.raises(SafetyGeoError, match="K=0"):
        random_directions(0, 4)


def test_empirical_p_and_z_by_hand() -> None:
    null = np.array([0.1, 0.5, 0.9, 2.0])
    assert empirical_p(1.0, null) == (1 + 1) / 5
    assert empirical_p(3.0, null) == 1 / 5
    assert empirical_p(0.0, null, "less") == 1 / 5
    assert empirical_p(-0.95, null, "two-sided") == (1 + 1) / 5
    assert empirical_p(-0.6, null, "two-sided") == (1 + 2) / 5
    assert zscore(2.0, [1.0, 3.0]) == pytest.approx(0.0)
    assert zscore(5.0, [1.0, 3.0]) == pytest.approx(3 / np.sqrt(2))
    assert zscore(1.0, [0.0, 0.0]) == np.inf
    with pytest.raises(SafetyGeoError):
        empirical_p(1.0, [])


def test_bh_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=30), rng.uniform(0, 0.01, size=10)])
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p), rtol=1e-12)
    with pytest.raises(SafetyGeoError):
        benjamini_hochberg([0.5, 1.5])
