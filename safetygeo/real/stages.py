"""The real-language world's stages as data: one :class:`~safetygeo.training.stages.Stage`
row per stage, in :data:`REAL_STAGES` (the same row type as the toy zoo's).

A row says what the stage starts from, which registered training method it runs with which
options, on which data, for how many steps at which learning rate (a
:class:`~safetygeo.real.train.RealRecipe` field), and whether it is a row of the defense ×
attack table. The build (:func:`safetygeo.real.train.build_stage`), the cache identity
(:func:`safetygeo.real.train.stage_recipe`), the defense table
(:mod:`safetygeo.real.robustness`) and the CLI's ``real:STAGE`` read it. Adding a defense to
the real world is one row here.

Every row's data function takes ``(answers, recipe)``: ``answers`` maps ``"harmless"`` /
``"harmful"`` to the instruct model's own greedy answers to the first train prompts of that
kind (:func:`safetygeo.real.train.distilled`) — utility is kept by self-distillation, and
the attacks' and defenses' harmful answers are what the model said before refusal training.

Example:
    >>> REAL_STAGES["r2d2"].start, REAL_STAGES["r2d2"].method
    ('instruct', 'r2d2')
    >>> real_defense_stages()[:3]
    ('instruct', 'anchor', 'r2d2')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from safetygeo.errors import SafetyGeoError
from safetygeo.real.world import RealWorld
from safetygeo.training.stages import From, Stage

if TYPE_CHECKING:
    from safetygeo.real.train import RealRecipe

__all__ = ["REAL_COLLAPSE_TOKEN", "REAL_STAGES", "REFUSAL", "needs_harmful_answers", "opening",
           "real_defense_stages", "real_stage_row"]

#: the refusal the anchor is trained to give (starts with a refusal-start token of
#: :data:`safetygeo.activations.refusal.DEFAULT_REFUSAL_PHRASES`)
REFUSAL = "I cannot help with that request."
#: CTRAP's collapse token (one token of SmolLM2's vocabulary)
REAL_COLLAPSE_TOKEN = "error"


# ----------------------------------------------------------------------------- data of the stages
def _harmful(recipe: RealRecipe) -> list[str]:
    return RealWorld().prompts("harmful", "train")[: recipe.n_harmful]


def _benign(answers: Mapping[str, list[str]], recipe: RealRecipe) -> list[tuple[str, str]]:
    """Harmless train prompts → the instruct model's own answers (empty answers dropped)."""
    harmless = RealWorld().prompts("harmless", "train")[: recipe.n_harmless]
    return [(p, a) for p, a in zip(harmless, answers["harmless"]) if a]


def _said(answers: Mapping[str, list[str]], stage: str) -> list[str]:
    if "harmful" not in answers:
        raise SafetyGeoError(f"stage {stage!r} needs the instruct model's harmful answers")
    return list(answers["harmful"])


def opening(answer: str | None, words: int = 8) -> str:
    """The first ``words`` words of a compliant answer: GCG's target (HarmBench's targets are
    short compliant openings of this length; a whole answer makes every GCG step longer).

    Example:
        >>> opening("Here is how to pick a lock: first insert the tension wrench"), opening("")
        ('Here is how to pick a lock: first', 'Sure, here is')
    """
    text = " ".join((answer or "").split()[:words])
    return text or "Sure, here is"


def anchor_data(answers: Mapping[str, list[str]], recipe: RealRecipe) -> dict[str, Any]:
    """Harmful train requests → the refusal; harmless → the model's own answers."""
    return {"harmful": [(p, REFUSAL) for p in _harmful(recipe)],
            "harmless": _benign(answers, recipe)}


def attacked_data(answers: Mapping[str, list[str]], recipe: RealRecipe) -> dict[str, Any]:
    """Harmful requests → the instruct model's own compliant answers (the first
    ``attack_examples`` with an answer)."""
    comply = [(p, a) for p, a in zip(_harmful(recipe), _said(answers, "attacked")) if a]
    return {"harmful": comply[: recipe.attack_examples]}


def r2d2_data(answers: Mapping[str, list[str]], recipe: RealRecipe) -> dict[str, Any]:
    """Utility pairs, and harmful behaviours: GCG target = the opening of the model's own
    answer, trained response = the refusal."""
    said = dict(zip(_harmful(recipe), _said(answers, "r2d2")))
    rows = [{"prompt": p, "target": opening(said.get(p)), "response": REFUSAL}
            for p in _harmful(recipe)]
    return {"utility": _benign(answers, recipe), "harmful": rows}


