"""Abliteration users can ship: the directions a kernel edit reads, held-out refusals and KL
of a kernel (heretic's ``refusals/N @ KL``), an Optuna search over the kernel, and each
Pareto point next to matched random-direction edits of the same kernel.

* :func:`slot_directions` — the ``[L+1, d]`` per-slot directions of a carrier selection at
  one position (diff-in-means; slots that are zero stay zero: an edit that never reads
  them accepts them) and :func:`harmless_means` (the projected modes' reference);
* :func:`kernel_point` — refusals of held-out harmful prompts and first-token KL on held-out
  harmless ones under a kernel edit, no nulls (one search trial);
* :func:`search_abliteration` — Optuna's multi-objective TPE sampler over the kernel
  (direction scope and index, attention / MLP max weight, peak, min weight, distance),
  minimizing (refusals, KL); the Pareto front, each front point re-measured through
  :func:`~safetygeo.causal.frontier.frontier_point` against its matched nulls (random
  directions under the same kernel, :class:`~safetygeo.interventions.edits.KernelAbliteration`).

Example:
    >>> format_point(3, 100, 0.1612)
    '3/100 @ 0.161'
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from safetygeo._validate import positive_int, prompt_list
from safetygeo.activations.logits import last_logprobs
from safetygeo.activations.losses import kl_from_logprobs
from safetygeo.behavior.classify import classify_refusal
from safetygeo.behavior.generate import GenerationSettings, generate_variants
from safetygeo.behavior.metrics import refused_indicator
from safetygeo.causal.frontier import (
    FrontierBaseline,
    FrontierPoint,
    frontier_baseline,
    frontier_point,
)
from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.edits import KernelAbliteration
from safetygeo.interventions.kernel import AbliterationKernel, LayerKernel, edited_weights
from safetygeo.interventions.nulls import NullSpec
from safetygeo.models.handle import ModelHandle

__all__ = ["KernelScore", "SearchResult", "SearchSpace", "format_point", "grid_points",
           "harmless_means", "kernel_point", "marker_classifier", "search_abliteration",
           "slot_directions", "write_checkpoint", "write_lora"]


def marker_classifier(markers: Sequence[str]) -> Callable[[str], str]:
    """``completion -> label``: ``"full_refusal"`` when the completion contains any of
    ``markers`` (case-insensitive substring; the way marker-based abliteration tools count
    refusals), else ``"compliance"``.

    Example:
        >>> marker_classifier(["sorry"])("Sorry, no.")
        'full_refusal'
    """
    low = [m.lower() for m in markers if m.strip()]
    if not low:
        raise SafetyGeoError("refusal markers must be non-empty strings")

    def classify(completion: str) -> str:
        text = completion.lower()
        return "full_refusal" if any(m in text for m in low) else "compliance"
    return classify


def format_point(refusals: float, n: int, kl: float) -> str:
    """heretic's read-out: ``refusals/N @ KL``."""
    return f"{refusals:.0f}/{n} @ {kl:.3g}"


def slot_directions(selection: Any, position: str | int | None = None) -> Tensor:
    """``[L+1, d]`` diff-in-means directions of a carrier selection at ``position`` (default:
    the chosen carrier's, else the last position), one per residual slot ``0..L``.

    Raises:
        SafetyGeoError: the selection does not cover every slot ``0..L``.
    """
    d = selection.directions
    if position is None:
        position = selection.chosen[1] if selection.chosen is not None else d.positions.labels[-1]
    layers = list(d.layers)
    if layers != list(range(len(layers))):
        raise SafetyGeoError(f"the carrier selection has directions at layers {layers}; a "
                             "kernel edit needs every slot 0..L (select-carrier --layers all)")
    try:
        p = d.positions.index(position)
    except (ValueError, KeyError) as exc:
        raise SafetyGeoError(f"position {position!r} is not among the selection's "
                             f"{list(d.positions.labels)}") from exc
    return d.vectors[:, p].detach().double().cpu()


def harmless_means(handle: ModelHandle, prompts: Sequence[str], *, batch_size: int = 16) -> Tensor:
    """``[L+1, d]`` mean residual of ``prompts`` at the last position, per slot."""
    from safetygeo.activations.extract import extract_activations

    st = extract_activations(handle, prompt_list(prompts, "harmless"), positions="last",
                             batch_size=batch_size, progress=False)
    return st.mean[:, 0].double().cpu()


@dataclass(frozen=True)
class KernelScore:
    """One kernel's held-out read-out: refused harmful generations and first-token KL."""

    refusals: int
    n_harmful: int
    kl: float

    def __str__(self) -> str:
        return format_point(self.refusals, self.n_harmful, self.kl)


