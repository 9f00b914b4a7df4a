"""Nonparametric bootstrap over prompts: seeded, multi-sample, scalar or array statistics.

Resampling unit: **rows (axis 0) of each sample array = prompts**. With several samples
(e.g. harmful and harmless activations) every sample is resampled *independently*, with
replacement and at its own size, and the statistic is recomputed on the resampled arrays:

``θ*_b = stat_fn(X_1[I_1b], …, X_s[I_sb])``, ``I_jb`` = ``n_j`` draws from ``{0, …, n_j − 1}``.

The point estimate is ``stat_fn`` on the original samples. Intervals:

* ``"percentile"``: the ``(1 − ci)/2`` and ``(1 + ci)/2`` quantiles of the ``θ*_b``
  (``numpy.quantile``, linear interpolation).
* ``"bca"``: bias-corrected and accelerated (Efron 1987), with the bias correction
  ``z0 = Φ⁻¹(#{θ* < θ̂} + #{θ* ≤ θ̂}) / 2B)`` and the acceleration from a jackknife that
  deletes one row of one sample at a time (all samples pooled, as
  :func:`scipy.stats.bootstrap` does for multi-sample statistics). Costs ``Σ n_j`` extra
  evaluations of ``stat_fn``.

Array-valued statistics get elementwise intervals. Randomness comes only from
``numpy.random.default_rng(seed)`` through :func:`bootstrap_indices`, so a caller that must
re-run a model per resample (and cannot pass a cheap ``stat_fn``) can draw exactly the same
resamples.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(1).normal(size=200)
    >>> res = bootstrap_ci(np.mean, x, n_boot=500)
    >>> bool(res.ci_low < res.estimate < res.ci_high), res.samples.shape, res.n
    (True, (500,), (200,))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from safetygeo.errors import SafetyGeoError

__all__ = ["MIN_N_BOOT", "BootstrapResult", "bootstrap_ci", "bootstrap_indices"]

#: The fewest resamples :func:`bootstrap_ci` accepts. With one resample the "interval" is a
#: single point that can exclude the estimate; ten is a floor against such degenerate
#: calls, not a recommendation (use hundreds to thousands).
MIN_N_BOOT = 10

SeedLike = int | np.random.Generator | None


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Point estimate and bootstrap confidence interval of a statistic.

    Scalar statistics give Python floats for ``estimate`` / ``ci_low`` / ``ci_high``;
    array statistics give float64 arrays of the statistic's shape (elementwise intervals).

    Attributes:
        estimate: ``stat_fn`` on the original (not resampled) samples.
        ci_low, ci_high: the interval bounds.
        n_boot: number of bootstrap resamples ``B``.
        ci: the confidence level, e.g. ``0.95``.
        samples: float64 array ``[n_boot, *shape]`` of the bootstrap values ``θ*_b``.
        n: the size (number of rows) of each input sample.
        method: ``"percentile"`` or ``"bca"``.

    Example:
        >>> import numpy as np
        >>> r = BootstrapResult(1.0, 0.5, 1.5, 2, 0.9, np.array([0.5, 1.5]), (10,))
        >>> r.to_dict()["ci_high"], round(r.se, 4)
        (1.5, 0.7071)
    """

    estimate: float | np.ndarray
    ci_low: float | np.ndarray
    ci_high: float | np.ndarray
    n_boot: int
    ci: float
    samples: np.ndarray
    n: tuple[int, ...]
    method: str = "percentile"

    @property
    def se(self) -> float | np.ndarray:
        """Bootstrap standard error: std of ``samples`` over resamples (``ddof=1``; NaN if B=1)."""
        if self.n_boot < 2:
            out = np.full(np.shape(self.estimate), np.nan)
        else:
            out = np.std(self.samples, axis=0, ddof=1)
        return float(out) if np.ndim(out) == 0 else out

    def to_dict(self) -> dict[str, Any]:
        """A flat record for tables (array values become nested lists; ``n`` stays a tuple).

        Example:
            >>> import numpy as np
            >>> r = bootstrap_ci(np.mean, np.arange(10.0), n_boot=50)
            >>> sorted(r.to_dict())
            ['ci', 'ci_high', 'ci_low', 'estimate', 'method', 'n', 'n_boot', 'se']
        """

        def conv(x: Any) -> Any:
            return x.tolist() if isinstance(x, np.ndarray) else x

        return {
            "estimate": conv(self.estimate),
            "ci_low": conv(self.ci_low),
            "ci_high": conv(self.ci_high),
            "se": conv(self.se),
            "ci": self.ci,
            "n_boot": self.n_boot,
            "method": self.method,
            "n": tuple(self.n),
        }


