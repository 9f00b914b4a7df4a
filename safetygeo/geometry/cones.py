"""Cones and subspaces as pure math: sampling directions inside a refusal cone, and random
subspaces as matched nulls.

* A **refusal cone** (Wollschläger et al., ICML 2025) of dimension ``k`` is spanned by an
  orthonormal basis ``B = [b₁ … b_k]`` with non-negative coefficients: every unit vector
  ``Bᵀc / ‖Bᵀc‖`` with ``c ≥ 0``. :func:`sample_cone` draws such directions the way
  their refusal cone optimization (RCO) does: ``c = |z|``, ``z ~ N(0, I_k)`` (uniform on
  the positive orthant of the sphere in coefficient space).
* :func:`random_subspaces` draws Haar-uniform ``k``-dimensional subspaces of ``ℝ^d`` as
  orthonormal bases (QR of a Gaussian matrix with the sign fixed), the null a ``k``-dim
  ablation is compared with: the same dimension; for additions, scale each basis vector to
  the real vector's norm.
* :func:`subspace_overlap` — ``‖P_A P_B‖²_F / k``: the mean squared cosine of the principal
  angles (1 = same subspace, ``k/d`` expected for a random one).

Example:
    >>> import torch
    >>> b = torch.eye(4, dtype=torch.float64)[:2]
    >>> s = sample_cone(b, 5, seed=0)
    >>> bool((s[:, :2] >= 0).all() and torch.allclose(s.norm(dim=1), torch.ones(5, dtype=torch.float64)))
    True
    >>> tuple(random_subspaces(3, 2, 16, seed=0).shape)
    (3, 2, 16)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo.errors import NonFiniteError, SafetyGeoError

__all__ = ["random_subspaces", "sample_cone", "subspace_overlap"]


def _basis(basis: Any) -> Tensor:
    b = torch.as_tensor(basis).detach().to("cpu", torch.float64)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[0] < 1:
        raise SafetyGeoError(f"basis must be [k, d], got shape {tuple(b.shape)}")
    if not torch.isfinite(b).all():
        raise NonFiniteError("basis contains NaN or inf")
    return b


def sample_cone(basis: Any, n: int, *, seed: int = 0) -> Float[Tensor, "n d"]:
    """``n`` unit directions inside the cone of ``basis`` (``[k, d]``, orthonormal rows):
    ``normalize(|z| @ basis)`` with ``z ~ N(0, I_k)`` (RCO's sampling), float64."""
    b = _basis(basis)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SafetyGeoError(f"n must be an int >= 1, got {n!r}")
    z = torch.from_numpy(np.abs(np.random.default_rng(seed).standard_normal((n, b.shape[0]))))
    v = z @ b
    norms = v.norm(dim=1, keepdim=True)
    if (norms <= 1e-12).any():
        raise SafetyGeoError("basis is degenerate: a cone direction has zero norm")
    return v / norms


def random_subspaces(n: int, k: int, d: int, *, seed: int = 0) -> Float[Tensor, "n k d"]:
    """``n`` Haar-uniform ``k``-dimensional subspaces of ``ℝ^d`` as orthonormal bases.

    Subspace ``i`` is the same for a seed whatever ``n`` is (row-by-row Gaussian draws),
    so growing the null set extends it. ``k = 1`` gives uniform directions on the sphere
    (the same ones as :func:`safetygeo.interventions.nulls.random_directions` for that seed).
    """
    for name, v in (("n", n), ("k", k), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SafetyGeoError(f"{name} must be an int >= 1, got {v!r}")
    if k > d:
        raise SafetyGeoError(f"a {k}-dimensional subspace does not fit in d = {d}")
    g = torch.from_numpy(np.random.default_rng(seed).standard_normal((n * k, d))).reshape(n, k, d)
    q, r = torch.linalg.qr(g.transpose(1, 2))  # [n, d, k]
    sign = torch.sign(torch.diagonal(r, dim1=1, dim2=2))
    sign[sign == 0] = 1.0
    return (q * sign[:, None, :]).transpose(1, 2).contiguous()


def subspace_overlap(a: Any, b: Any) -> float:
    """Mean squared cosine of the principal angles between the row spaces of ``a``, ``b``
    (orthonormal rows): ``‖A Bᵀ‖²_F / min(k_a, k_b)``.

    Example:
        >>> import torch
        >>> e = torch.eye(3, dtype=torch.float64)
        >>> subspace_overlap(e[:2], e[1:]), subspace_overlap(e[:1], e[:2])
        (0.5, 1.0)
    """
    qa, qb = _basis(a), _basis(b)
    if qa.shape[1] != qb.shape[1]:
        raise SafetyGeoError(f"bases live in different dimensions {qa.shape[1]} vs {qb.shape[1]}")
    return float((qa @ qb.T).square().sum() / min(len(qa), len(qb)))
