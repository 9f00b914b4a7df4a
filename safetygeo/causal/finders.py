"""Refusal-direction finders beside diff-in-means, all returning
:class:`~safetygeo.geometry.directions.CandidateDirections` (so carrier scoring,
interventions, reports and nulls take them unchanged).

* :func:`finder_directions` — read activations and run a pure-math finder at every layer ×
  post-instruction position: ``"pca"`` (paired differences) or ``"som"`` (Piras et al.),
  :mod:`safetygeo.geometry.finders`; ``components`` holds the ``k`` ordered directions,
  ``vectors`` the first one at the diff-in-means norm.
* :func:`rdo` — **refusal direction optimization** (Wollschläger et al., ICML 2025): a unit
  direction ``r̂`` trained through the frozen model with

  * *ablation* loss: cross-entropy of the completions the model gives harmful prompts with
    the diff-in-means direction ablated, now with ``r̂`` ablated (every write, every layer);
  * *addition* loss: cross-entropy of the completions harmless prompts get with the
    diff-in-means vector added at its layer, now with ``α r̂`` added (``α`` = the
    diff-in-means norm) — the monotonic-scaling desideratum;
  * *retain* loss: ``KL(base ‖ r̂ ablated)`` of the next-token distributions along the
    harmless prompts' own completions (surgical ablation);

  total ``λ_abl L_abl + λ_add L_add + λ_ret L_ret`` with the paper's weights ``(1, 0.2, 1)``;
  AdamW (lr 1e-2, betas (0.9, 0.98), amsgrad), gradients projected on the sphere's tangent
  space and clipped to norm 10, the direction re-normalized after every step, learning rate
  ÷10 twice on a plateau of the training loss, then stop; the lowest-loss direction is
  returned. (The reference code passes ``F.kl_div`` its arguments so that it computes
  ``KL(ablated ‖ base)``; we use ``KL(base ‖ ablated)``, the KL every other safetygeo
  read-out uses. Both vanish exactly when the ablation leaves harmless outputs alone.)
* :func:`rco` — **refusal cone optimization**: an orthonormal basis of ``k`` directions;
  every step adds the three losses of ``n_samples`` directions sampled in the cone
  (:func:`~safetygeo.geometry.cones.sample_cone`) and of each basis vector; Gram–Schmidt
  after each step. :func:`cone_property` checks on held-out prompts that sampled
  directions ablate refusal and induce it; :func:`cone_dimension` trains cones of growing
  ``k`` (each started from the previous one) and reports the largest ``k`` that passes.
* :func:`representational_independence` — the paper's RepInd criterion: ``a`` and ``b``
  are representationally independent if ablating ``a`` leaves every layer's cosine
  similarity between the last-token residual and ``b`` unchanged, and vice versa; the score
  is the mean squared change over layers and prompts, compared with the same score against
  random directions. :func:`repind_direction` trains an RDO direction with the RepInd loss
  (weight ``λ_repind``) against given directions.

Settings are a :class:`DirectionOptimization` (CPU preset by default;
:meth:`DirectionOptimization.paper` has the paper's values).

Example:
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> c = finder_directions(pm.handle, pm.harmful, pm.harmless, method="pca", k=2)
    >>> c.method, tuple(c.components.shape), round(abs(float(c.basis(3, "eoi-1")[0, 0])), 2)
    ('pca', (5, 8, 2, 64), 1.0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import positive_int, prompt_list
from safetygeo.activations.extract import extract_activations
from safetygeo.activations.logits import encode_checked, last_logprobs, pad_id_of
from safetygeo.activations.losses import kl_from_logprobs, token_logprobs
from safetygeo.activations.refusal import RefusalScoring, refusal_score_from_logprobs
from safetygeo.causal.repind import (
    RepIndResult,
    prompt_batch,
    repind_terms,
    representational_independence,
    variant_batch,
)
from safetygeo.data.records import IGNORE_INDEX
from safetygeo.errors import SafetyGeoError
from safetygeo.geometry.cones import sample_cone
from safetygeo.geometry.directions import CandidateDirections, diff_in_means
from safetygeo.geometry.finders import orthonormalize, pca_directions, som_directions
from safetygeo.interventions.hooks import ablate, add
from safetygeo.interventions.subspace import ablate_subspace, add_vector
from safetygeo.models.handle import ModelHandle

__all__ = [
    "FINDERS", "DirectionOptimization", "OptimizedDirections", "RepIndResult",
    "finder_directions", "optimization_data", "rco", "rdo", "rdo_loss", "repind_direction",
    "representational_independence",
]

FINDERS: tuple[str, ...] = ("diff-in-means", "pca", "som", "rdo", "rco")


# ----------------------------------------------------------------------------- pure finders
def finder_directions(
    handle: ModelHandle,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    method: Literal["diff-in-means", "pca", "som"] = "pca",
    k: int = 4,
    layers: str | Sequence[int] = "all",
    positions: str = "post_instruction",
    som_grid: tuple[int, int] = (2, 2),
    som_iterations: int = 500,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
) -> CandidateDirections:
    """Candidates of a pure-math finder at every layer × position (see the module docstring).

    ``k`` directions per slot for PCA (at most the number of pairs); SOM gives one per unit
    of ``som_grid`` (``k`` is ignored). Slots whose finder fails (e.g. identical activations
    at layer 0) get zero vectors, which carrier scoring marks NaN.
    """
    harmful, harmless = prompt_list(harmful, "harmful"), prompt_list(harmless, "harmless")
    kw: dict[str, Any] = dict(layers=layers, positions=positions, batch_size=batch_size,
                              keep_vectors=True, progress=progress)
    a = extract_activations(handle, harmful, **kw)
    b = extract_activations(handle, harmless, **kw)
    dim = diff_in_means(a, b, kind="refusal" if positions == "post_instruction" else "custom")
    if method == "diff-in-means":
        return dim
    if method not in ("pca", "som"):
        raise SafetyGeoError(f"method must be diff-in-means, pca or som, got {method!r}")
    assert a.vectors is not None and b.vectors is not None
    n_l, n_p, d = dim.vectors.shape
    n_comp = (min(k, len(harmful), len(harmless), d) if method == "pca"
              else som_grid[0] * som_grid[1])
    comps = torch.zeros(n_l, n_p, n_comp, d, dtype=torch.float64)
    for i in range(n_l):
        for j in range(n_p):
            xa, xb = a.vectors[:, i, j].double(), b.vectors[:, i, j].double()
            try:
                if method == "pca":
                    res = pca_directions(xa, xb, n_comp, seed=seed)
                else:
                    res = som_directions(xa, xb, grid=som_grid, iterations=som_iterations,
                                         seed=seed)
            except SafetyGeoError:
                continue
            comps[i, j, :len(res.directions)] = res.directions
    vectors = comps[:, :, 0] * dim.vectors.norm(dim=-1, keepdim=True)
    return replace(dim, vectors=vectors, method=method, components=comps)


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class DirectionOptimization:
    """Hyper-parameters of RDO, RCO and RepInd training.

    Defaults are the **CPU preset** (a few hundred Adam steps on small batches, for the toy
    world); :meth:`paper` returns Wollschläger et al.'s values.

    Attributes:
        max_steps: optimizer steps at most (the paper runs one epoch of its training set).
        batch_size: prompts per loss term per step (paper: 1 × 16 accumulated).
        lr, betas, amsgrad, weight_decay: AdamW.
        ablation_weight, addition_weight, retain_weight: ``λ_abl, λ_add, λ_ret``.
        repind_weight: ``λ_repind`` (RepInd training only).
        target_tokens: tokens of each target completion (paper: 30).
        n_samples: directions sampled in the cone per step (RCO; paper: 8).
        patience: steps without a lower training loss before the learning rate is divided
            by 10; after ``lr_reductions`` reductions training stops (paper: 5 and 2).
        grad_clip: gradient-norm clip (paper: 10).
        init: ``"dim"`` (start at the diff-in-means direction; the CPU preset's default)
            or ``"random"`` (seeded Gaussian, as the paper). On CPU budgets a random start
            can stall in a local minimum: on the planted model one seed in three finds a
            side path (ablating a direction that inflates the final RMS norm lowers the
            refusal logit without touching the planted feature) and keeps a high addition
            loss; starting at diff-in-means makes RDO a refinement of it.
        restarts: random starts (seeds ``seed, seed+1, ...``); the run with the lowest
            training loss is kept (``init="random"`` only).
        filter_data: keep only harmful prompts the model refuses and harmless ones it does
            not (logit refusal score > 0 / < 0), as the paper does.
        seed: initialization, batches and cone samples.
    """

    max_steps: int = 150
    batch_size: int = 8
    lr: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.98)
    amsgrad: bool = True
    weight_decay: float = 0.0
    ablation_weight: float = 1.0
    addition_weight: float = 0.2
    retain_weight: float = 1.0
    repind_weight: float = 1.0
    target_tokens: int = 8
    n_samples: int = 4
    patience: int = 15
    lr_reductions: int = 2
    grad_clip: float = 10.0
    init: Literal["random", "dim"] = "dim"
    restarts: int = 1
    filter_data: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "target_tokens", "n_samples", "patience",
                     "restarts"):
            positive_int(getattr(self, name), f"DirectionOptimization.{name}")
        if self.init not in ("random", "dim"):
            raise SafetyGeoError(f"init must be 'random' or 'dim', got {self.init!r}")
        for name in ("lr", "ablation_weight", "addition_weight", "retain_weight",
                     "repind_weight", "grad_clip", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise SafetyGeoError(f"DirectionOptimization.{name} must be a finite number "
                                     f">= 0, got {v!r}")

    @classmethod
    def paper(cls) -> DirectionOptimization:
        """Wollschläger et al.'s hyper-parameters (random start, effective batch 16, 30
        target tokens, 8 cone samples, patience 5, two ÷10 reductions; one epoch ≈
        ``max_steps``)."""
        return cls(max_steps=1000, batch_size=16, target_tokens=30, n_samples=8, patience=5,
                   init="random")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


# ----------------------------------------------------------------------------- data
@dataclass
class OptimizationData:
    """Token sequences and targets RDO / RCO train on (see :func:`optimization_data`).

    Attributes:
        ablation, addition, retain: per-example ``{"input_ids", "labels"}`` (prompt tokens
            labelled ``-100``): harmful prompt + its completion with the diff-in-means
            ablated; harmless prompt + its completion with the diff-in-means added; harmless
            prompt + its own completion.
        harmful, harmless: the prompts kept (after filtering).
        layer: the addition layer; alpha: the addition strength (diff-in-means norm).
        reference: the unit diff-in-means direction the targets came from.
        pad_id: padding token id.
    """

    ablation: list[dict[str, list[int]]]
    addition: list[dict[str, list[int]]]
    retain: list[dict[str, list[int]]]
    harmful: list[str]
    harmless: list[str]
    layer: int
    alpha: float
    reference: Tensor
    pad_id: int


def _sequences(handle: ModelHandle, prompts: list[str], targets: Sequence[Sequence[int]],
               fallback: int) -> list[dict[str, list[int]]]:
    ids = encode_checked(handle, prompts)
    out = []
    for p, t in zip(ids, targets):
        tgt = list(t) or [fallback]
        out.append({"input_ids": [*p, *tgt], "labels": [IGNORE_INDEX] * len(p) + tgt})
    return out


def optimization_data(
    handle: ModelHandle,
    harmful: Sequence[str],
    harmless: Sequence[str],
    reference: Tensor,
    layer: int,
    *,
    settings: DirectionOptimization = DirectionOptimization(),
    scoring: RefusalScoring = RefusalScoring(),
    batch_size: int = 16,
) -> OptimizationData:
    """Targets for RDO / RCO, generated greedily as in the paper: harmful prompts with the
    ``reference`` (raw diff-in-means) direction ablated, harmless prompts with it added at
    ``layer``, and harmless prompts without intervention; optionally filtered to prompts
    the model refuses / answers."""
    from safetygeo.behavior.generate import GenerationSettings, eos_token_ids, generate

    harmful, harmless = prompt_list(harmful, "harmful"), prompt_list(harmless, "harmless")
    ref = reference.detach().double().cpu()
    if settings.filter_data:
        ids = scoring.ids(handle.tokenizer)
        sh = refusal_score_from_logprobs(last_logprobs(handle, harmful, batch_size=batch_size,
                                                       progress=False), ids)
        sl = refusal_score_from_logprobs(last_logprobs(handle, harmless, batch_size=batch_size,
                                                       progress=False), ids)
        kept_h = [p for p, s in zip(harmful, sh.tolist()) if s > 0]
        kept_l = [p for p, s in zip(harmless, sl.tolist()) if s < 0]
        if kept_h and kept_l:
            harmful, harmless = kept_h, kept_l
    gen = GenerationSettings(max_new_tokens=settings.target_tokens)
    with ablate(handle, ref):
        abl = generate(handle, harmful, gen, batch_size=batch_size, progress=False)
    with add(handle, ref, layer):
        addn = generate(handle, harmless, gen, batch_size=batch_size, progress=False)
    ret = generate(handle, harmless, gen, batch_size=batch_size, progress=False)
    eos = (eos_token_ids(handle) or (pad_id_of(handle),))[0]
    return OptimizationData(
        ablation=_sequences(handle, harmful, abl.token_ids, eos),
        addition=_sequences(handle, harmless, addn.token_ids, eos),
        retain=_sequences(handle, harmless, ret.token_ids, eos),
        harmful=harmful, harmless=harmless, layer=layer, alpha=float(ref.norm()),
        reference=ref / ref.norm(), pad_id=pad_id_of(handle))


# ----------------------------------------------------------------------------- losses
def _token_ce(handle: ModelHandle, batch: dict[str, Tensor], v: int) -> Tensor:
    """Per-variant mean cross-entropy of the labelled tokens: ``[v]``."""
    logits = handle.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          use_cache=False).logits
    lp, mask = token_logprobs(logits, batch["labels"])
    per_row_num = -lp.sum(-1).reshape(v, -1).sum(-1)
    per_row_den = mask.sum(-1).reshape(v, -1).sum(-1).clamp(min=1)
    return per_row_num / per_row_den


def _target_logprobs(handle: ModelHandle, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Log-softmax at the positions that predict labelled tokens: ``([rows, T, vocab], mask)``."""
    logits = handle.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          use_cache=False).logits[:, :-1]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    return torch.log_softmax(logits, dim=-1), mask