def _check_n_boot(n_boot: Any) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise SafetyGeoError(f"n_boot must be an integer ≥ 1, got {n_boot!r}")
    return int(n_boot)


def bootstrap_indices(
    n: int | Sequence[int], n_boot: int, seed: SeedLike = 0
) -> Iterator[Any]:
    """Iterator over ``n_boot`` resampling index arrays (draws with replacement), seeded.

    For an integer ``n`` each item is an ``int64`` array of ``n`` indices in ``[0, n)``; for
    a sequence of sizes ``(n_1, …, n_s)`` each item is a tuple of such arrays, one per
    sample, drawn in that order from one ``default_rng(seed)`` stream. These are exactly the
    resamples :func:`bootstrap_ci` uses with the same sizes and seed, so callers that must
    re-run a model per resample can reproduce its intervals.

    Args:
        n: sample size, or one size per sample.
        n_boot: number of resamples (≥ 1).
        seed: ``numpy.random.default_rng`` seed (an int, a Generator, or None for fresh
            entropy).

    Returns:
        an iterator whose items are index arrays (or tuples of them), drawn lazily.

    Raises:
        SafetyGeoError: a size < 1 or ``n_boot`` < 1 (raised at call time).

    Example:
        >>> [idx.tolist() for idx in bootstrap_indices(4, 2, seed=0)]
        [[3, 2, 2, 1], [1, 0, 0, 0]]
    """
    n_boot = _check_n_boot(n_boot)
    scalar = isinstance(n, (int, np.integer)) and not isinstance(n, bool)
    sizes = (int(cast(int, n)),) if scalar else tuple(int(x) for x in cast(Sequence[int], n))
    if not sizes or any(s < 1 for s in sizes):
        raise SafetyGeoError(f"sample sizes must be ≥ 1, got {n!r}")
    rng = np.random.default_rng(seed)

    def draws() -> Iterator[Any]:
        for _ in range(n_boot):
            draw = tuple(rng.integers(0, s, size=s) for s in sizes)
            yield draw[0] if scalar else draw

    return draws()