@torch.no_grad()
def kernel_point(handle: ModelHandle, directions: Tensor, kernel: AbliterationKernel,
                 baseline: FrontierBaseline, *, means: Tensor | None = None,
                 settings: GenerationSettings = GenerationSettings(max_new_tokens=16),
                 classifier: Callable[[str], str] = classify_refusal,
                 batch_size: int = 16) -> KernelScore:
    """Refusals and mean first-token KL under ``kernel`` (weights edited in place, restored)."""
    with edited_weights(handle, directions, kernel, means):
        gen = generate_variants(handle, baseline.harmful, 1, settings, batch_size=batch_size,
                                progress=False)[0]
        lp = last_logprobs(handle, baseline.harmless, batch_size=batch_size,
                           progress=False).double()
    refused = refused_indicator(gen.completions, classifier)
    kl = kl_from_logprobs(baseline.lp_harmless, lp[None])[0]
    return KernelScore(int(refused.sum()), len(baseline.harmful), float(kl.mean()))


@dataclass(frozen=True)
class SearchSpace:
    """Ranges of the kernel search, as fractions of the last block index ``L − 1``
    (heretic's design: global index in [0.4, 0.9], peaks in [0.6, 1], distance in
    [1 layer, 0.6]; attention max weight in [0.8, 1.5]; the MLP's lower bound is below 0
    and clamped to 0 so that "MLP off" has probability mass)."""

    index: tuple[float, float] = (0.4, 0.9)
    peak: tuple[float, float] = (0.6, 1.0)
    distance_max: float = 0.6
    attention_max: tuple[float, float] = (0.8, 1.5)
    mlp_max: tuple[float, float] = (-0.25, 1.5)
    scopes: tuple[str, ...] = ("global", "per layer")


@dataclass
class SearchResult:
    """The trials (``table``), the Pareto front and each front point against its nulls.

    Attributes:
        table: one row per trial: ``trial, refusals, n_harmful, kl, seconds, pareto`` and
            the kernel's parameters.
        kernels: trial number → kernel.
        front: the Pareto-optimal trials' :class:`~safetygeo.causal.frontier.FrontierPoint`
            (re-measured with nulls), in order of refusals.
        base: refusals without the edit.
        meta: settings.
    """

    table: pd.DataFrame
    kernels: dict[int, AbliterationKernel]
    front: list[tuple[int, FrontierPoint]] = field(default_factory=list)
    base_refusals: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def front_rows(self) -> list[dict[str, Any]]:
        """``trial, point ("r/N @ KL"), null point, p_refusals, p_kl, kernel`` per front point."""
        rows = []
        for trial, p in self.front:
            rn, kn = p.refusals_null, p.kl_null
            rows.append({"trial": trial, "point": format_point(p.refusals.value, p.n_harmful,
                                                               p.kl.value),
                         "refusals": p.refusals.value, "kl": p.kl.value,
                         "null_point": format_point(rn.null_mean, p.n_harmful, kn.null_mean),
                         "null_refusals_mean": rn.null_mean, "null_kl_mean": kn.null_mean,
                         "p_refusals": rn.p, "p_kl": kn.p, "k_null": rn.k,
                         "kernel": self.kernels[trial].to_dict()})
        return rows


def _suggest(trial: Any, n_layers: int, space: SearchSpace, base: AbliterationKernel) -> AbliterationKernel:
    top = max(n_layers - 1, 1)
    scope = trial.suggest_categorical("direction_scope", list(space.scopes))
    # always sampled (multivariate TPE needs a fixed space); slot = layer + 1
    index = trial.suggest_float("direction_index", space.index[0] * top + 1,
                                space.index[1] * top + 1)
    comps = {}
    for name, lim in (("attention", space.attention_max), ("mlp", space.mlp_max)):
        mx = max(0.0, trial.suggest_float(f"{name}.max_weight", lim[0], lim[1]))
        peak = trial.suggest_float(f"{name}.peak", space.peak[0] * top, space.peak[1] * top)
        frac = trial.suggest_float(f"{name}.min_weight_frac", 0.0, 1.0)
        dist = trial.suggest_float(f"{name}.distance", 1.0, max(space.distance_max * top, 1.0))
        comps[name] = LayerKernel(mx, peak=peak, min_weight=frac * mx, distance=dist)
    return base.replace(attention=comps["attention"], mlp=comps["mlp"],
                        direction_index=index if scope == "global" else None)


