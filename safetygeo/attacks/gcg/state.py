"""GCG prompts, pool items, pool state and results (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from safetygeo.attacks.gcg.config import GCGConfig


@dataclass(frozen=True)
class GCGPrompt:
    """Token layout of one (instruction, target) pair: ``before | suffix | after | target``.

    Attributes:
        instruction: the user instruction (the suffix is appended to it).
        target: the completion whose likelihood GCG maximizes.
        before_text: chat-template prefix + instruction.
        after_text: post-instruction template text.
        before_ids, after_ids, target_ids: their token ids (``before``/``after`` as they
            appear in the whole formatted prompt; ``target`` tokenized on its own, as in
            llm-attacks / nanogcg).
    """

    instruction: str
    target: str
    before_text: str
    after_text: str
    before_ids: tuple[int, ...]
    after_ids: tuple[int, ...]
    target_ids: tuple[int, ...]


@dataclass
class GCGItem:
    """One suffix being optimized (over one prompt, or several in universal mode).

    ``losses[t]`` is the loss of the suffix adopted at step ``t`` (measured against the
    model at that step). ``best_*`` is the lowest loss seen; in adversarial training the
    model changes between steps, so use the current suffix there.
    """

    prompts: tuple[GCGPrompt, ...]
    suffix_ids: Int[Tensor, " n_suffix"]
    suffix: str
    loss: float
    initial_loss: float
    best_ids: Int[Tensor, " n_suffix"]
    best_suffix: str
    best_loss: float
    solved: bool = False
    losses: list[float] = field(default_factory=list)
    n_candidates: list[int] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def adversarial_prompts(self) -> list[str]:
        """``instruction + suffix`` for each prompt of the item (current suffix)."""
        return [p.instruction + self.suffix for p in self.prompts]


@dataclass
class GCGState:
    """A pool of GCG items advanced together by :func:`gcg_step`.

    Items can be replaced between steps (R2D2 resets part of its pool):
    ``state.items[i] = gcg_init(model, [instr], [target], state.config).items[0]``.
    """

    items: list[GCGItem]
    config: GCGConfig
    allowed: Bool[Tensor, " vocab"]
    generator: torch.Generator
    step: int = 0


@dataclass(frozen=True)
class GCGResult:
    """Outcome of one GCG item.

    Attributes:
        instructions, targets: the prompt(s) the suffix was optimized for.
        suffix: text appended verbatim to each instruction (starts with the separator).
        suffix_ids: its token ids.
        best_loss: target loss of ``suffix`` (mean CE per target token).
        initial_loss: loss of the initial suffix.
        losses: loss of the adopted suffix after each step.
        solved: the model greedily produces the target(s) after ``suffix``.
        n_steps: steps run.
        wall_time_s: seconds spent on this item.

    ``suffix`` is the solving suffix when ``solved`` (early stop), else the lowest-loss one.
    """

    instructions: tuple[str, ...]
    targets: tuple[str, ...]
    suffix: str
    suffix_ids: tuple[int, ...]
    best_loss: float
    initial_loss: float
    losses: tuple[float, ...]
    solved: bool
    n_steps: int
    wall_time_s: float

    @property
    def prompt(self) -> str:
        """The adversarial prompt of the first (often only) instruction."""
        return self.instructions[0] + self.suffix

    @property
    def prompts(self) -> list[str]:
        return [i + self.suffix for i in self.instructions]

    @classmethod
    def from_item(cls, item: GCGItem) -> GCGResult:
        use_current = item.solved or item.loss <= item.best_loss
        ids = item.suffix_ids if use_current else item.best_ids
        return cls(
            instructions=tuple(p.instruction for p in item.prompts),
            targets=tuple(p.target for p in item.prompts),
            suffix=item.suffix if use_current else item.best_suffix,
            suffix_ids=tuple(int(i) for i in ids),
            best_loss=item.loss if use_current else item.best_loss,
            initial_loss=item.initial_loss,
            losses=tuple(item.losses),
            solved=item.solved,
            n_steps=len(item.losses),
            wall_time_s=item.wall_time_s,
        )


# ----------------------------------------------------------------------------- vocabulary
