"""SEAM ("self-destructive" models, Wang, Zhu & Wang 2025): couple the harmful and the benign
gradient so that harmful fine-tuning degrades the model.

Per micro-batch the objective is

    L = L_ul + α · L_up + β · cos(g_a, g_b)

* ``L_ul`` — the bounded gradient-ascent ("unlearning") term on harmful answers:
  ``L_ul = −log(1 + CE_h)``, with ``CE_h`` the completion CE of harmful prompt → harmful
  answer. Descending ``L_ul`` *raises* ``CE_h``, ever more slowly (its gradient is
  ``−∇CE_h / (1 + CE_h)``), so the ascent cannot run away. The public code reads ``CE_h`` out
  of every layer (``ul_readout="lens"``, default): the mean CE of the logit lens (final norm
  + unembedding) at the input of every block and of the model's output — a representation-
  noising style read-out; ``ul_readout="output"`` uses the output logits only.
* ``L_up`` — completion CE of harmful prompt → refusal (keeps the model aligned).
* ``cos(g_a, g_b)`` — cosine between ``g_a = ∇CE(harmful prompt → harmful answer)`` (the
  attacker's loss) and ``g_b = ∇CE(benign prompt → answer)``; training drives it towards
  −1, so that a harmful fine-tuning step is an ascent step on benign utility.

**The cosine's gradient** is Hessian-free. With ``c = cos``, unit vectors ``ĝ = g/‖g‖``:

    ∇cos = H_a (ĝ_b − c ĝ_a) / ‖g_a‖ + H_b (ĝ_a − c ĝ_b) / ‖g_b‖

and each Hessian-vector product by a finite difference of gradients:
``fd="forward"`` (the paper's, default): ``H v ≈ (∇L(θ + εv) − ∇L(θ)) / ε`` — error
``≤ ε/2 · M₃ ‖v‖²`` (M₃ bounds the third derivative along v; ‖v‖² = 1 − c² here), 2 extra
gradients; ``fd="central"``: ``(∇L(θ + εv) − ∇L(θ − εv)) / 2ε``, error O(ε²), 4 extra.
:func:`cosine_gradient` computes it (and ``exact=True`` the double-backward reference).
Gradients at θ ± εv use ``torch.func.functional_call`` (weights never modified in place);
``β·∇cos`` enters the trainer's backward as a linear surrogate
(:mod:`safetygeo.training.grads`). The weights must be float32 (bf16 / fp16 *autocast*
is fine): a shift of ε = 1e-3 along a unit direction is below half-precision resolution.
Cost per micro-batch: 4 gradients (forward; 6 central)
+ the backward of ``L_ul + α L_up``.

The per-layer diagnostic is :func:`safetygeo.gradients.layer_gradient_cosines` of the same
two losses (``harmful_ce`` vs ``ce``), before and after SEAM (or along its trajectory with
:class:`~safetygeo.training.gradient_geometry.GradientGeometryCallback`); training logs the
global cosine of each micro-batch as ``cos_ab``.

Defaults (ZJUWYH/seam, ``config/train.yaml`` and ``src/core/trainer.py``; read, not
copied): α = 1, β = 0.01, ε = 1e-3, forward differences, LR 2e-5 cosine, batch 4, one
epoch, no weight decay, no gradient clipping. Where we differ: completion-only CE for every
term (theirs masks tokens where the harmful and refusal sequences differ, and takes the
benign CE over the whole sequence); the lens mean is over the ``L + 1`` read-outs (theirs
divides the sum of ``L + 2`` terms by ``L + 1``); their warm-up ratio 0.1 has no
``TrainConfig`` equivalent (set ``warmup_steps``).

``preset="cpu"`` (the toy world): β = 1.0. Measured from the seed-0 toy anchor, 40 steps
at LR 2e-4, batch 16: with β = 0.01 the gradient ascent of ``L_ul`` dominates — the global
cosine *rose* (0.02 → 0.17) and the model was destroyed before any attack (task accuracy
0.82 → 0.00, over-refusal on look-alikes 0.84); with β = 1 the cosine fell (0.02 → −0.33;
embedding −0.44, block 0 −0.22) and the model stayed usable (task accuracy 0.75). Once
``g_a ≈ −g_b``, ascending the harmful CE *descends* the benign one: the coupling is also
what keeps ``L_ul`` from wrecking utility. The full recipe's thousands of small steps are
out of CPU reach.

Data roles (both required):

* ``harmful``: behaviours with a harmful answer and a refusal
  (:func:`~safetygeo.training.methods.r2d2.harmful_records`: ``(prompt, answer[, refusal])``
  or mappings with ``target``); the refusal defaults to ``config.refusal``;
* ``benign``: (prompt, answer) pairs.

Rows pair them by index (row ``j``: harmful ``j mod n_h``, benign ``j mod n_b``;
``max(n_h, n_b)`` rows), like the public code zips its three data sets.

Example:
    >>> m = Seam(preset="cpu")
    >>> (m.config.alpha, m.config.beta, m.config.epsilon), Seam().config.beta
    ((1.0, 1.0, 0.001), 0.01)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from safetygeo.activations.losses import completion_ce
from safetygeo.data.records import as_records, encode_completions, pad_right
from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import EmptyDatasetError, TrainConfigError, TrainingError
from safetygeo.training.grads import dot, grads_at, linear_surrogate, norm, trainable
from safetygeo.training.losses import token_ce
from safetygeo.training.method import Method, register_method
from safetygeo.training.methods.r2d2 import harmful_records
from safetygeo.training.methods.sft import DEFAULT_REFUSAL

__all__ = ["PRESETS", "CosineGradient", "Seam", "SeamConfig", "cosine_gradient"]

_FD = ("forward", "central")
_READOUTS = ("lens", "output")
_PARTS = ("attack_", "refusal_", "benign_")

#: Named presets: ``Seam(preset="cpu")``, ``--method-opt preset=cpu``.
PRESETS: dict[str, dict[str, Any]] = {"cpu": {"beta": 1.0}}


@dataclass(frozen=True)
class SeamConfig:
    """Hyper-parameters of SEAM (see the module docstring).

    Attributes:
        alpha: weight of ``L_up`` (refusal CE).
        beta: weight of ``cos(g_a, g_b)``.
        epsilon: finite-difference step ε.
        fd: ``"forward"`` (the paper's) or ``"central"`` differences.
        ul_readout: ``"lens"`` (mean CE over the logit lens of every block input and the
            output, the public code) or ``"output"`` (output logits only).
        refusal: refusal of harmful records without their own.
    """

    alpha: float = 1.0
    beta: float = 0.01
    epsilon: float = 1e-3
    fd: str = "forward"
    ul_readout: str = "lens"
    refusal: str = DEFAULT_REFUSAL

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise TrainConfigError(f"seam {name} must be a finite number >= 0, got {v!r}")
        e = self.epsilon
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e <= 0:
            raise TrainConfigError(f"seam epsilon must be a finite number > 0, got {e!r}")
        if self.fd not in _FD:
            raise TrainConfigError(f"seam fd must be one of {list(_FD)}, got {self.fd!r}")
        if self.ul_readout not in _READOUTS:
            raise TrainConfigError(f"seam ul_readout must be one of {list(_READOUTS)}, got {self.ul_readout!r}")
        if not isinstance(self.refusal, str) or not self.refusal.strip():
            raise TrainConfigError(f"seam refusal must be non-blank text, got {self.refusal!r}")


# ----------------------------------------------------------------------------- ∇cos
@dataclass(frozen=True)
class CosineGradient:
    """``cos(∇A, ∇B)`` at θ and its gradient w.r.t. the trainable parameters.

    Attributes:
        cosine: the cosine at θ.
        grad: one tensor per trainable parameter (``trainable(model)`` order).
        norm_a, norm_b: ``‖∇A‖``, ``‖∇B‖``.
        value_a, value_b: the losses at θ.
        method: ``"forward"``, ``"central"`` or ``"exact"``.
        epsilon: the finite-difference step (NaN for ``exact``).
    """

    cosine: float
    grad: list[Tensor]
    norm_a: float
    norm_b: float
    value_a: float
    value_b: float
    method: str
    epsilon: float


LossFn = Callable[[Any], Tensor]


def cosine_gradient(model: nn.Module, loss_a: LossFn, loss_b: LossFn, *, epsilon: float = 1e-3,
                    fd: str = "forward", exact: bool = False) -> CosineGradient:
    """``∇_θ cos(∇A(θ), ∇B(θ))``: the Hessian-free finite-difference estimate (see the
    module docstring) or, with ``exact=True``, the double-backward reference (needs
    attention with a double backward, e.g. ``attn_implementation="eager"``).

    Args:
        model: the model (its trainable parameters are θ; it is never modified).
        loss_a, loss_b: ``loss(callable_model) -> scalar``.
        epsilon, fd: the finite-difference step and scheme.

    Raises:
        TrainingError: a gradient is exactly zero (the cosine is undefined).
    """
    names, params = trainable(model)
    if exact:
        return _exact_cosine_gradient(model, params, loss_a, loss_b)
    if fd not in _FD:
        raise TrainConfigError(f"fd must be one of {list(_FD)}, got {fd!r}")
    va, g_a = grads_at(model, loss_a, params=(names, params))
    vb, g_b = grads_at(model, loss_b, params=(names, params))
    na, nb = norm(g_a), norm(g_b)
    if na == 0.0 or nb == 0.0:
        raise TrainingError(f"cos(∇A, ∇B) is undefined: ‖∇A‖ = {na}, ‖∇B‖ = {nb}")
    c = dot(g_a, g_b) / (na * nb)
    ua = [g / na for g in g_a]
    ub = [g / nb for g in g_b]
    v = [b - c * a for a, b in zip(ua, ub)]  # H_a is applied to ĝ_b − c ĝ_a
    w = [a - c * b for a, b in zip(ua, ub)]  # H_b to ĝ_a − c ĝ_b

    def hvp(loss: LossFn, direction: list[Tensor], g0: list[Tensor]) -> list[Tensor]:
        _, gp = grads_at(model, loss, direction=direction, scale=epsilon, params=(names, params))
        if fd == "forward":
            return [(p - q) / epsilon for p, q in zip(gp, g0)]
        _, gm = grads_at(model, loss, direction=direction, scale=-epsilon, params=(names, params))
        return [(p - q) / (2 * epsilon) for p, q in zip(gp, gm)]

    ha_v = hvp(loss_a, v, g_a)
    hb_w = hvp(loss_b, w, g_b)
    grad = [x / na + y / nb for x, y in zip(ha_v, hb_w)]
    return CosineGradient(c, grad, na, nb, va, vb, fd, float(epsilon))


def _exact_cosine_gradient(model: nn.Module, params: list[nn.Parameter], loss_a: LossFn,
                           loss_b: LossFn) -> CosineGradient:
    from safetygeo.training.grads import unwrap

    module = unwrap(model)
    with torch.enable_grad():
        la, lb = loss_a(module), loss_b(module)
        ga = torch.autograd.grad(la, params, create_graph=True, allow_unused=True)
        gb = torch.autograd.grad(lb, params, create_graph=True, allow_unused=True)
        pairs = [(a, b) for a, b in zip(ga, gb) if a is not None and b is not None]
        ab = torch.stack([(a * b).sum() for a, b in pairs]).sum()
        aa = torch.stack([(a * a).sum() for a, _ in pairs]).sum()
        bb = torch.stack([(b * b).sum() for _, b in pairs]).sum()
        cos = ab / (aa.sqrt() * bb.sqrt())
        grad = torch.autograd.grad(cos, params, allow_unused=True)
    return CosineGradient(float(cos.detach()), [torch.zeros_like(p) if g is None else g.detach()
                                                for p, g in zip(params, grad)],
                          float(aa.detach().sqrt()), float(bb.detach().sqrt()),
                          float(la.detach()), float(lb.detach()), "exact", math.nan)


# ----------------------------------------------------------------------------- the method
def _sub(batch: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}


@register_method
class Seam(Method):
    """SEAM (see the module docstring). Roles: ``harmful``, ``benign`` (both required).

    Construct with a :class:`SeamConfig`, a mapping, keyword overrides, and/or
    ``preset="cpu"`` (overrides apply on top of the preset).
    """

    name: ClassVar[str] = "seam"
    config_class: ClassVar[type] = SeamConfig
    roles: ClassVar[tuple[str, ...]] = ("harmful", "benign")
    required_roles: ClassVar[tuple[str, ...]] = ("harmful", "benign")

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = PRESETS

    def __init__(self, config: Any = None, *, preset: str | None = None, **overrides: Any) -> None:
        super().__init__(config, preset=preset, **overrides)
        self._handle: ModelHandle | None = None

    def default_train_config(self) -> TrainConfig:
        """The public recipe's optimisation (per device): LR 2e-5 cosine, batch 4, one
        epoch, no weight decay, no clipping, checkpoint every 250 steps."""
        return TrainConfig(lr=2e-5, lr_scheduler="cosine", batch_size=4, max_steps=None,
                           epochs=1, weight_decay=0.0, max_grad_norm=0.0, save_every=250)

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {"harmful": harmful_records(data["harmful"], default_refusal=self.config.refusal),
                "benign": as_records(data["benign"], role="benign")}

    def setup(self, handle: ModelHandle, records: Mapping[str, list[dict[str, Any]]],
              config: TrainConfig) -> Sequence[dict[str, Any]]:
        super().setup(handle, records, config)
        for role in self.required_roles:
            if not records.get(role):
                raise EmptyDatasetError(f"data role {role!r} of method 'seam' has no examples")
        half = {"bfloat16", "bf16", "float16", "fp16"}
        if (config.dtype or "").lower() in half or handle.dtype in (torch.bfloat16, torch.float16):
            raise TrainConfigError(
                "seam's finite differences (ε = {:g}) need float32 weights: a shift that small "
                "is below bf16 / fp16 resolution; keep the weights in float32 and use "
                "mixed precision (--bf16) instead of dtype={}".format(
                    self.config.epsilon, config.dtype or handle.dtype))
        self._handle = handle
        harm = records["harmful"]
        enc = lambda recs, role: encode_completions(handle, recs, max_length=config.max_length,  # noqa: E731
                                                    role=role)
        attack = enc([{"prompt": r["prompt"], "response": r["target"]} for r in harm], "harmful")
        refusal = enc([{"prompt": r["prompt"], "response": r["refusal"]} for r in harm], "harmful")
        benign = enc(records["benign"], "benign")
        n = max(len(attack), len(benign))
        return [{"attack": attack[j % len(attack)], "refusal": refusal[j % len(attack)],
                 "benign": benign[j % len(benign)]} for j in range(n)]

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        batch: dict[str, Tensor] = {}
        for part in _PARTS:
            sub = pad_right([r[part[:-1]] for r in rows], self.pad_id)
            batch.update({part + k: v for k, v in sub.items()})
        return batch

    # -- the objective -------------------------------------------------------------------
    def unlearn_ce(self, model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
        """``CE_h`` of ``L_ul``: output CE, or its mean with the logit lens of every block
        input (``ul_readout="lens"``)."""
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        if self.config.ul_readout == "output":
            return token_ce(model(input_ids=ids, attention_mask=mask, use_cache=False).logits, labels)
        if self._handle is None:
            raise TrainingError("seam: call setup() before the lens read-out")
        out = model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True)
        norm_mod = self._handle.final_norm
        head = self._handle.model.get_output_embeddings()
        n_blocks = self._handle.n_layers
        terms = [token_ce(out.logits, labels)]
        for h in out.hidden_states[:n_blocks]:  # the input of block 0 .. L-1
            terms.append(token_ce(head(norm_mod(h)), labels))
        return torch.stack(terms).mean()

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        attack, refusal, benign = (_sub(batch, p) for p in _PARTS)
        logs: dict[str, float] = {}
        ce_h = self.unlearn_ce(model, attack)
        l_ul = -torch.log1p(ce_h)
        l_up = completion_ce(model, refusal)
        loss = l_ul + cfg.alpha * l_up
        logs.update({"ul": float(l_ul.detach()), "ce_harmful_readout": float(ce_h.detach()),
                     "up": float(l_up.detach())})
        if cfg.beta:
            cg = cosine_gradient(model, lambda m: completion_ce(m, attack),
                                 lambda m: completion_ce(m, benign), epsilon=cfg.epsilon,
                                 fd=cfg.fd)
            loss = loss + cfg.beta * (linear_surrogate(trainable(model)[1], cg.grad) + cg.cosine)
            logs.update({"cos_ab": cg.cosine, "ce_attack": cg.value_a, "ce_benign": cg.value_b,
                         "grad_norm_attack": cg.norm_a, "grad_norm_benign": cg.norm_b})
        return loss, logs
