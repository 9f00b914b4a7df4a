"""Refusal cones (Wollschläger et al.): does every direction sampled from a trained cone
ablate and induce refusal on held-out prompts (:func:`cone_property`), and how many
dimensions can such a cone have (:func:`cone_dimension`)?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from safetygeo._validate import positive_int, prompt_list
from safetygeo.activations.logits import last_logprobs
from safetygeo.activations.refusal import RefusalScoring, refusal_score_from_logprobs
from safetygeo.causal.finders import (
    DirectionOptimization,
    OptimizedDirections,
    prepare_optimization,
    train_directions,
)
from safetygeo.geometry.cones import sample_cone
from safetygeo.geometry.finders import orthonormalize
from safetygeo.interventions.hooks import add
from safetygeo.interventions.subspace import ablate_subspace
from safetygeo.models.handle import ModelHandle

__all__ = ["ConeEvaluation", "cone_dimension", "cone_property"]


@dataclass(frozen=True)
class ConeEvaluation:
    """How sampled cone directions behave on held-out prompts.

    Attributes:
        k: cone dimension.
        table: one row per direction (``kind`` = ``"basis"`` or ``"sample"``): ``bypass``
            (mean harmful refusal score with it ablated), ``induce`` (mean harmless refusal
            score with ``alpha`` × it added at ``layer``).
        holds: every direction has ``bypass < bypass_max`` and ``induce > induce_min``.
        bypass_max, induce_min: the thresholds (log-odds; 0 = as likely to refuse as not).
        base_harmful, base_harmless: scores without intervention.
    """

    k: int
    table: pd.DataFrame
    holds: bool
    bypass_max: float
    induce_min: float
    base_harmful: float
    base_harmless: float

    def to_row(self) -> dict[str, Any]:
        t = self.table
        return {"k": self.k, "holds": self.holds, "worst_bypass": float(t.bypass.max()),
                "worst_induce": float(t.induce.min()), "mean_bypass": float(t.bypass.mean()),
                "mean_induce": float(t.induce.mean()), "n_directions": len(t),
                "base_harmful": self.base_harmful, "base_harmless": self.base_harmless}


@torch.no_grad()
def cone_property(
    handle: ModelHandle,
    basis: Tensor,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    layer: int,
    alpha: float,
    n_samples: int = 16,
    seed: int = 1,
    scoring: RefusalScoring = RefusalScoring(),
    bypass_max: float = 0.0,
    induce_min: float = 0.0,
    batch_size: int = 16,
) -> ConeEvaluation:
    """Does every direction of the cone mediate refusal on these (held-out) prompts?

    Evaluates each basis vector and ``n_samples`` directions sampled in the cone (a seed
    other than training's) as batch variants: ablation of each on ``harmful`` and addition
    of ``alpha`` × each at ``layer`` on ``harmless``.
    """
    b = orthonormalize(basis.detach().double().cpu())
    dirs = torch.cat([b, sample_cone(b, n_samples, seed=seed)]) if len(b) > 1 else b
    kinds = ["basis"] * len(b) + ["sample"] * (len(dirs) - len(b))
    ids = scoring.ids(handle.tokenizer)
    harmful, harmless = prompt_list(harmful, "harmful"), prompt_list(harmless, "harmless")
    base_h = float(refusal_score_from_logprobs(
        last_logprobs(handle, harmful, batch_size=batch_size, progress=False), ids).mean())
    base_l = float(refusal_score_from_logprobs(
        last_logprobs(handle, harmless, batch_size=batch_size, progress=False), ids).mean())
    v = len(dirs)
    with ablate_subspace(handle, dirs[:, None, :]):
        lp = last_logprobs(handle, harmful, batch_size=batch_size, repeat=v, progress=False)
    bypass = refusal_score_from_logprobs(lp.reshape(v, len(harmful), -1), ids).mean(-1)
    with add(handle, dirs * alpha, layer):
        lp = last_logprobs(handle, harmless, batch_size=batch_size, repeat=v,
                           fan_out_layer=layer, progress=False)
    induce = refusal_score_from_logprobs(lp.reshape(v, len(harmless), -1), ids).mean(-1)
    table = pd.DataFrame({"kind": kinds, "bypass": bypass.numpy(), "induce": induce.numpy()})
    holds = bool((table.bypass < bypass_max).all() and (table.induce > induce_min).all())
    return ConeEvaluation(len(b), table, holds, bypass_max, induce_min, base_h, base_l)


def cone_dimension(
    handle: ModelHandle,
    train_harmful: Sequence[str],
    train_harmless: Sequence[str],
    test_harmful: Sequence[str],
    test_harmless: Sequence[str],
    *,
    reference: Tensor,
    layer: int,
    max_k: int = 3,
    settings: DirectionOptimization = DirectionOptimization(),
    scoring: RefusalScoring = RefusalScoring(),
    n_samples: int = 16,
    bypass_max: float = 0.0,
    induce_min: float = 0.0,
    batch_size: int = 16,
    stop_at_failure: bool = True,
) -> tuple[int, list[OptimizedDirections], list[ConeEvaluation]]:
    """Train cones of dimension ``1..max_k`` (each started from the previous basis) and
    return ``(the largest k such that the cone property holds on the test prompts for every
    dimension up to k (0 if none), the cones, their evaluations)``. Training stops at the
    first ``k`` that fails unless ``stop_at_failure=False``. The first cone records the
    seconds spent generating the training targets (``target_seconds``)."""
    data, tsec = prepare_optimization(handle, train_harmful, train_harmless, reference, layer, settings,
                          scoring, None, batch_size)
    cones: list[OptimizedDirections] = []
    evals: list[ConeEvaluation] = []
    dim = 0
    init = None
    for k in range(1, positive_int(max_k, "max_k") + 1):
        cone = train_directions(handle, data, k, settings, init=init, method="rco" if k > 1 else "rdo",
                      target_seconds=tsec if k == 1 else 0.0)
        ev = cone_property(handle, cone.basis, test_harmful, test_harmless, layer=data.layer,
                           alpha=data.alpha, n_samples=n_samples, scoring=scoring,
                           bypass_max=bypass_max, induce_min=induce_min, batch_size=batch_size)
        cones.append(cone)
        evals.append(ev)
        if ev.holds and dim == k - 1:
            dim = k
        elif stop_at_failure:
            break
        init = cone.basis
    return dim, cones, evals
