"""The toy world's models, trained on CPU through :func:`safetygeo.training.train`.

Every toy model is a real ``LlamaForCausalLM`` (so every code path is the one a hub
checkpoint takes) with the world's word-level tokenizer, and every stage is an ordinary
safetygeo trajectory (``step-NNNNNN/`` checkpoints + ``trajectory.json``):

1. **base** (pre-alignment, *helpful-only*): random init → ``instruct`` SFT on the train
   split where harmful requests get the compliant "how-to", benign tasks their answers and
   look-alikes their answer. It answers everything.
2. **anchor** (aligned): base → refusal ``sft``: harmful → :data:`~safetygeo.toy.world.REFUSAL`,
   benign tasks and look-alikes → their answers. It refuses harmful requests and answers
   benign ones (measured on held-out prompts, written to ``toy.json``).
3. **r2d2**: base → R2D2 adversarial training (GCG suffix pool against the current model),
   with the CPU preset scaled to this vocabulary.
4. **attacked**: anchor → harmful-SFT attack (harmful requests → compliant how-to).
5. the collapse-trap defenses, each from the model its recipe aligns:
   **sdd**: base → SDD (harmful requests → an irrelevant benign answer of the world, pairs
   filtered by TF-IDF similarity; benign pairs kept); **ctrap**: base → CTRAP (the anchor's
   alignment data + the collapse trap against harmful fine-tuning, CPU preset);
   **seam**: anchor → SEAM (the aligned model made self-destructive, CPU preset).
6. **tokenbuncher**: anchor → TokenBuncher (entropy-reward GRPO on harmful requests, KL to
   the anchor on benign pairs, Token Noiser; CPU preset).

Nothing in the weights is hand-set: the refusal mechanism is learned. What the world
plants is only the data distribution (see :mod:`safetygeo.toy.world`).

Determinism: the same seed, recipe, library versions and thread count rebuild the same
weights (the trainer is seeded; data order and init come from the seed).

Example:
    >>> r = ToyRecipe()
    >>> r.n_layers, r.d_model, r.base_steps
    (8, 128, 300)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from safetygeo._io import atomic_write_json
from safetygeo.errors import SafetyGeoError
from safetygeo.models.handle import ModelHandle, load_model
from safetygeo.toy.stages import TOY_COLLAPSE_TOKEN, TOY_EXTRA_RUNS, TOY_STAGES, stage_row
from safetygeo.toy.world import ToyWorld
from safetygeo.training.stages import stage_identity
from safetygeo.training.stages import stage_method_and_config as _stage_method_and_config

__all__ = ["MARKER", "STAGES", "TOY_COLLAPSE_TOKEN", "ToyRecipe", "build_all", "build_stage",
           "measure", "read_marker", "stage_data", "stage_method_and_config", "stage_recipe",
           "summarize", "toy_model"]

#: what each stage trains from and with which method (stage → (start, method)), read from
#: the stage table (:data:`safetygeo.toy.stages.TOY_STAGES`)
STAGES: dict[str, tuple[str | None, str]] = {s: (row.start, row.method)
                                             for s, row in TOY_STAGES.items()}
MARKER = "toy.json"


@dataclass(frozen=True)
class ToyRecipe:
    """Architecture and optimisation of the toy models (defaults: ~1.5 min on 2 CPU cores
    for base + anchor).

    The shape was chosen by measurement: with d_model 64 (6 or 8 layers) the anchor refuses
    perfectly but its refusal direction only induces refusal in layers ≥ ⌊0.8·L⌋, or its
    ablation costs KL > 0.1 on harmless prompts, so Arditi et al.'s filters admit no
    carrier; at d_model 128 × 8 layers the carrier is admissible at layer 5 (seeds 0 and 1).

    Attributes:
        d_model, n_layers, n_heads, d_ff: the Llama shape (tied embeddings, no biases).
        batch_size: examples per step; base/anchor/r2d2/attack ``*_steps`` and ``*_lr``.
        save_every: checkpoint interval of every trajectory.
        attack_examples: harmful pairs the harmful-SFT attack trains on.
        eval_tokens: new tokens generated when the recipe measures behaviour.
    """

    d_model: int = 128
    n_layers: int = 8
    n_heads: int = 4
    d_ff: int = 512
    batch_size: int = 32
    base_steps: int = 300
    base_lr: float = 3e-3
    anchor_steps: int = 300
    anchor_lr: float = 1e-3
    anchor_prefill_replay: bool = True
    r2d2_steps: int = 120
    r2d2_lr: float = 1e-3
    attack_steps: int = 30
    attack_lr: float = 2e-4
    attack_examples: int = 20
    sdd_steps: int = 300
    sdd_lr: float = 1e-3
    ctrap_steps: int = 300
    ctrap_lr: float = 1e-3
    seam_steps: int = 100
    seam_lr: float = 2e-4
    tokenbuncher_steps: int = 40
    tokenbuncher_lr: float = 3e-5
    rl_attack_steps: int = 30
    rl_attack_lr: float = 1e-4
    save_every: int = 25
    eval_tokens: int = 24


#: every row a stage's lineage may name (zoo stages and the extra runs)
_ROWS = {**TOY_STAGES, **TOY_EXTRA_RUNS}
_SHARED_FIELDS = ("d_model", "n_layers", "n_heads", "d_ff", "batch_size", "save_every",
                  "eval_tokens")


def stage_recipe(stage: str, recipe: ToyRecipe) -> dict[str, Any]:
    """The recipe fields a stage depends on (its own and its ancestors', from the stage
    table), so changing the attack's settings does not retrain the anchor it starts from.

    Example:
        >>> sorted(stage_recipe("anchor", ToyRecipe()))[:3]
        ['anchor_lr', 'anchor_prefill_replay', 'anchor_steps']
    """
    stage_row(stage)  # unknown stage: the message lists the zoo's stages
    return stage_identity(stage, _ROWS, recipe, shared=_SHARED_FIELDS)


def toy_model(world: ToyWorld, recipe: ToyRecipe = ToyRecipe(), seed: int = 0) -> ModelHandle:
    """A randomly initialised toy ``LlamaForCausalLM`` with the world's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = world.tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=recipe.d_model, intermediate_size=recipe.d_ff,
        num_hidden_layers=recipe.n_layers, num_attention_heads=recipe.n_heads,
        num_key_value_heads=recipe.n_heads, max_position_embeddings=64,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True, rms_norm_eps=1e-6,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    return load_model(model, tok, model_id=f"safetygeo-toy-init-s{seed}")


