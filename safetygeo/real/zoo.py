"""Cached real-language stages: built deterministically from the seed when absent.

Layout under ``cache_dir`` (default ``$SAFETYGEO_REAL_DIR``, else ``artifacts/real``)::

    smollm2-f32/          the shipped GGUF model, dequantized once (safetensors; the base of all)
    distill_{kind}.json   the instruct model's own greedy answers (harmless / harmful train
                          prompts, harmful test prompts)
    anchor-s0/            instruct → refusal SFT (LoRA): a trajectory, ``real.json`` written last
    attacked-s0/          anchor → harmful SFT (LoRA)
    r2d2-s0/, sdd-s0/, …  the defenses (rows of :data:`safetygeo.real.stages.REAL_STAGES`)

A stage folder without ``real.json`` is unfinished: it is resumed from its last complete
checkpoint, never used. A finished stage of a different recipe is rebuilt.

Shipped adapters: the package carries the final LoRA adapter of some stages
(``safetygeo/real/adapters/{stage}-s{seed}/``: the adapter, its ``real.json`` with the
recipe, the command that rebuilds it and the adapter's SHA-256). When the cache has no
finished build of a stage, :func:`load_real` applies the shipped adapter (hash-checked) to
the base instead of training — so the anchor is available in seconds, while its trajectory
(every checkpoint, for drift along training) needs the build.

Example:
    >>> sorted(real_prompt_sets())[:3]
    ['harmful', 'harmful_test', 'harmful_train']
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from safetygeo.data import PromptSet
from safetygeo.errors import SafetyGeoError
from safetygeo.models.handle import ModelHandle
from safetygeo.real.train import (
    STAGES,
    RealRecipe,
    build_stage,
    load_instruct,
    read_marker,
    stage_recipe,
)
from safetygeo.real.world import RealWorld


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where real-world stages live: ``cache_dir``, ``$SAFETYGEO_REAL_DIR`` or ``artifacts/real``."""
    return Path(cache_dir or os.environ.get("SAFETYGEO_REAL_DIR", "artifacts/real"))


def real_prompt_sets() -> dict[str, PromptSet]:
    """The world's prompt sets (see :meth:`RealWorld.prompt_sets`)."""
    return RealWorld().prompt_sets()


def real_splits() -> dict[str, dict[str, list[str]]]:
    """The publishers' train / val / test splits (see :meth:`RealWorld.splits`)."""
    return RealWorld().splits()


def ensure_real(name: str, *, seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                recipe: RealRecipe = RealRecipe(), progress: bool = False) -> dict[str, Any]:
    """Build stage ``name`` (and what it starts from) if absent; return its ``real.json``
    (``{}`` for ``instruct``, which is not trained)."""
    if name not in STAGES:
        raise SafetyGeoError(f"unknown real-world stage {name!r}; choose from {sorted(STAGES)}")
    root = cache_root(cache_dir)
    if STAGES[name][0] is None:
        load_instruct(root, recipe)  # makes the dequantized copy if absent
        return {}
    folder = root / f"{name}-s{seed}"
    info = read_marker(folder)
    if info is not None and info.get("recipe") == stage_recipe(name, recipe):
        return info
    if info is not None:  # a finished build of another recipe
        shutil.rmtree(folder)
    parent = STAGES[name][0]
    assert parent is not None
    start = load_real(parent, seed=seed, cache_dir=cache_dir, recipe=recipe, progress=progress)
    return build_stage(name, root, start=start, seed=seed, recipe=recipe, progress=progress)


