"""Harmful SFT: the fine-tuning attack used to stress-test defenses.

Fine-tune on ``n_examples`` (harmful prompt, harmful completion) pairs with the same
completion-only cross-entropy as :mod:`safetygeo.training.methods.sft`.

Defaults follow the "harmful examples demonstration" attack of Qi et al. 2023
("Fine-tuning Aligned Language Models Compromises Safety, Even When Users Do Not Intend
To!", tier 1) on Llama-2-7b-chat as run in their public scripts: 10 examples, 5 epochs,
learning rate 5e-5, global batch 10, full-parameter AdamW without weight decay or gradient
clipping. Where we differ: they decay the LR by 0.85 per epoch (llama-recipes' ``StepLR``);
we keep it constant (``TrainConfig.lr_scheduler`` changes it), and the data is whatever you
pass — their 10 pairs are not redistributed. Larger attacks in the literature use 50 / 100
examples (set ``n_examples``) or LoRA (set ``TrainConfig.lora``).

Data role ``harmful``: pairs from a JSON / JSONL file or a list, or a PromptSet whose
``targets`` serve as completions (AdvBench's "Sure, here is ..." targets are only
affirmative *prefixes*: training on them is the weaker prefix-only variant of the attack).

Example:
    >>> m = HarmfulSFT(n_examples=2)
    >>> recs = m.records(m.split_data([("A?", "a"), ("B?", "b"), ("C?", "c")]))["harmful"]
    >>> len(recs), m.default_train_config().lr
    (2, 5e-05)
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from safetygeo.data.records import as_records
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import TrainConfigError
from safetygeo.training.method import register_method
from safetygeo.training.methods.sft import SupervisedMethod


@dataclass(frozen=True)
class HarmfulSFTConfig:
    """Attributes:
    n_examples: how many pairs to train on (``None``: all); when the data holds more, a
        seeded random subset (kept in data order) is used.
    sample_seed: seed of that subset.
    """

    n_examples: int | None = 10
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if self.n_examples is not None and (not isinstance(self.n_examples, int) or self.n_examples < 1):
            raise TrainConfigError(f"n_examples must be a positive int or None, got {self.n_examples!r}")


@register_method
class HarmfulSFT(SupervisedMethod):
    """Harmful fine-tuning attack (see the module docstring). Role: ``harmful``."""

    name = "harmful_sft"
    config_class = HarmfulSFTConfig
    roles = ("harmful",)
    required_roles = ("harmful",)

    def default_train_config(self) -> TrainConfig:
        return TrainConfig(lr=5e-5, max_steps=None, epochs=5, batch_size=10, save_every=1,
                           lr_scheduler="constant", weight_decay=0.0, max_grad_norm=0.0)

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        recs = as_records(data["harmful"], role="harmful")
        n = self.config.n_examples
        if n is not None and n < len(recs):
            keep = sorted(random.Random(self.config.sample_seed).sample(range(len(recs)), n))
            recs = [recs[i] for i in keep]
        return {"harmful": recs}
