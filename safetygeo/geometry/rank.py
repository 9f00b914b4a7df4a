"""Dimensionality of a stack of directions: singular spectrum, effective rank, participation ratio.

The input ``M`` is always a ``k × d`` matrix whose **rows** are directions in the
``d``-dimensional residual stream (e.g. the refusal candidates of one layer at its ``k``
post-instruction positions, ``CandidateDirections.vectors[l]``). Everything is computed in
float64; torch tensors and numpy arrays (or nested lists) are accepted, 1-D inputs are read
as a single row.

Two scalar summaries of the singular values ``σ_1 ≥ … ≥ σ_m`` (``m = min(k, d)``) are
provided; they are *different* quantities and should not be mixed in one table:

* **Effective rank** (Roy & Vetterli 2007): ``p_i = σ_i / Σ_j σ_j``,
  ``erank = exp(−Σ_i p_i log p_i)`` (with ``0·log 0 = 0``); it lies in ``[1, rank(M)]``.
  It weighs the *singular values* (amplitudes).
* **Participation ratio**: with the eigenvalues ``λ_i = σ_i²`` of ``M Mᵀ`` (the variances),
  ``PR = (Σ λ_i)² / Σ λ_i²``; also in ``[1, rank(M)]`` but weighs *variances*, so it is
  smaller than the effective rank whenever the spectrum is not flat.

Both equal ``r`` for ``r`` orthogonal directions of equal norm, equal 1 for a rank-1 stack,
and are invariant to scaling ``M`` by a non-zero constant.

Options shared by every function:

* ``normalize=True`` scales every row to unit norm first, so that long directions do not
  dominate (a zero row then raises).
* ``center=True`` subtracts the mean row (the centroid of the ``k`` directions) from every
  row (after normalization if both are set), so the spectrum describes the spread of the
  directions *around their common mean* rather than the span of the directions themselves.
  ``k`` identical rows centre to the zero matrix, which raises.

Example:
    >>> import numpy as np
    >>> M = np.diag([3.0, 1.0])
    >>> round(effective_rank(M), 6), round(participation_ratio(M), 6)
    (1.754765, 1.219512)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from safetygeo.errors import SafetyGeoError

__all__ = ["effective_rank", "participation_ratio", "spectrum", "subspace_rank_report"]


def as_matrix(M: Any, *, name: str = "M") -> np.ndarray:
    """``M`` as a float64 ``k × d`` numpy array (1-D → ``1 × d``); rejects bad shapes/values."""
    try:
        import torch

        if isinstance(M, torch.Tensor):
            M = M.detach().to(device="cpu", dtype=torch.float64).numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    try:
        arr = np.asarray(M, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SafetyGeoError(f"{name} cannot be read as a float matrix: {e}") from e
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise SafetyGeoError(
            f"{name} must be a k × d matrix (rows = directions) or a 1-D vector, got shape "
            f"{tuple(arr.shape)}"
        )
    if arr.size == 0:
        raise SafetyGeoError(f"{name} is empty (shape {tuple(arr.shape)})")
    if not np.isfinite(arr).all():
        raise SafetyGeoError(f"{name} contains NaN or infinite values (shape {tuple(arr.shape)})")
    return arr


def _prepare(M: Any, *, center: bool, normalize: bool, name: str = "M") -> np.ndarray:
    arr = as_matrix(M, name=name)
    if normalize:
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        zero = np.flatnonzero(norms[:, 0] == 0.0)
        if zero.size:
            raise SafetyGeoError(
                f"cannot normalize {name}: rows {zero.tolist()} have zero norm "
                f"(shape {tuple(arr.shape)})"
            )
        arr = arr / norms
    if center:
        arr = arr - arr.mean(axis=0, keepdims=True)
    return arr


def _nonzero_spectrum(
    M: Any, *, center: bool, normalize: bool, name: str = "M"
) -> tuple[np.ndarray, np.ndarray]:
    """(all singular values, those above the numerical-rank tolerance); zero matrix raises."""
    arr = _prepare(M, center=center, normalize=normalize, name=name)
    s = np.linalg.svd(arr, compute_uv=False)
    smax = float(s.max(initial=0.0))
    if smax <= 0.0:
        what = " after centering" if center else ""
        raise SafetyGeoError(
            f"{name} is the zero matrix{what} (shape {tuple(arr.shape)}): its rank measures are "
            "undefined"
        )
    tol = smax * max(arr.shape) * np.finfo(np.float64).eps  # numpy.linalg.matrix_rank default
    return s, s[s > tol]


def spectrum(M: Any, *, center: bool = False, normalize: bool = False) -> np.ndarray:
    """Singular values of the ``k × d`` stack ``M``, descending, in float64.

    Args:
        M: ``k × d`` matrix whose rows are directions (tensor, array or nested list); a 1-D
            vector is read as ``1 × d``.
        center: subtract the mean row first (see the module docstring).
        normalize: scale each row to unit norm first.

    Returns:
        the ``min(k, d)`` singular values ``σ_1 ≥ … ≥ σ_m ≥ 0`` (the zero matrix gives zeros).

    Raises:
        SafetyGeoError: not 1-D/2-D, empty, non-finite, or a zero row with ``normalize``.

    Example:
        >>> spectrum([[3.0, 0.0], [0.0, -1.0]]).tolist()
        [3.0, 1.0]
    """
    arr = _prepare(M, center=center, normalize=normalize)
    return np.linalg.svd(arr, compute_uv=False)


def effective_rank(M: Any, *, center: bool = False, normalize: bool = False) -> float:
    """Effective rank of Roy & Vetterli (2007), ``exp(H(p))`` with ``p_i = σ_i / Σσ_j``.

    Definition: with the singular values ``σ_i`` of ``M`` (rows = stacked directions),
    ``p_i = σ_i / Σ_j σ_j`` and ``erank = exp(−Σ_i p_i log p_i)``, using ``0·log 0 = 0``.
    It lies in ``[1, rank(M)]``: 1 for a rank-1 stack, ``r`` for ``r`` orthogonal rows of
    equal norm. Singular values below the numerical-rank tolerance
    ``σ_max · max(k, d) · eps`` (numpy's ``matrix_rank`` default) are treated as exact zeros
    so round-off does not lift a rank-1 stack above 1. Not to be confused with
    :func:`participation_ratio`, which uses ``λ = σ²``.

    Args:
        M: ``k × d`` stack of directions (tensor, array or nested list; 1-D → ``1 × d``).
        center: subtract the mean row first (spread around the centroid).
        normalize: scale each row to unit norm first.

    Returns:
        the effective rank as a Python float.

    Raises:
        SafetyGeoError: zero matrix (after centering, if requested), bad shape or values.

    Example:
        >>> import numpy as np
        >>> round(effective_rank(np.eye(3)), 12), effective_rank([[1.0, 2.0], [2.0, 4.0]])
        (3.0, 1.0)
    """
    _, s = _nonzero_spectrum(M, center=center, normalize=normalize)
    return _erank(s)


def _erank(s: np.ndarray) -> float:
    p = s / s.sum()
    entropy = float(-(p * np.log(p)).sum())
    return float(min(max(math.exp(entropy), 1.0), float(len(s))))


def _pr(s: np.ndarray) -> float:
    lam = (s / s[0]) ** 2  # scale-free: avoids overflow/underflow of σ⁴
    pr = float(lam.sum() ** 2 / (lam**2).sum())
    return float(min(max(pr, 1.0), float(np.count_nonzero(lam))))


def participation_ratio(M: Any, *, center: bool = False, normalize: bool = False) -> float:
    """Participation ratio ``(Σλ)² / Σλ²`` of the variances ``λ_i = σ_i²``.

    Definition: ``λ_i = σ_i²`` are the eigenvalues of ``M Mᵀ`` (the Gram matrix of the
    stacked directions; of the covariance up to a factor when ``center=True``) and
    ``PR = (Σ_i λ_i)² / Σ_i λ_i²``. In ``[1, rank(M)]`` like the effective rank, but it is a
    *different* quantity: it weighs variances rather than amplitudes, so e.g. ``σ = (3, 1)``
    gives ``PR = 100/82 ≈ 1.22`` but ``erank ≈ 1.75``.

    Args:
        M: ``k × d`` stack of directions (tensor, array or nested list; 1-D → ``1 × d``).
        center: subtract the mean row first.
        normalize: scale each row to unit norm first.

    Returns:
        the participation ratio as a Python float.

    Raises:
        SafetyGeoError: zero matrix (after centering, if requested), bad shape or values.

    Example:
        >>> import numpy as np
        >>> participation_ratio(np.eye(4)), participation_ratio(np.ones((3, 5)))
        (4.0, 1.0)
    """
    _, s = _nonzero_spectrum(M, center=center, normalize=normalize)
    return _pr(s)


def subspace_rank_report(
    directions: Any, *, center: bool = False, normalize: bool = False
) -> dict[str, Any]:
    """Effective rank, participation ratio and spectrum of a stack of directions.

    The caller passes a ``k × d`` stack whose rows are directions to be compared, e.g.

    * the refusal candidates of one layer **across post-instruction positions**
      (``CandidateDirections.vectors[l]``, shape ``[pos, d]``) — is refusal carried by one
      direction or by several position-specific ones?
    * one direction **across layers** (``vectors[:, p]``, shape ``[layer, d]``);
    * **bootstrap resamples** of one direction (shape ``[n_boot, d]``), usually with
      ``center=True`` so the result describes the dimensionality of the sampling noise
      rather than the (rank-1) signal.

    Args:
        directions: ``k × d`` stack (tensor, array or nested list; 1-D → ``1 × d``).
        center: subtract the mean row first.
        normalize: scale each row to unit norm first (recommended when comparing
            directions whose norms differ for uninteresting reasons, e.g. across layers).

    Returns:
        a dict with ``n_directions`` (k), ``dim`` (d), ``numerical_rank``,
        ``effective_rank`` (:func:`effective_rank`), ``participation_ratio``
        (:func:`participation_ratio`), ``singular_values`` (float64 array, descending),
        ``explained_variance`` (``σ_i² / Σσ²``), and the ``center`` / ``normalize`` flags.

    Raises:
        SafetyGeoError: zero matrix (after centering, if requested), bad shape or values.

    Example:
        >>> import numpy as np
        >>> r = subspace_rank_report(np.diag([3.0, 1.0, 0.0]))
        >>> r["numerical_rank"], round(r["effective_rank"], 3), r["singular_values"].tolist()
        (2, 1.755, [3.0, 1.0, 0.0])
    """
    k, d = as_matrix(directions, name="directions").shape
    s, nz = _nonzero_spectrum(directions, center=center, normalize=normalize, name="directions")
    var = s**2
    return {
        "n_directions": int(k),
        "dim": int(d),
        "numerical_rank": int(len(nz)),
        "effective_rank": _erank(nz),
        "participation_ratio": _pr(nz),
        "singular_values": s,
        "explained_variance": var / var.sum(),
        "center": bool(center),
        "normalize": bool(normalize),
    }
