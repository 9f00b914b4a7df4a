"""Stage tables: a world's trained models as data rows (what each stage starts from, which
registered method it trains with, on what, for how long), shared by the toy world
(:mod:`safetygeo.toy.stages`) and the real-language world (:mod:`safetygeo.real.stages`).

* :class:`Stage` — one row. ``steps`` / ``lr`` name a field of the world's recipe (a frozen
  dataclass such as ``ToyRecipe``) or are literals; option values may be :class:`From`
  markers, read from the recipe when the stage is built (:func:`resolve`).
* :func:`stage_identity` — the recipe fields a stage depends on (its own and its
  ancestors'): what a cached build is keyed by, so changing an attack's settings does not
  rebuild the model it starts from.
* :func:`stage_method_and_config` — the method instance and
  :class:`~safetygeo.training.TrainConfig` of a row, given the world's shared training
  settings.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Recipe:
    ...     batch_size: int = 4
    ...     a_steps: int = 10
    ...     a_lr: float = 1e-3
    >>> rows = {"a": Stage("sft", None, lambda ctx, r: {}, "a_steps", "a_lr"),
    ...         "b": Stage("harmful_sft", "a", lambda ctx, r: {}, 5, 2e-4,
    ...                    options={"n_examples": From("batch_size")})}
    >>> stage_identity("b", rows, Recipe(), shared=("batch_size",))
    {'a_lr': 0.001, 'a_steps': 10, 'b_lr': 0.0002, 'b_steps': 5, 'batch_size': 4}
    >>> m, cfg = stage_method_and_config("b", rows, Recipe(), seed=0, defaults={"batch_size": 4})
    >>> m.config.n_examples, cfg.max_steps, cfg.lr
    (4, 5, 0.0002)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from safetygeo.errors import SafetyGeoError

__all__ = ["From", "Stage", "resolve", "stage_identity", "stage_method_and_config"]


@dataclass(frozen=True)
class From:
    """A value read from the recipe field ``name`` when the stage is built."""

    name: str


#: ``(context, recipe) -> {role: data}``: a stage's training data (context: the world, or
#: whatever the world's rows need, e.g. the base model's own answers)
StageData = Callable[[Any, Any], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    """One stage of a world's model zoo.

    Attributes:
        method: the registered training method (:func:`safetygeo.training.get_method`).
        start: the stage whose final checkpoint it trains from (``None``: the world's
            starting model).
        data: ``(context, recipe) -> {role: data}`` on the world's train split (``None``:
            the stage is not trained, e.g. a shipped model).
        steps, lr: a recipe field name, or a literal (a literal still enters the stage's
            identity, as ``<stage>_steps`` / ``<stage>_lr``, so changing it rebuilds it).
        options: the method's config (``preset`` included), :class:`From` values resolved.
        train: :class:`~safetygeo.training.TrainConfig` fields beyond the world's defaults.
        checkpoints: ``None`` saves at the world's default interval; ``n`` saves ``n``
            checkpoints over the run.
        recipe_fields: further recipe fields the stage depends on (its identity).
        defense: a row of the world's defense × attack table, in table order.
        smoke: option overrides of a few-step run on a tiny model (contract tests).
    """

    method: str
    start: str | None
    data: StageData | None
    steps: str | int
    lr: str | float
    options: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    checkpoints: int | None = None
    recipe_fields: tuple[str, ...] = ()
    defense: bool = False
    smoke: Mapping[str, Any] = field(default_factory=dict)

    def identity_fields(self, name: str) -> dict[str, Any]:
        """``{identity key: recipe field name or literal}`` of this stage's own settings."""
        if self.data is None:
            return {}
        out: dict[str, Any] = {}
        for what, value in (("steps", self.steps), ("lr", self.lr)):
            out[value if isinstance(value, str) else f"{name}_{what}"] = value
        for f in self.recipe_fields:
            out[f] = f
        return out


def resolve(value: Any, recipe: Any) -> Any:
    """``value`` with :class:`From` markers read from ``recipe`` (recursively in mappings)."""
    if isinstance(value, From):
        return getattr(recipe, value.name)
    if isinstance(value, Mapping):
        return {k: resolve(v, recipe) for k, v in value.items()}
    return value


def _row(stage: str, rows: Mapping[str, Stage]) -> Stage:
    if stage not in rows:
        raise SafetyGeoError(f"unknown stage {stage!r}; choose from {sorted(rows)}")
    return rows[stage]


def stage_identity(stage: str, rows: Mapping[str, Stage], recipe: Any, *,
                   shared: tuple[str, ...]) -> dict[str, Any]:
    """The recipe values ``stage`` depends on: the ``shared`` fields, and every stage's own
    fields along its lineage (sorted by key)."""
    full = asdict(recipe)
    out = {k: full[k] for k in shared}
    node: str | None = stage
    while node is not None:
        row = _row(node, rows)
        for key, value in row.identity_fields(node).items():
            out[key] = full[value] if isinstance(value, str) else value
        node = row.start
    return {k: out[k] for k in sorted(out)}


def stage_method_and_config(stage: str, rows: Mapping[str, Stage], recipe: Any, *, seed: int,
                            defaults: Mapping[str, Any]) -> tuple[Any, Any]:
    """The method instance and :class:`~safetygeo.training.TrainConfig` of ``stage``'s row:
    the world's ``defaults`` (batch size, save interval, …), then the row's ``train`` fields
    (``checkpoints`` sets the save interval)."""
    from safetygeo.training import TrainConfig, get_method

    row = _row(stage, rows)
    if row.data is None:
        raise SafetyGeoError(f"stage {stage!r} is not trained; trained stages: "
                             f"{sorted(s for s, r in rows.items() if r.data is not None)}")
    full = asdict(recipe)
    steps = full[row.steps] if isinstance(row.steps, str) else row.steps
    lr = full[row.lr] if isinstance(row.lr, str) else row.lr
    values: dict[str, Any] = {**defaults, "seed": seed}
    if row.checkpoints is not None:
        values["save_every"] = max(1, steps // row.checkpoints)
    values.update(resolve(row.train, recipe))
    return (get_method(row.method, **resolve(row.options, recipe)),
            TrainConfig(lr=lr, max_steps=steps, **values))
