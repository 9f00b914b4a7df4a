"""Angles between directions and between subspaces; drift of carriers across checkpoints.

Conventions (different from :func:`scipy.linalg.subspace_angles`!):

* A subspace is given by a ``k × d`` matrix whose **rows** span it (the layout of a stack of
  directions, e.g. ``CandidateDirections.vectors[l]``); a 1-D vector is a ``1 × d`` stack.
  SciPy takes **column** spaces, i.e. ``d × k`` inputs.
* Principal angles are returned in radians in **ascending** order (smallest first); SciPy
  returns them largest first.

Principal angles: with orthonormal bases ``Q_A`` (``d × r_A``) and ``Q_B`` (``d × r_B``) of the
two row spaces, the cosines are the singular values ``σ_1 ≥ … ≥ σ_m`` of ``Q_Aᵀ Q_B``
(``m = min(r_A, r_B)``) and ``θ_i = arccos(clip(σ_i, 0, 1))``. ``arccos`` loses accuracy for
small angles (``cos θ ≈ 1 − θ²/2``), so — as SciPy does, after Knyazev & Argentati (2002) —
angles with ``σ_i² ≥ 1/2`` (``θ ≤ π/4``) are taken as ``arcsin`` of the singular values of
the residual ``Q_B − Q_A Q_Aᵀ Q_B`` (or the symmetric one), which are the sines.

Example:
    >>> import numpy as np
    >>> A = np.array([[1.0, 0, 0], [0, 1, 0]])  # the xy-plane
    >>> B = np.array([[1.0, 0, 0], [0, 0, 1]])  # the xz-plane
    >>> np.degrees(principal_angles(A, B)).round(6).tolist()
    [0.0, 90.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from safetygeo.errors import SafetyGeoError
from safetygeo.geometry.rank import as_matrix

__all__ = [
    "cosine",
    "direction_angle",
    "drift",
    "drift_summary",
    "orthonormal_basis",
    "principal_angles",
]


def _as_rows(A: Any, *, name: str) -> np.ndarray:
    """``A`` as a float64 ``k × d`` array (1-D → ``1 × d``); rows span the subspace."""
    return as_matrix(A, name=name)


def _as_vector(u: Any, *, name: str) -> np.ndarray:
    arr = _as_rows(u, name=name)
    if arr.shape[0] != 1:
        raise SafetyGeoError(f"{name} must be a single 1-D direction, got shape {tuple(arr.shape)}")
    arr = arr[0]
    if not np.any(arr):
        raise SafetyGeoError(f"{name} has zero norm: its direction is undefined")
    return arr


def _basis(arr: np.ndarray, tol: float, name: str) -> np.ndarray:
    _, s, vt = np.linalg.svd(arr, full_matrices=False)
    smax = float(s.max(initial=0.0))
    if smax <= 0.0:
        raise SafetyGeoError(
            f"{name} is the zero matrix (shape {tuple(arr.shape)}): it spans no subspace"
        )
    r = int(np.count_nonzero(s > tol * smax))
    return np.ascontiguousarray(vt[:r].T)


def orthonormal_basis(A: Any, tol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis ``Q`` (``d × r``) of the row space of ``A`` (``k × d``), via SVD.

    With ``A = U S Vᵀ``, ``Q`` is the right singular vectors whose singular values exceed
    ``tol · σ_max``; ``r`` is that numerical rank, so linearly dependent (or nearly
    dependent) rows do not add dimensions.

    Args:
        A: ``k × d`` matrix whose rows span the subspace (tensor, array, nested list; a 1-D
            vector is ``1 × d``).
        tol: relative threshold on the singular values.

    Returns:
        float64 ``d × r`` array with orthonormal columns.

    Raises:
        SafetyGeoError: zero matrix, bad shape, NaN/inf, or ``tol`` not in ``[0, 1)``.

    Example:
        >>> orthonormal_basis([[2.0, 0.0, 0.0], [4.0, 0.0, 0.0]]).shape
        (3, 1)
    """
    if not 0.0 <= tol < 1.0:
        raise SafetyGeoError(f"tol must be in [0, 1), got {tol!r}")
    return _basis(_as_rows(A, name="A"), tol, "A")


