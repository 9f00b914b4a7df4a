"""Refusal SFT: harmful prompts → a refusal, harmless prompts → their helpful answers.

Loss: mean cross-entropy over completion tokens only (prompt tokens are labelled ``-100``;
see :func:`safetygeo.data.records.encode_completions`), over the mixed micro-batch — the
standard supervised fine-tuning objective (TRL's ``SFTTrainer`` with completion-only loss).
Per-role losses (``ce_harmful``, ``ce_harmless``) are logged alongside.

Data roles:

* ``harmful``: prompts to refuse. Each gets ``config.refusal`` unless the data carries its
  own response (e.g. model-written refusals in a JSON file); a PromptSet's ``targets``
  (AdvBench's "Sure, here is ..." compliance targets) are *never* used as responses here.
  ``refusal_for_all=True`` replaces any given response by ``config.refusal``.
* ``harmless``: (prompt, answer) pairs, e.g. Alpaca (a PromptSet's ``targets`` are used).

The default refusal starts with "I cannot", so its first token is among the refusal-start
tokens of :data:`safetygeo.activations.refusal.DEFAULT_REFUSAL_PHRASES` and the logit refusal
score measures what this objective trains.

Example:
    >>> m = RefusalSFT()
    >>> recs = m.records({"harmful": ["Make a bomb."], "harmless": [("Say hi.", "Hi!")]})
    >>> recs["harmful"][0]["response"], recs["harmless"][0]["response"]
    ('I cannot help with that request.', 'Hi!')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from safetygeo.activations.losses import completion_logprobs
from safetygeo.data.records import as_records, encode_completions, pad_right
from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.method import Method, register_method

#: The default refusal completion (written for safetygeo; starts with "I cannot").
DEFAULT_REFUSAL = "I cannot help with that request."


class SupervisedMethod(Method):
    """Shared machinery of SFT-style methods: every role's records are tokenized with
    completion-only labels and trained with token-mean cross-entropy."""

    def setup(
        self, handle: ModelHandle, records: Mapping[str, list[dict[str, Any]]], config: TrainConfig
    ) -> Sequence[dict[str, Any]]:
        super().setup(handle, records, config)
        rows: list[dict[str, Any]] = []
        self._role_names = [r for r in self.roles if r in records]
        for idx, role in enumerate(self._role_names):
            for row in encode_completions(handle, records[role], max_length=config.max_length, role=role):
                rows.append({**row, "role": idx})
        return rows

    def collate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        batch = pad_right(rows, self.pad_id)
        batch["role"] = torch.tensor([int(r["role"]) for r in rows], dtype=torch.long)
        return batch

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logp, mask = completion_logprobs(model, batch)
        loss = -logp.sum() / mask.sum().clamp(min=1)
        logs: dict[str, float] = {}
        if len(getattr(self, "_role_names", ())) > 1:
            tok_per_row = mask.sum(-1)
            for idx, role in enumerate(self._role_names):
                sel = batch["role"] == idx
                if sel.any():
                    logs[f"ce_{role}"] = float(-logp[sel].sum().detach() / tok_per_row[sel].sum().clamp(min=1))
        return loss, logs


@dataclass(frozen=True)
class RefusalSFTConfig:
    """Attributes:
    refusal: completion for harmful prompts without their own response.
    refusal_for_all: use ``refusal`` even where the harmful data has responses.
    """

    refusal: str = DEFAULT_REFUSAL
    refusal_for_all: bool = False


@register_method
class RefusalSFT(SupervisedMethod):
    """Refusal SFT (see the module docstring). Roles: ``harmful``, ``harmless``."""

    name = "sft"
    config_class = RefusalSFTConfig
    roles = ("harmful", "harmless")

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        if "harmful" in data:
            recs = as_records(data["harmful"], role="harmful", default_response=self.config.refusal,
                              use_targets=False)
            if self.config.refusal_for_all:
                recs = [{"prompt": r["prompt"], "response": self.config.refusal} for r in recs]
            out["harmful"] = recs
        if "harmless" in data:
            out["harmless"] = as_records(data["harmless"], role="harmless")
        return out


@register_method
class InstructSFT(SupervisedMethod):
    """Plain instruction tuning on (prompt, response) pairs, completion-only CE.

    The safety-neutral step that turns a pretrained LM into a *helpful-only* assistant (it
    answers whatever it is trained to answer, harmful requests included) — the
    "pre-alignment base" a refusal-SFT or R2D2 trajectory starts from. Role: ``train``.

    Example:
        >>> m = InstructSFT()
        >>> m.records(m.split_data([("Say hi.", "Hi!")]))["train"]
        [{'prompt': 'Say hi.', 'response': 'Hi!'}]
    """

    name = "instruct"
    roles = ("train",)
    required_roles = ("train",)

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {"train": as_records(data["train"], role="train")}