def _directions_of(params: Tensor, samples: Tensor | None) -> Tensor:
    """Unit directions evaluated in a step: the cone samples (if any), then each basis vector."""
    unit = params / params.norm(dim=-1, keepdim=True)
    if samples is None:
        return unit
    s = samples.to(params.dtype) @ params
    return torch.cat([s / s.norm(dim=-1, keepdim=True), unit])


def _loss_terms(handle: ModelHandle, dirs: Tensor, data: OptimizationData,
                idx: dict[str, list[int]], settings: DirectionOptimization,
                n_samples: int) -> dict[str, Tensor]:
    """The three RDO losses for every direction in ``dirs`` (``[v, d]`` unit, in the graph),
    averaged with the paper's weighting: mean over sampled directions + mean over basis
    vectors (each ``[v]`` term reduced to a scalar)."""
    v = dirs.shape[0]
    dev = handle.device

    def reduce(per_dir: Tensor) -> Tensor:
        if n_samples == 0:
            return per_dir.mean()
        return per_dir[:n_samples].mean() + per_dir[n_samples:].mean()

    out: dict[str, Tensor] = {}
    if settings.ablation_weight > 0:
        b = variant_batch([data.ablation[i] for i in idx["ablation"]], data.pad_id, dev, v)
        with ablate_subspace(handle, dirs[:, None, :], differentiable=True):
            out["ablation"] = reduce(_token_ce(handle, b, v))
    if settings.addition_weight > 0:
        b = variant_batch([data.addition[i] for i in idx["addition"]], data.pad_id, dev, v)
        with add_vector(handle, data.alpha * dirs, data.layer):
            out["addition"] = reduce(_token_ce(handle, b, v))
    if settings.retain_weight > 0:
        rows = [data.retain[i] for i in idx["retain"]]
        b1 = variant_batch(rows, data.pad_id, dev, 1)
        with torch.no_grad():
            base_lp, mask = _target_logprobs(handle, b1)
        b = variant_batch(rows, data.pad_id, dev, v)
        with ablate_subspace(handle, dirs[:, None, :], differentiable=True):
            lp, _ = _target_logprobs(handle, b)
        lp = lp.reshape(v, len(rows), *lp.shape[1:])
        kl_tok = kl_from_logprobs(base_lp, lp)  # [v, rows, T]
        per_dir = (kl_tok * mask).sum((-1, -2)) / mask.sum().clamp(min=1)
        out["retain"] = reduce(per_dir)
    return out


