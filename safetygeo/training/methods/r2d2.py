"""R2D2 ("Robust Refusal Dynamic Defense"): adversarial training against a pool of GCG
suffixes that are re-optimized against the *current* model while it trains.

Per optimizer step (before its first micro-batch):

1. every ``reset_every`` steps, ``n_reset`` pool items (drawn uniformly without
   replacement) get a fresh behaviour (a harmful record drawn uniformly) and a fresh
   initial suffix (``suffix_token`` repeated a random number of times in ``suffix_len``);
2. ``n_update`` pool items (default: all) are *active*: each gets ``gcg_steps`` GCG steps
   (:func:`safetygeo.attacks.gcg.gcg_step`) toward its harmful target ("Sure, here is
   ...") against the model as it is now;
3. every micro-batch's loss is

   ``utility CE + away_weight · away + toward_weight · toward``

   on the utility batch and the active items' adversarial prompts
   (chat prefix + instruction + suffix + post-instruction template):

   * *utility*: completion-only token-mean cross-entropy on (prompt, answer) pairs;
   * *away* (default ``away_loss="sequence"``): mean over items of
     ``−log(1 − p(target | adversarial prompt))`` with ``p`` the probability of the whole
     target sequence — the form in our issue and DESIGN.md; ``away_loss="token"`` is
     the per-token form of HarmBench's released code (below);
   * *toward*: token-mean cross-entropy of the refusal completion (+ the template's
     end-of-turn text) given the adversarial prompt.

Numerics of the away loss. ``log p(target)`` is summed from per-token
``log p_t = −softplus(logsumexp_{j≠t} z_j − z_t)`` in float64, which stays accurate (and
its gradient non-zero) while the target is near-certain — the plain float32
``log_softmax`` rounds ``log p_t`` to exactly 0 once the other tokens hold < 6e-8 of the
mass, giving ``away = ∞``. Then ``log(1 − e^x)`` is evaluated stably (:func:`log1mexp`:
``log(−expm1(x))`` for ``x > −ln 2``, ``log1p(−exp(x))`` below). The only clamp:
``x ≤ −tiny`` (float64's smallest normal), reached only when every target token's logit
leads the rest by > 745 nats; there the loss is capped at ≈ 708 and its gradient is 0.

Where the defaults come from. HarmBench (Mazeika et al. 2024, "HarmBench: A
Standardized Evaluation Framework for Automated Red Teaming and Robust Refusal"), folder
``adversarial_training/alignment-handbook`` of centerforaisafety/HarmBench
(``scripts/run_sft_adv_training.py``, ``scripts/adv_training_utils.py``,
``recipes/zephyr-7b-beta/sft_adv_training/config_full.yaml``; read, not copied):

* pool of 8 single-behaviour test cases (``NUM_SINGLE_BEHAVIOR_TEST_CASES``), all 8
  updated and trained on each time (``NUM_TEST_CASES_TO_UPDATE_PER_STEP``) →
  ``pool_size=8``, ``n_update=None``;
* 5 GCG steps per update, search width 512, top-k 256, one position per candidate, the
  argmin candidate always adopted, ASCII-only tokens → ``gcg_steps=5``,
  ``search_width=512``, ``topk=256``;
* reset every 50 optimizer steps of 20 % of the pool (``int(0.2 · 8) = 1`` item): new
  behaviour drawn uniformly, new target, suffix re-initialized to ``"! ! … !"`` with 15–20
  marks → ``reset_every=50``, ``n_reset=1``, ``suffix_token="!"``, ``suffix_len=(15, 20)``;
* loss = clean + 0.5 · away + 0.5 · toward → ``away_weight=toward_weight=0.5``;
* optimisation (:meth:`R2D2.default_train_config`): Mistral-7B-v0.1 trained on
  UltraChat-200k SFT data, LR 2e-5 cosine, 8 sequences per device × 8 GPUs × gradient
  accumulation 4, bf16; the released model is the snapshot after 2000 micro-batches (500
  optimizer steps).

Where we differ, on purpose or by necessity:

* **Away loss form.** The released code applies ``−log(1 − p_t)`` to each target token
  (ignoring tokens with ``log p_t < −5``) and averages over target tokens; our default is
  the sequence form above. ``away_loss="token"`` (+ ``away_token_threshold=-5.0``)
  reproduces the code's form (:func:`token_away_loss`). The two differ in strength: the
  sequence form's gradient scales with ``p(target) / (1 − p(target))`` and fades when the
  *whole* target is unlikely even if its first tokens are likely (measured on a tiny
  attacked Llama, same pool: sequence away 0.015 vs token away 2.05).
* **Refresh frequency.** The released trainer runs the GCG update before *every
  micro-batch*; we run it once per optimizer step (identical with ``grad_accum=1``);
  ``refresh_every_micro_batch=True`` restores their schedule.
* **Reset timing.** They reset before the last micro-batch of optimizer steps 50, 100, …;
  we reset before the first micro-batch of the step after (``step % reset_every == 0``,
  ``step`` = steps completed).
* **Targets / refusal.** Their toward target is "Sorry, I can't do that." + EOS; ours is
  ``refusal`` (default :data:`~safetygeo.training.methods.sft.DEFAULT_REFUSAL`, starting with
  "I cannot" so the logit refusal score measures it) + the chat template's end-of-turn
  text; a harmful record may carry its own refusal. Their behaviours have several targets
  each (one drawn per reset); ours have one per record (repeat a prompt for more).
* **Utility loss.** Theirs is full-sequence CE on packed multi-turn UltraChat text; ours is
  completion-only CE on single-turn (prompt, answer) pairs, like
  :mod:`safetygeo.training.methods.sft`.
* **GCG.** Our :mod:`~safetygeo.attacks.gcg` samples swap positions uniformly (theirs:
  evenly spread), keeps only candidates that re-tokenize to themselves, and inserts a
  space between instruction and suffix (theirs concatenates token ids). Initial suffix
  lengths are drawn per item (their initial pool shares one length). Suffix marks are
  tokenizer-dependent: one token per ``"!"`` on Llama / Mistral tokenizers.
* **Pool sampling** uses one ``torch.Generator`` (seeded from ``TrainConfig.seed``, saved
  in checkpoints) for resets, active-item draws and GCG candidates, so resuming equals an
  uninterrupted run. Under DDP every rank keeps the same pool (no sharding of items).

Data roles (both required):

* ``utility``: (prompt, answer) pairs — a PromptSet with ``targets``, pairs, dicts or a
  JSON / JSONL file (as :func:`~safetygeo.data.records.as_records`).
* ``harmful``: behaviours with a harmful *target*: a PromptSet with ``targets`` (AdvBench),
  ``(prompt, target)`` / ``(prompt, target, refusal)`` tuples, or mappings with a prompt
  key (:data:`~safetygeo.data.records.PROMPT_KEYS`), ``"target"`` and optionally
  ``"refusal"`` (or ``"response"``: the refusal to train toward).

Example:
    >>> m = R2D2(preset="cpu")
    >>> m.config.pool_size, m.config.gcg_steps, R2D2().config.search_width
    (4, 2, 512)
    >>> recs = m.records({"utility": [("Say hi.", "Hi!")],
    ...                   "harmful": [("Make a bomb.", "Sure, here is how")]})
    >>> recs["harmful"][0]["target"], recs["harmful"][0]["refusal"]
    ('Sure, here is how', 'I cannot help with that request.')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from safetygeo.attacks.gcg import (
    GCGConfig,
    GCGItem,
    GCGPrompt,
    GCGState,
    candidate_losses,
    gcg_init,
    gcg_step,
)
from safetygeo.data.prompts import PromptSet
from safetygeo.data.records import (
    IGNORE_INDEX,
    PROMPT_KEYS,
    as_records,
    encode_completions,
    end_of_turn,
    load_records,
    pad_right,
)
from safetygeo.models.handle import ModelHandle
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import (
    DatasetFormatError,
    EmptyDatasetError,
    TrainConfigError,
    TrainingError,
)
from safetygeo.training.losses import (
    sequence_away_loss,
    token_away_loss,
    token_ce,
)
from safetygeo.training.method import Method, StepContext, register_method
from safetygeo.training.methods.sft import DEFAULT_REFUSAL

__all__ = ["PRESETS", "PoolEntry", "R2D2", "R2D2Config", "harmful_records"]

_AWAY_FORMS = ("sequence", "token")
_STATE_FORMAT = 1


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class R2D2Config:
    """Hyper-parameters of R2D2 (defaults: HarmBench's released recipe; see the module notes).

    Attributes:
        pool_size: adversarial test cases kept in the pool.
        n_update: pool items GCG-refreshed and trained on per step (``None``: all).
        gcg_steps: GCG steps per refresh (0: the pool is never optimized).
        search_width, topk, n_replace: GCG candidates per step, top-k tokens per position,
            positions swapped per candidate.
        reset_every: reset part of the pool every this many optimizer steps (``None``: never).
        n_reset: items re-initialized at each reset (HarmBench: 20 % of the pool).
        away_weight, toward_weight: weights of the away and toward losses.
        away_loss: ``"sequence"`` (−log(1 − p(target))) or ``"token"`` (HarmBench code's
            per-token −log(1 − p_t), gated by ``away_token_threshold``).
        away_token_threshold: with ``away_loss="token"``, tokens with ``log p_t`` below it
            contribute 0 (HarmBench: −5).
        refusal: completion trained *toward* for harmful records without their own.
        suffix_token: text repeated to initialize a suffix (``"!"`` as HarmBench).
        suffix_len: inclusive range of the number of repetitions of ``suffix_token``.
        separator: text between instruction and suffix (part of the optimized span).
        allow_non_ascii, filter_tokenization, eval_batch_size, use_prefix_cache: passed to
            :class:`~safetygeo.attacks.gcg.GCGConfig`.
        refresh_every_micro_batch: run the GCG refresh before every micro-batch (HarmBench's
            schedule) instead of once per optimizer step.
    """

    pool_size: int = 8
    n_update: int | None = None
    gcg_steps: int = 5
    search_width: int = 512
    topk: int = 256
    n_replace: int = 1
    reset_every: int | None = 50
    n_reset: int = 1
    away_weight: float = 0.5
    toward_weight: float = 0.5
    away_loss: str = "sequence"
    away_token_threshold: float = -5.0
    refusal: str = DEFAULT_REFUSAL
    suffix_token: str = "!"
    suffix_len: tuple[int, int] = (15, 20)
    separator: str = " "
    allow_non_ascii: bool = False
    filter_tokenization: bool = True
    eval_batch_size: int = 128
    use_prefix_cache: bool = True
    refresh_every_micro_batch: bool = False

    def __post_init__(self) -> None:
        def positive(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
                raise TrainConfigError(f"r2d2 {name} must be an int >= {minimum}, got {v!r}")

        for name in ("pool_size", "search_width", "topk", "n_replace", "eval_batch_size"):
            positive(name)
        positive("gcg_steps", 0)
        positive("n_reset", 0)
        if self.n_update is not None:
            positive("n_update")
            if self.n_update > self.pool_size:
                raise TrainConfigError(
                    f"r2d2 n_update ({self.n_update}) must be <= pool_size ({self.pool_size})")
        if self.reset_every is not None:
            positive("reset_every")
        if self.n_reset > self.pool_size:
            raise TrainConfigError(
                f"r2d2 n_reset ({self.n_reset}) must be <= pool_size ({self.pool_size})")
        for name in ("away_weight", "toward_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise TrainConfigError(f"r2d2 {name} must be a finite number >= 0, got {v!r}")
        if self.away_loss not in _AWAY_FORMS:
            raise TrainConfigError(f"r2d2 away_loss must be one of {list(_AWAY_FORMS)}, got {self.away_loss!r}")
        if not isinstance(self.away_token_threshold, (int, float)) or self.away_token_threshold > 0:
            raise TrainConfigError(
                f"r2d2 away_token_threshold must be a log-probability <= 0, got {self.away_token_threshold!r}")
        for name in ("refusal", "suffix_token"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise TrainConfigError(f"r2d2 {name} must be non-blank text, got {v!r}")
        lens = self.suffix_len
        if (not isinstance(lens, (tuple, list)) or len(lens) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in lens)
                or not 1 <= lens[0] <= lens[1]):
            raise TrainConfigError(f"r2d2 suffix_len must be (min, max) ints with 1 <= min <= max, got {lens!r}")
        object.__setattr__(self, "suffix_len", (int(lens[0]), int(lens[1])))

    @classmethod
    def cpu_preset(cls, **overrides: Any) -> R2D2Config:
        """Scaled-down search for CPU runs on tiny models (a step takes well under a second
        on a 2-layer d=32 model): pool 4, 2 items refreshed per step with 2 GCG steps of 32
        candidates from the top 16 tokens, reset of 1 item every 5 steps, suffixes of 4–6
        marks. Keyword overrides win.

        Example:
            >>> R2D2Config.cpu_preset(pool_size=2).pool_size
            2
        """
        return cls(**{**PRESETS["cpu"], **overrides})

    def gcg_config(self, suffix_repeats: int | None = None) -> GCGConfig:
        """The :class:`GCGConfig` of one GCG step (``suffix_init``: ``suffix_repeats`` marks)."""
        n = self.suffix_len[0] if suffix_repeats is None else suffix_repeats
        return GCGConfig(num_steps=self.gcg_steps, search_width=self.search_width, topk=self.topk,
                         n_replace=self.n_replace, suffix_init=" ".join([self.suffix_token] * n),
                         separator=self.separator, allow_non_ascii=self.allow_non_ascii,
                         filter_tokenization=self.filter_tokenization, seed=0,
                         eval_batch_size=self.eval_batch_size, early_stop=False,
                         use_prefix_cache=self.use_prefix_cache)


#: Named presets: ``R2D2(preset="cpu")``, ``--method-opt preset=cpu`` on the command line.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"pool_size": 4, "n_update": 2, "gcg_steps": 2, "search_width": 32, "topk": 16,
            "reset_every": 5, "n_reset": 1, "suffix_len": (4, 6), "eval_batch_size": 32},
}


# ----------------------------------------------------------------------------- data
def harmful_records(data: Any, *, default_refusal: str, role: str = "harmful") -> list[dict[str, str]]:
    """Normalize harmful behaviours into ``{"prompt", "target", "refusal"}`` records.

    Args:
        data: a PromptSet with ``targets``, a JSON / JSONL path, or a sequence of
            ``(prompt, target)`` / ``(prompt, target, refusal)`` tuples or mappings (prompt
            under a :data:`~safetygeo.data.records.PROMPT_KEYS` key, ``"target"``, and
            optionally ``"refusal"`` or ``"response"``).
        default_refusal: the refusal of records without one.
        role: the data role's name (for messages).

    Raises:
        EmptyDatasetError: no records.
        DatasetFormatError: an item without a prompt or a target (its index is named).

    Example:
        >>> harmful_records([{"goal": "Do X.", "target": "Sure, here is X"}], default_refusal="No.")
        [{'prompt': 'Do X.', 'target': 'Sure, here is X', 'refusal': 'No.'}]
    """
    if isinstance(data, (str, Path)):
        data = load_records(data)
    if isinstance(data, PromptSet):
        if data.targets is None:
            raise DatasetFormatError(
                f"data role {role!r}: prompt set {data.name!r} has no targets; R2D2 needs a harmful "
                "target per prompt (e.g. AdvBench's 'Sure, here is ...')")
        items: list[Any] = [{"prompt": p, "target": t} for p, t in zip(data.prompts, data.targets)]
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        items = list(data)
    else:
        raise DatasetFormatError(
            f"data role {role!r}: expected a PromptSet, a file path or a list of behaviours, "
            f"got {type(data).__name__}")
    if not items:
        raise EmptyDatasetError(f"data role {role!r} has no examples")
    out = []
    for i, item in enumerate(items):
        prompt = target = refusal = None
        if isinstance(item, (tuple, list)) and len(item) in (2, 3):
            prompt, target = item[0], item[1]
            refusal = item[2] if len(item) == 3 else None
        elif isinstance(item, Mapping):
            prompt = next((item[k] for k in PROMPT_KEYS if item.get(k) is not None), None)
            target = item.get("target")
            refusal = item.get("refusal", item.get("response"))
            if prompt is None:
                raise DatasetFormatError(
                    f"data role {role!r}, item {i}: no prompt field (one of {list(PROMPT_KEYS)}); "
                    f"keys found: {sorted(item)}")
        elif isinstance(item, str):
            raise DatasetFormatError(
                f"data role {role!r}, item {i}: {item[:40]!r} has no harmful target; give "
                "(prompt, target) pairs or {'prompt': ..., 'target': 'Sure, here is ...'}")
        else:
            raise DatasetFormatError(
                f"data role {role!r}, item {i}: expected (prompt, target) or a mapping, "
                f"got {type(item).__name__}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DatasetFormatError(f"data role {role!r}, item {i}: empty or non-string prompt")
        if not isinstance(target, str) or not target.strip():
            raise DatasetFormatError(
                f"data role {role!r}, item {i}: missing or empty harmful target ({target!r}); "
                "R2D2 needs one per behaviour (e.g. 'Sure, here is ...')")
        if refusal is None or (isinstance(refusal, str) and not refusal.strip()):
            refusal = default_refusal
        if not isinstance(refusal, str):
            raise DatasetFormatError(f"data role {role!r}, item {i}: refusal is {type(refusal).__name__}, not str")
        out.append({"prompt": prompt, "target": target, "refusal": refusal})
    return out


# ----------------------------------------------------------------------------- the pool
@dataclass
class PoolEntry:
    """One adversarial test case of the pool.

    Attributes:
        record: index of its behaviour in the harmful records.
        item: its GCG state (``item.suffix_ids`` is the current suffix; ``item.loss`` the
            GCG target loss last measured, against the model of that moment).
        born: the optimizer step at which it was (re-)initialized.
        age: GCG steps it has received since then.
    """

    record: int
    item: GCGItem
    born: int = 0
    age: int = 0

    @property
    def prompt(self) -> GCGPrompt:
        """The (instruction, target) layout the suffix is optimized for."""
        return self.item.prompts[0]


def _entry_to_json(e: PoolEntry) -> dict[str, Any]:
    it = e.item
    return {"record": e.record, "born": e.born, "age": e.age,
            "instruction": e.prompt.instruction, "target": e.prompt.target,
            "target_ids": list(e.prompt.target_ids), "suffix_ids": it.suffix_ids.tolist(),
            "suffix": it.suffix, "loss": it.loss, "initial_loss": it.initial_loss,
            "best_ids": it.best_ids.tolist(), "best_suffix": it.best_suffix,
            "best_loss": it.best_loss, "solved": it.solved}


# ----------------------------------------------------------------------------- the method
@register_method
class R2D2(Method):
    """R2D2 adversarial training (see the module docstring). Roles: ``utility``, ``harmful``.

    Construct with a :class:`R2D2Config`, a mapping, keyword overrides, and/or
    ``preset="cpu"`` (overrides apply on top of the preset). After :meth:`setup`,
    ``pool`` holds the :class:`PoolEntry` s and ``active`` the indices trained on.
    """

    name: ClassVar[str] = "r2d2"
    config_class: ClassVar[type] = R2D2Config
    roles: ClassVar[tuple[str, ...]] = ("utility", "harmful")
    required_roles: ClassVar[tuple[str, ...]] = ("utility", "harmful")
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = PRESETS

    def __init__(self, config: Any = None, *, preset: str | None = None, **overrides: Any) -> None:
        super().__init__(config, preset=preset, **overrides)
        self.pool: list[PoolEntry] = []
        self.active: list[int] = []
        self.n_resets = 0
        self.gcg_steps_done = 0

    def default_train_config(self) -> TrainConfig:
        """HarmBench's optimisation (per device; they ran 8 GPUs): LR 2e-5 cosine, 8
        sequences × 4 accumulation steps, 500 optimizer steps, checkpoint every 100."""
        return TrainConfig(lr=2e-5, lr_scheduler="cosine", batch_size=8, grad_accum=4,
                           max_steps=500, save_every=100, max_length=2048)

    # -- data --------------------------------------------------------------------------
    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {"utility": as_records(data["utility"], role="utility"),
                "harmful": harmful_records(data["harmful"], default_refusal=self.config.refusal)}

    def setup(
        self, handle: ModelHandle, records: Mapping[str, list[dict[str, Any]]], config: TrainConfig
    ) -> Sequence[dict[str, Any]]:
        """Tokenize the utility rows (what the trainer iterates), check that ``suffix_token``
        is in the vocabulary and that every behaviour fits ``max_length`` with the longest
        suffix, and build the initial pool (GCG losses measured against the model as it is
        now)."""
        super().setup(handle, records, config)
        for role in self.required_roles:
            if not records.get(role):
                raise EmptyDatasetError(f"data role {role!r} of method 'r2d2' has no examples")
        rows = encode_completions(handle, records["utility"], max_length=config.max_length,
                                  role="utility")
        self.handle = handle
        self.harmful = list(records["harmful"])
        tok = handle.tokenizer
        end_ids = list(tok(end_of_turn(handle), add_special_tokens=False)["input_ids"])
        self._refusal_ids = [list(tok(r["refusal"], add_special_tokens=False)["input_ids"]) + end_ids
                             for r in self.harmful]
        self._check_lengths(handle, config.max_length)
        self._gen = torch.Generator().manual_seed(int(config.seed))
        self._allowed: Tensor | None = None
        self._step_config = self.config.gcg_config()
        n, k = len(self.harmful), self.config.pool_size
        order = torch.cat([torch.randperm(n, generator=self._gen) for _ in range(-(-k // n))])[:k]
        self.pool = [PoolEntry(int(r), self._new_item(handle, int(r), self._draw_len()), born=0)
                     for r in order]
        self.active = list(range(k))
        self.n_resets = 0
        self.gcg_steps_done = 0
        return rows

    def _check_lengths(self, handle: ModelHandle, max_length: int) -> None:
        tok, cfg = handle.tokenizer, self.config
        longest = cfg.separator + " ".join([cfg.suffix_token] * cfg.suffix_len[1])
        init_ids = list(tok(longest, add_special_tokens=False)["input_ids"])
        n_suffix = len(init_ids)
        if tok.unk_token_id is not None and tok.unk_token_id in init_ids:
            raise TrainConfigError(
                f"r2d2 suffix_token {cfg.suffix_token!r} is not in the tokenizer's vocabulary (it "
                f"encodes to the unknown token {tok.unk_token!r}); choose a token it knows")
        prompt_ids = handle.encode([r["prompt"] for r in self.harmful]).input_ids
        targets = tok([r["target"] for r in self.harmful], add_special_tokens=False)["input_ids"]
        limit = max_length if handle.max_context is None else min(max_length, handle.max_context)
        for i, (p, t, r) in enumerate(zip(prompt_ids, targets, self._refusal_ids)):
            if not t:
                raise DatasetFormatError(f"data role 'harmful', item {i}: the target tokenizes to nothing")
            total = len(p) + n_suffix + max(len(t), len(r))
            if total > limit:
                raise DatasetFormatError(
                    f"data role 'harmful', item {i}: prompt + longest suffix + target/refusal is "
                    f"{total} tokens > max_length {limit}; shorten it or raise max_length")

    def _draw_len(self) -> int:
        lo, hi = self.config.suffix_len
        return int(torch.randint(lo, hi + 1, (1,), generator=self._gen))

    def _new_item(self, model: Any, record: int, repeats: int) -> GCGItem:
        rec = self.harmful[record]
        state = gcg_init(model, [rec["prompt"]], [rec["target"]], self.config.gcg_config(repeats))
        if self._allowed is None:
            self._allowed = state.allowed
        return state.items[0]

    # -- the adversary -------------------------------------------------------------------
    def reset_pool(self, model: Any, step: int) -> list[int]:
        """Re-initialize ``n_reset`` items (fresh behaviour and suffix); returns their indices."""
        cfg = self.config
        idx = sorted(int(i) for i in torch.randperm(len(self.pool), generator=self._gen)[:cfg.n_reset])
        for i in idx:
            rec = int(torch.randint(len(self.harmful), (1,), generator=self._gen))
            self.pool[i] = PoolEntry(rec, self._new_item(model, rec, self._draw_len()), born=step)
        self.n_resets += len(idx)
        return idx

    def refresh_pool(self, model: Any) -> dict[str, float]:
        """Draw the active items and run ``gcg_steps`` GCG steps on them against ``model``
        (a handle or ``(model, tokenizer)``); returns GCG loss statistics."""
        cfg = self.config
        n = len(self.pool)
        if cfg.n_update is None or cfg.n_update >= n:
            self.active = list(range(n))
        else:
            self.active = sorted(int(i) for i in torch.randperm(n, generator=self._gen)[:cfg.n_update])
        entries = [self.pool[i] for i in self.active]
        start = [float(candidate_losses(model, e.item, e.item.suffix_ids[None],
                                        eval_batch_size=cfg.eval_batch_size,
                                        use_prefix_cache=cfg.use_prefix_cache)[0][0])
                 for e in entries]
        if cfg.gcg_steps:
            assert self._allowed is not None  # set by setup()'s first _new_item (pool_size >= 1)
            view = GCGState([e.item for e in entries], self._step_config, self._allowed, self._gen)
            for _ in range(cfg.gcg_steps):
                gcg_step(model, view)
        for e, s in zip(entries, start):
            e.age += cfg.gcg_steps
            if not cfg.gcg_steps:
                e.item.loss = s
            del e.item.losses[:-cfg.gcg_steps or None]  # keep this refresh's history only
            del e.item.n_candidates[:-cfg.gcg_steps or None]
        self.gcg_steps_done += cfg.gcg_steps
        return {"gcg_loss_start": sum(start) / len(start),
                "gcg_loss": sum(e.item.loss for e in entries) / len(entries)}

    def before_step(self, ctx: StepContext, batch: Mapping[str, Tensor]) -> dict[str, float]:
        """Reset (every ``reset_every`` steps) and refresh the pool against ``ctx.handle``."""
        cfg = self.config
        if ctx.micro_step != 0 and not cfg.refresh_every_micro_batch:
            return {}
        logs: dict[str, float] = {}
        if ctx.micro_step == 0:
            reset = (cfg.reset_every is not None and cfg.n_reset > 0 and ctx.step > 0
                     and ctx.step % cfg.reset_every == 0)
            logs["pool_resets"] = float(len(self.reset_pool(ctx.handle, ctx.step)) if reset else 0)
        logs.update(self.refresh_pool(ctx.handle))
        logs["pool_gcg_loss"] = sum(e.item.loss for e in self.pool) / len(self.pool)
        logs["pool_age"] = sum(e.age for e in self.pool) / len(self.pool)
        return logs

    # -- the objective ---------------------------------------------------------------------
    def adversarial_rows(self, entries: Sequence[PoolEntry]) -> tuple[list[dict[str, list[int]]],
                                                                      list[dict[str, list[int]]]]:
        """``(away_rows, toward_rows)``: ``before + suffix + after`` followed by the harmful
        target (away) or the refusal + end-of-turn (toward), labels on the completion only."""
        away: list[dict[str, list[int]]] = []
        toward: list[dict[str, list[int]]] = []
        for e in entries:
            p = e.prompt
            prompt = list(p.before_ids) + e.item.suffix_ids.tolist() + list(p.after_ids)
            for rows, comp in ((away, list(p.target_ids)), (toward, self._refusal_ids[e.record])):
                rows.append({"input_ids": prompt + comp,
                             "labels": [IGNORE_INDEX] * len(prompt) + comp})
        return away, toward

    def objective(
        self, model: nn.Module, batch: Mapping[str, Tensor], entries: Sequence[PoolEntry] | None = None,
    ) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
        """The R2D2 loss of a utility ``batch`` and pool ``entries`` (default: the active
        ones) in one forward pass; returns ``(total, terms)`` with ``terms`` =
        ``utility_ce``, ``away``, ``toward``, ``p_target`` (mean p(target) over entries)."""
        entries = [self.pool[i] for i in self.active] if entries is None else list(entries)
        if not entries:
            raise TrainingError("r2d2 objective needs at least one pool entry")
        away_rows, toward_rows = self.adversarial_rows(entries)
        adv = pad_right(away_rows + toward_rows, self.pad_id)
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        width = max(ids.shape[1], adv["input_ids"].shape[1])

        def widen(x: Tensor, fill: int) -> Tensor:
            return F.pad(x, (0, width - x.shape[1]), value=fill)

        dev = ids.device
        all_ids = torch.cat([widen(ids, self.pad_id), widen(adv["input_ids"].to(dev), self.pad_id)])
        all_mask = torch.cat([widen(mask, 0), widen(adv["attention_mask"].to(dev), 0)])
        all_labels = torch.cat([widen(labels, IGNORE_INDEX), widen(adv["labels"].to(dev), IGNORE_INDEX)])
        logits = model(input_ids=all_ids, attention_mask=all_mask, use_cache=False).logits
        nu, na = ids.shape[0], len(entries)
        utility = token_ce(logits[:nu], all_labels[:nu])
        a_logits, a_labels = logits[nu:nu + na], all_labels[nu:nu + na]
        away_seq, logp = sequence_away_loss(a_logits, a_labels)
        if self.config.away_loss == "sequence":
            away = away_seq.mean()
        else:
            away = token_away_loss(a_logits, a_labels, self.config.away_token_threshold)
        toward = token_ce(logits[nu + na:], all_labels[nu + na:])
        cfg = self.config
        total = utility + cfg.away_weight * away.to(utility.dtype) + cfg.toward_weight * toward
        return total, {"utility_ce": utility, "away": away, "toward": toward,
                       "p_target": logp.exp().mean()}

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        total, terms = self.objective(model, batch)
        return total, {k: float(v.detach()) for k, v in terms.items()}

    # -- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The pool (JSON), the generator state (a uint8 tensor) and counters."""
        return {"format": _STATE_FORMAT, "pool": [_entry_to_json(e) for e in self.pool],
                "active": list(self.active), "n_resets": self.n_resets,
                "gcg_steps_done": self.gcg_steps_done, "generator": self._gen.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (after :meth:`setup` on the same data).

        Raises:
            TrainingError: the state is not R2D2's, or its pool names behaviours that are
                not in this run's harmful data.
        """
        if not hasattr(self, "handle"):
            raise TrainingError("r2d2: call setup() before load_state_dict()")
        if state.get("format") != _STATE_FORMAT or "pool" not in state:
            raise TrainingError(f"not an r2d2 method state (keys: {sorted(state)})")
        pool = []
        for k, s in enumerate(state["pool"]):
            rec = int(s["record"])
            if not (0 <= rec < len(self.harmful)) or self.harmful[rec]["prompt"] != s["instruction"] \
                    or self.harmful[rec]["target"] != s["target"]:
                raise TrainingError(f"r2d2 state: pool item {k} names behaviour {rec} "
                                    f"({s['instruction'][:40]!r}), which this run's harmful data lacks")
            item = self._new_item(self.handle, rec, 1)
            item.suffix_ids = torch.tensor(s["suffix_ids"], dtype=torch.long)
            item.best_ids = torch.tensor(s["best_ids"], dtype=torch.long)
            item.suffix, item.best_suffix = s["suffix"], s["best_suffix"]
            item.loss, item.initial_loss = float(s["loss"]), float(s["initial_loss"])
            item.best_loss, item.solved = float(s["best_loss"]), bool(s["solved"])
            item.losses, item.n_candidates = [], []
            pool.append(PoolEntry(rec, item, born=int(s["born"]), age=int(s["age"])))
        self.pool = pool
        self.active = [int(i) for i in state["active"]]
        self.n_resets = int(state["n_resets"])
        self.gcg_steps_done = int(state["gcg_steps_done"])
        self._gen.set_state(state["generator"].clone())