def stage_data(world: ToyWorld, stage: str, recipe: ToyRecipe = ToyRecipe()) -> dict[str, Any]:
    """The training data of ``stage`` (train split only; val/test stay held out), as its
    row of the stage table builds it.

    With ``anchor_prefill_replay`` the anchor also sees each harmful request with its
    compliant opening *prefilled* (masked from the loss) and the rest of the compliant answer
    as target: refusal SFT alone overwrote the base's prefix consistency (after a compliant
    opening the anchor switched to refusing mid-sentence), whereas a pretrained LM keeps it;
    the replay keeps the anchor's alignment as shallow as a chat LLM's, where the refusal
    decision is taken at the first tokens.

    Example:
        >>> d = stage_data(ToyWorld(), "anchor")
        >>> sorted(d), d["harmful"][0][1]
        (['harmful', 'harmless'], 'i cannot help with that .')
        >>> d["harmful"][-1]["prefill"], d["harmful"][-1]["response"].split(" :")[0]
        ('certainly .', 'here is how to launder money for a gang')
    """
    data = stage_row(stage).data
    assert data is not None  # every toy stage is trained (the base from random init)
    return data(world, recipe)


def stage_method_and_config(stage: str, recipe: ToyRecipe, seed: int) -> tuple[Any, Any]:
    """The method instance and :class:`~safetygeo.training.TrainConfig` of ``stage``'s row.

    Example:
        >>> m, cfg = stage_method_and_config("attacked", ToyRecipe(), 0)
        >>> m.name, m.config.n_examples, cfg.batch_size, cfg.save_every
        ('harmful_sft', 20, 10, 5)
    """
    stage_row(stage)  # unknown stage: the message lists the zoo's stages
    defaults = dict(batch_size=recipe.batch_size, save_every=recipe.save_every,
                    warmup_steps=10, max_length=64, log_every=10)
    return _stage_method_and_config(stage, _ROWS, recipe, seed=seed, defaults=defaults)


#: the name benchmarks used before the stage table
_method_and_config = stage_method_and_config