def rdo_loss(handle: ModelHandle, direction: Tensor, data: OptimizationData,
             settings: DirectionOptimization = DirectionOptimization(),
             indices: dict[str, list[int]] | None = None) -> tuple[Tensor, dict[str, float]]:
    """The RDO training loss of one (raw) direction on the given examples (default: all),
    differentiable in ``direction``: ``(total, {term: value})``."""
    idx = indices or {"ablation": list(range(len(data.ablation))),
                      "addition": list(range(len(data.addition))),
                      "retain": list(range(len(data.retain)))}
    terms = _loss_terms(handle, _directions_of(direction[None], None), data, idx, settings, 0)
    total = _weighted(terms, settings)
    return total, {k: float(v.detach()) for k, v in terms.items()}


def _weighted(terms: dict[str, Tensor], s: DirectionOptimization) -> Tensor:
    w = {"ablation": s.ablation_weight, "addition": s.addition_weight,
         "retain": s.retain_weight, "repind": s.repind_weight}
    return sum((w[k] * v for k, v in terms.items()), start=torch.zeros(()))


# ----------------------------------------------------------------------------- training
@dataclass
class OptimizedDirections:
    """Result of RDO / RCO / RepInd training.

    Attributes:
        basis: ``[k, d]`` float64 orthonormal directions (``k = 1`` for RDO), the lowest
            training-loss step's.
        candidates: the same as :class:`~safetygeo.geometry.directions.CandidateDirections`
            at one layer and position (``vectors`` = first basis vector × the addition
            strength; ``components`` = the basis).
        method: ``"rdo"``, ``"rco"`` or ``"repind"``.
        layer: addition layer; alpha: addition strength (diff-in-means norm).
        history: one row per step: ``step, loss, ablation, addition, retain[, repind], lr``.
        steps: optimizer steps taken; best_step: the step returned; seconds: wall time of
            training (targets excluded); target_seconds: generating the targets.
        settings: the hyper-parameters.
    """

    basis: Float[Tensor, "k d"]
    candidates: CandidateDirections
    method: str
    layer: int
    alpha: float
    history: pd.DataFrame
    steps: int
    best_step: int
    seconds: float
    target_seconds: float
    settings: DirectionOptimization
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> Float[Tensor, " d"]:
        return self.basis[0]


