"""Cached toy-world models: built deterministically from a seed when absent.

Layout under ``cache_dir`` (default ``$SAFETYGEO_TOY_DIR``, else ``artifacts/toy``), one
safetygeo trajectory per stage (see :mod:`safetygeo.toy.train`)::

    base-s0/       random init → instruct SFT: the helpful-only, pre-alignment model
    anchor-s0/     base → refusal SFT: the aligned anchor
    r2d2-s0/       base → R2D2 adversarial training
    attacked-s0/   anchor → harmful-SFT attack

Each folder holds ``step-NNNNNN/`` checkpoints, ``trajectory.json`` and ``toy.json``
(recipe, seed, final step, measured held-out behaviour, seconds), written last: a folder
without it is rebuilt (resuming from its last complete checkpoint), never used.

Damage: :func:`load_toy` returns exactly the step ``toy.json`` records, never an earlier
one. If that checkpoint is damaged (or gone), the stage is repaired — with a
:class:`~safetygeo.errors.DamagedCheckpointWarning` saying so — by rerunning its
training, which quarantines the damaged folder (``step-NNNNNN.damaged-<time>``, nothing
is deleted) and re-creates the later steps from the last intact checkpoint (bit-identical
on CPU); ``repair=False`` raises :class:`~safetygeo.training.errors.DamagedCheckpointError`
instead.

Example:
    >>> from safetygeo.toy.zoo import toy_prompt_sets
    >>> sets = toy_prompt_sets()
    >>> sorted(sets)[:3], sets["harmful"].label
    (['harmful', 'harmful_test', 'harmful_train'], 'harmful')
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from safetygeo.data import PromptSet
from safetygeo.errors import DamagedCheckpointWarning, SafetyGeoError
from safetygeo.models.handle import ModelHandle
from safetygeo.toy.train import STAGES, ToyRecipe, build_all, build_stage, read_marker
from safetygeo.toy.world import ToyWorld


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where toy models live: ``cache_dir``, ``$SAFETYGEO_TOY_DIR`` or ``artifacts/toy``."""
    return Path(cache_dir or os.environ.get("SAFETYGEO_TOY_DIR", "artifacts/toy"))


def toy_prompt_sets(seed: int = 0) -> dict[str, PromptSet]:
    """Harmful and harmless (benign tasks + look-alikes) prompt sets of the toy world.

    Keys: ``harmful``, ``harmless`` (the union of train + val splits, for carrier selection
    which splits them itself) and ``{harmful,harmless}_{train,val,test}``. The split sets
    carry targets: the compliant how-to for harmful prompts (what an attack trains toward),
    the helpful answer for harmless ones.
    """
    w = ToyWorld(seed)
    out: dict[str, PromptSet] = {}
    for split in ("train", "val", "test"):
        harmful = w.prompts("harmful", split)
        out[f"harmful_{split}"] = PromptSet([p.text for p in harmful], name=f"toy-harmful-{split}",
                                            label="harmful",
                                            categories=[p.category for p in harmful],
                                            targets=[p.compliant for p in harmful])
        harmless = w.prompts("benign_task", split) + w.prompts("lookalike", split)
        out[f"harmless_{split}"] = PromptSet([p.text for p in harmless],
                                             name=f"toy-harmless-{split}", label="harmless",
                                             categories=[p.kind for p in harmless],
                                             targets=[p.answer for p in harmless])
    for cls in ("harmful", "harmless"):
        texts = list(out[f"{cls}_train"].prompts) + list(out[f"{cls}_val"].prompts)
        out[cls] = PromptSet(texts, name=f"toy-{cls}", label=cls)
    return out


def toy_task_set(world: ToyWorld, *, split: str | None = "test", n: int | None = None,
                 seed: int = 0) -> PromptSet:
    """The toy world's benign tasks as a set with reference answers (label ``"benign"``).

    ``evaluate_behavior`` scores it by exact match of the generated answer (toy task
    accuracy) and by reference log-likelihood.

    Example:
        >>> ps = toy_task_set(ToyWorld(), n=3)
        >>> len(ps), ps.label, ps.targets[0].endswith(" .")
        (3, 'benign', True)
    """
    return _toy_set(world, "benign_task", "toy-tasks", "benign", split, n, seed)


