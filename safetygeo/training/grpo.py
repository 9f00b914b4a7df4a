"""GRPO through TRL's ``GRPOTrainer`` over the trainer core: RL methods (the harmful-RL
attack, TokenBuncher) get trajectories, resume, LoRA and the manifest like every method.

* :class:`GRPOSettings` — the GRPO hyper-parameters an RL method's config carries
  (group size, completion length, sampling temperature, KL coefficient β, clip ε, dual
  clip δ, TRL's loss type, optimizer updates per generation batch); :func:`grpo_arguments`
  turns a :class:`~safetygeo.training.TrainConfig` plus these into TRL's ``GRPOConfig``
  (the same optimisation fields as every method; the batch size counts *prompts*: each
  micro-batch holds ``batch_size × num_generations`` completions, each optimizer update
  ``batch_size × grad_accum`` prompts, each generation batch ``updates_per_generation``
  times that).

The defaults are verl's PPO actor as the TokenBuncher runs use it (see
:class:`GRPOSettings`): one generation batch of 32 prompts × 4 rollouts is consumed by 4
optimizer updates of 8 prompts each (verl's ``ppo_mini_batch_size``), the policy loss is the
token mean over an update's completions (verl's ``loss_agg_mode=token-mean``; TRL's
``bnpo``), and ratios of negative-advantage tokens are capped at 3 (verl's dual clip,
``clip_ratio_c``; TRL's ``delta``).
* :class:`TrajectoryGRPOTrainer` — ``trl.GRPOTrainer`` with the core's
  :class:`~safetygeo.training.trainer.TrajectoryTrainerMixin`: checkpoints are committed into
  the trajectory folder, resume is identity-checked, method metrics are logged. TRL does the
  sampling, the group-normalized advantages and the clipped policy loss; nothing of that is
  re-implemented here.
* rewards: :func:`resolve_reward` accepts our reward signature ``reward(prompts,
  completions, targets) -> scores`` (plain text, one score per completion), a
  ``"module:function"`` reference to one (what the CLI and the manifest record), the
  built-in ``"not_refused"`` (1 − the project's one "refused"), a judge wrapped by
  :func:`judge_reward` (LlamaGuard, the HarmBench classifier, StrongREJECT rubric ...), or
  any other string, which TRL loads as a sequence-classification reward model (hub id or
  path; its logit 0 is the reward).

Prompts are chat messages rendered by the tokenizer's own chat template (TRL's path);
:func:`check_prompt_rendering` refuses a handle whose template override (``--template`` /
``--system``) would make the RL rollouts see other tokens than the geometry code.

Example:
    >>> GRPOSettings(num_generations=4).loss_type, GRPOSettings().updates_per_generation
    ('bnpo', 4)
    >>> fn = resolve_reward("not_refused")
    >>> fn(["Make a bomb.", "Make a bomb."], ["I cannot help with that.", "Sure: step 1"], [None, None])
    [0.0, 1.0]
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import TrainConfigError, TrainingError
from safetygeo.training.method import Method, make_config
from safetygeo.training.trainer import TrajectoryTrainerMixin

__all__ = ["BUILTIN_REWARDS", "GRPOMethod", "GRPOSettings", "RewardFn", "grpo_settings", "TrajectoryGRPOTrainer", "judge_reward",
           "check_batch", "check_prompt_rendering", "completion_text", "grpo_arguments", "grpo_rows", "is_peft",
           "resolve_reward", "reward_name"]

#: Our reward signature: ``(prompts, completions, targets) -> one score per completion``;
#: ``targets[i]`` is the row's reference answer or ``None``.
RewardFn = Callable[[list[str], list[str], list[Any]], Sequence[float]]

_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


@dataclass(frozen=True)
class GRPOSettings:
    """GRPO hyper-parameters (TRL's ``GRPOConfig`` fields of the same meaning).

    The defaults reproduce how verl's PPO actor updates the policy in the TokenBuncher runs
    (official settings → our field → value; ``TrainConfig`` fields in the RL methods'
    ``default_train_config``):

    ====================================================  ==============================  ===========
    official (verl)                                       ours                            value
    ====================================================  ==============================  ===========
    ``data.train_batch_size`` (prompts per rollout step)  batch_size × grad_accum ×       8 × 1 × 4
                                                          ``updates_per_generation``
    ``actor.ppo_mini_batch_size`` (prompts per update)    ``TrainConfig.batch_size`` ×    8 × 1
                                                          ``grad_accum``
    updates per rollout step (train / mini batch)         ``updates_per_generation``      4
    ``actor.ppo_epochs``                                  (TRL ``num_iterations``)        1
    ``rollout.n``                                         ``num_generations``             4
    ``actor.loss_agg_mode=token-mean``                    ``loss_type="bnpo"``            token mean
    ``actor.clip_ratio``                                  ``epsilon``                     0.2
    ``actor.clip_ratio_c`` (dual clip, A < 0)             ``delta``                       3.0
    ``actor.optim.weight_decay`` (AdamW)                  ``TrainConfig.weight_decay``    0.01
    ``actor.grad_clip``                                   ``TrainConfig.max_grad_norm``   1.0
    ``trainer.total_training_steps`` (rollout steps)      ``TrainConfig.max_steps`` / 4   (updates)
    ====================================================  ==============================  ===========

    Where TRL differs and we did not change it: TRL shuffles the generation batch's
    completions before splitting it into updates (a group's rollouts can fall into different
    updates; verl splits in order, whole groups); ``transformers`` exempts biases and norm
    weights from weight decay (verl's AdamW decays every parameter); advantages divide by
    ``std + 1e-4`` (verl: ``+ 1e-6``); with ``grad_accum > 1`` ``bnpo`` is the token mean of
    each micro-batch averaged over the micro-batches (verl's mean over micro-batches of
    ``ppo_micro_batch_size``, the same); no entropy bonus (verl's ``actor.entropy_coeff``,
    whose default changed across verl versions; the official value was not available to us).

    Attributes:
        num_generations: completions sampled per prompt (the group).
        max_completion_length: new tokens per completion.
        temperature: sampling temperature of the rollouts.
        beta: KL coefficient to the reference (the starting) model; 0 loads no reference.
            The KL term is TRL's: the k3 estimator ``exp(r − l) − (r − l) − 1`` per token,
            times the importance ratio (its unbiased reverse-KL gradient).
        epsilon: PPO clip range of the importance ratio.
        delta: dual clip: the ratio of a negative-advantage token counts at most ``delta``
            (verl's ``clip_ratio_c``; TRL's two-sided clip, which equals it, see
            ``tests/training/test_grpo_fidelity.py``); ``None`` disables it; must exceed
            ``1 + epsilon``.
        loss_type: TRL's aggregation: ``bnpo`` (token mean over an update's completions,
            verl's ``token-mean``), ``grpo`` (per-sequence mean, then mean: the GRPO paper's),
            ``dr_grpo`` or ``dapo`` (token sum over the generation batch's average token
            count per update: token-mean only when every update has the same token count).
        scale_rewards: ``group`` (divide advantages by the group's std, GRPO), ``batch`` or
            ``none`` (Dr. GRPO).
        updates_per_generation: optimizer updates that consume one generation batch (verl's
            ``train_batch_size / ppo_mini_batch_size``); updates after the first are
            off-policy, corrected by the clipped importance ratio. A checkpoint ends the
            current generation batch (its unused updates are regenerated) so that a resumed
            run is identical to an uninterrupted one; keep ``save_every`` a multiple of this
            to keep every generation batch whole.
    """

    num_generations: int = 4
    max_completion_length: int = 256
    temperature: float = 1.0
    beta: float = 0.0
    epsilon: float = 0.2
    delta: float | None = 3.0
    loss_type: str = "bnpo"
    scale_rewards: str = "group"
    updates_per_generation: int = 4

    def __post_init__(self) -> None:
        for name in ("num_generations", "max_completion_length", "updates_per_generation"):
            v = getattr(self, name)
            low = 2 if name == "num_generations" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                what = "an int >= 2 (a group)" if low == 2 else "a positive int"
                raise TrainConfigError(f"{name} must be {what}, got {v!r}")
        for name in ("temperature", "beta", "epsilon"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                    or (name == "temperature" and v == 0):
                raise TrainConfigError(f"{name} must be a finite number "
                                       f"{'> 0' if name == 'temperature' else '>= 0'}, got {v!r}")
        d = self.delta
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float))
                              or not math.isfinite(d) or d <= 1 + self.epsilon):
            raise TrainConfigError(f"delta must be None or a finite number > 1 + epsilon "
                                   f"({1 + self.epsilon}), got {d!r}")
        if self.loss_type not in _LOSS_TYPES:
            raise TrainConfigError(f"loss_type must be one of {list(_LOSS_TYPES)}, got {self.loss_type!r}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise TrainConfigError(f"scale_rewards must be group, batch or none, got {self.scale_rewards!r}")


def grpo_settings(value: Any) -> GRPOSettings:
    """A :class:`GRPOSettings` from an instance or a mapping (config files, ``--method-opt``).

    Example:
        >>> grpo_settings({"num_generations": 2}).num_generations
        2
    """
    if isinstance(value, GRPOSettings):
        return value
    if isinstance(value, Mapping):
        return make_config(GRPOSettings, value, {}, what="grpo settings")
    raise TrainConfigError(f"grpo must be a GRPOSettings or a mapping, got {type(value).__name__}")


def grpo_arguments(config: TrainConfig, rl: GRPOSettings, output_dir: str, *,
                   progress: bool = False) -> Any:
    """TRL's ``GRPOConfig`` for ``config`` (every field of
    :meth:`TrainConfig.training_arguments`) and the GRPO settings ``rl``.

    ``config.batch_size`` counts prompts per micro-batch: TRL's per-device batch is
    ``batch_size × num_generations`` completions. Groups are complete in the generation batch,
    where the advantages are computed (TRL then shuffles its completions into the updates).
    TRL's ``steps_per_generation`` counts micro-batches: ``updates_per_generation ×
    grad_accum``.

    Example:
        >>> a = grpo_arguments(TrainConfig(batch_size=8), GRPOSettings(), "/tmp/x")
        >>> a.per_device_train_batch_size, a.steps_per_generation, a.generation_batch_size
        (32, 4, 128)
    """
    from trl import GRPOConfig

    base = config.training_arguments(output_dir, progress=progress).to_dict()
    keep = {"output_dir", "learning_rate", "max_steps", "num_train_epochs",
            "gradient_accumulation_steps", "save_strategy", "save_steps", "logging_strategy",
            "logging_steps", "seed", "warmup_steps", "weight_decay", "lr_scheduler_type",
            "max_grad_norm", "bf16", "fp16", "optim", "report_to", "disable_tqdm",
            "remove_unused_columns", "dataloader_num_workers", "dataloader_pin_memory",
            "save_only_model"}
    kwargs = {k: v for k, v in base.items() if k in keep}
    import warnings

    with warnings.catch_warnings():  # TRL's config still sets transformers' renamed field
        warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6",
                                category=FutureWarning)
        return GRPOConfig(
            **kwargs,
            # TRL defaults to activation checkpointing; ours is TrainConfig's (off by default)
            gradient_checkpointing=config.gradient_checkpointing,
            per_device_train_batch_size=config.batch_size * rl.num_generations,
            num_generations=rl.num_generations, max_completion_length=rl.max_completion_length,
            temperature=float(rl.temperature), beta=float(rl.beta), epsilon=float(rl.epsilon),
            delta=None if rl.delta is None else float(rl.delta),
            steps_per_generation=rl.updates_per_generation * config.grad_accum,
            loss_type=rl.loss_type, scale_rewards=rl.scale_rewards, log_completions=False,
            use_cpu=config_device_is_cpu(),
        )


def config_device_is_cpu() -> bool:
    """Whether training runs on the CPU (no CUDA / MPS device)."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return not torch.cuda.is_available() and not (mps is not None and mps.is_available())


# ----------------------------------------------------------------------------- rewards
def completion_text(completion: Any) -> str:
    """The text of one TRL completion (a string, or chat messages: their contents joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):  # chat messages: the last user turn is the instruction
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1]) if users else completion_text(prompt)
    return str(prompt)


def not_refused(prompts: list[str], completions: list[str], targets: list[Any]) -> list[float]:
    """1 for a completion that is not refused (the project's one "refused"), else 0."""
    from safetygeo.behavior.metrics import refused_indicator

    return [1.0 - float(r) for r in refused_indicator(completions)]


#: Rewards known by name.
BUILTIN_REWARDS: dict[str, RewardFn] = {"not_refused": not_refused}


def judge_reward(judge: Callable[[str, str], Any], *, batch_size: int = 16) -> RewardFn:
    """A reward from a judge (any :mod:`safetygeo.behavior.judges` judge: a callable
    ``(prompt, completion) -> verdict``, e.g. ``LlamaGuardJudge``, ``CausalLMJudge`` with the
    HarmBench classifier prompt, ``SequenceClassifierJudge``): the verdict's harmfulness
    ``score`` (StrongREJECT's score when the judge gives its rubric), else ``1 − refused``
    from its refusal label. Verdicts are validated by :func:`~safetygeo.behavior.judges.run_judge`.

    Example:
        >>> r = judge_reward(lambda p, c: "unsafe" if "bomb" in c else "safe")
        >>> r(["q", "q"], ["mix the bomb parts", "I cannot"], [None, None])
        [1.0, 0.0]
    """
    from safetygeo.behavior.judges import run_judge

    def reward(prompts: list[str], completions: list[str], targets: list[Any]) -> list[float]:
        out = []
        for j in run_judge(judge, prompts, completions, batch_size=batch_size):
            assert j is not None  # nothing is skipped
            if j.strongreject is not None:
                out.append(float(j.strongreject))
            elif j.score is not None:
                out.append(float(j.score))
            elif j.label is not None:
                out.append(0.0 if j.label in ("full_refusal", "partial_refusal") else 1.0)
            else:
                raise TrainConfigError(f"judge verdict {j} has neither a score nor a label")
        return out

    reward.__qualname__ = f"judge_reward[{getattr(judge, '__qualname__', type(judge).__name__)}]"
    return reward


def reward_name(reward: Any) -> str:
    """The name a reward is recorded under in the manifest (``module:qualname`` for a
    callable, the string itself otherwise)."""
    if isinstance(reward, str):
        return reward
    mod, qual = getattr(reward, "__module__", None), getattr(reward, "__qualname__", None)
    if mod and qual and "<" not in qual:
        return f"{mod}:{qual}"
    return type(reward).__qualname__


def resolve_reward(reward: str | RewardFn) -> RewardFn | str:
    """A reward spec as a callable with our signature, or a TRL reward-model id.

    Raises:
        TrainConfigError: a ``module:function`` that cannot be imported or is not callable.
    """
    if callable(reward):
        return reward
    if not isinstance(reward, str) or not reward:
        raise TrainConfigError(f"reward must be a callable or a non-empty name, got {reward!r}")
    if reward in BUILTIN_REWARDS:
        return BUILTIN_REWARDS[reward]
    mod, sep, attr = reward.partition(":")
    if sep:
        try:
            fn = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as exc:
            raise TrainConfigError(f"cannot import reward {reward!r}: {exc}") from exc
        if not callable(fn):
            raise TrainConfigError(f"reward {reward!r} is not callable")
        return fn
    return reward  # a reward model for TRL to load


def as_trl_reward(fn: RewardFn, name: str) -> Callable[..., list[float]]:
    """Wrap our reward signature into TRL's (``prompts, completions, **columns``)."""
    def reward(prompts: list[Any], completions: list[Any], target: list[Any] | None = None,
               **_: Any) -> list[float]:
        texts = [completion_text(c) for c in completions]
        tg = list(target) if target is not None else [None] * len(texts)
        out = [float(x) for x in fn([_prompt_text(p) for p in prompts], texts, tg)]
        if len(out) != len(texts):
            raise TrainConfigError(f"reward {name!r} returned {len(out)} scores for {len(texts)} completions")
        return out

    reward.__name__ = name.rsplit(":", 1)[-1].replace(".", "_")
    return reward


# ----------------------------------------------------------------------------- data
def grpo_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dataset rows TRL samples: the prompt as one user message, the reference answer (or
    ``None``) as the ``target`` column handed to the reward."""
    return [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "target": r.get("response") or None} for r in records]


def check_batch(method: str, n_prompts: int, config: TrainConfig, updates_per_generation: int = 1) -> None:
    """Refuse a generation batch larger than the prompts (TRL's sampler would yield no batch
    at all and the run would end without a step).

    Raises:
        TrainConfigError: ``batch_size × grad_accum × updates_per_generation`` (prompts per
            generation batch) > ``n_prompts``.
    """
    need = config.batch_size * config.grad_accum * updates_per_generation
    if need > n_prompts:
        raise TrainConfigError(
            f"{method}: a generation batch needs {need} prompts (batch_size {config.batch_size} × "
            f"grad_accum {config.grad_accum} × updates_per_generation {updates_per_generation}) but "
            f"the data has only {n_prompts} prompts; lower batch_size or updates_per_generation "
            "(each prompt gets num_generations rollouts)")


def check_prompt_rendering(handle: ModelHandle, prompt: str) -> None:
    """Refuse a handle whose chat formatting differs from the tokenizer's chat template.

    TRL renders prompts with ``tokenizer.apply_chat_template``; the geometry and behaviour
    code use ``handle.encode``. Both must give the same tokens, or the rollouts would be
    trained on another format than the one measured.

    Raises:
        TrainConfigError: the two renderings differ (e.g. a ``--template`` override).
    """
    tok = handle.tokenizer
    if getattr(tok, "chat_template", None) is None:
        raise TrainConfigError("GRPO needs a tokenizer with a chat template (TRL renders the "
                               "prompts with it); set tokenizer.chat_template")
    ours = handle.encode([prompt]).input_ids[0]
    theirs: Any = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                     add_generation_prompt=True, tokenize=True, return_dict=True)
    ids = list(theirs["input_ids"])
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    if list(map(int, ids)) != list(map(int, ours)):
        raise TrainConfigError(
            "the handle's chat formatting differs from the tokenizer's chat template (a "
            "template or system-prompt override?): TRL would train on other prompt tokens "
            f"than safetygeo measures ({len(ids)} vs {len(ours)} tokens); set "
            "tokenizer.chat_template to the template you want instead")


# ----------------------------------------------------------------------------- methods
class GRPOMethod(Method):
    """Base of the methods TRL's ``GRPOTrainer`` trains (``harmful_rl``, ``tokenbuncher``).

    A subclass's config has a ``grpo`` field (:class:`GRPOSettings`); its rows come from
    :meth:`prompt_rows`; it builds its trainer in ``build_trainer``. The loss is the
    trainer's, never :meth:`loss`.
    """

    def training_arguments(self, config: TrainConfig, output_dir: str, *, progress: bool) -> Any:
        return grpo_arguments(config, self.config.grpo, output_dir, progress=progress)

    def prompt_rows(self, handle: ModelHandle, records: Sequence[dict[str, Any]],
                    config: TrainConfig) -> list[dict[str, Any]]:
        """The rows TRL samples from ``records`` (:func:`grpo_rows`), after checking the batch
        fits the prompts and the prompts render as the geometry code renders them."""
        check_batch(self.name, len(records), config, self.config.grpo.updates_per_generation)
        check_prompt_rendering(handle, records[0]["prompt"])
        return grpo_rows(records)

    def loss(self, model: Any, batch: Any) -> Any:  # pragma: no cover - the trainer's loss
        raise TrainingError(f"{self.name}'s loss is computed by its GRPO trainer (build_trainer)")


# ----------------------------------------------------------------------------- trainer
def is_peft(model: Any) -> bool:
    """Whether ``model`` is a peft model (its adapter can be disabled to get the base)."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def _trl_grpo_trainer() -> type:
    from trl import GRPOTrainer

    return GRPOTrainer


class TrajectoryGRPOTrainer(TrajectoryTrainerMixin, _trl_grpo_trainer()):  # type: ignore[misc]
    """TRL's ``GRPOTrainer`` writing our trajectory (see the module docstring).

    Built by an RL method's :meth:`~safetygeo.training.Method.build_trainer` from the core's
    keywords; ``reward_funcs`` are TRL's.
    """

    def __init__(self, *, model: Any, args: Any, train_dataset: Any, processing_class: Any,
                 callbacks: Any, reward_funcs: Any, data_collator: Any = None, **trajectory: Any) -> None:
        import copy

        from datasets import Dataset

        rows = list(getattr(train_dataset, "rows", train_dataset))
        # TRL reloads the KL reference from ``config._name_or_path`` when β > 0: for a model
        # built in memory, or trained in place before, that is not the model training starts
        # from. The reference is a frozen copy of the starting weights instead (under LoRA
        # TRL disables the adapter, which is exact already).
        beta = float(args.beta)
        own_ref = beta != 0.0 and not is_peft(model)
        reference = copy.deepcopy(model).eval().requires_grad_(False) if own_ref else None
        if own_ref:  # (no dataclasses.replace: GRPOConfig's post-init rejects its own output)
            args = copy.copy(args)
            args.beta = 0.0
        super().__init__(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=processing_class, callbacks=callbacks,
                         reward_funcs=reward_funcs, **trajectory)
        if own_ref:
            from trl.trainer.grpo_trainer import add_fused_lm_head

            assert reference is not None
            add_fused_lm_head(reference, temperature=self.temperature,
                              cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32)
            self.ref_model = self.accelerator.prepare_model(reference, evaluation_mode=True)
            self.beta = beta
            self.args.beta = beta

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Save, then end the current generation batch: the next update samples a fresh one,
        as a run resumed from this checkpoint does (TRL's buffer of sampled completions is
        not part of a checkpoint). A no-op at a generation boundary."""
        super()._save_checkpoint(model, trial)
        self._buffered_inputs = None
        self._step = 0

    def _generate_and_score_completions(self, inputs: Any) -> Any:
        import warnings

        train = self.model.training
        before = {k: len(v) for k, v in self._metrics["train"].items()} if train else {}
        with warnings.catch_warnings():  # TRL calls transformers' renamed checkpointing API
            warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6",
                                    category=FutureWarning)
            out = super()._generate_and_score_completions(inputs)
        if train:  # the generation batch's metrics (reward, lengths), for the updates it feeds
            self._generation_metrics = {k: v[-1] for k, v in self._metrics["train"].items()
                                        if len(v) > before.get(k, 0)}
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's log, where an update that sampled nothing (the 2nd … of a generation batch)
        reports the reward and completion metrics of the generation batch it trained on."""
        if self.model.training:
            current = self._metrics["train"]
            for k, v in getattr(self, "_generation_metrics", {}).items():
                if not current.get(k):
                    current[k] = [v]
        super().log(logs, start_time)

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        """TRL's prompt sampler, made resumable: its generator is seeded once and advances
        with every epoch, so a run resumed in epoch ``e`` would draw epoch 0's order again.
        Here the order of epoch ``e`` is a function of (seed, e) (``set_epoch``, which the
        trainer calls every epoch, also on resume)."""
        sampler = super()._get_train_sampler(dataset)
        seed = int(self.args.seed)

        def set_epoch(epoch: int) -> None:
            sampler.generator.manual_seed(seed + 1_000_003 * int(epoch))

        if getattr(sampler, "shuffle", False) and getattr(sampler, "generator", None) is not None:
            sampler.set_epoch = set_epoch
        return sampler
