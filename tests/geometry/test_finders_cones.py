from __future__ import annotations

import numpy as np
import pytest
import torch

from safetygeo.errors import SafetyGeoError
from safetygeo.geometry.cones import random_subspaces, sample_cone, subspace_overlap
from safetygeo.geometry.finders import orthonormalize, pca_directions, som_directions
from safetygeo.interventions.nulls import random_directions


def _data(seed: int = 0, n: int = 60, d: int = 12):
    g = torch.Generator().manual_seed(seed)
    harmless = torch.randn(n, d, generator=g, dtype=torch.float64)
    harmful = torch.randn(n, d, generator=g, dtype=torch.float64)
    harmful[:, 2] += 4.0
    return harmful, harmless


def test_pca_of_differences_finds_the_shifted_axis_oriented_harmful_positive() -> None:
    harmful, harmless = _data()
    res = pca_directions(harmful, harmless, 3, seed=1)
    assert res.directions.shape == (3, 12)
    assert abs(float(res.directions[0, 2])) > 0.95 and float(res.directions[0, 2]) > 0
    assert (res.directions @ res.diff_in_means >= 0).all()
    assert (np.diff(res.weights.numpy()) <= 1e-12).all()  # ordered by explained second moment
    torch.testing.assert_close(res.directions @ res.directions.T, torch.eye(3, dtype=torch.float64))
    with pytest.raises(SafetyGeoError, match="k must be"):
        pca_directions(harmful, harmless, 13)


def test_one_unit_som_is_the_difference_in_means() -> None:
    harmful, harmless = _data()
    res = som_directions(harmful, harmless, grid=(1, 1))
    dim = harmful.mean(0) - harmless.mean(0)
    torch.testing.assert_close(res.directions[0], dim / dim.norm())


def test_som_directions_point_from_the_harmless_centroid_to_harmful_units() -> None:
    harmful, harmless = _data()
    res = som_directions(harmful, harmless, grid=(2, 2), iterations=300, seed=0)
    assert res.directions.shape == (4, 12)
    assert float(res.weights.sum()) == pytest.approx(1.0)
    assert (np.diff(res.weights.numpy()) <= 1e-12).all()  # most-hit unit first
    assert (res.directions[:, 2] > 0.5).all()  # every unit sits on the harmful side
    again = som_directions(harmful, harmless, grid=(2, 2), iterations=300, seed=0)
    torch.testing.assert_close(again.directions, res.directions)  # seeded


def test_orthonormalize_keeps_order_and_drops_dependent_rows() -> None:
    b = orthonormalize([[3.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    torch.testing.assert_close(b, torch.eye(3, dtype=torch.float64))


def test_cone_samples_lie_in_the_positive_orthant_of_the_basis() -> None:
    basis = random_subspaces(1, 3, 10, seed=4)[0]
    s = sample_cone(basis, 50, seed=0)
    coef = s @ basis.T
    assert (coef >= -1e-12).all()
    torch.testing.assert_close(coef.norm(dim=1), torch.ones(50, dtype=torch.float64))


def test_random_subspaces_are_orthonormal_nested_and_match_random_directions() -> None:
    q = random_subspaces(5, 3, 20, seed=2)
    torch.testing.assert_close(q @ q.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3))
    torch.testing.assert_close(random_subspaces(8, 3, 20, seed=2)[:5], q)
    torch.testing.assert_close(random_subspaces(4, 1, 20, seed=7)[:, 0],
                               random_directions(4, 20, seed=7))
    # a random k-subspace overlaps another by about k/d
    over = [subspace_overlap(a, b) for a, b in zip(random_subspaces(200, 2, 20, seed=0),
                                                     random_subspaces(200, 2, 20, seed=1))]
    assert abs(np.mean(over) - 2 / 20) < 0.03