def toy_behavior_sets(world: ToyWorld, *, split: str | None = "test", n: int | None = None,
                      seed: int = 0) -> dict[str, PromptSet]:
    """Toy harmful requests (label ``harmful``: ASR), look-alikes (label ``safe``:
    over-refusal) and benign tasks (label ``benign``: task accuracy), keyed by set name.

    Example:
        >>> {k: v.label for k, v in toy_behavior_sets(ToyWorld(), n=2).items()}
        {'toy-harmful': 'harmful', 'toy-lookalike': 'safe', 'toy-tasks': 'benign'}
    """
    return {
        "toy-harmful": _toy_set(world, "harmful", "toy-harmful", "harmful", split, n, seed),
        "toy-lookalike": _toy_set(world, "lookalike", "toy-lookalike", "safe", split, n, seed),
        "toy-tasks": _toy_set(world, "benign_task", "toy-tasks", "benign", split, n, seed),
    }


def _toy_set(world: ToyWorld, kind: str, name: str, label: str, split: str | None,
             n: int | None, seed: int) -> PromptSet:
    items = world.prompts(kind, split) if n is None else world.sample(n, kind, split, seed=seed)
    if not items:
        raise SafetyGeoError(f"the toy world has no {kind} prompts in split {split!r}")
    return PromptSet(
        [p.text for p in items], name=name, label=label,
        categories=[p.category for p in items], targets=[p.answer for p in items],
        meta={"source": "safetygeo.toy.world", "format": "toy", "kind": kind, "split": split},
    )


