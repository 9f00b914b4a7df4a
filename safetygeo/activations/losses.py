"""Loss building blocks shared by the training methods (completion-only, float32 softmax).

Batches are those of :func:`safetygeo.data.records.pad_right`: ``input_ids``,
``attention_mask`` and ``labels`` (``-100`` on prompt and padding tokens). Position ``t``'s
logits predict token ``t + 1`` (the usual causal-LM shift).

Example:
    >>> from safetygeo.models.tiny import tiny_model
    >>> from safetygeo.data.records import pad_right
    >>> m = tiny_model("llama", n_layers=2, d_model=32, vocab_size=64)
    >>> b = pad_right([{"input_ids": [1, 5, 9, 3], "labels": [-100, -100, 9, 3]}], pad_id=0)
    >>> ref = m(input_ids=b["input_ids"], labels=b["labels"]).loss  # Hugging Face's own loss
    >>> bool(abs(completion_ce(m, b) - ref) < 1e-6)
    True
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from safetygeo.data.records import IGNORE_INDEX


def token_logprobs(
    logits: Float[Tensor, "batch seq vocab"], labels: Int[Tensor, "batch seq"]
) -> tuple[Float[Tensor, "batch seq_1"], Bool[Tensor, "batch seq_1"]]:
    """Log-probabilities of each next label token from given logits, and the scored mask.

    The one completion log-prob / cross-entropy of the package (training losses, direction
    optimization, gradients): softmax in float32 (or the logits' wider dtype), position
    ``t`` predicts ``labels[:, t + 1]``; ``logp`` is 0 where the label is ``-100``.
    """
    z = logits[:, :-1]
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    y = labels[:, 1:]
    mask = y != IGNORE_INDEX
    logp = torch.log_softmax(z, dim=-1).gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def token_ce(logits: Float[Tensor, "batch seq vocab"], labels: Int[Tensor, "batch seq"]
             ) -> Float[Tensor, ""]:
    """Token-mean next-token cross-entropy over labelled positions (Hugging Face's
    ``labels=`` loss), from given logits.

    Example:
        >>> import math
        >>> z = torch.zeros(1, 3, 4)  # uniform over 4 tokens
        >>> round(float(token_ce(z, torch.tensor([[-100, 1, 2]]))), 6) == round(math.log(4), 6)
        True
    """
    logp, mask = token_logprobs(logits, labels)
    return -logp.sum() / mask.sum().clamp(min=1)


def kl_from_logprobs(p_lp: Float[Tensor, "*shape vocab"], q_lp: Float[Tensor, "*shape vocab"]
                     ) -> Float[Tensor, "*shape"]:
    """``KL(p ‖ q) = Σ_v p_v (log p_v − log q_v)`` over the last axis, from log-probabilities
    (in their dtype, broadcasting, differentiable): the one KL of the package. The
    "KL(base ‖ edited)" of carrier scoring, sweeps, the frontier and direction optimization
    is ``kl_from_logprobs(base_lp, edited_lp)``.

    Example:
        >>> p = torch.log(torch.tensor([0.5, 0.5])); q = torch.log(torch.tensor([0.25, 0.75]))
        >>> round(float(kl_from_logprobs(p, q)), 6)  # 0.5 ln 2 + 0.5 ln(2/3)
        0.143841
    """
    return (p_lp.exp() * (p_lp - q_lp)).sum(-1)


def _logits(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                 use_cache=False).logits


def completion_logprobs(
    model: nn.Module, batch: Mapping[str, Tensor]
) -> tuple[Float[Tensor, "batch seq_1"], Bool[Tensor, "batch seq_1"]]:
    """Log-probabilities of each next label token and the mask of scored positions.

    Returns ``(logp, mask)``, both ``[batch, seq - 1]``: ``logp[i, t] = log p(labels[i, t+1]
    | tokens ≤ t)`` where ``mask[i, t]`` (label not ``-100``), else 0
    (:func:`token_logprobs` of the model's logits).
    """
    return token_logprobs(_logits(model, batch), batch["labels"])


def completion_ce(model: nn.Module, batch: Mapping[str, Tensor]) -> Float[Tensor, ""]:
    """Mean cross-entropy over all completion tokens of the batch (token-weighted).

    This is the standard SFT loss (Hugging Face ``ForCausalLMLoss`` / TRL completion-only):
    every scored token counts once, so long completions weigh more than short ones.
    """
    return token_ce(_logits(model, batch), batch["labels"])


def sequence_logprob(model: nn.Module, batch: Mapping[str, Tensor]) -> Float[Tensor, " batch"]:
    """``log p(completion | prompt)`` per example: the sum of its completion-token log-probs.

    E.g. an "away" loss ``−log(1 − p(target))`` is
    ``-torch.log1p(-sequence_logprob(m, b).exp().clamp(max=1 - 1e-6))``.
    """
    logp, _ = completion_logprobs(model, batch)
    return logp.sum(dim=-1)
