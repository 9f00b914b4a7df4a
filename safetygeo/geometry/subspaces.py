"""Carrier subspaces with uncertainty: effective rank, drift across checkpoints, cosines.

All functions here take per-class :class:`~safetygeo.activations.ActivationStats`
extracted with ``keep_vectors=True`` (per-prompt vectors), so that bootstrap CIs can
resample prompts (harmful and harmless independently, with replacement) and recompute the
diff-in-means directions for each resample.

Which subspace: :func:`carrier_rank` and :func:`carrier_drift` use **the stack of refusal
directions across the post-instruction positions at one layer** (``n_eoi × d``), the
carrier subspace of Zhao et al.; pass ``positions=`` to choose other rows.

Example:
    >>> from safetygeo.activations import extract_activations
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> kw = dict(keep_vectors=True, progress=False)
    >>> a = extract_activations(pm.handle, pm.harmful[:16], **kw)
    >>> b = extract_activations(pm.handle, pm.harmless[:16], **kw)
    >>> r = carrier_rank(a, b, layer=2, n_boot=50)
    >>> round(r["pr"].value, 2), r["erank"].metric  # the planted carrier is one direction
    (1.0, 'erank')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from safetygeo.activations.extract import ActivationStats
from safetygeo.errors import SafetyGeoError
from safetygeo.geometry.angles import principal_angles
from safetygeo.geometry.rank import effective_rank, participation_ratio
from safetygeo.results import Estimate
from safetygeo.stats.bootstrap import bootstrap_ci


def _rows(stats: ActivationStats, layer: int, positions: Sequence[str | int] | None) -> np.ndarray:
    """Per-prompt vectors at ``layer`` × ``positions`` as float64 ``[n, pos, d]``."""
    if stats.vectors is None:
        raise SafetyGeoError("per-prompt vectors are needed: extract with keep_vectors=True")
    slot = stats.slot(layer)
    idx = list(range(len(stats.positions))) if positions is None else [
        stats.positions.index(p) for p in positions]
    return stats.vectors[:, slot][:, idx].double().numpy()


def _check_pair(harmful: ActivationStats, harmless: ActivationStats) -> None:
    from safetygeo.geometry.directions import diff_in_means

    diff_in_means(harmful, harmless)  # raises on template / layer / position mismatch


def carrier_rank(
    harmful: ActivationStats,
    harmless: ActivationStats,
    *,
    layer: int,
    positions: Sequence[str | int] | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Effective rank (Roy–Vetterli) and participation ratio of the carrier subspace.

    The subspace is spanned by the diff-in-means directions at ``layer`` across
    ``positions`` (default: every extracted position, normally the post-instruction ones).

    Returns:
        ``{"erank": Estimate, "pr": Estimate}`` (bootstrap CIs over prompts; NaN CIs with
        ``n_boot=0``); each estimate's ``extra`` holds ``layer`` and ``n_rows``.
    """
    _check_pair(harmful, harmless)
    a, b = _rows(harmful, layer, positions), _rows(harmless, layer, positions)

    def stat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        m = x.mean(0) - y.mean(0)
        return np.array([effective_rank(m), participation_ratio(m)])

    est = stat(a, b)
    lo = hi = np.full(2, np.nan)
    if n_boot > 0:
        res = bootstrap_ci(stat, a, b, n_boot=n_boot, ci=ci, seed=seed)
        lo, hi = np.asarray(res.ci_low), np.asarray(res.ci_high)
    extra = {"layer": layer, "n_rows": int(a.shape[1]), "n_boot": n_boot}
    ci_method = "bootstrap-percentile" if n_boot > 0 else "none"
    return {name: Estimate(float(est[i]), float(lo[i]), float(hi[i]), len(a) + len(b),
                           method="diff-in-means", metric=name, ci=ci, ci_method=ci_method,
                           extra=extra) for i, name in enumerate(("erank", "pr"))}