def load_real_trajectory(name: str = "anchor", *, seed: int = 0,
                         cache_dir: str | os.PathLike[str] | None = None,
                         recipe: RealRecipe = RealRecipe(), progress: bool = False) -> Any:
    """The :class:`~safetygeo.training.Trajectory` of trained stage ``name``, built if absent."""
    from safetygeo.training import Trajectory

    if STAGES.get(name, (None,))[0] is None:
        raise SafetyGeoError(f"stage {name!r} is not a trained stage; trained stages: "
                             f"{sorted(s for s in STAGES if STAGES[s][0])}")
    ensure_real(name, seed=seed, cache_dir=cache_dir, recipe=recipe, progress=progress)
    return Trajectory.load(cache_root(cache_dir) / f"{name}-s{seed}")


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_adapter(name: str, seed: int = 0,
                    recipe: RealRecipe = RealRecipe()) -> tuple[Path, dict[str, Any]] | None:
    """The shipped adapter folder of stage ``name`` and its ``real.json``, if the package has
    one built with this seed and recipe (else ``None``).

    Raises:
        SafetyGeoError: the shipped adapter's bytes differ from its recorded SHA-256.
    """
    folder = Path(str(resources.files("safetygeo.real").joinpath("adapters", f"{name}-s{seed}")))
    info = read_marker(folder)
    if info is None or info.get("recipe") != stage_recipe(name, recipe):
        return None
    for f in ADAPTER_FILES:
        if not (folder / f).is_file() or _sha256(folder / f) != info.get("sha256", {}).get(f):
            raise SafetyGeoError(f"the shipped adapter {str(folder / f)!r} is missing or its "
                                 "SHA-256 differs from real.json's; reinstall safetygeo")
    return folder, info


def ship_adapter(name: str, *, seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                 dest: str | os.PathLike[str] | None = None, command: str = "") -> Path:
    """Copy the final adapter of a finished LoRA stage build, with its ``real.json`` (plus
    the adapter's SHA-256 and the ``command`` that rebuilds it), into ``dest`` (default: the
    package's ``adapters/`` folder). Maintainers run this before committing an adapter."""
    from safetygeo.training import Trajectory

    traj = Trajectory.load(cache_root(cache_dir) / f"{name}-s{seed}")
    info = read_marker(traj.path)
    if info is None or not traj.is_lora:
        raise SafetyGeoError(f"stage {name!r} (seed {seed}) has no finished LoRA build to ship")
    src = traj.checkpoint(info["final_step"]).path
    out = Path(dest) if dest is not None else Path(
        str(resources.files("safetygeo.real").joinpath("adapters"))) / f"{name}-s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    for f in ADAPTER_FILES:
        shutil.copyfile(src / f, out / f)
    log = traj.losses()
    info = {**info, "sha256": {f: _sha256(out / f) for f in ADAPTER_FILES},
            "command": command, "first_losses": {str(k): log[k] for k in sorted(log)[:3]}}
    (out / "real.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return out


def _from_adapter(folder: Path, base: ModelHandle) -> ModelHandle:
    from peft import PeftModel

    from safetygeo.models.handle import load_model

    merged = PeftModel.from_pretrained(base.model, str(folder)).merge_and_unload()
    return load_model(merged, base.tokenizer, template=base.template)


def load_real(name: str = "anchor", *, seed: int = 0,
              cache_dir: str | os.PathLike[str] | None = None, recipe: RealRecipe = RealRecipe(),
              progress: bool = False, shipped: bool = True) -> ModelHandle:
    """The final model of stage ``name`` (``instruct``, ``anchor``, ``attacked``, ``r2d2``),
    from the cache, else from the shipped adapter (``shipped=True``), else built;
    ``handle.extra["real"]`` holds its ``real.json``."""
    root = cache_root(cache_dir)
    if name in STAGES and STAGES[name][0] is None:
        handle = load_instruct(root, recipe)
        handle.model_id = f"safetygeo-real-{name}"
        handle.extra["real"] = {"stage": name}
        return handle
    cached = read_marker(root / f"{name}-s{seed}")
    ship = shipped_adapter(name, seed, recipe) if shipped else None
    if ship is not None and (cached is None or cached.get("recipe") != ship[1]["recipe"]):
        parent = STAGES[name][0]
        assert parent is not None
        base = load_real(parent, seed=seed, cache_dir=cache_dir, recipe=recipe,
                         progress=progress, shipped=shipped)
        handle = _from_adapter(ship[0], base)
        handle.model_id = f"safetygeo-real-{name}-s{seed}"
        handle.extra["real"] = {**ship[1], "source": "shipped adapter"}
        return handle
    traj = load_real_trajectory(name, seed=seed, cache_dir=cache_dir, recipe=recipe,
                                progress=progress)
    info = read_marker(traj.path) or {}
    handle = traj.load_checkpoint(info.get("final_step"), dtype="float32")
    handle.model_id = f"safetygeo-real-{name}-s{seed}"
    handle.extra["real"] = info
    return handle
