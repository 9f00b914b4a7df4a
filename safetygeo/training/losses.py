"""Loss building blocks shared by training methods: numerically careful "away" losses.

* :func:`log1mexp` — ``log(1 − exp(x))`` accurate at both ends;
* :func:`target_logprobs` — float64 ``log p`` and ``log(1 − p)`` of each next label token;
* :func:`sequence_away_loss` / :func:`token_away_loss` — ``−log(1 − p(target))`` over a whole
  target sequence or per token (R2D2's away term; usable by any method that pushes a
  completion's probability down).

Completion-only cross-entropy itself is :func:`safetygeo.activations.losses.completion_ce`.

Example:
    >>> import torch
    >>> x = torch.tensor([-0.5], dtype=torch.float64)
    >>> round(float(log1mexp(x)), 6)
    -0.932752
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from safetygeo.activations.losses import token_ce
from safetygeo.data.records import IGNORE_INDEX

__all__ = ["collapse_ce", "log1mexp", "token_noiser_loss", "sequence_away_loss", "target_logprobs", "token_away_loss",
           "token_ce"]


def log1mexp(x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """``log(1 − exp(x))`` for ``x ≤ 0``, accurate at both ends (Mächler 2012).

    ``x`` is clamped to ``≤ −tiny`` (the dtype's smallest normal number) so that ``x = 0``
    gives a large finite value instead of ``−∞``; each branch only ever sees inputs where
    it is finite, so gradients contain no NaN.

    Example:
        >>> x = torch.tensor([-1e-20, -0.5, -50.0], dtype=torch.float64)
        >>> [f"{v:.6g}" for v in log1mexp(x).tolist()]
        ['-46.0517', '-0.932752', '-1.92875e-22']
    """
    x = x.clamp(max=-torch.finfo(x.dtype).tiny)
    near = x > -math.log(2.0)
    near_x = torch.where(near, x, torch.full_like(x, -1.0))
    far_x = torch.where(near, torch.full_like(x, -1.0), x)
    return torch.where(near, torch.log(-torch.expm1(near_x)), torch.log1p(-torch.exp(far_x)))


def target_logprobs(
    logits: Float[Tensor, "batch seq vocab"], labels: Int[Tensor, "batch seq"]
) -> tuple[Float[Tensor, "batch seq_1"], Float[Tensor, "batch seq_1"]]:
    """Float64 ``log p`` and ``log(1 − p)`` of each next label token (0 where unscored).

    Position ``t``'s logits predict ``labels[:, t + 1]`` (labels ``-100`` are not scored).
    With ``a = logsumexp_{j≠y} z_j − z_y``: ``log p = −softplus(a)`` and ``log(1 − p) =
    −softplus(−a)``, both accurate when ``p`` is within float64 rounding of 0 or 1.

    Returns:
        ``(logp, log1mp)``, each ``[batch, seq − 1]`` float64.
    """
    z = logits[:, :-1]
    y = labels[:, 1:]
    mask = y != IGNORE_INDEX
    logp = torch.zeros(y.shape, dtype=torch.float64, device=logits.device)
    log1mp = torch.zeros_like(logp)
    if mask.any():
        zs = z[mask].double()  # only the scored positions: [n, vocab]
        ys = y[mask]
        z_y = zs.gather(-1, ys[:, None]).squeeze(-1)
        others = torch.logsumexp(zs.scatter(-1, ys[:, None], -math.inf), dim=-1)
        a = others - z_y
        logp = logp.masked_scatter(mask, -F.softplus(a))
        log1mp = log1mp.masked_scatter(mask, -F.softplus(-a))
    return logp, log1mp


def sequence_away_loss(
    logits: Float[Tensor, "batch seq vocab"], labels: Int[Tensor, "batch seq"]
) -> tuple[Float[Tensor, " batch"], Float[Tensor, " batch"]]:
    """Per-row away loss ``−log(1 − p(target))`` and ``log p(target)`` (float64).

    ``p(target)`` is the probability of all labelled tokens of the row (the product of
    their next-token probabilities); see the module notes for the numerics.

    Example:
        >>> logits = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])  # p(token 1) = 0.5
        >>> away, logp = sequence_away_loss(logits, torch.tensor([[-100, 1]]))
        >>> round(float(away), 6), round(float(logp.exp()), 6)  # -log(1 - 0.5)
        (0.693147, 0.5)
    """
    logp, _ = target_logprobs(logits, labels)
    seq = logp.sum(dim=-1)
    return -log1mexp(seq), seq


def token_away_loss(
    logits: Float[Tensor, "batch seq vocab"],
    labels: Int[Tensor, "batch seq"],
    threshold: float = -5.0,
) -> Float[Tensor, ""]:
    """HarmBench code's per-token away loss: mean over labelled tokens of
    ``−log(1 − p_t)``, where tokens with ``log p_t < threshold`` count as 0 (float64).

    Example:
        >>> logits = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
        >>> round(float(token_away_loss(logits, torch.tensor([[-100, 1]]))), 6)
        0.693147
    """
    logp, log1mp = target_logprobs(logits, labels)
    n = (labels[:, 1:] != IGNORE_INDEX).sum().clamp(min=1)
    terms = torch.where(logp >= threshold, -log1mp, torch.zeros_like(log1mp))
    return terms.sum() / n


def collapse_ce(logits: Tensor, labels: Tensor, token_id: int) -> Tensor:
    """CTRAP's collapse loss: token-mean CE over labelled positions with every target
    replaced by one fixed token ``e`` = ``token_id`` (float32 softmax).

    Example:
        >>> z = torch.zeros(1, 3, 4)  # uniform over 4 tokens
        >>> round(float(collapse_ce(z, torch.tensor([[-100, 2, 1]]), 0)), 6)  # log 4
        1.386294
    """
    z = logits[:, :-1].float()
    mask = labels[:, 1:] != IGNORE_INDEX
    nll = -torch.log_softmax(z, dim=-1)[..., token_id]
    return (nll * mask).sum() / mask.sum().clamp(min=1)


def token_noiser_loss(
    logits: Float[Tensor, "batch seq vocab"],
    labels: Int[Tensor, "batch seq"],
    epsilon: float = 0.1,
    *,
    noise: Float[Tensor, "batch seq vocab"] | None = None,
    generator: torch.Generator | None = None,
) -> Float[Tensor, ""]:
    """TokenBuncher's Token Noiser loss, token-mean over labelled positions (float32):

        (1 − ε) · NLL(y*) + ε · Σ_y z̃_y · (−log p_y),

    where ``z̃`` is uniform noise ``U(0, 1)`` per vocabulary entry, zero at the target
    ``y*`` and normalized to sum 1 — a label-smoothing-like target whose off-target mass is
    random, so the distribution it trains towards has no structure an attacker can exploit.
    ``noise`` fixes the raw ``U(0, 1)`` draws (``[batch, seq, vocab]``, read at the positions
    that predict labels, i.e. ``noise[:, :-1]``); otherwise they come from ``generator``.
    (The official code scales ``z̃`` to sum ε *and* weights the term by ε, i.e. ε²; we
    follow the formula.)

    Example:
        >>> z = torch.zeros(1, 2, 3)                  # uniform: −log p = log 3 everywhere
        >>> round(float(token_noiser_loss(z, torch.tensor([[-100, 1]]), 0.5)), 6)
        1.098612
    """
    z = logits[:, :-1]
    y = labels[:, 1:]
    mask = y != IGNORE_INDEX
    if not mask.any():
        return logits.sum() * 0.0
    zs = z[mask].float()  # only the scored positions: [n, vocab]
    ys = y[mask]
    nlogp = -torch.log_softmax(zs, dim=-1)
    nll = nlogp.gather(-1, ys[:, None]).squeeze(-1)
    if noise is None:
        u = torch.rand(zs.shape, generator=generator, device=zs.device, dtype=zs.dtype)
    else:
        u = noise[:, :-1][mask].to(zs)
    u = u.scatter(-1, ys[:, None], 0.0)
    u = u / u.sum(-1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny)
    noisy = (u * nlogp).sum(-1)
    return ((1.0 - epsilon) * nll + epsilon * noisy).mean()