def _sample_indices(g: torch.Generator, n: int, size: int) -> list[int]:
    if n <= size:
        return list(range(n))
    return torch.randperm(n, generator=g)[:size].tolist()


def _train_once(handle: ModelHandle, data: OptimizationData, k: int,
                settings: DirectionOptimization, *, init: Tensor | None = None, method: str,
           independent_of: Tensor | None = None, repind_layers: Sequence[int] | None = None,
           repind_prompts: list[str] | None = None, target_seconds: float = 0.0,
           position: str = "eoi-1", progress: bool = False) -> OptimizedDirections:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    d = handle.d_model
    dtype = next(handle.model.parameters()).dtype
    g = torch.Generator().manual_seed(settings.seed)
    start = torch.randn(k, d, generator=g, dtype=torch.float64)
    if init is not None:
        start[:len(init)] = init.detach().double().cpu()[:k]
    elif settings.init == "dim":
        start[0] = data.reference
    start = orthonormalize(start)
    params = torch.nn.Parameter(start.to(handle.device, dtype))
    opt = torch.optim.AdamW([params], lr=settings.lr, betas=settings.betas,
                            amsgrad=settings.amsgrad, weight_decay=settings.weight_decay)
    n_samples = settings.n_samples if k > 1 else 0
    requires = [p.requires_grad for p in handle.model.parameters()]
    for p in handle.model.parameters():
        p.requires_grad_(False)
    rows: list[dict[str, float]] = []
    best = (math.inf, 0, params.detach().double().cpu().clone())
    patience, reductions = 0, 0
    rep_batch = (prompt_batch(handle, repind_prompts, handle.device)
                 if independent_of is not None and repind_prompts else None)
    rep_layers = list(handle.check_layers("all" if repind_layers is None else list(repind_layers)))
    try:
        for step in tqdm(range(settings.max_steps), desc=method, disable=not progress, leave=False):
            idx = {name: _sample_indices(g, len(getattr(data, name)), settings.batch_size)
                   for name in ("ablation", "addition", "retain")}
            samples = (sample_cone(torch.eye(k, dtype=torch.float64), n_samples,
                                   seed=settings.seed * 100003 + step) if n_samples else None)
            dirs = _directions_of(params, samples)
            terms = _loss_terms(handle, dirs, data, idx, settings, n_samples)
            if rep_batch is not None and independent_of is not None:
                sub = {kk: t[_sample_indices(g, len(t), settings.batch_size)]
                       for kk, t in rep_batch.items()}
                unit = params[0] / params[0].norm()
                terms["repind"] = repind_terms(handle, unit,
                                                independent_of.to(handle.device, dtype), sub,
                                                rep_layers)
            loss = _weighted(terms, settings)
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():
                assert params.grad is not None
                unit = params / params.norm(dim=-1, keepdim=True)
                params.grad -= (params.grad * unit).sum(-1, keepdim=True) * unit  # tangent
                torch.nn.utils.clip_grad_norm_([params], settings.grad_clip)
            opt.step()
            with torch.no_grad():
                params.copy_(orthonormalize(params.detach().double().cpu()).to(params))
            value = float(loss.detach())
            rows.append({"step": step + 1, "loss": value, "lr": opt.param_groups[0]["lr"],
                         **{kk: float(v.detach()) for kk, v in terms.items()}})
            if value < best[0]:
                best = (value, step + 1, params.detach().double().cpu().clone())
                patience = 0
            else:
                patience += 1
            if patience >= settings.patience:
                if reductions >= settings.lr_reductions:
                    break
                reductions += 1
                patience = 0
                for group in opt.param_groups:
                    group["lr"] /= 10
    finally:
        for p, r in zip(handle.model.parameters(), requires):
            p.requires_grad_(r)
    basis = orthonormalize(best[2])
    basis = basis * torch.where(basis @ data.reference < 0, -1.0, 1.0).to(basis.dtype)[:, None] \
        if k == 1 else basis
    cands = _candidates(handle, basis, data, method, position)
    return OptimizedDirections(
        basis=basis, candidates=cands, method=method, layer=data.layer, alpha=data.alpha,
        history=pd.DataFrame(rows), steps=len(rows), best_step=best[1],
        seconds=time.perf_counter() - t0, target_seconds=target_seconds, settings=settings)


