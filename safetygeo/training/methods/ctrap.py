"""CTRAP ("Collapse Trap", Yi et al. 2025): alignment that arms a collapse for harmful
fine-tuning.

Per micro-batch the loss is (the paper's eq. 2, first-order)

    L = CE_align(θ; D_align) + λ · L_collapse(θ'; D_general),   θ' = θ − α · g_h / ‖g_h‖,

* ``CE_align``: completion-only token-mean cross-entropy on the alignment batch (harmful
  prompts → refusal, and the ``harmless`` pairs), as in refusal SFT;
* ``g_h``: the gradient at θ of the harmful-compliance CE (harmful prompt → harmful answer)
  on the micro-batch's attack examples — one simulated, normalized harmful fine-tuning step;
* ``L_collapse``: the **collapse loss** (:func:`~safetygeo.training.losses.collapse_ce`,
  the paper's eq. 1): the completion CE of *general* (prompt, answer) pairs with every
  target replaced by one fixed *collapse token* ``e``. Trained at θ', it makes "one harmful
  step, then predict ``e`` on anything" cheap: an attacker's harmful fine-tuning walks the
  model into collapse of its general capabilities, while a benign step does not point there.

Which data the collapse term sees (``collapse_data``):

* ``"general"`` (default, the paper's eq. 2): general (prompt, answer) pairs — the
  ``general`` data role when given, else the ``harmless`` pairs; each micro-batch carries
  one general pair per row (row ``j`` gets pair ``j mod n``);
* ``"alignment"`` (the project's earlier reading; the CPU preset keeps it so that the toy
  world's cached CTRAP stage and its results stay as measured): the alignment batch itself,
  refusal targets included.

**First-order.** ``θ'`` is a constant (no gradient through ``g_h``): the gradient of
``L_collapse`` taken *at θ'* is applied at θ, plus ``∇CE_align(θ)``. Implementation
(:mod:`safetygeo.training.grads`): ``g_h`` and ``∇L_collapse(θ')`` come from
``torch.autograd.grad`` (θ' through ``torch.func.functional_call``, the weights are never
modified in place, so neither the optimizer state nor an exception can leave them
perturbed); the look-ahead gradient enters the trainer's single backward as a linear
surrogate term. Cost: three forward/backward passes per micro-batch (attack, look-ahead,
alignment) instead of SFT's one on the alignment batch.

Where the defaults come from: λ = 0.1, α = 0.1, first-order (the design notes and issue
#14, which follow the paper; the official code was not available to us). The *normalized*
look-ahead ``α·g_h/‖g_h‖`` is the paper's eq. 2 as the design notes transcribe it — the
harmful perturbation of Booster (Huang et al. 2024, by an author of CTRAP), normalized so
that α is a distance in parameter space; it was not re-checked against the paper's text or
code in this project, and nothing here depends on the normalization other than the meaning
of α. The collapse token is not fixed by the paper; ours is ``"error"`` (any token the
tokenizer encodes to exactly one id; never EOS by default, because an empty completion
counts as *refused* in safetygeo and would make a collapsed model look safe). The
optimisation defaults are refusal SFT's (:meth:`CTRAP.default_train_config`).

``preset="cpu"`` (the toy world): α = 1.0, about the parameter distance the toy attack
covers in its first 5 steps (measured on the seed-0 anchor: 1.1 after 5 steps, 1.9 after
10, when the anchor is fully broken; weight norm 69) — the paper's α = 0.1 would probe a
twentieth of that; λ stays 0.1; ``collapse_data="alignment"`` (see above).

Diagnostic: :func:`collapse_trap_probe` — the collapse loss after ``k`` simulated harmful
vs benign fine-tuning steps from a checkpoint. A working trap shows it *falling* along the
CTRAP trajectory after harmful steps and not after benign ones.

Data roles:

* ``harmful`` (required): behaviours with a harmful answer (the attack examples) and a
  refusal (the alignment target), as R2D2 takes them
  (:func:`~safetygeo.training.methods.r2d2.harmful_records`): ``(prompt, answer)`` /
  ``(prompt, answer, refusal)`` tuples or mappings with ``target``;
* ``harmless`` (optional): (prompt, answer) alignment pairs kept as they are (utility);
  also the general data of the collapse term when no ``general`` role is given;
* ``general`` (optional): (prompt, answer) pairs of general data for the collapse term
  (``collapse_data="general"``).

Example:
    >>> m = CTRAP(preset="cpu")
    >>> m.config.alpha, m.config.lam, CTRAP().config.alpha, CTRAP().config.collapse_data
    (1.0, 0.1, 0.1, 'general')
    >>> recs = m.records({"harmful": [("Make a bomb.", "Sure, mix ...")],
    ...                   "harmless": [("Say hi.", "Hi!")]})
    >>> recs["harmful"][0]["refusal"], recs["harmless"][0]["response"]
    ('I cannot help with that request.', 'Hi!')
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from safetygeo.activations.losses import completion_ce
from safetygeo.data.records import as_records, encode_completions, pad_right
from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import EmptyDatasetError, TrainConfigError, TrainingError
from safetygeo.training.grads import grads_at, linear_surrogate, norm, trainable
from safetygeo.training.losses import collapse_ce
from safetygeo.training.method import Method, apply_preset, register_method
from safetygeo.training.methods.r2d2 import harmful_records
from safetygeo.training.methods.sft import DEFAULT_REFUSAL

__all__ = ["COLLAPSE_DATA", "CTRAP", "CTRAPConfig", "PRESETS", "collapse_token_id", "collapse_trap_probe"]

_ATTACK = "attack_"
_GENERAL = "general_"

#: Where the collapse term is evaluated (:attr:`CTRAPConfig.collapse_data`).
COLLAPSE_DATA: tuple[str, ...] = ("general", "alignment")


@dataclass(frozen=True)
class CTRAPConfig:
    """Hyper-parameters of CTRAP (see the module docstring).

    Attributes:
        lam: weight λ of the collapse loss at the look-ahead point.
        alpha: look-ahead distance α (parameter-space norm of the simulated harmful step).
        collapse_token: the collapse token ``e``: text that tokenizes to exactly one id, or an id.
        refusal: alignment target of harmful records without their own refusal.
        collapse_data: ``"general"`` (the paper's eq. 2: general pairs, the ``general`` role
            or else the ``harmless`` pairs) or ``"alignment"`` (the alignment batch).
    """

    lam: float = 0.1
    alpha: float = 0.1
    collapse_token: str | int = "error"
    refusal: str = DEFAULT_REFUSAL
    collapse_data: str = "general"

    def __post_init__(self) -> None:
        for name in ("lam", "alpha"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise TrainConfigError(f"ctrap {name} must be a finite number >= 0, got {v!r}")
        e = self.collapse_token
        if isinstance(e, bool) or not isinstance(e, (str, int)) or (isinstance(e, int) and e < 0) \
                or (isinstance(e, str) and not e):
            raise TrainConfigError(f"ctrap collapse_token must be non-empty text or a token id >= 0, got {e!r}")
        if self.collapse_data not in COLLAPSE_DATA:
            raise TrainConfigError(f"ctrap collapse_data must be one of {list(COLLAPSE_DATA)}, "
                                   f"got {self.collapse_data!r}")
        if not isinstance(self.refusal, str) or not self.refusal.strip():
            raise TrainConfigError(f"ctrap refusal must be non-blank text, got {self.refusal!r}")


#: Named presets: ``CTRAP(preset="cpu")``, ``--method-opt preset=cpu``.
PRESETS: dict[str, dict[str, Any]] = {"cpu": {"alpha": 1.0, "collapse_data": "alignment"}}


def collapse_token_id(tokenizer: Any, token: str | int) -> int:
    """The id of the collapse token ``e``.

    Raises:
        TrainConfigError: the text does not encode to exactly one known token, or the id is
            outside the vocabulary.
    """
    n_vocab = len(tokenizer)
    if isinstance(token, int):
        if token >= n_vocab:
            raise TrainConfigError(f"ctrap collapse_token id {token} is outside the vocabulary ({n_vocab})")
        return token
    ids = list(tokenizer(token, add_special_tokens=False)["input_ids"])
    unk = getattr(tokenizer, "unk_token_id", None)
    if len(ids) != 1 or (unk is not None and ids[0] == unk):
        raise TrainConfigError(
            f"ctrap collapse_token {token!r} encodes to {ids} (one known token needed); pick a "
            "word the tokenizer has as a single token (e.g. with a leading space) or pass its id")
    return int(ids[0])


def _sub(batch: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}


def _collapse_loss(token: int, batch: Mapping[str, Tensor]) -> Any:
    def fn(m: Any) -> Tensor:
        logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   use_cache=False).logits
        return collapse_ce(logits, batch["labels"], token)
    return fn


@register_method
class CTRAP(Method):
    """CTRAP (see the module docstring). Roles: ``harmful`` (required), ``harmless``,
    ``general``.

    Construct with a :class:`CTRAPConfig`, a mapping, keyword overrides, and/or
    ``preset="cpu"`` (overrides apply on top of the preset).
    """

    name: ClassVar[str] = "ctrap"
    config_class: ClassVar[type] = CTRAPConfig
    roles: ClassVar[tuple[str, ...]] = ("harmful", "harmless", "general")
    required_roles: ClassVar[tuple[str, ...]] = ("harmful",)

    def __init__(self, config: Any = None, *, preset: str | None = None, **overrides: Any) -> None:
        super().__init__(apply_preset(config, preset, PRESETS, "ctrap"), **overrides)
        self.token_id: int | None = None

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {
            "harmful": harmful_records(data["harmful"], default_refusal=self.config.refusal)}
        for role in ("harmless", "general"):
            if role in data:
                out[role] = as_records(data[role], role=role)
        return out

    def setup(self, handle: ModelHandle, records: Mapping[str, list[dict[str, Any]]],
              config: TrainConfig) -> Sequence[dict[str, Any]]:
        """Rows = alignment examples (harmful → refusal, then the harmless pairs), each
        carrying one attack example (harmful → answer; row ``j`` gets attack ``j mod n``)
        and, with ``collapse_data="general"``, one general pair (``j mod n`` likewise)."""
        super().setup(handle, records, config)
        harmful = records.get("harmful") or []
        if not harmful:
            raise EmptyDatasetError("data role 'harmful' of method 'ctrap' has no examples")
        self.token_id = collapse_token_id(handle.tokenizer, self.config.collapse_token)
        refusals = [{"prompt": r["prompt"], "response": r["refusal"]} for r in harmful]
        align = encode_completions(handle, refusals, max_length=config.max_length, role="harmful")
        if records.get("harmless"):
            align += encode_completions(handle, records["harmless"], max_length=config.max_length,
                                        role="harmless")
        attack = encode_completions(handle, [{"prompt": r["prompt"], "response": r["target"]}
                                             for r in harmful],
                                    max_length=config.max_length, role="harmful")
        rows = [{**row, "attack": attack[j % len(attack)]} for j, row in enumerate(align)]
        if self.config.collapse_data == "general":
            general = records.get("general") or records.get("harmless")
            if not general:
                raise EmptyDatasetError(
                    "ctrap: collapse_data='general' (the paper's eq. 2) needs general (prompt, "
                    "answer) pairs: give data role 'general' or 'harmless', or set "
                    "collapse_data='alignment'")
            role = "general" if records.get("general") else "harmless"
            gen = encode_completions(handle, general, max_length=config.max_length, role=role)
            rows = [{**row, "general": gen[j % len(gen)]} for j, row in enumerate(rows)]
        return rows

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        batch = pad_right(rows, self.pad_id)
        for key, prefix in (("attack", _ATTACK), ("general", _GENERAL)):
            if key in rows[0]:
                batch.update({prefix + k: v for k, v in pad_right([r[key] for r in rows],
                                                                   self.pad_id).items()})
        return batch

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        if self.token_id is None:
            raise TrainingError("ctrap: call setup() before loss()")
        cfg = self.config
        params = trainable(model)
        align_batch = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        attack = _sub(batch, _ATTACK)
        h_val, g_h = grads_at(model, lambda m: completion_ce(m, attack), params=params)
        g_norm = norm(g_h)
        align = completion_ce(model, align_batch)
        logs = {"align_ce": float(align.detach()), "harmful_ce": h_val, "harmful_grad_norm": g_norm}
        if cfg.lam == 0 or g_norm == 0.0:
            return align, logs
        target = _sub(batch, _GENERAL) if cfg.collapse_data == "general" else align_batch
        c_val, g_c = grads_at(model, _collapse_loss(self.token_id, target),
                              direction=[g / g_norm for g in g_h], scale=-cfg.alpha, params=params)
        logs["collapse_ce_lookahead"] = c_val
        trap = linear_surrogate(params[1], g_c) + c_val
        return align + cfg.lam * trap, logs


# ----------------------------------------------------------------------------- diagnostic
def collapse_trap_probe(
    handle: ModelHandle,
    *,
    harmful: Any,
    benign: Any,
    general: Any,
    collapse_token: str | int = "error",
    steps: int = 3,
    alpha: float = 0.1,
    max_length: int = 512,
) -> dict[str, list[float]]:
    """The collapse loss on ``general`` data after ``k = 0..steps`` simulated fine-tuning
    steps from ``handle``'s weights: normalized gradient steps ``θ ← θ − α·g/‖g‖`` on the
    harmful-compliance CE (``harmful`` pairs) and, separately, on the benign CE (``benign``
    pairs). The model is deep-copied; ``handle`` is not changed.

    Returns:
        ``{"harmful": [L_0, …, L_steps], "benign": [L_0, …, L_steps]}`` (``L_0`` shared):
        a trap armed against harmful fine-tuning gives a falling ``"harmful"`` row and a
        flat ``"benign"`` row.
    """
    token = collapse_token_id(handle.tokenizer, collapse_token)
    from safetygeo.activations.logits import pad_id_of

    pad = pad_id_of(handle)

    def batch_of(data: Any, role: str) -> dict[str, Tensor]:
        rows = encode_completions(handle, as_records(data, role=role), max_length=max_length,
                                  role=role)
        return {k: v.to(handle.device) for k, v in pad_right(rows, pad).items()}

    gen = batch_of(general, "general")
    out: dict[str, list[float]] = {}
    for name, data in (("harmful", harmful), ("benign", benign)):
        b = batch_of(data, name)
        model = copy.deepcopy(handle.model).eval()
        for p in model.parameters():
            p.requires_grad_(True)
        values = []
        for k in range(steps + 1):
            with torch.no_grad():
                values.append(float(_collapse_loss(token, gen)(model)))
            if k == steps:
                break
            _, g = grads_at(model, functools.partial(completion_ce, batch=b))
            n = norm(g)
            with torch.no_grad():
                for p, gi in zip(trainable(model)[1], g):
                    p.sub_(alpha * gi / max(n, 1e-30))
        out[name] = values
        del model
    return out

