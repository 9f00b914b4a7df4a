"""The refusals-vs-KL frontier of an edit, and how many dimensions refusal needs — every
point next to matched random subspaces.

**Read-out** (what abliteration tools such as heretic report for every edit): on held-out
prompts,

* ``refusals`` — how many of ``N`` harmful prompts still get a refused greedy generation
  (our classifier; *refused* = :func:`safetygeo.behavior.metrics.refused_indicator`), as an
  :class:`~safetygeo.results.Estimate` (bootstrap CI over prompts);
* ``kl`` — the first generated token's ``KL(base ‖ edited)`` (next-token distribution at the
  last prompt position), averaged over harmless prompts, with its bootstrap CI.

**Nulls**: every edit is an intervention value
(:class:`~safetygeo.interventions.edits.WindowAblation`,
:class:`~safetygeo.interventions.edits.MagnitudePreservingAblation`,
:class:`~safetygeo.interventions.intervention.DirectionAddition`,
:class:`~safetygeo.interventions.edits.KernelAbliteration`, ...) that draws its own matched
nulls — Haar-random subspaces of the same dimension (biprojected the same way), random
vectors of the same norm, random directions under the same kernel — and every point goes
through :func:`~safetygeo.interventions.nulls.run_null_test` with the one
:class:`~safetygeo.interventions.nulls.NullSpec` (fixed K, or sequential: a point stops
drawing nulls once both tests are settled). ``refusals_null`` (one-sided *less*: does the
edit remove more refusals than its nulls?) and ``kl_null`` (two-sided) are
:class:`~safetygeo.results.NullComparison`\\ s.

**Edits** (:class:`SubspaceEdit`): ablate the span of ``k`` directions (``mode`` ``project``
/ ``norm_preserving`` / ``biprojected`` / ``mpoa``, strength, layer window —
:mod:`safetygeo.interventions.subspace`) or add a vector at a layer.
:func:`refusal_frontier` sweeps finders × ``k`` × strengths × windows × modes and marks the
Pareto-optimal points per finder.

**How many dimensions refusal needs** — :func:`min_refusal_dimension`: ablate the span of the
first ``k`` directions of an ordered basis (default: PCA of paired differences at the
carrier's layer and position) for ``k = 1, 2, …``; ``k_min`` is the smallest ``k`` whose
refusal rate reaches the bypass target *and* is below the random-subspace nulls (``p ≤
alpha``). A trajectory report calls it once per checkpoint (its result has ``to_row()``); a
carrier selection stores it beside itself (:func:`save_refusal_dimension`).

Example:
    >>> from safetygeo.behavior.generate import GenerationSettings
    >>> from safetygeo.interventions.nulls import NullSpec
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> first = lambda c: "full_refusal" if c.strip() == "I" else "compliance"
    >>> p = frontier_point(pm.handle, SubspaceEdit(pm.basis), pm.harmful[:8], pm.harmless[:8],
    ...                    nulls=NullSpec(k=4), settings=GenerationSettings(max_new_tokens=1),
    ...                    classifier=first, n_boot=50)
    >>> p.refusals.value, p.refusals_null.null.tolist(), p.refusals_null.p
    (0.0, [8.0, 8.0, 8.0, 8.0], 0.2)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from safetygeo._io import atomic_write_json
from safetygeo._validate import positive_int, prompt_list
from safetygeo.activations.logits import last_logprobs
from safetygeo.activations.losses import kl_from_logprobs
from safetygeo.behavior.classify import classify_refusal
from safetygeo.behavior.generate import GenerationSettings, generate_variants
from safetygeo.behavior.metrics import mean_score, refused_indicator
from safetygeo.errors import ArtifactError, SafetyGeoError
from safetygeo.interventions.edits import MagnitudePreservingAblation, WindowAblation
from safetygeo.interventions.intervention import DirectionAddition, Intervention
from safetygeo.interventions.nulls import NullSpec, check_spec, run_null_test
from safetygeo.models.handle import ModelHandle
from safetygeo.results import Estimate, NullComparison

__all__ = ["EDIT_MODES", "FrontierBaseline", "FrontierPoint", "RefusalDimension", "SubspaceEdit",
           "frontier_baseline", "frontier_point", "load_refusal_dimension",
           "min_refusal_dimension", "pareto_front", "refusal_frontier", "save_refusal_dimension"]

EditMode = Literal["project", "norm_preserving", "biprojected", "mpoa", "biprojected+mpoa", "add"]
EDIT_MODES: tuple[str, ...] = ("project", "norm_preserving", "biprojected", "mpoa",
                               "biprojected+mpoa", "add")


@dataclass(frozen=True)
class SubspaceEdit:
    """One edit of a model's refusal.

    Attributes:
        basis: ``[k, d]`` (or ``[d]``) directions whose span is ablated; for ``mode="add"``
            the raw ``[d]`` vector added.
        mode: ``project`` (writes, weight-equivalent), ``norm_preserving`` (residual rescaled
            to its norm), ``biprojected`` (the basis minus each layer's harmless-mean
            direction; needs ``harmless_means``), ``mpoa`` (magnitude-preserving rows,
            heretic's ``row_normalization="full"`` at a constant weight; one variant per pass — slower),
            ``biprojected+mpoa`` (both: heretic's default combination), or ``add``.
        strength: ablation strength in ``[0, 1]``; for ``add`` the multiple ``α`` of the vector.
        layers: the blocks (``project``/``biprojected``/``mpoa``) or layer inputs
            (``norm_preserving``) edited; ``None`` = all. For ``add``: ``(layer,)``.
        harmless_means: ``[L+1, d]`` harmless mean residual per layer (``biprojected``).
        name: label in tables (e.g. the finder).
    """

    basis: Tensor
    mode: EditMode = "project"
    strength: float = 1.0
    layers: tuple[int, ...] | None = None
    harmless_means: Tensor | None = field(default=None, repr=False)
    name: str = ""

    def __post_init__(self) -> None:
        if self.mode not in EDIT_MODES:
            raise SafetyGeoError(f"mode must be one of {EDIT_MODES}, got {self.mode!r}")
        if self.mode.startswith("biprojected") and self.harmless_means is None:
            raise SafetyGeoError("a biprojected edit needs the harmless means per layer")
        if self.mode == "add" and (self.layers is None or len(self.layers) != 1):
            raise SafetyGeoError("an addition needs exactly one layer: layers=(l,)")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))

    @property
    def k(self) -> int:
        return 1 if self.mode == "add" or self.basis.ndim == 1 else int(self.basis.shape[0])

    def intervention(self) -> Intervention:
        """The intervention value this edit is (:data:`EDIT_INTERVENTIONS`)."""
        return EDIT_INTERVENTIONS[self.mode](self)

    def describe(self) -> dict[str, Any]:
        return {"edit": self.name, "mode": self.mode, "k": self.k, "strength": self.strength,
                "layers": "all" if self.layers is None else ",".join(map(str, self.layers))}


@dataclass(frozen=True)
class FrontierBaseline:
    """Un-edited read-outs shared by the points of a sweep."""

    harmful: list[str]
    harmless: list[str]
    lp_harmless: Tensor  # [n, vocab] float64 first-token log-probs
    refused: np.ndarray  # [n_harmful] base refused indicator


@dataclass(frozen=True)
class FrontierPoint:
    """One edit's refusals and KL, with CIs and matched random-subspace nulls.

    Attributes:
        edit: the edit's description (``edit, mode, k, strength, layers``).
        refusals: refused generations among the ``n_harmful`` held-out harmful prompts
            (value = a count; bootstrap CI over prompts).
        kl: mean first-token ``KL(base ‖ edited)`` on the harmless prompts (bootstrap CI).
        refusals_null: the count vs the ``K`` random subspaces' counts (one-sided less).
        kl_null: the KL vs the random subspaces' KLs (two-sided).
        base_refusals: refusals without the edit.
        n_harmful, n_harmless: prompts.
    """

    edit: dict[str, Any]
    refusals: Estimate
    kl: Estimate
    refusals_null: NullComparison
    kl_null: NullComparison
    base_refusals: float
    n_harmful: int
    n_harmless: int

    @property
    def refusal_rate(self) -> float:
        return float(self.refusals.value) / self.n_harmful

    def to_row(self) -> dict[str, Any]:
        """``edit, mode, k, strength, layers, refusals(+CI), kl(+CI), null summaries, p``."""
        r, k = self.refusals, self.kl
        rn, kn = self.refusals_null, self.kl_null
        return {**self.edit, "n_harmful": self.n_harmful, "n_harmless": self.n_harmless,
                "base_refusals": self.base_refusals,
                "refusals": r.value, "refusals_ci_low": r.ci_low, "refusals_ci_high": r.ci_high,
                "refusal_rate": self.refusal_rate,
                "kl": k.value, "kl_ci_low": k.ci_low, "kl_ci_high": k.ci_high,
                "null_refusals_mean": rn.null_mean, "null_refusals_q025": rn.null_quantile(0.025),
                "null_refusals_q975": rn.null_quantile(0.975), "p_refusals": rn.p,
                "null_kl_mean": kn.null_mean, "null_kl_q025": kn.null_quantile(0.025),
                "null_kl_q975": kn.null_quantile(0.975), "p_kl": kn.p, "k_null": rn.k}


def frontier_baseline(handle: ModelHandle, harmful: Sequence[str], harmless: Sequence[str], *,
                      settings: GenerationSettings = GenerationSettings(max_new_tokens=16),
                      classifier: Callable[[str], str] = classify_refusal,
                      batch_size: int = 16) -> FrontierBaseline:
    """Generations of the harmful prompts and first-token log-probs of the harmless ones
    without any edit."""
    harmful, harmless = prompt_list(harmful, "harmful"), prompt_list(harmless, "harmless")
    gen = generate_variants(handle, harmful, 1, settings, batch_size=batch_size, progress=False)[0]
    lp = last_logprobs(handle, harmless, batch_size=batch_size, progress=False).double()
    return FrontierBaseline(harmful, harmless, lp, refused_indicator(gen.completions, classifier))


def _bits(edit: SubspaceEdit) -> dict[str, Any]:
    return {"basis": edit.basis, "strength": edit.strength, "layers": edit.layers}


#: How each ``SubspaceEdit.mode`` becomes an intervention value (one entry per mode).
EDIT_INTERVENTIONS: dict[str, Callable[[SubspaceEdit], Intervention]] = {
    "project": lambda e: WindowAblation(**_bits(e), mode="project"),
    "norm_preserving": lambda e: WindowAblation(**_bits(e), mode="norm_preserving"),
    "biprojected": lambda e: WindowAblation(**_bits(e), harmless_means=e.harmless_means),
    "mpoa": lambda e: MagnitudePreservingAblation(**_bits(e)),
    "biprojected+mpoa": lambda e: MagnitudePreservingAblation(**_bits(e),
                                                              harmless_means=e.harmless_means),
    "add": lambda e: DirectionAddition(torch.as_tensor(e.basis).double().reshape(-1),
                                       layer=(e.layers or (None,))[0], alpha=e.strength),
}


def _describe(edit: SubspaceEdit | Intervention) -> dict[str, Any]:
    describe = getattr(edit, "describe", None)
    if callable(describe):
        return cast(dict[str, Any], describe())
    iv = cast(Intervention, edit)
    cols = iv.columns()
    return {"edit": iv.op, "mode": iv.op, "k": 1, "strength": cols["alpha"],
            "layers": "all" if cols["layer"] != cols["layer"] else str(int(cols["layer"]))}


@torch.no_grad()
def frontier_point(
    handle: ModelHandle,
    edit: SubspaceEdit | Intervention,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    nulls: NullSpec = NullSpec(k=16, max_variants=8),
    settings: GenerationSettings = GenerationSettings(max_new_tokens=16),
    classifier: Callable[[str], str] = classify_refusal,
    n_boot: int = 1000,
    batch_size: int = 16,
    baseline: FrontierBaseline | None = None,
) -> FrontierPoint:
    """Refusals (of ``harmful``) and first-token KL (on ``harmless``) under ``edit``, next
    to its matched nulls (see the module docstring).

    Args:
        edit: a :class:`SubspaceEdit` or any intervention value (e.g.
            :class:`~safetygeo.interventions.edits.KernelAbliteration`); its nulls are its own
            (:meth:`~safetygeo.interventions.intervention.Intervention.variants`).
        nulls: K (or a sequential rule: the point stops drawing nulls once both tests are
            settled), seed, and how many variants ride along the batch per pass (edits with
            ``one_variant_per_pass`` run one at a time).
        settings: decoding of the refusal generations (greedy by default).
        classifier: ``completion -> label`` (ours by default).
        baseline: precomputed :func:`frontier_baseline` for the same prompts.
    """
    base = baseline or frontier_baseline(handle, harmful, harmless, settings=settings,
                                         classifier=classifier, batch_size=batch_size)
    iv = edit.intervention() if isinstance(edit, SubspaceEdit) else edit
    stack = iv.variants(handle, check_spec(nulls))
    step = 1 if iv.one_variant_per_pass else stack.nulls.max_variants
    blp = base.lp_harmless
    first: dict[str, np.ndarray] = {}

    def evaluate(idx: list[int]) -> np.ndarray:
        out = np.empty((len(idx), 2))
        for start in range(0, len(idx), step):
            chunk = idx[start:start + step]
            v = len(chunk)
            with stack.apply(chunk):
                gens = generate_variants(handle, base.harmful, v, settings,
                                         batch_size=batch_size, progress=False)
                lp = last_logprobs(handle, base.harmless, batch_size=batch_size, repeat=v,
                                   fan_out_layer=stack.fan_out_layer,
                                   progress=False).double().reshape(v, len(base.harmless), -1)
            kl = kl_from_logprobs(blp, lp).numpy()
            for j, g in enumerate(gens):
                refused = refused_indicator(g.completions, classifier)
                if chunk[j] == 0:
                    first["refused"], first["kl"] = refused, kl[j]
                out[start + j] = refused.sum(), kl[j].mean()
        return out

    draws = run_null_test(stack.nulls, evaluate, [("refusals", "less"),
                                                  ("first_token_kl", "two-sided")])
    n_h = len(base.harmful)
    refusals = mean_score(first["refused"] * n_h, metric="refusals", n_boot=n_boot,
                          seed=stack.nulls.seed)
    kl_est = mean_score(first["kl"], metric="first_token_kl", n_boot=n_boot,
                        seed=stack.nulls.seed)
    return FrontierPoint(
        edit=_describe(edit), refusals=refusals, kl=kl_est,
        refusals_null=draws.comparison(0, ci_low=refusals.ci_low, ci_high=refusals.ci_high),
        kl_null=draws.comparison(1, ci_low=kl_est.ci_low, ci_high=kl_est.ci_high),
        base_refusals=float(base.refused.sum()), n_harmful=n_h, n_harmless=len(base.harmless))


def pareto_front(table: pd.DataFrame, x: str = "kl", y: str = "refusals",
                 by: str | None = "edit") -> pd.Series:
    """Whether each row is Pareto-optimal (no other row of its group has ``x`` and ``y``
    both ≤ and one <)."""
    out = pd.Series(False, index=table.index)
    groups = table.groupby(by) if by is not None else [(None, table)]
    for _, g in groups:
        xs, ys = g[x].to_numpy(), g[y].to_numpy()
        for i, idx in enumerate(g.index):
            dominated = ((xs <= xs[i]) & (ys <= ys[i]) & ((xs < xs[i]) | (ys < ys[i]))).any()
            out[idx] = not dominated
    return out


def refusal_frontier(
    handle: ModelHandle,
    bases: Mapping[str, Tensor],
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    ks: Sequence[int] = (1,),
    strengths: Sequence[float] = (1.0,),
    windows: Sequence[tuple[int, ...] | None] = (None,),
    modes: Sequence[EditMode] = ("project",),
    harmless_means: Tensor | None = None,
    nulls: NullSpec = NullSpec(k=16, max_variants=8),
    settings: GenerationSettings = GenerationSettings(max_new_tokens=16),
    classifier: Callable[[str], str] = classify_refusal,
    n_boot: int = 1000,
    batch_size: int = 16,
    progress: bool = False,
) -> pd.DataFrame:
    """The frontier of several finders over a parameter sweep: one row per
    finder × ``k`` × strength × window × mode (:meth:`FrontierPoint.to_row`), plus
    ``pareto`` (non-dominated in (KL, refusals) within the finder) and ``q_refusals``
    (Benjamini–Hochberg over the table).

    Args:
        bases: ``{finder name: [k_max, d] ordered directions}`` (the span of the first ``k``
            is ablated; ``k`` larger than a basis is skipped).
        harmless_means: ``[L+1, d]`` for ``biprojected`` mode.
    """
    from tqdm.auto import tqdm

    from safetygeo.stats.pvalues import benjamini_hochberg

    base = frontier_baseline(handle, harmful, harmless, settings=settings, classifier=classifier,
                             batch_size=batch_size)
    cells = [(name, k, s, w, m) for name, b in bases.items() for k in ks
             if k <= (1 if b.ndim == 1 else b.shape[0]) for s in strengths for w in windows
             for m in modes]
    rows = []
    for name, k, s, w, m in tqdm(cells, desc="frontier", disable=not progress):
        b = bases[name] if bases[name].ndim == 2 else bases[name][None]
        edit = SubspaceEdit(b[:k], mode=m, strength=s, layers=w, name=name,
                            harmless_means=harmless_means if m.startswith("biprojected") else None)
        rows.append(frontier_point(handle, edit, harmful, harmless, nulls=nulls,
                                   settings=settings, classifier=classifier, n_boot=n_boot,
                                   batch_size=batch_size, baseline=base).to_row())
    table = pd.DataFrame(rows)
    if len(table):
        table["pareto"] = pareto_front(table)
        table["q_refusals"] = benjamini_hochberg(table.p_refusals.to_numpy())
    return table


# ----------------------------------------------------------------------------- min k
@dataclass
class RefusalDimension:
    """How many dimensions refusal needs: the smallest ``k`` whose subspace ablation reaches
    the bypass target, beating random ``k``-dim subspaces.

    Attributes:
        k_min: that ``k``, or ``None`` if no ``k ≤ k_max`` reaches it.
        target: the bypass target (refusal rate at most this).
        alpha: significance level against the nulls (``p_refusals ≤ alpha``).
        points: the :class:`FrontierPoint` of each ``k`` tried (in order).
        source: where the ordered basis came from (finder, layer, position).
        basis: ``[k_max, d]`` the ordered orthonormal basis.
        meta: model and settings.
    """

    k_min: int | None
    target: float
    alpha: float
    points: list[FrontierPoint]
    source: dict[str, Any]
    basis: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([p.to_row() for p in self.points])

    def to_row(self) -> dict[str, Any]:
        """One row for a trajectory or zoo table: ``k_min``, target, the refusal rates at
        ``k = 1`` and at ``k_min`` with their null means, and the basis source."""
        first = self.points[0] if self.points else None
        at = next((p for p in self.points if p.edit["k"] == self.k_min), None)
        return {"k_min": self.k_min, "target": self.target, "alpha": self.alpha,
                "k_max_tried": max((p.edit["k"] for p in self.points), default=0),
                "rate_k1": first.refusal_rate if first else math.nan,
                "null_rate_k1": (first.refusals_null.null_mean / first.n_harmful) if first else math.nan,
                "kl_k1": float(first.kl.value) if first else math.nan,
                "rate_at_k_min": at.refusal_rate if at else math.nan,
                "kl_at_k_min": float(at.kl.value) if at else math.nan,
                "base_rate": (first.base_refusals / first.n_harmful) if first else math.nan,
                **{f"source_{k}": v for k, v in self.source.items()}}


def min_refusal_dimension(
    handle: ModelHandle,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    basis: Tensor | None = None,
    fit_harmful: Sequence[str] | None = None,
    fit_harmless: Sequence[str] | None = None,
    layer: int | None = None,
    position: str = "eoi-1",
    finder: Literal["dim+pca", "pca", "som"] = "dim+pca",
    k_max: int = 4,
    target: float = 0.1,
    alpha: float = 0.05,
    mode: EditMode = "project",
    nulls: NullSpec = NullSpec(k=19, max_variants=10),
    settings: GenerationSettings = GenerationSettings(max_new_tokens=16),
    classifier: Callable[[str], str] = classify_refusal,
    n_boot: int = 1000,
    batch_size: int = 16,
    stop_at_target: bool = True,
) -> RefusalDimension:
    """The smallest ``k`` at which ablating ``span(basis[:k])`` brings the refusal rate of
    the (held-out) ``harmful`` prompts to ``≤ target`` with ``p_refusals ≤ alpha`` against
    random ``k``-dim subspaces.

    Args:
        harmful, harmless: evaluation prompts (held out from the basis fit).
        basis: an ordered ``[k_max, d]`` basis; default: ``finder`` directions fitted on
            ``fit_harmful`` / ``fit_harmless`` at ``layer`` and ``position`` (e.g. the
            carrier's): ``"dim+pca"`` = the diff-in-means direction first (so ``k = 1`` is
            the standard single-direction ablation), then the principal directions of paired
            differences (Gram–Schmidt); ``"pca"`` or ``"som"`` alone.
        k_max: largest ``k`` tried.
        nulls: random ``k``-dim subspaces per ``k`` (``K ≥ 1/alpha − 1``, default 19).
        mode: the ablation (``project`` by default).
        stop_at_target: stop at the first ``k`` that reaches the target.

    Returns:
        a :class:`RefusalDimension` (``to_row()`` for tables; the trajectory report's
        protocol calls this per checkpoint).
    """
    from safetygeo.causal.finders import finder_directions
    from safetygeo.geometry.finders import orthonormalize

    harmful, harmless = prompt_list(harmful, "harmful"), prompt_list(harmless, "harmless")
    k_max = positive_int(k_max, "k_max")
    if not 0 <= target < 1 or not 0 < alpha <= 1:
        raise SafetyGeoError(f"target must lie in [0, 1) and alpha in (0, 1], got {target}, {alpha}")
    if 1 / (nulls.n_max + 1) > alpha:
        raise SafetyGeoError(f"with K = {nulls.n_max} random subspaces the smallest p-value is "
                             f"1/(K+1) = {1 / (nulls.n_max + 1):.3g} > alpha = {alpha}; use "
                             f"K >= {math.ceil(1 / alpha) - 1}")
    if basis is None:
        if fit_harmful is None or fit_harmless is None or layer is None:
            raise SafetyGeoError("without a basis, give fit_harmful, fit_harmless and layer "
                                 "(e.g. the carrier selection's train split and sel.layer)")
        method = "pca" if finder == "dim+pca" else finder
        cands = finder_directions(handle, fit_harmful, fit_harmless, method=method, k=k_max,
                                  layers=[layer], batch_size=batch_size)
        ordered = cands.basis(layer, position)
        if finder == "dim+pca":
            assert cands.harmful is not None and cands.harmless is not None
            dim = (cands.harmful.at(layer, position) - cands.harmless.at(layer, position)).double()
            ordered = orthonormalize(torch.cat([(dim / dim.norm())[None],
                                                cands.basis(layer, position)]))
        source = {"finder": finder, "layer": layer, "position": position}
    else:
        ordered = orthonormalize(torch.as_tensor(basis).double().reshape(-1, handle.d_model))
        source = {"finder": "given"}
    ordered = ordered[:k_max]
    means = None
    if mode.startswith("biprojected"):
        from safetygeo.activations.extract import extract_activations

        st = extract_activations(handle, list(fit_harmless) if fit_harmless else harmless,
                                 positions="last", batch_size=batch_size, progress=False)
        means = st.mean[:, 0]
    base = frontier_baseline(handle, harmful, harmless, settings=settings, classifier=classifier,
                             batch_size=batch_size)
    points: list[FrontierPoint] = []
    k_min = None
    for k in range(1, len(ordered) + 1):
        edit = SubspaceEdit(ordered[:k], mode=mode, name=f"{source['finder']}-top{k}",
                            harmless_means=means)
        p = frontier_point(handle, edit, harmful, harmless, nulls=nulls, settings=settings,
                           classifier=classifier, n_boot=n_boot, batch_size=batch_size,
                           baseline=base)
        points.append(p)
        if k_min is None and p.refusal_rate <= target and p.refusals_null.p <= alpha:
            k_min = k
            if stop_at_target:
                break
    meta = {**handle.describe(), "nulls": nulls.identity(), "settings": settings.to_dict(),
            "mode": mode, "n_harmful": len(harmful), "n_harmless": len(harmless)}
    return RefusalDimension(k_min, target, alpha, points, source, ordered, meta)


def save_refusal_dimension(result: RefusalDimension, folder: str | os.PathLike[str]) -> Path:
    """Write ``refusal_dimension.json`` (summary, per-``k`` table, basis) into ``folder`` —
    e.g. beside a carrier selection (``CarrierSelection.load`` ignores it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "refusal_dimension.json"
    atomic_write_json(path, {
        "format": "safetygeo.refusal_dimension", "format_version": 1,
        "summary": _json_safe(result.to_row()), "table": _json_safe(result.table().to_dict("records")),
        "basis": result.basis.tolist(), "meta": _json_safe(result.meta)})
    return path


def load_refusal_dimension(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The saved summary, table (a DataFrame) and basis of :func:`save_refusal_dimension`.

    Raises:
        ArtifactError: missing or unreadable file.
    """
    path = Path(folder) / "refusal_dimension.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{str(path)!r} cannot be read ({exc})") from exc
    if raw.get("format") != "safetygeo.refusal_dimension":
        raise ArtifactError(f"{str(path)!r} is not a refusal-dimension file")
    return {"summary": raw["summary"], "table": pd.DataFrame(raw["table"]),
            "basis": torch.tensor(raw["basis"], dtype=torch.float64), "meta": raw["meta"]}


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj

