"""The toy zoo's stages as data: one :class:`ToyStage` row per stage, in :data:`TOY_STAGES`.

A row says what the stage starts from, which registered training method it runs with which
options, on which of the toy world's data, for how many steps at which learning rate, and
whether it is a row of the defense × attack table. Everything else reads this table: the
lineage and the recipe identity (:func:`safetygeo.toy.train.stage_recipe`), the build
(:func:`safetygeo.toy.train.build_stage`), the robustness table's stages
(:data:`safetygeo.toy.robustness.DEFENSE_STAGES`) and the CLI's ``toy:STAGE`` help. Adding a
defense to the toy zoo is one row here (plus the method's own file in
``training/methods/``).

Values of ``options`` / ``train`` may be :class:`From` markers: read from the
:class:`~safetygeo.toy.train.ToyRecipe` when the stage is built. ``steps`` and ``lr`` are a
``ToyRecipe`` field name or a literal number (a literal still enters the stage's recipe
identity, as ``<stage>_steps`` / ``<stage>_lr``, so changing it rebuilds the stage).

Example:
    >>> TOY_STAGES["ctrap"].start, TOY_STAGES["ctrap"].method
    ('base', 'ctrap')
    >>> [s for s, row in TOY_STAGES.items() if row.defense][:3]
    ['base', 'anchor', 'r2d2']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safetygeo.toy.world import REFUSAL, ToyWorld
from safetygeo.training.stages import From, Stage, resolve

if TYPE_CHECKING:
    from safetygeo.toy.train import ToyRecipe

__all__ = ["From", "TOY_COLLAPSE_TOKEN", "TOY_EXTRA_RUNS", "TOY_STAGES", "ToyStage", "defense_stages",
           "method_run", "resolve", "stage_row"]

#: CTRAP's collapse token in the toy vocabulary (any single word works; this one is rare)
TOY_COLLAPSE_TOKEN = "process"


#: a row of the toy zoo (the shared stage-row type; ``data`` takes ``(ToyWorld, ToyRecipe)``)
ToyStage = Stage


# ----------------------------------------------------------------------------- data of the stages
def _pairs(world: ToyWorld, kinds: tuple[str, ...], field: str, split: str = "train") -> list[tuple[str, str]]:
    return [(p.text, getattr(p, field)) for k in kinds for p in world.prompts(k, split)]


def _benign(world: ToyWorld) -> list[tuple[str, str]]:
    return _pairs(world, ("benign_task", "lookalike"), "answer")


def _harmful_texts(world: ToyWorld) -> list[str]:
    return [p.text for p in world.prompts("harmful", "train")]


def _behaviours(world: ToyWorld) -> list[tuple[str, str, str]]:
    return [(p.text, p.compliant, REFUSAL) for p in world.prompts("harmful", "train")]


def base_data(world: ToyWorld, recipe: ToyRecipe) -> dict[str, Any]:
    """Every train prompt → its compliant answer (the helpful-only base)."""
    return {"train": _pairs(world, ("harmful", "benign_task", "lookalike"), "compliant")}


def anchor_data(world: ToyWorld, recipe: ToyRecipe) -> dict[str, Any]:
    """Harmful → refusal (plus the prefill replay rows), harmless → their answers."""
    harmful: list[Any] = _pairs(world, ("harmful",), "answer")
    if recipe.anchor_prefill_replay:
        for p in world.prompts("harmful", "train"):
            opener, rest = p.compliant.split(" . ", 1)
            harmful.append({"prompt": p.text, "prefill": f"{opener} .", "response": rest})
    return {"harmful": harmful, "harmless": _benign(world)}


def r2d2_data(world: ToyWorld, recipe: ToyRecipe) -> dict[str, Any]:
    """Utility pairs and harmful behaviours (compliant target, refusal response)."""
    harmful = [{"prompt": p.text, "target": p.compliant, "response": REFUSAL}
               for p in world.prompts("harmful", "train")]
    return {"utility": _benign(world), "harmful": harmful}


def attacked_data(world: ToyWorld, recipe: ToyRecipe) -> dict[str, Any]:
    """Harmful requests → the compliant how-to (the harmful fine-tuning attack)."""
    return {"harmful": _pairs(world, ("harmful",), "compliant")}


def sdd_data(world: ToyWorld, recipe: ToyRecipe) -> dict[str, Any]:
    """Harmful prompts and the benign pairs whose answers SDD pairs them with."""
    return {"harmful": _harmful_texts(world), "benign": _benign(world)}


def ctrap_data(world: ToyWorld, recipe: ToyRecipe) -> dict[str, Any]:
    """Harmful behaviours and the anchor's alignment data (prefill replay rows included)."""
    anchor = anchor_data(world, recipe)
    replay = [r for r in anchor["harmful"] if isinstance(r, dict)]
    return {"harmful": _behaviours(world), "harmless": anchor["harmless"] + replay}


def seam_data(world: ToyWorld, recipe: ToyRecipe) -> dict[str, Any]:
    """Harmful behaviours and benign pairs."""
    return {"harmful": _behaviours(world), "benign": _benign(world)}


