"""Geometric harmfulness–refusal (H/R) coupling: per-layer cosines with bootstrap CIs.

Per layer, ``cos(h[l], r[l, p])`` between the harmfulness direction (diff-in-means at
``t_inst``) and the refusal direction (diff-in-means at a post-instruction position ``p``),
computed from one extraction of the same prompts; bootstrap CIs resample harmful and
harmless prompts (each class separately, with replacement). Where a direction has zero
norm (identical class means) the angle is undefined: ``cos`` is NaN and ``note`` says why
— never 0.

The causal counterpart (intervene on one direction, read out the other, against matched
nulls) is :func:`safetygeo.causal.coupling.causal_coupling`.

Example:
    >>> from safetygeo.activations import extract_activations
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> kw = dict(positions="t_inst+post_instruction", progress=False)
    >>> a = extract_activations(pm.handle, pm.harmful[:8], **kw)
    >>> b = extract_activations(pm.handle, pm.harmless[:8], **kw)
    >>> t = geometric_coupling(a, b)
    >>> list(t.columns), len(t) == len(a.layers)
    (['layer', 'cos', 'note', 'refusal_position'], True)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from safetygeo.activations.extract import ActivationStats
from safetygeo.errors import SafetyGeoError
from safetygeo.stats.bootstrap import bootstrap_ci

__all__ = ["cosine_rows", "geometric_coupling"]

_ZERO = 1e-12


def cosine_rows(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine of ``a`` and ``b`` (float64); NaN where either row has zero norm."""
    a, b = a.double(), b.double()
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cos = (a * b).sum(-1) / (na * nb).clamp(min=1e-300)
    return torch.where((na <= _ZERO) | (nb <= _ZERO), torch.full_like(cos, float("nan")), cos)


def geometric_coupling(
    harmful: ActivationStats,
    harmless: ActivationStats,
    *,
    refusal_position: str | int = "eoi-1",
    n_boot: int = 0,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-layer ``cos(harmfulness dir, refusal dir)`` with optional bootstrap CIs.

    ``harmful`` / ``harmless`` must be extracted with positions including ``t_inst`` and
    ``refusal_position`` (e.g. ``positions="t_inst+post_instruction"``) and, for CIs,
    ``keep_vectors=True``.

    Returns:
        rows ``layer, cos, note`` (+ ``ci_low, ci_high, n_boot`` when ``n_boot > 0``);
        ``cos`` is NaN with a ``note`` where a direction has zero norm.

    Raises:
        NonFiniteError: NaN / inf activations (from :func:`~safetygeo.geometry.directions.diff_in_means`).
    """
    from safetygeo.geometry.directions import diff_in_means

    d = diff_in_means(harmful, harmless)
    ti, ri = d.positions.index("t_inst"), d.positions.index(refusal_position)
    cos = cosine_rows(d.vectors[:, ti], d.vectors[:, ri])
    notes = ["" if np.isfinite(c) else "undefined: a direction has zero norm (identical class "
             "means)" for c in cos.tolist()]
    table = pd.DataFrame({"layer": list(d.layers), "cos": cos.numpy(), "note": notes})
    if n_boot > 0:
        if harmful.vectors is None or harmless.vectors is None:
            raise SafetyGeoError("bootstrap CIs need per-prompt vectors: extract with keep_vectors=True")
        va = harmful.vectors[:, :, [ti, ri]].double().numpy()
        vb = harmless.vectors[:, :, [ti, ri]].double().numpy()

        def stat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            diff = a.mean(0) - b.mean(0)  # [layer, 2, d]
            return cosine_rows(torch.from_numpy(diff[:, 0]), torch.from_numpy(diff[:, 1])).numpy()

        res = bootstrap_ci(stat, va, vb, n_boot=n_boot, ci=ci, seed=seed)
        table["ci_low"], table["ci_high"], table["n_boot"] = res.ci_low, res.ci_high, n_boot
    table["refusal_position"] = str(refusal_position)
    return table
