"""Unlearning objectives (GA, WGA, NPO, TNPO) as functions of completion-token log-probs.

Definitions follow Wang et al., "Rethinking LLM Unlearning Objectives: A Gradient
Perspective and Go Beyond" (ICLR 2025) and their public code. With ``log p_t`` the
log-probability of forget-completion token ``t`` under the model, ``s_i = Σ_{t∈i} log p_t``
the sequence log-probability of example ``i``, the reference model's ``log p^ref_t`` /
``s^ref_i``, ``N_tok`` the number of completion tokens and ``N_seq`` the number of examples:

=========  ===============================================================  ==========
objective  loss minimised by the unlearning step                            ``∂/∂log p_t``
=========  ===============================================================  ==========
``ga``     ``(1/N_tok) Σ_t log p_t``  (= −NLL: gradient *ascent* on NLL)      ``1``
``wga``    ``(1/N_tok) Σ_t sg(p_t^β) log p_t``  (weight detached; β=0 → GA)   ``p_t^β``
``npo``    ``(1/N_seq) Σ_i −(2/β) log σ(−β (s_i − s^ref_i))``                 ``2σ(β(s_i − s^ref_i))``
``tnpo``   ``(1/N_tok) Σ_t −(2/β) log σ(−β (log p_t − log p^ref_t))``          ``2σ(β(log p_t − log p^ref_t))``
=========  ===============================================================  ==========

(``sg`` = stop-gradient; the last column is the derivative of the *un-normalised* sum, i.e.
the per-token weight ``w_t`` in ``∇(N·L) = Σ_t w_t ∇log p_t``.) Since ``∇log p_t = ∇p_t / p_t``,
every objective weights each token's probability gradient by ``w_t / p_t``: for GA that is
``1 / p_t`` — the *inverse-confidence* term the G-effect study blames for GA's excessive
unlearning (tokens the model already finds unlikely dominate the update); WGA multiplies
by ``p^β`` to damp it, NPO / TNPO by ``2σ(·) ≤ 2`` which shrinks as the model moves away
from the reference. :func:`token_weights` returns ``w_t`` and ``w_t / p_t`` per token.

Example:
    >>> import torch
    >>> logp = torch.log(torch.tensor([[0.5, 0.01]]))
    >>> mask = torch.ones(1, 2, dtype=torch.bool)
    >>> w = token_weights(UnlearningObjective("ga"), logp, mask)
    >>> [round(x, 2) for x in (w.w_logp[0].tolist() + w.w_p[0].tolist())]
    [1.0, 1.0, 2.0, 100.0]
    >>> UnlearningObjective("npo").beta, UnlearningObjective("wga", beta=0.0).beta
    (0.1, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from safetygeo.errors import SafetyGeoError

ObjectiveName = Literal["ga", "wga", "npo", "tnpo"]
OBJECTIVES: tuple[str, ...] = ("ga", "wga", "npo", "tnpo")
#: β used when none is given (NPO's paper uses 0.1 on TOFU; WGA's weight p^1).
DEFAULT_BETA: dict[str, float | None] = {"ga": None, "wga": 1.0, "npo": 0.1, "tnpo": 0.1}

__all__ = ["DEFAULT_BETA", "OBJECTIVES", "ObjectiveName", "TokenWeightTensors",
           "UnlearningObjective", "objective_sum", "token_weights"]


@dataclass(frozen=True)
class UnlearningObjective:
    """An unlearning objective and its hyper-parameter (see the module docstring).

    Attributes:
        name: ``ga``, ``wga``, ``npo`` or ``tnpo``.
        beta: WGA's exponent (≥ 0) or NPO / TNPO's inverse temperature (> 0); ``None``
            takes :data:`DEFAULT_BETA`; GA has none.

    Raises:
        SafetyGeoError: unknown name, a β for GA, or an invalid β.
    """

    name: str
    beta: float | None = None

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise SafetyGeoError(f"unknown unlearning objective {self.name!r}; choose from {OBJECTIVES}")
        if self.name == "ga":
            if self.beta is not None:
                raise SafetyGeoError("objective 'ga' has no beta (use 'wga' for a weighted GA)")
            return
        beta = DEFAULT_BETA[self.name] if self.beta is None else self.beta
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta != beta:
            raise SafetyGeoError(f"objective {self.name!r}: beta must be a number, got {self.beta!r}")
        if self.name == "wga" and beta < 0:
            raise SafetyGeoError(f"objective 'wga': beta must be >= 0, got {beta}")
        if self.name in ("npo", "tnpo") and beta <= 0:
            raise SafetyGeoError(f"objective {self.name!r}: beta must be > 0, got {beta}")
        object.__setattr__(self, "beta", float(beta))

    @property
    def needs_reference(self) -> bool:
        """NPO and TNPO compare with a reference model (the model before unlearning)."""
        return self.name in ("npo", "tnpo")

    @property
    def per_sequence(self) -> bool:
        """Normalised per example (NPO) rather than per completion token."""
        return self.name == "npo"

    @property
    def label(self) -> str:
        """``ga``, ``npo(β=0.1)``, ..."""
        return self.name if self.beta is None else f"{self.name}(β={self.beta:g})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "beta": self.beta}


def _check_ref(obj: UnlearningObjective, ref_logp: Tensor | None, logp: Tensor) -> Tensor:
    if ref_logp is None:
        raise SafetyGeoError(f"objective {obj.name!r} needs the reference model's log-probs")
    if ref_logp.shape != logp.shape:
        raise SafetyGeoError(f"reference log-probs have shape {tuple(ref_logp.shape)}, "
                             f"expected {tuple(logp.shape)}")
    return ref_logp.to(logp.dtype)


def objective_sum(
    obj: UnlearningObjective,
    logp: Float[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    ref_logp: Float[Tensor, "batch seq"] | None = None,
) -> Float[Tensor, ""]:
    """The un-normalised objective ``N·L`` of a batch (divide by ``N_tok`` or, for NPO,
    ``N_seq`` summed over every batch of the data set to get ``L``).

    ``logp`` / ``mask`` as :func:`~safetygeo.activations.losses.completion_logprobs` returns
    them (``logp`` 0 where ``mask`` is False); ``ref_logp`` likewise, for NPO / TNPO.
    """
    m = mask.to(logp.dtype)
    if obj.name == "ga":
        return (logp * m).sum()
    if obj.name == "wga":
        w = logp.detach().exp().pow(obj.beta) if obj.beta else torch.ones_like(logp)
        return (w * logp * m).sum()
    ref = _check_ref(obj, ref_logp, logp)
    beta = float(obj.beta)  # type: ignore[arg-type]
    if obj.name == "npo":
        r = ((logp - ref) * m).sum(-1)
        rows = mask.any(-1).to(logp.dtype)
        return (-(2.0 / beta) * F.logsigmoid(-beta * r) * rows).sum()
    r = (logp - ref) * m
    return (-(2.0 / beta) * F.logsigmoid(-beta * r) * m).sum()


class TokenWeightTensors(NamedTuple):
    """Per-token weights of an objective (0 off the mask).

    Attributes:
        w_logp: ``∂(N·L)/∂log p_t`` — the weight on ``∇log p_t``.
        w_p: ``w_logp / p_t`` — the weight on ``∇p_t`` (GA: ``1/p``, inverse confidence).
    """

    w_logp: Tensor
    w_p: Tensor


@torch.no_grad()
def token_weights(
    obj: UnlearningObjective,
    logp: Float[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    ref_logp: Float[Tensor, "batch seq"] | None = None,
) -> TokenWeightTensors:
    """Closed-form per-token weights of ``obj`` (the last column of the module table).

    Equal to the autograd derivative of :func:`objective_sum` with respect to ``logp``
    (tested), computed in float64.
    """
    lp = logp.double()
    m = mask.to(torch.float64)
    if obj.name == "ga":
        w = torch.ones_like(lp)
    elif obj.name == "wga":
        w = lp.exp().pow(obj.beta) if obj.beta else torch.ones_like(lp)
    else:
        ref = _check_ref(obj, ref_logp, logp).double()
        beta = float(obj.beta)  # type: ignore[arg-type]
        if obj.name == "npo":
            r = ((lp - ref) * m).sum(-1, keepdim=True).expand_as(lp)
        else:
            r = lp - ref
        w = 2.0 * torch.sigmoid(beta * r)
    w = w * m
    return TokenWeightTensors(w, w * torch.exp(-lp) * m)
