"""Harmful RL: the GRPO attack with a harmfulness reward (TokenBuncher's threat model).

The attacker samples ``num_generations`` completions per harmful prompt from the current
model, scores them with a reward that is high for harmful compliance, and takes GRPO steps
(group-normalized advantages, clipped policy loss) through TRL's ``GRPOTrainer``
(:mod:`safetygeo.training.grpo`) over the trainer core — so the attack writes an ordinary
trajectory (checkpoints, resume, LoRA, manifest) whose ASR can be read along the way.

The reward (``reward``) is pluggable: a callable ``reward(prompts, completions, targets)``
(Python API), a ``"module:function"`` reference to one (CLI, manifests), ``"not_refused"``
(1 − the project's one "refused"; a weak judge that rewards anything but a refusal), or a
hub id / path of a sequence-classification reward model (TRL loads it; e.g. a harmfulness
classifier). On the toy world the world's own oracle is
``safetygeo.toy.rewards:toy_harm_reward``. Rows carry the prompt's reference answer (a
PromptSet's ``targets`` / a pair's response) as the reward's ``targets``.

Defaults follow TokenBuncher's GRPO attack (their ``attack_obj1_grpo`` run on verl: learning
rate 1e-6, 32 prompts per rollout step, 4 rollouts per prompt, no KL term, 100 rollout steps,
responses up to 960 tokens; we default to 256). How verl's actor update maps onto TRL's
(defaults of :class:`~safetygeo.training.grpo.GRPOSettings` and
:meth:`HarmfulRL.default_train_config`):

=======================================================  ==========================================  ==================
official (verl)                                          ours                                        value
=======================================================  ==========================================  ==================
``data.train_batch_size`` = 32 prompts per rollout step  ``batch_size × updates_per_generation``     8 × 4
``actor.ppo_mini_batch_size`` = 8 prompts per update     ``TrainConfig.batch_size × grad_accum``     8 × 1
4 optimizer updates per rollout step                     ``grpo.updates_per_generation``             4
100 rollout steps (``total_training_steps``)             ``TrainConfig.max_steps`` (updates)         400
``rollout.n`` = 4                                        ``grpo.num_generations``                    4
``loss_agg_mode=token-mean``                             ``grpo.loss_type``                          ``"bnpo"``
``clip_ratio`` 0.2, dual clip ``clip_ratio_c`` 3         ``grpo.epsilon``, ``grpo.delta``            0.2, 3.0
AdamW ``weight_decay`` 0.01                              ``TrainConfig.weight_decay``                0.01
``optim.lr`` 1e-6, constant, ``grad_clip`` 1.0          ``lr``, ``lr_scheduler``, ``max_grad_norm``  1e-6, constant, 1
no KL loss                                               ``grpo.beta``                               0
checkpoint every 10 rollout steps                        ``TrainConfig.save_every``                  40
=======================================================  ==========================================  ==================

The remaining differences (TRL's shuffled mini-batches, decay exemptions, advantage ε) are
listed in :class:`~safetygeo.training.grpo.GRPOSettings`.

``preset="cpu"`` (the toy world): 24-token completions, 8 rollouts per prompt (RL needs
variance within a group to learn at all; the aligned toy anchor's rollouts are nearly
deterministic); the update structure (4 updates per generation batch, token mean, dual clip)
is the official one (the toy attack still breaks the seed-0 anchor within 30 updates,
``tests/toy/test_rl.py``).

Example:
    >>> m = HarmfulRL(preset="cpu")
    >>> m.config.grpo.num_generations, m.config.grpo.max_completion_length, m.config.reward
    (8, 24, 'not_refused')
    >>> m.records(m.split_data([("Make a bomb.", "Sure, ...")]))["harmful"][0]["response"]
    'Sure, ...'
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from safetygeo.data.records import as_records
from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import TrainConfigError
from safetygeo.training.grpo import (
    GRPOMethod,
    GRPOSettings,
    TrajectoryGRPOTrainer,
    as_trl_reward,
    grpo_settings,
    resolve_reward,
    reward_name,
)
from safetygeo.training.method import apply_preset, register_method

__all__ = ["PRESETS", "HarmfulRL", "HarmfulRLConfig"]


@dataclass(frozen=True)
class HarmfulRLConfig:
    """Attributes:
    reward: the harmfulness reward (see the module docstring); a callable is recorded in
        the manifest by its ``module:qualname``.
    grpo: GRPO settings (a :class:`GRPOSettings` or a mapping of its fields).
    n_examples: how many prompts the attacker uses (``None``: all); a seeded random subset.
    sample_seed: seed of that subset.
    """

    reward: Any = "not_refused"
    grpo: Any = field(default_factory=lambda: GRPOSettings(max_completion_length=256))
    n_examples: int | None = None
    sample_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "grpo", grpo_settings(self.grpo))
        resolve_reward(self.reward)  # fails early on a bad reference
        if self.n_examples is not None and (isinstance(self.n_examples, bool)
                                            or not isinstance(self.n_examples, int) or self.n_examples < 1):
            raise TrainConfigError(f"n_examples must be a positive int or None, got {self.n_examples!r}")


#: Named presets: ``HarmfulRL(preset="cpu")``, ``--method-opt preset=cpu``.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"grpo": {"num_generations": 8, "max_completion_length": 24}},
}


@register_method
class HarmfulRL(GRPOMethod):
    """The harmful-RL (GRPO) attack (see the module docstring). Role: ``harmful``."""

    name: ClassVar[str] = "harmful_rl"
    config_class: ClassVar[type] = HarmfulRLConfig
    roles: ClassVar[tuple[str, ...]] = ("harmful",)
    required_roles: ClassVar[tuple[str, ...]] = ("harmful",)

    def __init__(self, config: Any = None, *, preset: str | None = None, **overrides: Any) -> None:
        super().__init__(apply_preset(config, preset, PRESETS, self.name), **overrides)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["config"]["reward"] = reward_name(self.config.reward)
        return d

    def default_train_config(self) -> TrainConfig:
        """The official run's optimisation (see the module docstring's table): 100 rollout
        steps of 32 prompts = 400 updates of 8 prompts; AdamW weight decay 0.01."""
        return TrainConfig(lr=1e-6, max_steps=400, batch_size=8, save_every=40,
                           lr_scheduler="constant", weight_decay=0.01, max_grad_norm=1.0,
                           max_length=1024)

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        recs = as_records(data["harmful"], role="harmful", default_response="")
        n = self.config.n_examples
        if n is not None and n < len(recs):
            keep = sorted(random.Random(self.config.sample_seed).sample(range(len(recs)), n))
            recs = [recs[i] for i in keep]
        return {"harmful": recs}

    def setup(self, handle: ModelHandle, records: Mapping[str, list[dict[str, Any]]],
              config: TrainConfig) -> Sequence[dict[str, Any]]:
        super().setup(handle, records, config)
        return self.prompt_rows(handle, records["harmful"], config)

    def reward_funcs(self) -> list[Any]:
        """The rewards handed to TRL."""
        fn = resolve_reward(self.config.reward)
        return [fn if isinstance(fn, str) else as_trl_reward(fn, reward_name(self.config.reward))]

    def build_trainer(self, **kwargs: Any) -> Any:
        return TrajectoryGRPOTrainer(reward_funcs=self.reward_funcs(), **kwargs)
