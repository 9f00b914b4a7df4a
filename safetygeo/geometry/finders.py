"""Direction finders beside diff-in-means, as pure math on activation vectors (no model calls).

Every finder takes per-prompt activations of harmful and harmless prompts at one layer and
position (``[n, d]`` and ``[m, d]``, e.g. ``ActivationStats.vectors[:, layer_slot, pos]``)
and returns unit directions, first = most important, oriented so that harmful prompts lie
on the positive side (positive dot product with the difference in means):

* :func:`pca_directions` — principal directions of *paired* harmful − harmless
  differences (RepE-style "PCA of differences"). Prompts of the two sets are paired at
  random (``seed``), and the directions are the right singular vectors of the *uncentred*
  difference matrix — the eigenvectors of the second moment ``E[δδᵀ]``. Uncentred, because
  centring would subtract the difference in means itself; this equals PCA of the
  differences with a random sign flip per pair (Zou et al. 2023) in expectation. With
  one pair per prompt and no spread, the first direction *is* the diff-in-means.
* :func:`som_directions` — Piras et al. (AAAI 2026, "SOM directions are better than
  one"): a self-organizing map (MiniSom) is fitted to the *harmful* activations, and every
  unit's prototype minus the *harmless* centroid is a refusal direction. A 1 × 1 map is the
  diff-in-means (its one prototype is the harmful mean). Units are returned most-hit first
  (number of harmful prompts whose best-matching unit they are).
* :func:`orthonormalize` — a Gram–Schmidt basis of an ordered list of directions (the
  order is kept: basis vector ``i`` spans what directions ``0..i`` add), for ablating the
  top-``k`` directions of any finder as a subspace.

Model-facing finders (RDO, RCO, RepInd — optimized through the frozen model) are
:mod:`safetygeo.causal.finders`; they return their directions in the same candidate type
(:class:`~safetygeo.geometry.directions.CandidateDirections`).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> harmless = torch.randn(40, 8, generator=g, dtype=torch.float64)
    >>> harmful = torch.randn(40, 8, generator=g, dtype=torch.float64)
    >>> harmful[:, 3] += 5.0
    >>> round(abs(float(pca_directions(harmful, harmless).directions[0, 3])), 2)
    0.99
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo.errors import NonFiniteError, SafetyGeoError

__all__ = ["FinderResult", "orthonormalize", "pca_directions", "som_directions"]


@dataclass(frozen=True)
class FinderResult:
    """Ordered unit directions from one finder, with what ranks them.

    Attributes:
        directions: ``[k, d]`` float64 unit directions, most important first, each with a
            non-negative dot product with the difference in means.
        weights: ``[k]`` what orders them (PCA: share of the second moment; SOM: share of
            harmful prompts mapped to the unit).
        method: ``"pca"`` or ``"som"``.
        diff_in_means: ``[d]`` the raw difference in means of the same vectors (its norm is
            the addition strength the causal finders use).
        extra: finder details (SOM grid and quantization error, number of pairs, ...).
    """

    directions: Float[Tensor, "k d"]
    weights: Float[Tensor, " k"]
    method: str
    diff_in_means: Float[Tensor, " d"]
    extra: dict[str, Any] = field(default_factory=dict)


def _rows(x: Any, name: str) -> Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise SafetyGeoError(f"{name} must be [n, d] activation vectors, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise NonFiniteError(f"{name} contains NaN or inf")
    return t


def _pair(harmful: Any, harmless: Any) -> tuple[Tensor, Tensor, Tensor]:
    a, b = _rows(harmful, "harmful"), _rows(harmless, "harmless")
    if a.shape[1] != b.shape[1]:
        raise SafetyGeoError(f"harmful and harmless have different widths {a.shape[1]} vs "
                             f"{b.shape[1]}")
    return a, b, a.mean(0) - b.mean(0)


def _orient(dirs: Tensor, ref: Tensor) -> Tensor:
    sign = torch.where(dirs @ ref < 0, -1.0, 1.0).to(dirs.dtype)
    return dirs * sign[:, None]


def pca_directions(harmful: Any, harmless: Any, k: int = 1, *, seed: int = 0) -> FinderResult:
    """Top-``k`` principal directions of paired harmful − harmless differences.

    Args:
        harmful, harmless: ``[n, d]`` and ``[m, d]`` activations (one layer and position).
        k: directions to return (at most the number of pairs and ``d``).
        seed: random pairing (``min(n, m)`` pairs, each prompt used at most once).

    Raises:
        SafetyGeoError: bad shapes or ``k``; NonFiniteError: NaN / inf.
    """
    a, b, dim = _pair(harmful, harmless)
    rng = np.random.default_rng(seed)
    p = min(len(a), len(b))
    ia, ib = rng.permutation(len(a))[:p], rng.permutation(len(b))[:p]
    diffs = a[torch.as_tensor(ia)] - b[torch.as_tensor(ib)]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(p, a.shape[1]):
        raise SafetyGeoError(f"k must be an int in 1..{min(p, a.shape[1])} (pairs, d), got {k!r}")
    _, s, vh = torch.linalg.svd(diffs, full_matrices=False)
    energy = s.square()
    total = float(energy.sum())
    if total <= 0:
        raise SafetyGeoError("harmful and harmless activations are identical; no direction")
    dirs = _orient(vh[:k], dim)
    return FinderResult(dirs, energy[:k] / total, "pca", dim, {"pairs": p, "seed": seed})


def som_directions(
    harmful: Any,
    harmless: Any,
    *,
    grid: tuple[int, int] = (2, 2),
    sigma: float | None = None,
    learning_rate: float = 0.5,
    iterations: int = 500,
    seed: int = 0,
) -> FinderResult:
    """SOM directions (Piras et al.): prototypes of a map fitted to harmful activations,
    minus the harmless centroid, most-hit unit first.

    The map is MiniSom's (Gaussian neighbourhood, PCA initialization, ``iterations``
    random-order updates, seeded). Vectors are mean-centred and scaled by their overall
    RMS before fitting (MiniSom's learning rate assumes unit-scale data); prototypes are
    mapped back before subtracting the harmless centroid.

    Args:
        grid: map shape ``(rows, cols)``; ``(1, 1)`` gives the diff-in-means.
        sigma: neighbourhood radius (default ``max(grid) / 2``, at least 0.5).
        learning_rate, iterations, seed: MiniSom training.

    Raises:
        SafetyGeoError: bad shapes or grid; a unit whose prototype equals the harmless
            centroid (zero direction).
    """
    from minisom import MiniSom

    a, b, dim = _pair(harmful, harmless)
    if (len(grid) != 2 or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid)):
        raise SafetyGeoError(f"grid must be two positive ints, got {grid!r}")
    rows, cols = grid
    if rows * cols == 1:  # the paper's reduction: one unit = the harmful mean
        protos = a.mean(0, keepdim=True)
        hits = torch.tensor([float(len(a))], dtype=torch.float64)
        qe = float((a - protos).norm(dim=1).mean())
    else:
        mu = a.mean(0)
        scale = float((a - mu).square().mean().sqrt()) or 1.0
        x = ((a - mu) / scale).numpy()
        som = MiniSom(rows, cols, a.shape[1], sigma=sigma if sigma is not None else max(max(grid) / 2, 0.5),
                      learning_rate=learning_rate, random_seed=seed)
        if a.shape[0] >= 2 and a.shape[1] >= 2:
            som.pca_weights_init(x)
        som.train(x, iterations, random_order=True)
        w = torch.from_numpy(np.asarray(som.get_weights(), dtype=np.float64)).reshape(rows * cols, -1)
        protos = w * scale + mu
        win = [np.ravel_multi_index(som.winner(v), (rows, cols)) for v in x]
        hits = torch.from_numpy(np.bincount(win, minlength=rows * cols).astype(np.float64))
        qe = float(som.quantization_error(x)) * scale
    raw = protos - b.mean(0)
    norms = raw.norm(dim=1)
    if (norms <= 1e-12).any():
        raise SafetyGeoError("a SOM unit sits on the harmless centroid (zero direction)")
    order = sorted(range(len(raw)), key=lambda i: (-float(hits[i]), -float(norms[i])))
    idx = torch.as_tensor(order)
    dirs = _orient(raw[idx] / norms[idx, None], dim)
    return FinderResult(dirs, hits[idx] / hits.sum(), "som", dim,
                        {"grid": [rows, cols], "quantization_error": qe,
                         "raw_norms": norms[idx].tolist(), "iterations": iterations, "seed": seed})


def orthonormalize(directions: Any, *, tol: float = 1e-8) -> Float[Tensor, "r d"]:
    """Ordered Gram–Schmidt basis of the rows of ``directions`` (``[k, d]``).

    Row ``i`` of the result is direction ``i`` minus its components along the earlier
    basis vectors, normalized; a direction (numerically) inside the span of the earlier
    ones is dropped (relative residual below ``tol``), so ``r ≤ k``. The first basis vector
    is the first direction, normalized — so a top-``k`` basis of any finder nests.

    Example:
        >>> orthonormalize([[1.0, 1.0], [1.0, 0.0], [0.0, 3.0]]).shape
        torch.Size([2, 2])
    """
    m = _rows(directions, "directions")
    out: list[Tensor] = []
    for v in m:
        n0 = v.norm()
        if n0 <= 1e-300:
            continue
        w = v.clone()
        for _ in range(2):  # re-orthogonalize once (classical GS twice is stable)
            for q in out:
                w = w - (w @ q) * q
        if w.norm() > tol * n0:
            out.append(w / w.norm())
    if not out:
        raise SafetyGeoError("directions are all zero; no basis")
    return torch.stack(out)
