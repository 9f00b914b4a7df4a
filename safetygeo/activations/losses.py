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
from jaxtyping import Bool, Float
from torch import Tensor, nn

from safetygeo.data.records import IGNORE_INDEX


def completion_logprobs(
    model: nn.Module, batch: Mapping[str, Tensor]
) -> tuple[Float[Tensor, "batch seq_1"], Bool[Tensor, "batch seq_1"]]:
    """Log-probabilities of each next label token and the mask of scored positions.

    Returns ``(logp, mask)``, both ``[batch, seq - 1]``: ``logp[i, t] = log p(labels[i, t+1]
    | tokens ≤ t)`` where ``mask[i, t]`` (label not ``-100``), else 0.
    """
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), use_cache=False
    ).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def completion_ce(model: nn.Module, batch: Mapping[str, Tensor]) -> Float[Tensor, ""]:
    """Mean cross-entropy over all completion tokens of the batch (token-weighted).

    This is the standard SFT loss (Hugging Face ``ForCausalLMLoss`` / TRL completion-only):
    every scored token counts once, so long completions weigh more than short ones.
    """
    logp, mask = completion_logprobs(model, batch)
    return -logp.sum() / mask.sum().clamp(min=1)


def sequence_logprob(model: nn.Module, batch: Mapping[str, Tensor]) -> Float[Tensor, " batch"]:
    """``log p(completion | prompt)`` per example: the sum of its completion-token log-probs.

    E.g. an "away" loss ``−log(1 − p(target))`` is
    ``-torch.log1p(-sequence_logprob(m, b).exp().clamp(max=1 - 1e-6))``.
    """
    logp, _ = completion_logprobs(model, batch)
    return logp.sum(dim=-1)