def _to_float_array(x: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SafetyGeoError(f"stat_fn must return a number or a numeric array, got {x!r}") from e


def _take(sample: Any, idx: np.ndarray) -> Any:
    if isinstance(sample, np.ndarray):
        return sample[idx]
    import torch

    return sample[torch.from_numpy(idx).to(sample.device)]


def _as_sample(x: Any, j: int) -> Any:
    """numpy arrays and torch tensors are kept (stat_fn sees the same type); others → array."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            if x.ndim == 0:
                raise SafetyGeoError(f"sample {j} is a 0-d tensor: rows (prompts) are axis 0")
            return x
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise SafetyGeoError(f"sample {j} is a scalar: rows (prompts) are axis 0")
    return arr


def _ndtr(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def _ndtri(p: np.ndarray | float) -> Any:
    from scipy.special import ndtri

    return ndtri(p)


def _bca_levels(
    stat_fn: Callable[..., Any],
    data: list[Any],
    estimate: np.ndarray,
    boot: np.ndarray,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-element BCa quantile levels ``(α_1, α_2)`` (same formulas as SciPy)."""
    b = boot.shape[0]
    prop = ((boot < estimate).sum(0) + (boot <= estimate).sum(0)) / (2.0 * b)
    z0 = _ndtri(prop)
    num = np.zeros(estimate.shape)
    den = np.zeros(estimate.shape)
    for j, sample in enumerate(data):
        nj = sample.shape[0]
        jack = np.empty((nj, *estimate.shape))
        for i in range(nj):
            keep = np.delete(np.arange(nj), i)
            args = [_take(s, keep) if k == j else s for k, s in enumerate(data)]
            jack[i] = _to_float_array(stat_fn(*args))
        u = (nj - 1) * (jack.mean(0) - jack)
        num += (u**3).sum(0) / nj**3
        den += (u**2).sum(0) / nj**2
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(den > 0, num / (6.0 * den**1.5), 0.0)
    z_lo, z_hi = _ndtri(alpha), -_ndtri(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = _ndtr(z0 + (z0 + z_lo) / (1 - a * (z0 + z_lo)))
        hi = _ndtr(z0 + (z0 + z_hi) / (1 - a * (z0 + z_hi)))
    return lo, hi


def bootstrap_ci(
    stat_fn: Callable[..., Any],
    *samples: Any,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: SeedLike = 0,
    method: Literal["percentile", "bca"] = "percentile",
    min_n: int = 2,
) -> BootstrapResult:
    """Bootstrap confidence interval of ``stat_fn(*samples)``, resampling prompts (rows).

    Each sample (numpy array, torch tensor or anything ``numpy.asarray`` reads; prompts
    along axis 0) is resampled with replacement independently of the others — e.g.
    harmful and harmless activations are resampled separately, each at its own size —
    and ``stat_fn`` is recomputed on the resampled arrays (tensors stay tensors). The
    resamples are those of ``bootstrap_indices([n_1, …, n_s], n_boot, seed)``.

    Args:
        stat_fn: statistic of the samples, returning a number or an array (tensor) of fixed
            shape; array statistics get elementwise intervals.
        *samples: one or more arrays with prompts along axis 0.
        n_boot: number of bootstrap resamples ``B`` (≥ :data:`MIN_N_BOOT`).
        ci: confidence level in ``(0, 1)``.
        seed: ``numpy.random.default_rng`` seed; the same seed gives the same result.
        method: ``"percentile"`` or ``"bca"`` (see the module docstring).
        min_n: the fewest rows each sample may have (≥ 2 by default: one prompt cannot
            be resampled meaningfully).

    Returns:
        a :class:`BootstrapResult`.

    Raises:
        SafetyGeoError: no samples, a sample with fewer than ``min_n`` rows, ``n_boot`` below
            :data:`MIN_N_BOOT`,
            ``ci`` outside ``(0, 1)``, an unknown method, or a statistic whose shape changes
            between resamples.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 200)
        >>> r = bootstrap_ci(lambda x, y: x.mean() - y.mean(), a, b, n_boot=400, seed=1)
        >>> bool(r.ci_low < 1.0 < r.ci_high), r.n
        (True, (300, 200))
    """
    if not samples:
        raise SafetyGeoError("bootstrap_ci needs at least one sample array")
    n_boot = _check_n_boot(n_boot)
    if n_boot < MIN_N_BOOT:
        raise SafetyGeoError(
            f"n_boot={n_boot} is too few resamples for a confidence interval (need ≥ "
            f"{MIN_N_BOOT}; 1000 is the usual choice): with a handful the interval's ends are "
            "single resamples and can exclude the estimate")
    if not (isinstance(ci, (int, float, np.floating)) and 0.0 < float(ci) < 1.0):
        raise SafetyGeoError(f"ci must be a confidence level in (0, 1), got {ci!r}")
    if method not in ("percentile", "bca"):
        raise SafetyGeoError(f"unknown bootstrap method {method!r}: use 'percentile' or 'bca'")
    min_n = max(int(min_n), 1)
    data = [_as_sample(x, j) for j, x in enumerate(samples)]
    sizes = tuple(int(x.shape[0]) for x in data)
    for j, nj in enumerate(sizes):
        if nj < min_n:
            which = f" (sample {j})" if len(sizes) > 1 else ""
            raise SafetyGeoError(
                f"fewer prompts than bootstrap needs{which}: got n={nj}, need ≥ {min_n}"
            )

    estimate = _to_float_array(stat_fn(*data))
    boot = np.empty((n_boot, *estimate.shape), dtype=np.float64)
    for b, idx in enumerate(bootstrap_indices(list(sizes), n_boot, seed)):
        val = _to_float_array(stat_fn(*(_take(x, i) for x, i in zip(data, idx))))
        if val.shape != estimate.shape:
            raise SafetyGeoError(
                f"stat_fn returned shape {val.shape} on resample {b}, but {estimate.shape} on "
                "the original samples; it must return a fixed shape"
            )
        boot[b] = val

    alpha = (1.0 - float(ci)) / 2.0
    if method == "percentile":
        lo = np.quantile(boot, alpha, axis=0)
        hi = np.quantile(boot, 1.0 - alpha, axis=0)
    else:
        a1, a2 = _bca_levels(stat_fn, data, estimate, boot, alpha)
        flat = boot.reshape(n_boot, -1)
        a1, a2 = np.broadcast_to(a1, estimate.shape).ravel(), np.broadcast_to(
            a2, estimate.shape).ravel()
        lo = np.array([np.nan if np.isnan(q) else np.quantile(flat[:, e], q)
                       for e, q in enumerate(a1)]).reshape(estimate.shape)
        hi = np.array([np.nan if np.isnan(q) else np.quantile(flat[:, e], q)
                       for e, q in enumerate(a2)]).reshape(estimate.shape)

    def out(x: np.ndarray) -> float | np.ndarray:
        return float(x) if np.ndim(x) == 0 else np.asarray(x, dtype=np.float64)

    return BootstrapResult(
        estimate=out(estimate),
        ci_low=out(lo),
        ci_high=out(hi),
        n_boot=n_boot,
        ci=float(ci),
        samples=boot,
        n=sizes,
        method=method,
    )
