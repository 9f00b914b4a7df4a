"""Unlearning: GA, WGA, NPO or TNPO on forget data, optionally with a retain CE term.

The objective is the one :mod:`safetygeo.gradients.objectives` defines (the same code the
G-effect differentiates), computed on the forget examples of each micro-batch and
normalised per completion token (per example for NPO) within the micro-batch; with
``retain_weight > 0`` the retain examples of the micro-batch add ``retain_weight ·`` their
token-mean CE (the "gradient difference" regulariser). NPO / TNPO's reference is the model
the run starts from: its completion-token log-probs of the forget set are computed once in
:meth:`Unlearn.setup` (again identically on resume, which also starts from the base).

Data roles: ``forget`` ((prompt, response) records whose responses are the knowledge to
remove — a PromptSet's ``targets`` are used), ``retain`` (optional; only with
``retain_weight > 0``).

Example:
    >>> m = Unlearn(objective="npo", beta=0.2)
    >>> m.objective.label, m.records(m.split_data([("A?", "a")]))["forget"]
    ('npo(β=0.2)', [{'prompt': 'A?', 'response': 'a'}])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from safetygeo.activations.losses import completion_logprobs
from safetygeo.data.records import IGNORE_INDEX, as_records, encode_completions, pad_right
from safetygeo.errors import SafetyGeoError
from safetygeo.gradients.objectives import UnlearningObjective, objective_sum
from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import TrainConfigError
from safetygeo.training.method import Method, register_method


@dataclass(frozen=True)
class UnlearnConfig:
    """Attributes:
    objective: ``ga``, ``wga``, ``npo`` or ``tnpo``.
    beta: the objective's β (``None``: its default, see
        :data:`safetygeo.gradients.objectives.DEFAULT_BETA`).
    retain_weight: weight of the retain CE (0: forget data only).
    """

    objective: str = "npo"
    beta: float | None = None
    retain_weight: float = 0.0

    def __post_init__(self) -> None:
        try:
            UnlearningObjective(self.objective, self.beta)
        except SafetyGeoError as exc:
            raise TrainConfigError(str(exc)) from None
        w = self.retain_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise TrainConfigError(f"retain_weight must be a number >= 0, got {w!r}")


@register_method
class Unlearn(Method):
    """Unlearning with a G-effect-study objective (see the module docstring)."""

    name = "unlearn"
    config_class = UnlearnConfig
    roles = ("forget", "retain")
    required_roles = ("forget",)

    @property
    def objective(self) -> UnlearningObjective:
        return UnlearningObjective(self.config.objective, self.config.beta)

    def default_train_config(self) -> TrainConfig:
        return TrainConfig(lr=1e-5, max_steps=50, batch_size=8, save_every=10)

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        out = {"forget": as_records(data["forget"], role="forget")}
        if "retain" in data:
            if not self.config.retain_weight:
                raise TrainConfigError("retain data is unused with retain_weight=0; set "
                                       "retain_weight > 0 or leave the retain role out")
            out["retain"] = as_records(data["retain"], role="retain")
        return out

    def setup(self, handle: ModelHandle, records: Mapping[str, list[dict[str, Any]]],
              config: TrainConfig) -> Sequence[dict[str, Any]]:
        super().setup(handle, records, config)
        forget = encode_completions(handle, records["forget"], max_length=config.max_length,
                                    role="forget")
        refs: list[list[float]] = [[] for _ in forget]
        if self.objective.needs_reference:  # log-probs of the model the run starts from
            model = handle.model
            was = model.training
            model.eval()
            try:
                with torch.no_grad():
                    for i in range(0, len(forget), 16):
                        b = pad_right(forget[i:i + 16], self.pad_id)
                        b = {k: v.to(handle.device) for k, v in b.items()}
                        logp, mask = completion_logprobs(model, b)
                        for j in range(logp.shape[0]):
                            refs[i + j] = logp[j][mask[j]].float().cpu().tolist()
            finally:
                model.train(was)
        rows = [{**r, "role": 0, "ref_logp": refs[i]} for i, r in enumerate(forget)]
        for r in encode_completions(handle, records.get("retain", []), max_length=config.max_length,
                                    role="retain") if records.get("retain") else []:
            rows.append({**r, "role": 1, "ref_logp": []})
        return rows

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        batch = pad_right(rows, self.pad_id)
        batch["role"] = torch.tensor([int(r["role"]) for r in rows], dtype=torch.long)
        mask = batch["labels"][:, 1:] != IGNORE_INDEX
        ref = torch.zeros(mask.shape, dtype=torch.float32)
        for i, r in enumerate(rows):
            if r["ref_logp"]:
                ref[i][mask[i]] = torch.tensor(r["ref_logp"], dtype=torch.float32)
        batch["ref_logp"] = ref
        return batch

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        obj = self.objective
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        logp, mask = completion_logprobs(model, inputs)
        forget = batch["role"] == 0
        logs: dict[str, float] = {}
        loss = logp.sum() * 0.0
        if forget.any():
            fm = mask[forget]
            norm = fm.any(-1).sum() if obj.per_sequence else fm.sum()
            ref = batch["ref_logp"][forget].to(logp) if obj.needs_reference else None
            loss = loss + objective_sum(obj, logp[forget], fm, ref) / norm.clamp(min=1)
            logs["forget_nll"] = float(-logp[forget].sum().detach() / fm.sum().clamp(min=1))
        retain = ~forget
        if retain.any() and self.config.retain_weight:
            rm = mask[retain]
            ce = -logp[retain].sum() / rm.sum().clamp(min=1)
            loss = loss + self.config.retain_weight * ce
            logs["retain_nll"] = float(ce.detach())
        return loss, logs