def carrier_drift(
    reference: tuple[ActivationStats, ActivationStats],
    checkpoints: Mapping[str, tuple[ActivationStats, ActivationStats]],
    *,
    layer: int,
    positions: Sequence[str | int] | None = None,
    n_boot: int = 200,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Principal angles between each checkpoint's carrier subspace and the reference's.

    ``reference`` and each checkpoint are ``(harmful_stats, harmless_stats)`` from the same
    prompts. For a 1-position subspace the single angle is ``arccos|cos|``. Bootstrap CIs
    resample prompts jointly across the two models when they saw the same prompts (same
    prompt-set hash), independently otherwise.

    Returns:
        tidy rows ``checkpoint, k, angle_deg, ci_low_deg, ci_high_deg``.
    """
    ref_h, ref_l = reference
    _check_pair(ref_h, ref_l)
    ra, rb = _rows(ref_h, layer, positions), _rows(ref_l, layer, positions)
    rows = []
    for name, (ch, cl) in checkpoints.items():
        _check_pair(ch, cl)
        ca, cb = _rows(ch, layer, positions), _rows(cl, layer, positions)
        if ca.shape[-1] != ra.shape[-1]:
            raise SafetyGeoError(
                f"checkpoint {name!r} has d_model={ca.shape[-1]}, reference has {ra.shape[-1]}"
            )
        same = (ref_h.meta.get("prompt_set", {}).get("sha256") == ch.meta.get("prompt_set", {}).get("sha256")
                and ref_l.meta.get("prompt_set", {}).get("sha256") == cl.meta.get("prompt_set", {}).get("sha256")
                and len(ra) == len(ca) and len(rb) == len(cb))

        def angles(ra_, rb_, ca_, cb_):
            return np.degrees(principal_angles(ra_.mean(0) - rb_.mean(0), ca_.mean(0) - cb_.mean(0)))

        if same:  # one resample of prompt indices drives both models
            stat: Callable[..., Any] = lambda h, l: angles(h[:, 0], l[:, 0], h[:, 1], l[:, 1])  # noqa: E731
            samples = [np.stack([ra, ca], 1), np.stack([rb, cb], 1)]
        else:
            stat, samples = angles, [ra, rb, ca, cb]
        est = stat(*samples)
        lo = hi = np.full_like(est, np.nan)
        if n_boot > 0:
            res = bootstrap_ci(stat, *samples, n_boot=n_boot, ci=ci, seed=seed)
            lo, hi = np.atleast_1d(res.ci_low), np.atleast_1d(res.ci_high)
        for k, angle in enumerate(np.atleast_1d(est)):
            rows.append({"checkpoint": name, "layer": layer, "k": k, "angle_deg": float(angle),
                         "ci_low_deg": float(lo[k]), "ci_high_deg": float(hi[k]),
                         "paired_bootstrap": same})
    return pd.DataFrame(rows)


def direction_cosine(
    a: tuple[ActivationStats, ActivationStats],
    b: tuple[ActivationStats, ActivationStats],
    *,
    layer_a: int,
    position_a: str | int,
    layer_b: int | None = None,
    position_b: str | int | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Signed cosine between two diff-in-means directions, with a bootstrap CI.

    ``a`` and ``b`` are ``(harmful, harmless)`` pairs — the same pair for two layers or
    positions of one model, or two checkpoints. Resamples are shared when both pairs are
    the very same objects (joint resampling of the same prompts).

    Returns:
        an :class:`~safetygeo.results.Estimate` with ``metric="cos"``.

    Raises:
        SafetyGeoError: a zero-norm direction (the angle is undefined).
    """
    layer_b = layer_a if layer_b is None else layer_b
    position_b = position_a if position_b is None else position_b
    ah, al = _rows(a[0], layer_a, [position_a])[:, 0], _rows(a[1], layer_a, [position_a])[:, 0]
    bh, bl = _rows(b[0], layer_b, [position_b])[:, 0], _rows(b[1], layer_b, [position_b])[:, 0]

    def cos(u: np.ndarray, v: np.ndarray) -> float:
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        if nu == 0 or nv == 0:
            raise SafetyGeoError("zero-norm direction: harmful and harmless means coincide")
        return float(u @ v / (nu * nv))

    if a[0] is b[0] and a[1] is b[1]:
        samples = [np.stack([ah, bh], 1), np.stack([al, bl], 1)]
        stat: Callable[..., float] = lambda h, l: cos(h[:, 0].mean(0) - l[:, 0].mean(0), h[:, 1].mean(0) - l[:, 1].mean(0))  # noqa: E731
    else:
        samples = [ah, al, bh, bl]
        stat = lambda w, x, y, z: cos(w.mean(0) - x.mean(0), y.mean(0) - z.mean(0))  # noqa: E731
    value = stat(*samples)
    lo = hi = float("nan")
    if n_boot > 0:
        res = bootstrap_ci(stat, *samples, n_boot=n_boot, ci=ci, seed=seed)
        lo, hi = float(res.ci_low), float(res.ci_high)
    return Estimate(value, lo, hi, len(samples[0]), method="diff-in-means", metric="cos", ci=ci,
                    ci_method="bootstrap-percentile" if n_boot > 0 else "none",
                    extra={"n_boot": n_boot})