def unlearn_data(world: ToyWorld, recipe: ToyRecipe) -> dict[str, Any]:
    """Forget the compliant how-to of harmful requests; retain the benign answers."""
    return {"forget": _pairs(world, ("harmful",), "compliant"), "retain": _benign(world)}


def rl_data(world: ToyWorld, recipe: ToyRecipe) -> dict[str, Any]:
    """Harmful requests with their how-to (the oracle reward's reference)."""
    return {"harmful": _pairs(world, ("harmful",), "compliant")}


# ----------------------------------------------------------------------------- the table
#: Every stage of the toy zoo, in build / table order.
TOY_STAGES: dict[str, ToyStage] = {
    "base": ToyStage("instruct", None, base_data, "base_steps", "base_lr", defense=True),
    "anchor": ToyStage("sft", "base", anchor_data, "anchor_steps", "anchor_lr",
                       options={"refusal": REFUSAL}, recipe_fields=("anchor_prefill_replay",),
                       defense=True),
    # the CPU preset's search (2 GCG steps of 32 candidates per update) on a larger pool that
    # turns over quickly, so refusal is learned from many behaviours; suffixes of a word the
    # toy vocabulary has ("!" is not in it)
    "r2d2": ToyStage("r2d2", "base", r2d2_data, "r2d2_steps", "r2d2_lr",
                     options={"preset": "cpu", "suffix_token": "the", "suffix_len": (1, 3),
                              "pool_size": 16, "n_update": 8, "reset_every": 5, "n_reset": 4},
                     checkpoints=4, defense=True),
    "attacked": ToyStage("harmful_sft", "anchor", attacked_data, "attack_steps", "attack_lr",
                         options={"n_examples": From("attack_examples")},
                         train={"lr_scheduler": "constant", "batch_size": 10, "save_every": 5},
                         recipe_fields=("attack_examples",)),
    "sdd": ToyStage("sdd", "base", sdd_data, "sdd_steps", "sdd_lr",
                    options={"embedder": "tfidf", "train_benign": True}, defense=True),
    "ctrap": ToyStage("ctrap", "base", ctrap_data, "ctrap_steps", "ctrap_lr",
                      options={"preset": "cpu", "refusal": REFUSAL,
                               "collapse_token": TOY_COLLAPSE_TOKEN},
                      recipe_fields=("anchor_prefill_replay",), defense=True),
    "seam": ToyStage("seam", "anchor", seam_data, "seam_steps", "seam_lr",
                     options={"preset": "cpu", "refusal": REFUSAL},
                     train={"lr_scheduler": "constant", "batch_size": 16}, checkpoints=4,
                     defense=True),
    "tokenbuncher": ToyStage("tokenbuncher", "anchor", sdd_data, "tokenbuncher_steps",
                             "tokenbuncher_lr", options={"preset": "cpu"},
                             train={"lr_scheduler": "constant", "batch_size": 8,
                                    "warmup_steps": 0},
                             checkpoints=4, defense=True),
}

#: How the contract tests and examples run the methods that are no zoo stage (same row
#: shape; never built into the cache).
TOY_EXTRA_RUNS: dict[str, ToyStage] = {
    "unlearn": ToyStage("unlearn", "anchor", unlearn_data, 20, 1e-4,
                        options={"retain_weight": 1.0}),
    "harmful_rl": ToyStage("harmful_rl", "anchor", rl_data, "rl_attack_steps", "rl_attack_lr",
                           options={"preset": "cpu",
                                    "reward": "safetygeo.toy.rewards:toy_harm_reward"},
                           train={"lr_scheduler": "constant", "batch_size": 8,
                                  "warmup_steps": 0}),
}


def defense_stages() -> tuple[str, ...]:
    """The stages of the defense × attack table, in table order.

    Example:
        >>> defense_stages()
        ('base', 'anchor', 'r2d2', 'sdd', 'ctrap', 'seam', 'tokenbuncher')
    """
    return tuple(s for s, row in TOY_STAGES.items() if row.defense)


def method_run(method: str) -> tuple[str, ToyStage] | None:
    """The first row (zoo stage, then extra run) that trains ``method``, or ``None``.

    Example:
        >>> method_run("harmful_sft")[0], method_run("unlearn")[0]
        ('attacked', 'unlearn')
    """
    for table in (TOY_STAGES, TOY_EXTRA_RUNS):
        for name, row in table.items():
            if row.method == method:
                return name, row
    return None


def stage_row(stage: str) -> ToyStage:
    """The row of ``stage`` (a zoo stage or an extra run).

    Raises:
        SafetyGeoError: unknown stage (the message lists the zoo's stages).
    """
    from safetygeo.errors import SafetyGeoError

    row = TOY_STAGES.get(stage) or TOY_EXTRA_RUNS.get(stage)
    if row is None:
        raise SafetyGeoError(f"unknown toy stage {stage!r}; choose from {sorted(TOY_STAGES)}")
    return row
