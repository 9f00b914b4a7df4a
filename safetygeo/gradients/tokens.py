"""The per-token view: how strongly each forget token drives an unlearning update.

For each completion token of a batch of forget records, :func:`per_token_weights` reports
the model's probability ``p`` of the token and each objective's weights
(:func:`~safetygeo.gradients.objectives.token_weights`): ``w_logp`` on ``∇log p`` and
``w_p = w_logp / p`` on ``∇p``. For GA ``w_p = 1/p``: the *inverse-confidence* term of the
G-effect critique — tokens the model already finds unlikely get the largest push, so GA
keeps pushing after the knowledge is gone. WGA (``p^β``) and NPO / TNPO (``2σ(·)``) damp it.
Only a forward pass is run (no parameter gradients).

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
    >>> forget = LossSpec.from_data([("Make a bomb.", "Sure, mix it.")], "harmful_ce")
    >>> tw = per_token_weights(h, ["ga", "wga"], forget)
    >>> df = tw.to_frame()
    >>> sorted(df.objective.unique()), bool(((df.w_p * df.p - df.w_logp).abs() < 1e-9).all())
    (['ga', 'wga'], True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from safetygeo.activations.losses import completion_logprobs
from safetygeo.errors import SafetyGeoError
from safetygeo.gradients.losses import LossSpec, ReferenceLogprobs, reference_logprobs
from safetygeo.gradients.objectives import UnlearningObjective, token_weights
from safetygeo.models.handle import ModelHandle

__all__ = ["TokenWeights", "per_token_weights"]


@dataclass(frozen=True)
class TokenWeights:
    """Per-token probabilities and objective weights.

    Attributes:
        frame: one row per objective × example × completion token: ``objective``, ``beta``,
            ``example``, ``position`` (index within the completion), ``token_id``,
            ``token``, ``p``, ``logp``, ``w_logp``, ``w_p``, ``w_p_share`` (the token's share
            of its example's total ``w_p``).
        meta: forget description, reference source.
    """

    frame: Any
    meta: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> Any:
        return self.frame.copy()

    def summary(self) -> Any:
        """Per objective: mean / max ``w_p``, and the share of the total ``w_p`` carried by
        the tokens with ``p < 0.1`` (how much the least confident tokens dominate)."""
        df = self.frame
        rows = []
        for (name, beta), g in df.groupby(["objective", "beta"], dropna=False, sort=False):
            low = g[g.p < 0.1]
            rows.append({"objective": name, "beta": beta, "n_tokens": len(g),
                         "mean_w_p": float(g.w_p.mean()), "max_w_p": float(g.w_p.max()),
                         "share_low_p": float(low.w_p.sum() / g.w_p.sum()) if g.w_p.sum() > 0 else float("nan"),
                         "share_tokens_low_p": float(len(low) / len(g))})
        import pandas as pd

        return pd.DataFrame(rows)


@torch.no_grad()
def per_token_weights(
    handle: ModelHandle,
    objectives: Sequence[UnlearningObjective | str] | UnlearningObjective | str,
    forget: LossSpec,
    *,
    reference: ReferenceLogprobs | ModelHandle | None = None,
) -> TokenWeights:
    """Per-token weights of each objective on ``forget`` at ``handle``'s weights.

    Args:
        objectives: one or several objectives (names take the default β).
        forget: the forget records (e.g. the first few examples of a forget set).
        reference: NPO / TNPO's reference (model or precomputed log-probs; ``None``: the
            model itself, where every weight ``2σ(0) = 1``).
    """
    import pandas as pd

    if isinstance(objectives, (str, UnlearningObjective)):
        objectives = [objectives]
    objs = [UnlearningObjective(o) if isinstance(o, str) else o for o in objectives]
    if not objs:
        raise SafetyGeoError("per_token_weights needs at least one objective")
    ref: ReferenceLogprobs | None = None
    if any(o.needs_reference for o in objs):
        if reference is None:
            ref = reference_logprobs(handle, forget, source="self")
        elif isinstance(reference, ModelHandle):
            ref = reference_logprobs(reference, forget)
        else:
            ref = reference
    batches, _, _ = forget.batches(handle)
    if ref is not None:
        ref.check(forget, batches)
    tok = handle.tokenizer
    model = handle.model
    was = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    try:
        offset = 0
        for bi, b in enumerate(batches):
            logp, mask = completion_logprobs(model, b)
            logp, mask = logp.float().cpu(), mask.cpu()
            targets = b["labels"][:, 1:].cpu()
            r = ref.per_batch[bi] if ref is not None else None
            for obj in objs:
                w = token_weights(obj, logp, mask, r if obj.needs_reference else None)
                for i in range(logp.shape[0]):
                    pos = mask[i].nonzero().flatten().tolist()
                    total = float(w.w_p[i].sum())
                    for j, t in enumerate(pos):
                        tid = int(targets[i, t])
                        lp = float(logp[i, t])
                        wp = float(w.w_p[i, t])
                        rows.append({"objective": obj.name, "beta": obj.beta,
                                     "example": offset + i, "position": j, "token_id": tid,
                                     "token": tok.decode([tid]), "p": math.exp(lp),
                                     "logp": lp, "w_logp": float(w.w_logp[i, t]), "w_p": wp,
                                     "w_p_share": wp / total if total > 0 else float("nan")})
            offset += logp.shape[0]
    finally:
        model.train(was)
    meta = {"forget": forget.describe(), "reference": None if ref is None else ref.source,
            "objectives": [o.to_dict() for o in objs]}
    return TokenWeights(pd.DataFrame(rows), meta)