def search_abliteration(
    handle: ModelHandle,
    directions: Tensor,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    means: Tensor | None = None,
    base_kernel: AbliterationKernel = AbliterationKernel(),
    n_trials: int = 40,
    n_startup: int = 10,
    seed: int = 0,
    space: SearchSpace = SearchSpace(),
    nulls: NullSpec | None = NullSpec(k=8, max_variants=1),
    settings: GenerationSettings = GenerationSettings(max_new_tokens=16),
    classifier: Callable[[str], str] = classify_refusal,
    batch_size: int = 16,
    n_boot: int = 200,
    max_front: int = 8,
    progress: Callable[[int, KernelScore, AbliterationKernel], None] | None = None,
) -> SearchResult:
    """Optuna TPE (multi-objective, multivariate, seeded) over the kernel minimizing held-out
    (refusals, first-token KL); then the Pareto front (at most ``max_front`` points, fewest
    refusals first) re-measured against ``nulls`` (``None``: no nulls).

    ``base_kernel`` fixes what is not searched: ``norm``, ``projected``, ``embeddings``.
    """
    import optuna

    harmful, harmless = prompt_list(harmful, "harmful"), prompt_list(harmless, "harmless")
    n_trials = positive_int(n_trials, "n_trials")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = frontier_baseline(handle, harmful, harmless, settings=settings,
                             classifier=classifier, batch_size=batch_size)
    sampler = optuna.samplers.TPESampler(n_startup_trials=min(n_startup, n_trials),
                                         multivariate=True, seed=seed)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    kernels: dict[int, AbliterationKernel] = {}
    rows: list[dict[str, Any]] = []

    def objective(trial: Any) -> tuple[float, float]:
        kernel = _suggest(trial, handle.n_layers, space, base_kernel)
        kernels[trial.number] = kernel
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="kernel weight")
            score = kernel_point(handle, directions, kernel, base, means=means,
                                 settings=settings, classifier=classifier,
                                 batch_size=batch_size)
        rows.append({"trial": trial.number, "refusals": score.refusals,
                     "n_harmful": score.n_harmful, "kl": score.kl,
                     "seconds": time.perf_counter() - t0, **_flat(kernel)})
        if progress is not None:
            progress(trial.number, score, kernel)
        return float(score.refusals), score.kl

    study.optimize(objective, n_trials=n_trials)
    table = pd.DataFrame(rows)
    front_ids = sorted({t.number for t in study.best_trials},
                       key=lambda i: (table.refusals[i], table.kl[i]))
    table["pareto"] = table.trial.isin(front_ids)
    result = SearchResult(table, kernels, base_refusals=int(base.refused.sum()),
                          meta={"n_trials": n_trials, "seed": seed, "sampler": "optuna TPE "
                                f"(multivariate, {optuna.__version__})",
                                "settings": settings.to_dict(),
                                "nulls": None if nulls is None else nulls.identity(),
                                "n_harmful": len(harmful), "n_harmless": len(harmless)})
    if nulls is not None:
        for i in front_ids[:max_front]:
            iv = KernelAbliteration(directions, kernels[i], means)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="kernel weight")
                p = frontier_point(handle, iv, harmful, harmless, nulls=nulls, settings=settings,
                                   classifier=classifier, n_boot=n_boot, batch_size=batch_size,
                                   baseline=base)
            result.front.append((i, p))
    return result


def _flat(kernel: AbliterationKernel) -> dict[str, Any]:
    out: dict[str, Any] = {"direction_index": (math.nan if kernel.direction_index is None
                                               else kernel.direction_index)}
    for name, lk in (("attention", kernel.attention), ("mlp", kernel.mlp)):
        out |= {f"{name}.max_weight": lk.max_weight, f"{name}.peak": lk.peak,
                f"{name}.min_weight": lk.min_weight, f"{name}.distance": lk.distance}
    return out


def grid_points(handle: ModelHandle, directions: Tensor, kernels: Sequence[AbliterationKernel],
                baseline: FrontierBaseline, **kw: Any) -> list[KernelScore]:
    """:func:`kernel_point` of each kernel (a grid to compare a search with)."""
    return [kernel_point(handle, directions, k, baseline, **kw) for k in kernels]