def train_directions(handle: ModelHandle, data: OptimizationData, k: int, settings: DirectionOptimization,
           **kw: Any) -> OptimizedDirections:
    """:func:`_train_once`, repeated over ``settings.restarts`` random starts."""
    n = settings.restarts if settings.init == "random" and kw.get("init") is None else 1
    runs = [_train_once(handle, data, k, replace(settings, seed=settings.seed + i), **kw)
            for i in range(n)]
    best = min(runs, key=lambda r: float(r.history.loss.min()))
    if n > 1:
        best.seconds = sum(r.seconds for r in runs)
        best.steps = sum(r.steps for r in runs)
        best.extra["restart_losses"] = [float(r.history.loss.min()) for r in runs]
    return best


def _candidates(handle: ModelHandle, basis: Tensor, data: OptimizationData, method: str,
                position: str) -> CandidateDirections:
    from safetygeo.activations.positions import resolve_positions

    n_eoi = handle.encode([data.harmful[0]]).n_eoi
    return CandidateDirections(
        vectors=(basis[0] * data.alpha)[None, None], layers=(data.layer,),
        positions=resolve_positions(position, n_eoi), kind="refusal",
        n_harmful=len(data.harmful), n_harmless=len(data.harmless), method=method,
        components=basis[None, None].clone())


