"""TokenBuncher (Feng et al. 2025, "Shielding LLMs from Harmful Reinforcement Learning
Fine-Tuning"): make harmful RL starve by taking away the entropy it needs.

Harmful RL learns only from variance among a group's rollouts. TokenBuncher trains the
model so that its responses to harmful requests have low entropy (nearly deterministic
rollouts → near-zero advantages for an attacker), while benign behaviour stays close to the
reference model. Per micro-batch the loss is

    L = L_GRPO(reward = −mean token entropy of the response; harmful prompts)
        + β_benign · KL(π_θ ‖ π_ref) on benign (prompt, response) pairs
        + λ · TokenNoiser(own rollouts with advantage ≥ 0)     (after ``noiser_warmup`` steps)

* **GRPO with the entropy reward**: TRL's ``GRPOTrainer`` (:mod:`safetygeo.training.grpo`)
  samples ``num_generations`` rollouts per harmful prompt; each rollout's reward is minus
  the mean entropy of the next-token distributions it was sampled from, read with the
  project's one entropy definition (:func:`~safetygeo.behavior.entropy.ids_token_entropies`)
  on the rollout policy.
* **benign KL**: the full-vocabulary KL of the current model from the reference (the model
  training started from: a frozen copy, or the adapter-free base under LoRA) at every
  response position of a benign pair (teacher-forced), token mean.
* **Token Noiser** (:func:`~safetygeo.training.losses.token_noiser_loss`): on the harmful
  rollouts whose advantage is ≥ 0 (the lower-entropy ones), ``(1−ε)·NLL + ε·Σ z̃·(−log p)``
  with fresh uniform noise ``z̃`` over the non-target tokens — the official code's
  self-distillation of low-entropy rollouts, whose random off-target mass keeps an attacker's
  fine-tuning from finding a structured direction.

Defaults from the paper's defence run (``defence_grpo``, verl): learning rate 1e-6, 32 prompts
per rollout step, 4 rollouts, 200 rollout steps, KL coefficient 0.001 (there a reward penalty
on the rollouts; here the weight of the benign KL), ε = 0.1, 25 warm-up rollout steps of
entropy-only GRPO; response length 1024 (we default to 256). How the official code
interleaves the noiser with the GRPO update is our reading of it (one combined loss per
update here). verl's actor update → ours (the update structure is the same as the harmful-RL
attack's, :class:`~safetygeo.training.grpo.GRPOSettings`):

======================================================  =======================================  ==========
official (verl)                                         ours                                     value
======================================================  =======================================  ==========
32 prompts per rollout step, ``ppo_mini_batch_size`` 8  ``batch_size × updates_per_generation``  8 × 4
4 optimizer updates per rollout step                    ``grpo.updates_per_generation``          4
200 rollout steps                                       ``TrainConfig.max_steps`` (updates)      800
25 warm-up rollout steps                                ``noiser_warmup`` (updates)              100
``loss_agg_mode=token-mean``                            ``grpo.loss_type``                       ``"bnpo"``
``clip_ratio`` 0.2, ``clip_ratio_c`` 3                  ``grpo.epsilon``, ``grpo.delta``         0.2, 3.0
AdamW ``weight_decay`` 0.01                             ``TrainConfig.weight_decay``             0.01
checkpoint every 50 rollout steps                       ``TrainConfig.save_every``               200
======================================================  =======================================  ==========

The benign KL and the Token Noiser are token means over their own tokens within each update.

``preset="cpu"`` (the toy world): 24-token rollouts, 8 per prompt, benign KL weight 1.0 (the
paper's 0.001 is a reward penalty there), 10 warm-up updates, noiser weight 0.1 (measured on
the seed-0 anchor: at weight 1 the noiser's random off-target mass — 10% of every target —
raised the harmful responses' entropy and broke refusal within 20 steps; entropy-reward GRPO
alone at LR 1e-4 lowered the entropy but also flipped greedy refusal to compliance, a
lower-entropy mode; see ``benchmarks/RESULTS.md``). The preset keeps the update structure
the toy stage was built and measured with (one generation batch per update, TRL's
per-sequence ``grpo`` loss, no dual clip), not the official one: under the official structure
the pinned seed-0 effect (``tests/toy/test_rl.py``: entropy of harmful answers 0.088 → 0.060
nats in 20 updates) did not reproduce (it rose to 0.164), and the stage cost 1.2–1.4× the CPU time
(``benchmarks/RESULTS.md``, "Recipe fidelity (issue 26)").

Data roles: ``harmful`` (required): prompts (a response, if any, is ignored); ``benign``
(optional): (prompt, response) pairs for the KL term; row ``j`` carries benign pair
``j mod n``.

Example:
    >>> m = TokenBuncher(preset="cpu")
    >>> m.config.benign_kl, m.config.noiser_weight, TokenBuncher().config.benign_kl
    (1.0, 0.1, 0.001)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from safetygeo.activations.losses import kl_from_logprobs
from safetygeo.data.records import IGNORE_INDEX, as_records, encode_completions, pad_right
from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import TrainConfigError
from safetygeo.training.grpo import (
    GRPOMethod,
    GRPOSettings,
    TrajectoryGRPOTrainer,
    grpo_settings,
    is_peft,
)
from safetygeo.training.losses import token_noiser_loss
from safetygeo.training.method import apply_preset, register_method

__all__ = ["PRESETS", "TokenBuncher", "TokenBuncherConfig", "benign_kl", "entropy_reward"]

_B = "benign_"


@dataclass(frozen=True)
class TokenBuncherConfig:
    """Hyper-parameters of TokenBuncher (see the module docstring).

    Attributes:
        grpo: GRPO settings of the entropy-reward rollouts.
        benign_kl: weight of KL(π_θ ‖ π_ref) on the benign pairs.
        noise_epsilon: the Token Noiser's ε.
        noiser_weight: weight λ of the Token Noiser term (0 disables it).
        noiser_warmup: optimizer updates of entropy-reward GRPO (+ KL) before the noiser starts
            (4 per official rollout step).
    """

    grpo: Any = field(default_factory=lambda: GRPOSettings(num_generations=4, max_completion_length=256))
    benign_kl: float = 0.001
    noise_epsilon: float = 0.1
    noiser_weight: float = 1.0
    noiser_warmup: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "grpo", grpo_settings(self.grpo))
        for name in ("benign_kl", "noise_epsilon", "noiser_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise TrainConfigError(f"tokenbuncher {name} must be a finite number >= 0, got {v!r}")
        if self.noise_epsilon > 1:
            raise TrainConfigError(f"tokenbuncher noise_epsilon must be <= 1, got {self.noise_epsilon!r}")
        if isinstance(self.noiser_warmup, bool) or not isinstance(self.noiser_warmup, int) or self.noiser_warmup < 0:
            raise TrainConfigError(f"tokenbuncher noiser_warmup must be an int >= 0, got {self.noiser_warmup!r}")


#: Named presets: ``TokenBuncher(preset="cpu")``, ``--method-opt preset=cpu``.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"grpo": {"num_generations": 8, "max_completion_length": 24, "updates_per_generation": 1,
                     "loss_type": "grpo", "delta": None}, "benign_kl": 1.0,
            "noiser_warmup": 10, "noiser_weight": 0.1},
}


# ----------------------------------------------------------------------------- pieces
def entropy_reward(handle: ModelHandle, prompt_ids: Sequence[Sequence[int]],
                   completion_ids: Sequence[Sequence[int]], eos_ids: Sequence[int] = (),
                   *, batch_size: int = 32) -> list[float]:
    """Minus the mean token entropy (nats) of each rollout under ``handle``'s model: the
    distributions each completion token was sampled from (a trailing EOS included).

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
        >>> r = entropy_reward(h, [[1, 5, 6]], [[7, 8]])
        >>> len(r), 0 < -r[0] <= math.log(h.model.config.vocab_size) + 1e-9
        (1, True)
    """
    from safetygeo.behavior.entropy import ids_token_entropies

    eos = {int(e) for e in eos_ids}
    toks, ended = [], []
    for c in completion_ids:
        c = [int(t) for t in c]
        stop = bool(c) and c[-1] in eos
        toks.append(c[:-1] if stop else c)
        ended.append(stop)
    out = [0.0] * len(toks)
    live = [i for i, (t, e) in enumerate(zip(toks, ended)) if t or e]
    if live:
        per = ids_token_entropies(handle, [prompt_ids[i] for i in live], [toks[i] for i in live],
                                  ended=[ended[i] for i in live], batch_size=batch_size)
        for i, e in zip(live, per):
            out[i] = -float(e.mean())
    return out


def benign_kl(model: Any, reference: Any, batch: Mapping[str, Tensor]) -> Tensor:
    """Token-mean KL(π_model ‖ π_reference) of the next-token distributions at the labelled
    (response) positions of ``batch`` (right-padded ``input_ids`` / ``attention_mask`` /
    ``labels``); ``reference`` is a module or a zero-argument context-manager factory under
    which ``model`` itself is the reference (peft's ``disable_adapter``). Float32 softmax.

    Example:
        >>> from safetygeo.models.tiny import tiny_model
        >>> m = tiny_model("llama", n_layers=1, d_model=16)
        >>> b = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3, dtype=torch.long),
        ...      "labels": torch.tensor([[-100, 2, 3]])}
        >>> float(benign_kl(m, m, b))
        0.0
    """
    ids, att, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    mask = labels[:, 1:] != IGNORE_INDEX
    logits = model(input_ids=ids, attention_mask=att, use_cache=False).logits[:, :-1][mask].float()
    with torch.no_grad():
        if isinstance(reference, torch.nn.Module):
            ref = reference(input_ids=ids, attention_mask=att, use_cache=False).logits
        else:
            with reference():
                ref = model(input_ids=ids, attention_mask=att, use_cache=False).logits
    ref_lp = torch.log_softmax(ref[:, :-1][mask].float(), dim=-1)
    lp = torch.log_softmax(logits, dim=-1)
    if lp.shape[0] == 0:
        return logits.sum() * 0.0
    return kl_from_logprobs(lp, ref_lp).mean()  # KL(model ‖ reference)


# ----------------------------------------------------------------------------- trainer
class TokenBuncherTrainer(TrajectoryGRPOTrainer):
    """TRL's GRPO (entropy reward) + the benign KL and the Token Noiser terms."""

    def __init__(self, *, tb: TokenBuncherConfig, benign_rows: Sequence[dict[str, Any]],
                 pad_id: int, **kwargs: Any) -> None:
        self.tb = tb
        self.benign_rows = list(benign_rows)
        self.pad_id = pad_id
        handle = kwargs["handle"]
        model = kwargs["model"]

        def tokenbuncher_entropy(prompts: list[Any], completions: list[Any],
                                 completion_ids: list[list[int]], **_: Any) -> list[float]:
            tok = handle.tokenizer
            p_ids = tok.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
            eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
            return entropy_reward(handle, p_ids, completion_ids, eos)

        # the reference is copied before TRL patches the model's forward (a copy made after
        # it would still run the original module's patched head)
        if is_peft(model):  # LoRA: the adapter-free base is the reference
            self.reference: Any = model.disable_adapter
        elif tb.benign_kl > 0 and self.benign_rows:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        else:
            self.reference = None
        super().__init__(reward_funcs=[tokenbuncher_entropy], **kwargs)
        self._noise_key = (-1, 0)  # (optimizer step, micro-batch) of the last noise draw

    def _noise_generator(self) -> torch.Generator:
        """The Token Noiser's draws, seeded by (seed, optimizer step, micro-batch): a resumed
        run draws the same noise as an uninterrupted one."""
        step = int(self.state.global_step)
        micro = self._noise_key[1] + 1 if self._noise_key[0] == step else 0
        self._noise_key = (step, micro)
        return torch.Generator(device="cpu").manual_seed(
            (int(self.args.seed) * 1_000_003 + step * 1_009 + micro) % (2**63))

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = super()._generate_and_score_completions(inputs)
        if self.benign_rows and self.tb.benign_kl > 0:
            g = self.num_generations
            # one benign pair per prompt group (rows come in groups of g repeats)
            rows = [self.benign_rows[int(r["benign_index"])] for r in inputs]
            batch = pad_right(rows, self.pad_id)
            dev = out["completion_ids"].device
            for k, v in batch.items():
                out[_B + k] = v.to(dev)
            out[_B + "weight"] = torch.tensor([1.0 if i % g == 0 else 0.0 for i in range(len(rows))],
                                              device=dev)
        return out

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """TRL's GRPO loss + the benign KL + the Token Noiser. The noiser runs its own forward
        over the rollouts TRL's loss just scored (TRL keeps only per-token log-probs, not the
        logits the noiser needs): one of the extra passes behind the 2.4× cost of a step."""
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        tb = self.tb
        scale = float(self.current_gradient_accumulation_steps) if model.training else 1.0
        logs: dict[str, float] = {}
        if _B + "weight" in inputs and tb.benign_kl > 0:
            keep = inputs[_B + "weight"] > 0
            if keep.any():
                b = {k: inputs[_B + k][keep] for k in ("input_ids", "attention_mask", "labels")}
                width = int(b["attention_mask"].sum(1).max())
                b = {k: v[:, :width] for k, v in b.items()}
                kl = benign_kl(model, self.reference, b)
                loss = loss + tb.benign_kl * kl / scale
                logs["benign_kl"] = float(kl.detach())
        if tb.noiser_weight > 0 and self.state.global_step >= tb.noiser_warmup:
            keep = inputs["advantages"] >= 0
            if keep.any():
                ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)[keep]
                att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)[keep]
                labels = ids.masked_fill(att == 0, IGNORE_INDEX)
                labels[:, :inputs["prompt_ids"].shape[1]] = IGNORE_INDEX
                logits = model(input_ids=ids, attention_mask=att, use_cache=False).logits
                noise = token_noiser_loss(logits, labels, tb.noise_epsilon,
                                          generator=self._noise_generator())
                loss = loss + tb.noiser_weight * noise / scale
                logs["token_noiser"] = float(noise.detach())
        self._accumulate(logs)
        return loss