def principal_angles(A: Any, B: Any, *, tol: float = 1e-10) -> np.ndarray:
    """Principal angles between the row spaces of ``A`` and ``B``, radians, smallest first.

    ``θ_i = arccos(σ_i)`` with ``σ_i`` the singular values of ``Q_Aᵀ Q_B`` clipped to
    ``[0, 1]`` (``Q`` from :func:`orthonormal_basis` with ``tol``); angles ``≤ π/4`` are
    computed from the sines instead, for accuracy at small angles (see the module
    docstring). There are ``min(rank A, rank B)`` angles. Equals
    ``scipy.linalg.subspace_angles(A.T, B.T)[::-1]`` — SciPy takes column spaces
    (``d × k`` inputs) and returns the angles largest first — up to round-off and the
    rank tolerance.

    Args:
        A: ``k_A × d`` matrix whose rows span the first subspace (1-D → one direction).
        B: ``k_B × d`` matrix whose rows span the second subspace.
        tol: relative singular-value threshold for the numerical rank of each input.

    Returns:
        float64 array of ``min(r_A, r_B)`` angles in ``[0, π/2]``, ascending.

    Raises:
        SafetyGeoError: different ambient dimensions ``d`` (the message names both shapes),
            zero matrices, bad shapes or non-finite values.

    Example:
        >>> import numpy as np
        >>> bool(np.isclose(principal_angles([1.0, 0.0], [1.0, 1.0])[0], np.pi / 4))
        True
    """
    a, b = _as_rows(A, name="A"), _as_rows(B, name="B")
    if a.shape[1] != b.shape[1]:
        raise SafetyGeoError(
            f"A and B live in different ambient dimensions: A has shape {tuple(a.shape)} "
            f"(d={a.shape[1]}), B has shape {tuple(b.shape)} (d={b.shape[1]}); rows must be "
            "directions of the same space"
        )
    if not 0.0 <= tol < 1.0:
        raise SafetyGeoError(f"tol must be in [0, 1), got {tol!r}")
    qa, qb = _basis(a, tol, "A"), _basis(b, tol, "B")
    cross = qa.T @ qb  # r_A × r_B
    cos = np.clip(np.linalg.svd(cross, compute_uv=False), 0.0, 1.0)  # descending
    if qa.shape[1] >= qb.shape[1]:
        resid = qb - qa @ cross
    else:
        resid = qa - qb @ cross.T
    m = cos.shape[0]
    sin = np.clip(np.linalg.svd(resid, compute_uv=False)[:m], 0.0, 1.0)  # descending
    # i-th smallest angle: cosine cos[i] (descending), sine sin[::-1][i] (ascending)
    theta = np.where(cos**2 >= 0.5, np.arcsin(sin[::-1]), np.arccos(cos))
    return np.sort(theta)


def cosine(u: Any, v: Any) -> float:
    """Signed cosine similarity ``u·v / (‖u‖ ‖v‖)`` of two 1-D directions, in ``[−1, 1]``.

    Args:
        u, v: 1-D vectors of the same length (tensor, array or list).

    Returns:
        the cosine as a Python float (float64 arithmetic).

    Raises:
        SafetyGeoError: zero norm, different lengths, or not 1-D.

    Example:
        >>> cosine([1.0, 0.0], [-2.0, 0.0])
        -1.0
    """
    a, b = _as_vector(u, name="u"), _as_vector(v, name="v")
    if a.shape != b.shape:
        raise SafetyGeoError(
            f"u and v have different dimensions: u has shape {a.shape}, v has shape {b.shape}"
        )
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(np.clip(a @ b, -1.0, 1.0))


def direction_angle(u: Any, v: Any) -> float:
    """Sign-invariant angle ``arccos(|cos(u, v)|)`` between two 1-D carriers, radians.

    Directions found by diff-in-means or PCA have an arbitrary sign, so ``u`` and ``−u``
    are the same carrier: the result lies in ``[0, π/2]`` and equals the single principal
    angle between the lines spanned by ``u`` and ``v``. Computed as
    ``atan2(‖û − (û·v̂) v̂‖, |û·v̂|)``, which equals ``arccos(|û·v̂|)`` but stays accurate
    for nearly parallel directions.

    Args:
        u, v: 1-D vectors of the same length (tensor, array or list).

    Returns:
        the angle in radians as a Python float.

    Raises:
        SafetyGeoError: zero norm, different lengths, or not 1-D.

    Example:
        >>> import numpy as np
        >>> round(float(np.degrees(direction_angle([1.0, 0.0], [-1.0, 1.0]))), 6)
        45.0
    """
    a, b = _as_vector(u, name="u"), _as_vector(v, name="v")
    if a.shape != b.shape:
        raise SafetyGeoError(
            f"u and v have different dimensions: u has shape {a.shape}, v has shape {b.shape}"
        )
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    c = float(a @ b)
    s = float(np.linalg.norm(a - c * b))
    return float(np.arctan2(s, abs(c)))