def prepare_optimization(handle: ModelHandle, harmful: Sequence[str], harmless: Sequence[str],
             reference: Tensor | None, layer: int | None, settings: DirectionOptimization,
             scoring: RefusalScoring, data: OptimizationData | None,
             batch_size: int) -> tuple[OptimizationData, float]:
    if data is not None:
        return data, 0.0
    if reference is None or layer is None:
        raise SafetyGeoError("RDO / RCO need the reference diff-in-means vector and its layer "
                             "(e.g. a carrier selection's sel.vector and sel.layer), or data=")
    (layer,) = handle.check_layers(layer)
    t0 = time.perf_counter()
    data = optimization_data(handle, harmful, harmless, reference, layer, settings=settings,
                             scoring=scoring, batch_size=batch_size)
    return data, time.perf_counter() - t0


def rdo(
    handle: ModelHandle,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    reference: Tensor | None = None,
    layer: int | None = None,
    settings: DirectionOptimization = DirectionOptimization(),
    scoring: RefusalScoring = RefusalScoring(),
    data: OptimizationData | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> OptimizedDirections:
    """Refusal direction optimization (see the module docstring).

    Args:
        harmful, harmless: training prompts (targets are generated from them).
        reference, layer: the diff-in-means vector the targets come from and its layer (the
            addition layer), e.g. ``sel.vector`` and ``sel.layer``.
        settings: hyper-parameters (CPU preset by default).
        scoring: refusal definition for filtering the training prompts.
        data: precomputed :func:`optimization_data` (then ``reference``/``layer`` unused).
    """
    data, tsec = prepare_optimization(handle, harmful, harmless, reference, layer, settings, scoring, data,
                          batch_size)
    return train_directions(handle, data, 1, settings, method="rdo", target_seconds=tsec,
                  progress=progress)


def rco(
    handle: ModelHandle,
    harmful: Sequence[str],
    harmless: Sequence[str],
    k: int,
    *,
    reference: Tensor | None = None,
    layer: int | None = None,
    init: Tensor | None = None,
    settings: DirectionOptimization = DirectionOptimization(),
    scoring: RefusalScoring = RefusalScoring(),
    data: OptimizationData | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> OptimizedDirections:
    """Refusal cone optimization: an orthonormal ``k``-basis whose cone directions ablate and
    induce refusal (see the module docstring). ``init``: starting basis rows (e.g. a
    ``k − 1`` cone, as the paper grows cones)."""
    k = positive_int(k, "cone dimension k")
    data, tsec = prepare_optimization(handle, harmful, harmless, reference, layer, settings, scoring, data,
                          batch_size)
    return train_directions(handle, data, k, settings, init=init, method="rco", target_seconds=tsec,
                  progress=progress)


def repind_direction(
    handle: ModelHandle,
    harmful: Sequence[str],
    harmless: Sequence[str],
    independent_of: Tensor,
    *,
    reference: Tensor | None = None,
    layer: int | None = None,
    repind_layers: Sequence[int] | None = None,
    settings: DirectionOptimization = DirectionOptimization(),
    scoring: RefusalScoring = RefusalScoring(),
    data: OptimizationData | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> OptimizedDirections:
    """An RDO direction trained with the RepInd loss against ``independent_of`` (``[d]`` or
    ``[m, d]``, e.g. the diff-in-means direction): a refusal direction whose ablation leaves
    the others' cosine profiles unchanged, and vice versa."""
    others = independent_of.detach().double().cpu()
    others = (others[None] if others.ndim == 1 else others)
    others = others / others.norm(dim=-1, keepdim=True)
    data, tsec = prepare_optimization(handle, harmful, harmless, reference, layer, settings, scoring, data,
                          batch_size)
    return train_directions(handle, data, 1, settings, method="repind", independent_of=others,
                  repind_layers=repind_layers, repind_prompts=data.harmful, target_seconds=tsec,
                  progress=progress)