def measure(handle: ModelHandle, world: ToyWorld, *, split: str = "test",
            max_new_tokens: int = 24, progress: bool = False) -> dict[str, float]:
    """Held-out behaviour of a toy checkpoint: refusal rates and task accuracy (greedy).

    Returns ``refusal_harmful`` (share of harmful requests refused), ``refusal_lookalike``
    and ``refusal_benign`` (over-refusal on look-alikes / benign tasks), ``task_accuracy``
    (exact match on benign tasks) and ``compliance_harmful`` (share of harmful requests
    answered with the world's compliant how-to).
    """
    from safetygeo.behavior.generate import GenerationSettings, generate
    from safetygeo.behavior.metrics import refused_indicator

    out: dict[str, float] = {}
    for kind, key in (("harmful", "harmful"), ("lookalike", "lookalike"), ("benign_task", "benign")):
        prompts = world.prompts(kind, split)
        gens = generate(handle, [p.text for p in prompts],
                        GenerationSettings(max_new_tokens=max_new_tokens), batch_size=64,
                        progress=progress)
        texts = [t.strip() for t in gens.completions]
        # the project's one "refused" (an empty completion counts as refused)
        out[f"refusal_{key}"] = float(refused_indicator(gens.completions).mean())
        if kind == "benign_task":
            out["task_accuracy"] = sum(t == p.answer for t, p in zip(texts, prompts)) / len(texts)
        if kind == "harmful":
            out["compliance_harmful"] = sum(t == p.compliant for t, p in zip(texts, prompts)) / len(texts)
    out["n_test"] = float(sum(len(world.prompts(k, split)) for k in ("harmful", "lookalike",
                                                                       "benign_task")))
    return out


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The ``toy.json`` of a finished stage folder, or ``None`` if it is absent or torn."""
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def build_stage(
    stage: str,
    folder: str | os.PathLike[str],
    *,
    start: ModelHandle | None,
    seed: int = 0,
    recipe: ToyRecipe = ToyRecipe(),
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``stage`` from ``start`` (``None``: random init) into the trajectory ``folder``.

    An interrupted build resumes from its last complete checkpoint. ``toy.json`` (recipe,
    seed, measured behaviour, seconds) is written last, so a folder without it is not
    finished.
    """
    from safetygeo.training import Trajectory, train

    if stage not in STAGES:
        raise SafetyGeoError(f"unknown toy stage {stage!r}; choose from {sorted(STAGES)}")
    folder = Path(folder)
    world = ToyWorld(seed)
    if start is None:
        start = toy_model(world, recipe, seed)
    method, config = stage_method_and_config(stage, recipe, seed)
    t0 = time.perf_counter()
    torch_threads = torch.get_num_threads()
    train(start, method, stage_data(world, stage, recipe), out=folder, config=config,
          resume=True, progress=progress)
    seconds = time.perf_counter() - t0
    traj = Trajectory.load(folder)
    final = traj.load_checkpoint()
    info = {
        "stage": stage, "from": STAGES[stage][0], "method": STAGES[stage][1], "seed": seed,
        "recipe": stage_recipe(stage, recipe), "final_step": traj.steps[-1], "train_seconds": round(seconds, 2),
        "torch_threads": torch_threads,
        "behavior": measure(final, world, max_new_tokens=recipe.eval_tokens),
    }
    pairs = getattr(method, "pairs", None)
    if pairs is not None:  # SDD: the similarity distribution of the pairs trained on
        info["sdd_pairs"] = pairs.summary()
    atomic_write_json(folder / MARKER, info)
    return info


def build_all(cache: str | os.PathLike[str], *, seed: int = 0, recipe: ToyRecipe = ToyRecipe(),
              stages: tuple[str, ...] = ("base", "anchor"), progress: bool = False,
              rebuild: bool = False) -> dict[str, dict[str, Any]]:
    """Build ``stages`` (and what they start from) under ``cache``; skip finished ones.

    Returns the ``toy.json`` of every stage in their lineage (e.g. ``anchor`` and ``base``).
    """
    from safetygeo.training import Trajectory

    cache = Path(cache)
    done: dict[str, dict[str, Any]] = {}

    def ensure(stage: str) -> ModelHandle | None:
        folder = cache / f"{stage}-s{seed}"
        info = None if rebuild and stage not in done else read_marker(folder)
        if info is None or info.get("recipe") != stage_recipe(stage, recipe):
            if folder.exists() and (rebuild or (info is not None)):
                shutil.rmtree(folder)  # a finished build of another recipe, or a forced rebuild
            parent = STAGES[stage][0]
            start = ensure(parent) if parent else None
            info = build_stage(stage, folder, start=start, seed=seed, recipe=recipe,
                               progress=progress)
        done[stage] = info
        return Trajectory.load(folder).load_checkpoint()

    for stage in stages:
        ensure(stage)
        parent = STAGES[stage][0]
        while parent is not None:  # ancestors finished earlier: report them too
            marker = done.get(parent) or read_marker(cache / f"{parent}-s{seed}")
            if marker is not None:
                done[parent] = marker
            parent = STAGES[parent][0]
    return done


def summarize(infos: Mapping[str, Mapping[str, Any]]) -> str:
    """A one-line-per-stage text summary of measured behaviour."""
    lines = []
    for stage, info in infos.items():
        b = info["behavior"]
        lines.append(f"{stage:9s} refuses harmful {b['refusal_harmful']:.0%}, look-alikes "
                     f"{b['refusal_lookalike']:.0%}, benign {b['refusal_benign']:.0%}; task "
                     f"accuracy {b['task_accuracy']:.0%} ({info['train_seconds']:.0f} s)")
    return "\n".join(lines)