def write_lora(source: ModelHandle, folder: str | os.PathLike[str], directions: Tensor,
               kernel: AbliterationKernel, means: Tensor | None = None) -> Path:
    """Write the edit as a PEFT LoRA adapter (rank 1, exact; see
    :func:`~safetygeo.interventions.kernel.lora_factors`) for ``source``'s base weights."""
    import copy

    from peft import LoraConfig, get_peft_model

    from safetygeo.interventions.kernel import lora_factors

    factors = lora_factors(source, directions, kernel, means)
    if not factors:
        raise SafetyGeoError("the kernel edits no matrix (all weights are 0)")
    config = LoraConfig(r=1, lora_alpha=1, lora_dropout=0.0, bias="none",
                        target_modules=sorted(factors))
    peft_model = get_peft_model(copy.deepcopy(source.model), config)
    with torch.no_grad():
        for name, module in peft_model.named_modules():
            key = name.removeprefix("base_model.model.")
            if key in factors and hasattr(module, "lora_A"):
                a, b = factors[key]
                la, lb = module.lora_A["default"].weight, module.lora_B["default"].weight
                la.copy_(a.to(la.dtype))
                lb.copy_(b.to(lb.dtype))
    folder = Path(folder)
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def write_checkpoint(edited: ModelHandle | None, folder: str | os.PathLike[str], *,
                     source: ModelHandle, kernel: AbliterationKernel, directions: Tensor,
                     carriers: str | os.PathLike[str] | None = None, position: str | None = None,
                     check: dict[str, Any] | None = None, trial: int | None = None,
                     means: Tensor | None = None) -> Path:
    """Write ``edited`` as a loadable checkpoint (safetensors + tokenizer) — or, with
    ``edited=None``, the edit as a LoRA adapter for ``source`` (:func:`write_lora`) — its
    provenance ``abliteration.json`` (source model, directions, kernel and per-block weights,
    held-out ``check`` with its nulls) and a model card ``README.md``."""
    from safetygeo import __version__
    from safetygeo._io import atomic_write_json, atomic_write_text, file_sha256

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if edited is None:
        write_lora(source, folder, directions, kernel, means)
        source.tokenizer.save_pretrained(folder)
    else:
        edited.model.save_pretrained(folder, safe_serialization=True)
        edited.tokenizer.save_pretrained(folder)
    n = source.n_layers
    weights = {"attention": kernel.attention.weights(n), "mlp": kernel.mlp.weights(n)}
    dir_file = Path(carriers) / "directions.safetensors" if carriers is not None else None
    prov = {
        "format": "safetygeo.abliteration", "format_version": 1, "safetygeo": __version__,
        "source": source.describe(),
        "directions": {"carriers": None if carriers is None else str(carriers),
                       "sha256": (file_sha256(dir_file) if dir_file is not None
                                  and dir_file.is_file() else None),
                       "position": position, "finder": "diff-in-means",
                       "norms": [float(x) for x in directions.norm(dim=-1)]},
        "kernel": kernel.to_dict(), "block_weights": weights, "search_trial": trial,
        "written": "merged safetensors" if edited is not None else "LoRA adapter (rank 1, exact)",
        "held_out": None if check is None else {k: v for k, v in check.items() if k != "row"},
        "held_out_row": None if check is None else check.get("row"),
    }
    atomic_write_json(folder / "abliteration.json", _json_ready(prov))
    atomic_write_text(folder / "README.md", _card(prov))
    return folder


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float) or hasattr(obj, "item"):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def _card(prov: dict[str, Any]) -> str:
    src, k = prov["source"], prov["kernel"]
    scope = ("per layer (block l uses slot l+1)" if k["direction_index"] is None
             else f"one direction, slot {k['direction_index']:.4g}")
    lines = [
        "---", "tags: [abliterated, safetygeo]", "---", "",
        f"# {src['model_id']} — abliterated", "",
        "Refusal removed by editing the weights that write to the residual stream "
        f"(safetygeo {prov['safetygeo']}). **This model may comply with harmful requests.**", "",
        "## Edit", "",
        f"* directions: diff-in-means from `{prov['directions']['carriers']}`, {scope}",
        f"* matrices: `{k['norm']}` ({k['references']['norm']})",
        f"* direction projection: `{k['projected']}` ({k['references']['projected']})",
        f"* embeddings edited: {k['embeddings']}",
        "* per-block weights (attention): "
        + ", ".join(f"{w:.3g}" for w in prov["block_weights"]["attention"]),
        "* per-block weights (MLP): " + ", ".join(f"{w:.3g}" for w in prov["block_weights"]["mlp"]),
        "",
    ]
    held = prov.get("held_out")
    if held:
        lines += ["## Held-out check", "",
                  f"* this edit: {held['point']} (refused harmful generations / N @ mean "
                  "first-token KL on harmless prompts)",
                  f"* random directions, same kernel (mean of {held['nulls']['k']}): "
                  f"{held['null_point']}",
                  f"* p (refusals, one-sided) = {held['p_refusals']:.3g}; p (KL, two-sided) = "
                  f"{held['p_kl']:.3g}", ""]
    else:
        lines += ["No held-out check was run (`safetygeo abliterate ... --set harmful=SPEC "
                  "--set harmless=SPEC` runs one).", ""]
    if prov["written"].startswith("LoRA"):
        lines += ["Load: `PeftModel.from_pretrained(base, this_folder)` on "
                  f"`{src['model_id']}` (rank-1 adapter, exact; `merge_and_unload()` merges it).",
                  ""]
    lines += ["Full provenance: `abliteration.json`.", ""]
    return "\n".join(lines)