def _items(checkpoints: Any) -> list[tuple[Any, Any]]:
    if isinstance(checkpoints, Mapping):
        return list(checkpoints.items())
    try:
        import torch

        if isinstance(checkpoints, torch.Tensor):
            return [(i, checkpoints[i]) for i in range(checkpoints.shape[0])]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(checkpoints, np.ndarray):
        if checkpoints.ndim < 2:
            raise SafetyGeoError(
                "checkpoints as an array must stack subspaces along axis 0 (shape [n, d] for "
                f"1-D carriers, [n, k, d] for k-dim ones), got shape {checkpoints.shape}"
            )
        return [(i, checkpoints[i]) for i in range(checkpoints.shape[0])]
    if isinstance(checkpoints, (str, bytes)) or not isinstance(checkpoints, Sequence):
        raise SafetyGeoError(
            "checkpoints must be a mapping name → subspace or a sequence of subspaces, got "
            f"{type(checkpoints).__name__}"
        )
    return list(enumerate(checkpoints))


def drift(reference: Any, checkpoints: Mapping[Any, Any] | Sequence[Any], *,
          tol: float = 1e-10) -> pd.DataFrame:
    """Principal angles of each checkpoint's carrier subspace against a reference subspace.

    Every subspace is a ``k × d`` matrix whose rows span it (1-D for a single carrier
    direction); checkpoints may span different numbers of dimensions but must share ``d``
    with the reference.

    Args:
        reference: the reference subspace (e.g. the base model's carriers).
        checkpoints: ``{name: subspace}`` (names are kept, in order), a sequence of
            subspaces (named ``0, 1, …``), or an array/tensor stacking subspaces along
            axis 0 (``[n, d]``: ``n`` 1-D carriers; ``[n, k, d]``).
        tol: rank tolerance passed to :func:`principal_angles`.

    Returns:
        tidy DataFrame with one row per checkpoint × angle: ``checkpoint``, ``k``
        (1-based index of the angle, smallest first), ``angle_rad``, ``angle_deg``.
        :func:`drift_summary` reduces it to ``max``/``mean`` per checkpoint.

    Raises:
        SafetyGeoError: no checkpoints, or a subspace that is zero / of another dimension
            (the message names the checkpoint and both shapes).

    Example:
        >>> import numpy as np
        >>> t = drift([1.0, 0.0], {"base": [1.0, 0.0], "ft": [1.0, 1.0]})
        >>> t[["checkpoint", "k", "angle_deg"]].round(6).values.tolist()
        [['base', 1, 0.0], ['ft', 1, 45.0]]
    """
    items = _items(checkpoints)
    if not items:
        raise SafetyGeoError("drift needs at least one checkpoint, got none")
    ref = _as_rows(reference, name="reference")
    rows: list[dict[str, Any]] = []
    for name, sub in items:
        try:
            theta = principal_angles(ref, sub, tol=tol)
        except SafetyGeoError as e:
            raise SafetyGeoError(f"checkpoint {name!r} vs reference: {e}") from e
        for i, t in enumerate(theta, start=1):
            rows.append({"checkpoint": name, "k": i, "angle_rad": float(t),
                         "angle_deg": float(np.degrees(t))})
    return pd.DataFrame(rows, columns=["checkpoint", "k", "angle_rad", "angle_deg"])


def drift_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per-checkpoint summary of a :func:`drift` table.

    Args:
        table: the output of :func:`drift`.

    Returns:
        one row per checkpoint (in first-appearance order): ``checkpoint``, ``n_angles``,
        ``max_angle_rad`` (the largest principal angle: the subspaces' worst-aligned
        direction), ``mean_angle_rad``, ``max_angle_deg``, ``mean_angle_deg``.

    Raises:
        SafetyGeoError: the table lacks the drift columns.

    Example:
        >>> s = drift_summary(drift([[1.0, 0, 0], [0, 1, 0]], {"ft": [[1.0, 0, 0], [0, 0, 1]]}))
        >>> s[["checkpoint", "n_angles", "max_angle_deg", "mean_angle_deg"]].values.tolist()
        [['ft', 2, 90.0, 45.0]]
    """
    missing = {"checkpoint", "angle_rad"} - set(table.columns)
    if missing:
        raise SafetyGeoError(f"not a drift table: missing columns {sorted(missing)}")
    g = table.groupby("checkpoint", sort=False)["angle_rad"]
    out = pd.DataFrame({
        "n_angles": g.size(),
        "max_angle_rad": g.max(),
        "mean_angle_rad": g.mean(),
    }).reset_index()
    out["max_angle_deg"] = np.degrees(out["max_angle_rad"])
    out["mean_angle_deg"] = np.degrees(out["mean_angle_rad"])
    return out