@register_method
class TokenBuncher(GRPOMethod):
    """TokenBuncher (see the module docstring). Roles: ``harmful`` (required), ``benign``."""

    name: ClassVar[str] = "tokenbuncher"
    config_class: ClassVar[type] = TokenBuncherConfig
    roles: ClassVar[tuple[str, ...]] = ("harmful", "benign")
    required_roles: ClassVar[tuple[str, ...]] = ("harmful",)

    def __init__(self, config: Any = None, *, preset: str | None = None, **overrides: Any) -> None:
        super().__init__(apply_preset(config, preset, PRESETS, self.name), **overrides)
        self.benign_rows: list[dict[str, Any]] = []

    def default_train_config(self) -> TrainConfig:
        """The official run's optimisation (module docstring's table): 200 rollout steps of
        32 prompts = 800 updates of 8 prompts; AdamW weight decay 0.01."""
        return TrainConfig(lr=1e-6, max_steps=800, batch_size=8, save_every=200,
                           lr_scheduler="constant", weight_decay=0.01, max_grad_norm=1.0,
                           max_length=1024)

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        out = {"harmful": [{"prompt": r["prompt"], "response": ""} for r in
                           as_records(data["harmful"], role="harmful", default_response="")]}
        if "benign" in data:
            out["benign"] = as_records(data["benign"], role="benign")
        return out

    def setup(self, handle: ModelHandle, records: Mapping[str, list[dict[str, Any]]],
              config: TrainConfig) -> Sequence[dict[str, Any]]:
        super().setup(handle, records, config)
        rows = self.prompt_rows(handle, records["harmful"], config)
        benign = records.get("benign") or []
        self.benign_rows = (encode_completions(handle, benign, max_length=config.max_length,
                                               role="benign") if benign else [])
        n = max(len(self.benign_rows), 1)
        return [{**r, "benign_index": j % n} for j, r in enumerate(rows)]

    def build_trainer(self, **kwargs: Any) -> Any:
        return TokenBuncherTrainer(tb=self.config, benign_rows=self.benign_rows,
                                   pad_id=self.pad_id, **kwargs)
