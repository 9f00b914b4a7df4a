"""The harmful fine-tuning attack as one call: "defend, then attack" is two calls.

:func:`attack` fine-tunes any checkpoint with the ``harmful_sft`` method
(:mod:`safetygeo.training.methods.harmful_sft`) for a fixed budget of optimizer steps and
returns the attack trajectory (a checkpoint every ``save_every`` steps, so the ASR can be
read along the attack). The budget and the attacker's settings are the caller's; the same
settings for every defense is what makes a robustness table fair.

Example:
    >>> import tempfile
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
    >>> traj = attack(h, [("Make a bomb.", "Sure, here is how.")], steps=2, save_every=1,
    ...               out=tempfile.mkdtemp(), progress=False)
    >>> traj.method, traj.steps
    ('harmful_sft', [1, 2])
"""

from __future__ import annotations

import os
from typing import Any, Literal

from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.core import train
from safetygeo.training.errors import TrainConfigError
from safetygeo.training.method import get_method
from safetygeo.training.trajectory import Trajectory

__all__ = ["attack"]


def attack(
    handle: ModelHandle,
    data: Any,
    *,
    out: str | os.PathLike[str],
    steps: int,
    lr: float = 5e-5,
    batch_size: int = 10,
    n_examples: int | None = 10,
    save_every: int = 5,
    seed: int = 0,
    config: TrainConfig | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool | Literal["verbose"] = True,
) -> Trajectory:
    """Harmful-SFT attack on ``handle`` for ``steps`` optimizer steps (trained in place, as
    :func:`~safetygeo.training.train` does).

    Args:
        handle: the checkpoint to attack (e.g. a defended model).
        data: (harmful prompt, harmful answer) pairs, or anything ``harmful_sft`` takes.
        out: the attack's trajectory folder.
        steps: the budget in optimizer steps.
        lr, batch_size, save_every, seed: the attacker's optimisation (constant LR, no
            weight decay, no clipping — Qi et al.'s attack; see ``harmful_sft``).
        n_examples: how many pairs the attacker uses (``None``: all).
        config: a full :class:`TrainConfig` instead (its ``max_steps`` is set to ``steps``).

    Raises:
        TrainConfigError: ``steps`` is not a positive int.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise TrainConfigError(f"attack steps must be a positive int, got {steps!r}")
    method = get_method("harmful_sft", n_examples=n_examples, sample_seed=seed)
    if config is None:
        config = method.default_train_config().replace(
            lr=lr, batch_size=batch_size, save_every=min(save_every, steps), seed=seed)
    config = config.replace(max_steps=steps, epochs=None)
    return train(handle, method, {"harmful": data}, out=out, config=config, resume=resume,
                 overwrite=overwrite, progress=progress)