def toy_splits(seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """``{"harmful": {"train", "val", "test"}, "harmless": {...}}`` — the world's own
    hash splits, for APIs that take explicit splits (e.g. carrier selection), so nothing a
    toy model was trained on is used to validate or test it."""
    sets = toy_prompt_sets(seed)
    return {cls: {s: list(sets[f"{cls}_{s}"].prompts) for s in ("train", "val", "test")}
            for cls in ("harmful", "harmless")}


def ensure_toy(names: tuple[str, ...] = ("anchor",), *, seed: int = 0,
               cache_dir: str | os.PathLike[str] | None = None, recipe: ToyRecipe = ToyRecipe(),
               rebuild: bool = False, progress: bool = False) -> dict[str, dict[str, Any]]:
    """Build the named stages (and what they start from) if absent; return their ``toy.json``."""
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise SafetyGeoError(f"unknown toy model(s) {unknown}; choose from {sorted(STAGES)}")
    return build_all(cache_root(cache_dir), seed=seed, recipe=recipe, stages=tuple(names),
                     progress=progress, rebuild=rebuild)


def _final_problem(traj: Any, info: dict[str, Any] | None) -> str | None:
    """Why the stage's recorded final checkpoint is not what the trajectory offers, if so."""
    if info is None or not isinstance(info.get("final_step"), int):
        return None
    final = info["final_step"]
    bad = [d for d in traj.damaged if d.step >= final]
    if bad:
        return f"its checkpoint step {bad[0].step} is damaged ({bad[0].reason})"
    if final not in traj.steps:
        return (f"toy.json records final step {final} but the last intact checkpoint is "
                f"step {traj.steps[-1] if traj.steps else None}")
    return None


def _repair(name: str, why: str, *, seed: int, cache_dir: Any, recipe: ToyRecipe,
            progress: bool) -> None:
    """Re-run stage ``name``'s training in place: damaged folders are quarantined, the
    missing steps re-created from the last intact checkpoint, ``toy.json`` rewritten."""
    folder = cache_root(cache_dir) / f"{name}-s{seed}"
    warnings.warn(
        f"toy model {name!r} (seed {seed}) in {str(folder)!r}: {why}; repairing it by "
        "resuming its training from the last intact checkpoint (damaged folders are kept as "
        "step-NNNNNN.damaged-<time>, nothing is deleted)", DamagedCheckpointWarning, stacklevel=4)
    parent = STAGES[name][0]
    start = (load_toy_trajectory(parent, seed=seed, cache_dir=cache_dir, recipe=recipe,
                                 progress=progress).load_checkpoint()
             if parent else None)
    build_stage(name, folder, start=start, seed=seed, recipe=recipe, progress=progress)


def load_toy_trajectory(name: str = "anchor", *, seed: int = 0,
                        cache_dir: str | os.PathLike[str] | None = None,
                        recipe: ToyRecipe = ToyRecipe(), rebuild: bool = False,
                        progress: bool = False, repair: bool = True) -> Any:
    """The :class:`~safetygeo.training.Trajectory` of toy stage ``name``, built if absent.

    Its final checkpoint is the step ``toy.json`` records; if that one (or one a stage it
    starts from needs) is damaged or gone, the stage is repaired (see the module docstring).

    Raises:
        DamagedCheckpointError: with ``repair=False``, the recorded final checkpoint of the
            stage (or of a stage it is built from) is damaged.
    """
    from safetygeo.training import Trajectory
    from safetygeo.training.errors import DamagedCheckpointError

    root = cache_root(cache_dir)
    folder = root / f"{name}-s{seed}"
    for attempt in range(len(STAGES) + 2):
        try:
            ensure_toy((name,), seed=seed, cache_dir=cache_dir, recipe=recipe,
                       rebuild=rebuild and attempt == 0, progress=progress)
        except DamagedCheckpointError as exc:  # a finished stage's final checkpoint is damaged
            where = Path(str(exc.path)) if exc.path is not None else None
            stage = where.parent.name.rsplit("-s", 1)[0] if where is not None else None
            if (not repair or where is None or stage not in STAGES
                    or where.parent.resolve() != (root / f"{stage}-s{seed}").resolve()
                    or attempt > len(STAGES)):
                raise
            _repair(stage, str(exc), seed=seed, cache_dir=cache_dir, recipe=recipe,
                    progress=progress)
            continue
        traj = Trajectory.load(folder, warn=False)
        problem = _final_problem(traj, read_marker(folder))
        if problem is None:
            return Trajectory.load(folder) if traj.damaged else traj
        if not repair:
            raise DamagedCheckpointError(
                f"toy model {name!r} (seed {seed}) in {str(folder)!r}: {problem}; pass "
                "repair=True to re-create it (nothing is deleted)")
        _repair(name, problem, seed=seed, cache_dir=cache_dir, recipe=recipe, progress=progress)
    raise DamagedCheckpointError(f"toy model {name!r} in {str(folder)!r} could not be repaired")


def load_toy(name: str = "anchor", *, seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
             recipe: ToyRecipe = ToyRecipe(), rebuild: bool = False,
             progress: bool = False, repair: bool = True) -> ModelHandle:
    """The final checkpoint of toy stage ``name`` (``base``, ``anchor``, ``r2d2``,
    ``attacked``), built if absent; ``handle.extra["toy"]`` holds its ``toy.json``.

    The checkpoint loaded is exactly ``toy.json``'s ``final_step``, hash-checked; a damaged
    one is repaired (with a warning) or, with ``repair=False``, raises
    :class:`~safetygeo.training.errors.DamagedCheckpointError` — never an earlier step.
    """
    from safetygeo.training.errors import DamagedCheckpointError

    for attempt in range(2):
        traj = load_toy_trajectory(name, seed=seed, cache_dir=cache_dir, recipe=recipe,
                                   rebuild=rebuild and attempt == 0, progress=progress,
                                   repair=repair)
        info = read_marker(traj.path)
        step = info.get("final_step") if info else None
        try:
            handle = traj.load_checkpoint(step if isinstance(step, int) else None, dtype="float32")
        except DamagedCheckpointError as exc:  # bytes changed under the same size
            if not repair or attempt:
                raise
            _repair(name, str(exc), seed=seed, cache_dir=cache_dir, recipe=recipe,
                    progress=progress)
            continue
        handle.model_id = f"safetygeo-toy-{name}-s{seed}"
        handle.extra["toy"] = info
        return handle
    raise AssertionError("unreachable")  # pragma: no cover


def load_anchor(seed: int = 0, **kw: Any) -> ModelHandle:
    """The aligned toy anchor (see :func:`load_toy`)."""
    return load_toy("anchor", seed=seed, **kw)