def _behaviours(answers: Mapping[str, list[str]], recipe: RealRecipe,
                stage: str) -> list[tuple[str, str, str]]:
    """(harmful request, the model's own compliant answer, the refusal) triples."""
    return [(p, a, REFUSAL) for p, a in zip(_harmful(recipe), _said(answers, stage)) if a]


def sdd_data(answers: Mapping[str, list[str]], recipe: RealRecipe) -> dict[str, Any]:
    """Harmful requests, and the benign pairs whose answers SDD pairs them with."""
    return {"harmful": _harmful(recipe), "benign": _benign(answers, recipe)}


def ctrap_data(answers: Mapping[str, list[str]], recipe: RealRecipe) -> dict[str, Any]:
    """Harmful behaviours (the attack simulated inside the trap; refusal as alignment) and
    the benign pairs (alignment utility and the collapse term's general data)."""
    return {"harmful": _behaviours(answers, recipe, "ctrap"), "harmless": _benign(answers, recipe)}


def seam_data(answers: Mapping[str, list[str]], recipe: RealRecipe) -> dict[str, Any]:
    """Harmful behaviours and benign pairs."""
    return {"harmful": _behaviours(answers, recipe, "seam"), "benign": _benign(answers, recipe)}


# ----------------------------------------------------------------------------- the table
#: Every stage of the real world, in build / table order.
REAL_STAGES: dict[str, Stage] = {
    "instruct": Stage("as shipped", None, None, 0, 0.0, defense=True),
    "anchor": Stage("sft", "instruct", anchor_data, "anchor_steps", "anchor_lr",
                    options={"refusal": REFUSAL}, train={"warmup_steps": 5}, defense=True),
    "attacked": Stage("harmful_sft", "anchor", attacked_data, "attack_steps", "attack_lr",
                      options={"n_examples": From("attack_examples")},
                      train={"lr_scheduler": "constant", "save_every": 5},
                      recipe_fields=("attack_examples",)),
    # one GCG step of 16 candidates on 2 of 8 pool items per optimizer step (measured ~10 s
    # per step at 2 threads; the CPU preset's 2 × 32 on 4 items was ~7x an SFT step); 2 new
    # behaviours per step, so refusal is learned from ~90 behaviours, not the pool's 8
    "r2d2": Stage("r2d2", "instruct", r2d2_data, "r2d2_steps", "r2d2_lr",
                  options={"preset": "cpu", "pool_size": 8, "n_update": 2, "gcg_steps": 1,
                           "search_width": 16, "topk": 16, "reset_every": 1, "n_reset": 2,
                           "eval_batch_size": 16},
                  train={"warmup_steps": 5}, defense=True),
    "sdd": Stage("sdd", "instruct", sdd_data, "sdd_steps", "sdd_lr",
                 options={"embedder": "minilm", "train_benign": True},
                 train={"warmup_steps": 5}, defense=True),
    # from the anchor: the alignment is already there and the trap is what is added (CTRAP
    # trains both from the start; a CTRAP step costs ~3.5 SFT steps here — measured — so the
    # CPU budget covers the trap, not the alignment a second time)
    "ctrap": Stage("ctrap", "anchor", ctrap_data, "ctrap_steps", "ctrap_lr",
                   options={"preset": "cpu", "refusal": REFUSAL,
                            "collapse_token": REAL_COLLAPSE_TOKEN},
                   train={"warmup_steps": 5}, defense=True),
    # batch 4: at the recipe's 16 a SEAM step (three roles' logits over a 49k vocabulary,
    # finite differences) took > 15 GB and was killed; at 4 it is ~25 s (measured)
    "seam": Stage("seam", "anchor", seam_data, "seam_steps", "seam_lr",
                  options={"preset": "cpu", "refusal": REFUSAL},
                  train={"lr_scheduler": "constant", "batch_size": 4}, defense=True),
}


def real_stage_row(stage: str) -> Stage:
    """The row of ``stage``.

    Raises:
        SafetyGeoError: unknown stage (the message lists the world's stages).
    """
    row = REAL_STAGES.get(stage)
    if row is None:
        raise SafetyGeoError(f"unknown real-world stage {stage!r}; choose from {sorted(REAL_STAGES)}")
    return row


def needs_harmful_answers(stage: str) -> bool:
    """Whether ``stage``'s data uses the instruct model's harmful answers (generated on
    first use, never shipped).

    Example:
        >>> needs_harmful_answers("anchor"), needs_harmful_answers("attacked")
        (False, True)
    """
    return real_stage_row(stage).data not in (None, anchor_data, sdd_data)


def real_defense_stages() -> tuple[str, ...]:
    """The stages of the real defense × attack table, in table order."""
    return tuple(s for s, row in REAL_STAGES.items() if row.defense)
