"""RepInd (representational independence, Wollschläger et al.): does ablating one direction
leave the cosine profile of another unchanged at every layer? The criterion against random
directions (:func:`representational_independence`) and its differentiable loss
(:func:`repind_terms`), which :func:`safetygeo.causal.finders.repind_direction` trains with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from safetygeo._validate import prompt_list
from safetygeo.activations.logits import encode_checked, pad_id_of
from safetygeo.data.records import pad_right
from safetygeo.interventions.nulls import NullSpec, check_spec, run_null_test, sphere_or_covariance
from safetygeo.interventions.subspace import ablate_subspace
from safetygeo.models.handle import ModelHandle
from safetygeo.models.hooks import hidden_from_inputs, resid_module
from safetygeo.results import NullComparison

__all__ = ["RepIndResult", "representational_independence"]


def variant_batch(rows: Sequence[dict[str, list[int]]], pad_id: int, device: torch.device,
           v: int) -> dict[str, Tensor]:
    """Right-padded batch of labelled rows, repeated ``v`` times (one copy per variant)."""
    b = pad_right(rows, pad_id)
    return {k: t.to(device).repeat(v, 1) for k, t in b.items()}




# ----------------------------------------------------------------------------- RepInd
def last_token_cos(handle: ModelHandle, batch: dict[str, Tensor], probes: Tensor,
                    layers: Sequence[int]) -> Tensor:
    """Cosine of the last real token's residual entering each layer with each probe:
    ``[rows, layers, n_probes]`` (one forward; interventions in context apply)."""
    seen: dict[int, Tensor] = {}
    last = batch["attention_mask"].sum(-1) - 1

    def hook_for(layer: int) -> Callable[..., Any]:
        def hook(module: Any, args: tuple, kwargs: dict) -> None:
            x = hidden_from_inputs(args, kwargs)
            seen[layer] = x[torch.arange(x.shape[0], device=x.device), last.to(x.device)]
        return hook

    handles = [resid_module(handle, l).register_forward_pre_hook(hook_for(l), with_kwargs=True)
               for l in layers]
    try:
        handle.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     use_cache=False)
    finally:
        for h in handles:
            h.remove()
    xs = torch.stack([seen[l] for l in layers], dim=1)  # [rows, layers, d]
    p = probes.to(xs.dtype)
    return torch.nn.functional.cosine_similarity(xs[:, :, None, :], p[None, None], dim=-1)


def repind_terms(handle: ModelHandle, a: Tensor, others: Tensor, batch: dict[str, Tensor],
                  layers: Sequence[int]) -> Tensor:
    """Mean over layers of the squared cosine changes, summed over ``others`` and both
    ways, averaged over rows: the paper's RepInd loss (differentiable in ``a``)."""
    probes = torch.cat([a[None], others.to(a.dtype)])
    with torch.no_grad():
        base = last_token_cos(handle, batch, probes.detach(), layers)
    with ablate_subspace(handle, a[None, None, :], differentiable=True):
        after_a = last_token_cos(handle, batch, probes, layers)
    total = (after_a[..., 1:] - base[..., 1:]).square().mean((0, 1)).sum()
    for j in range(len(others)):
        with ablate_subspace(handle, others[j].detach(), differentiable=False):
            after_b = last_token_cos(handle, batch, probes, layers)
        total = total + (after_b[..., 0] - base[..., 0]).square().mean()
    return total


@dataclass(frozen=True)
class RepIndResult:
    """The RepInd criterion for two directions, against random directions.

    Attributes:
        score: mean over layers and prompts of the squared change of ``cos(x_l, b)`` when
            ``a`` is ablated plus that of ``cos(x_l, a)`` when ``b`` is ablated (0 =
            representationally independent).
        per_layer: ``DataFrame(layer, d_cos_b_when_a_ablated, d_cos_a_when_b_ablated)``
            (root mean squares over prompts).
        null: the same score for ``a`` against ``k`` random directions
            (:class:`~safetygeo.results.NullComparison`, one-sided greater: is ``a`` more
            entangled with ``b`` than with random directions?).
        cosine: ``cos(a, b)`` (independence is not orthogonality: compare).
    """

    score: float
    per_layer: pd.DataFrame
    null: NullComparison
    cosine: float

    def to_row(self) -> dict[str, Any]:
        n = self.null
        return {"metric": "repind_score", "score": self.score, "cosine": self.cosine,
                "null_mean": n.null_mean, "null_q975": n.null_quantile(0.975), "p": n.p,
                "z": n.z, "k_null": n.k}


def prompt_batch(handle: ModelHandle, prompts: list[str], device: torch.device) -> dict[str, Tensor]:
    ids = encode_checked(handle, prompts)
    return variant_batch([{"input_ids": p, "labels": p} for p in ids], pad_id_of(handle), device, 1)


def _mutual_shifts(handle: ModelHandle, batch: dict[str, Tensor], u: Tensor, v: Tensor,
                   layers: list[int]) -> tuple[Tensor, Tensor]:
    """Squared change of each prompt's last-token cosine with ``v`` when ``u`` is ablated,
    and with ``u`` when ``v`` is ablated (``[rows, layers]`` each, float64): the two terms of
    the RepInd score of the pair (unit directions)."""
    probes = torch.stack([u, v]).float()
    base = last_token_cos(handle, batch, probes, layers).double()
    with ablate_subspace(handle, u):
        after_u = last_token_cos(handle, batch, probes, layers).double()
    with ablate_subspace(handle, v):
        after_v = last_token_cos(handle, batch, probes, layers).double()
    return (after_u[..., 1] - base[..., 1]).square(), (after_v[..., 0] - base[..., 0]).square()


@torch.no_grad()
def representational_independence(
    handle: ModelHandle, a: Tensor, b: Tensor, prompts: Sequence[str], *,
    layers: Sequence[int] | None = None, nulls: NullSpec = NullSpec(k=16),
) -> RepIndResult:
    """The paper's RepInd criterion for ``a`` and ``b`` on ``prompts`` (e.g. harmful ones).

    Args:
        a, b: directions (raw; normalized here).
        layers: the layers whose input residual is compared (default ``0..L``).
        nulls: the random directions ``b`` is replaced by (``K``, seed, ``kind``; a
            sequential spec stops once the test is settled), through
            :func:`~safetygeo.interventions.nulls.run_null_test`.
    """
    prompts = prompt_list(prompts)
    nulls = check_spec(nulls)
    layer_list = list(handle.check_layers("all" if layers is None else list(layers)))
    ua = a.detach().double().cpu() / a.norm()
    ub = b.detach().double().cpu() / b.norm()
    batch = prompt_batch(handle, prompts, handle.device)
    variants = torch.cat([ub[None], sphere_or_covariance(nulls, ub)])
    real: dict[str, Tensor] = {}

    def evaluate(idx: list[int]) -> np.ndarray:
        out = []
        for i in idx:
            x1, x2 = _mutual_shifts(handle, batch, ua, variants[i], layer_list)
            if i == 0:
                real["d_b"], real["d_a"] = x1, x2
            out.append([float(x1.mean() + x2.mean())])
        return np.asarray(out)

    draws = run_null_test(nulls, evaluate, [("repind_score", "greater")])
    d_b, d_a = real["d_b"], real["d_a"]
    per_layer = pd.DataFrame({"layer": layer_list,
                              "d_cos_b_when_a_ablated": d_b.mean(0).sqrt().numpy(),
                              "d_cos_a_when_b_ablated": d_a.mean(0).sqrt().numpy()})
    return RepIndResult(float(draws.values[0, 0]), per_layer, draws.comparison(0),
                        float(ua @ ub))
