"""The toy zoo's geometry table: per stage (anchor, r2d2, attacked, defended stages when they
exist), where refusal is carried, its effective rank, and how many dimensions it needs.

One row per stage (:func:`zoo_geometry`), measured on the world's own splits (carrier on
train/val, everything reported on held-out test prompts):

* the refusal carrier (Arditi et al.'s admissible selection; when no candidate is
  admissible — R2D2's KL and induce filters reject every layer — the candidate with the
  lowest validation bypass below the layer cutoff, flagged ``carrier_admissible = False``);
* ``erank`` — the Roy–Vetterli effective rank of the post-instruction carrier directions at
  that layer (the seed study's "≈ 1.24"), with its bootstrap CI;
* ``k_min`` — :func:`~safetygeo.causal.frontier.min_refusal_dimension`: the smallest ``k``
  whose subspace ablation (diff-in-means, then PCA of paired differences) brings held-out
  generations' refusal rate to the target against random ``k``-dim subspaces, with the
  refusal rate and first-token KL at ``k = 1`` and at ``k_min``.

Example:
    >>> from safetygeo.toy.geometry import GEOMETRY_COLUMNS
    >>> GEOMETRY_COLUMNS[:4]
    ('stage', 'refusal_harmful', 'carrier_layer', 'carrier_position')
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from safetygeo.behavior.generate import GenerationSettings
from safetygeo.interventions.nulls import NullSpec

GEOMETRY_COLUMNS = ("stage", "refusal_harmful", "carrier_layer", "carrier_position",
                    "carrier_admissible", "erank", "erank_ci_low", "erank_ci_high", "k_min",
                    "target", "rate_k1", "null_rate_k1", "kl_k1", "rate_at_k_min", "kl_at_k_min",
                    "base_rate")


def carrier_or_best(sel: Any) -> tuple[int, str, bool]:
    """The admissible carrier, or else the lowest-bypass candidate below the layer cutoff:
    ``(layer, position, admissible)``."""
    if sel.chosen is not None:
        return int(sel.chosen[0]), str(sel.chosen[1]), True
    c = sel.candidates
    cutoff = sel.meta.get("layer_cutoff", math.inf)
    pool = c[(c.layer < cutoff) & c.bypass.notna()].sort_values("bypass", kind="stable")
    if not len(pool):
        pool = c[c.bypass.notna()].sort_values("bypass", kind="stable")
    best = pool.iloc[0]
    return int(best.layer), str(best.position), False


def stage_geometry(
    handle: Any,
    splits: dict[str, dict[str, list[str]]],
    *,
    stage: str = "",
    k_max: int = 4,
    target: float = 0.1,
    alpha: float = 0.05,
    nulls: NullSpec = NullSpec(k=19, max_variants=10),
    settings: GenerationSettings = GenerationSettings(max_new_tokens=12),
    n_boot: int = 500,
    seed: int = 0,
) -> tuple[dict[str, Any], Any]:
    """One row of the geometry table for ``handle`` and the :class:`RefusalDimension`."""
    from safetygeo.activations.extract import extract_activations
    from safetygeo.causal.carriers import select_refusal_carrier
    from safetygeo.causal.frontier import min_refusal_dimension
    from safetygeo.geometry.subspaces import carrier_rank

    sel = select_refusal_carrier(handle, splits["harmful"], splits["harmless"], seed=seed,
                                 progress=False)
    layer, pos, admissible = carrier_or_best(sel)
    test_h, test_l = splits["harmful"]["test"], splits["harmless"]["test"]
    kw: dict[str, Any] = dict(positions="post_instruction", keep_vectors=True, progress=False)
    rank = carrier_rank(extract_activations(handle, test_h, **kw),
                        extract_activations(handle, test_l, **kw), layer=layer, n_boot=n_boot,
                        seed=seed)["erank"]
    dim = min_refusal_dimension(handle, test_h, test_l, fit_harmful=splits["harmful"]["train"],
                                fit_harmless=splits["harmless"]["train"], layer=layer,
                                position=pos, k_max=k_max, target=target, alpha=alpha, nulls=nulls,
                                settings=settings, n_boot=n_boot)
    info = handle.extra.get("toy", {}) if hasattr(handle, "extra") else {}
    row = {"stage": stage, "refusal_harmful": info.get("behavior", {}).get("refusal_harmful"),
           "carrier_layer": layer, "carrier_position": pos, "carrier_admissible": admissible,
           "erank": rank.value, "erank_ci_low": rank.ci_low, "erank_ci_high": rank.ci_high,
           **{k: v for k, v in dim.to_row().items() if k in GEOMETRY_COLUMNS}}
    return {c: row.get(c) for c in GEOMETRY_COLUMNS}, dim


def zoo_geometry(
    stages: Sequence[str] = ("anchor", "r2d2"),
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    build: bool = False,
    **kw: Any,
) -> pd.DataFrame:
    """The geometry table of the toy zoo: one row per stage (see the module docstring).

    Stages not yet built are skipped unless ``build`` (R2D2 takes minutes on a CPU);
    ``kw`` goes to :func:`stage_geometry` (``k_max``, ``target``, ``nulls``, ``settings``,
    ``n_boot``).
    """
    from safetygeo.toy.train import read_marker
    from safetygeo.toy.zoo import cache_root, load_toy, toy_splits

    splits = toy_splits(seed)
    rows = []
    for stage in stages:
        if not build and read_marker(cache_root(cache_dir) / f"{stage}-s{seed}") is None:
            continue
        handle = load_toy(stage, seed=seed, cache_dir=cache_dir)
        row, _ = stage_geometry(handle, splits, stage=stage, seed=seed, **kw)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(GEOMETRY_COLUMNS))
