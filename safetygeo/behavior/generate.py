"""Batched generation on a :class:`~safetygeo.models.handle.ModelHandle`.

Prompts are chat-formatted with ``handle.encode`` and left-padded with explicit
``attention_mask`` and ``position_ids`` exactly as :mod:`safetygeo.models.batching`
does for extraction (``position_ids = cumsum(mask) − 1``), then decoded with a KV cache one
token per step; each new token's position is its row's last position + 1. A padded row
therefore generates what the prompt generates alone (tested token for token on several
architectures, and greedy output tested equal to ``transformers``' ``model.generate``).

Why a small loop rather than ``model.generate``: sampling here draws every row from its own
``torch.Generator`` seeded by ``(seed, prompt index)``, so a seeded sample of a prompt does
not depend on the batch size, the batch order or the other prompts in the batch (with
``model.generate`` all rows share one RNG stream, so the same prompt samples differently in a
different batch). The logits warpers (temperature, top-k, top-p) are transformers' own.

Interventions active in the caller's context apply to every forward pass (prefill and each
decode step): use it inside ``ablate(...)`` / ``add(...)``. For ``k`` directions applied as
batch *variants* (``[k, d]`` directions), :func:`generate_variants` lays each batch out as
``k`` consecutive groups; variant ``v`` of prompt ``i`` uses the same sampling seed as
variant ``0`` (common random numbers), so differences between variants come from the
intervention, not from sampling noise.

Stopping: a row stops at an end-of-sequence token (the model's ``generation_config``
EOS ids and the tokenizer's EOS; override with ``stop_token_ids``), at a user stop string
(the completion is cut before it), after ``max_new_tokens``, or at the model's context
length. ``token_ids`` exclude the EOS token itself.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> g = generate(h, ["Hi", "Write a poem."], GenerationSettings(max_new_tokens=4), progress=False)
    >>> len(g), [len(t) <= 4 for t in g.token_ids], g.stop_reasons[0] in STOP_REASONS
    (2, [True, True], True)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from safetygeo._validate import prompt_list
from safetygeo.activations.logits import encode_checked, pad_id_of
from safetygeo.errors import SafetyGeoError
from safetygeo.models.batching import iter_batches
from safetygeo.models.handle import ModelHandle

__all__ = ["STOP_REASONS", "GenerationSettings", "Generations", "generate", "generate_variants",
           "eos_token_ids"]

StopReason = Literal["eos", "length", "stop_string", "context"]
#: Why a row stopped: EOS token, ``max_new_tokens``, a stop string, or the context window.
STOP_REASONS: tuple[str, ...] = ("eos", "length", "stop_string", "context")


@dataclass(frozen=True)
class GenerationSettings:
    """How completions are decoded (recorded in every artifact).

    Attributes:
        max_new_tokens: most tokens generated per prompt.
        do_sample: ``False`` = greedy (argmax; ties go to the lowest token id, as in
            ``torch.argmax`` and transformers); ``True`` = sampling.
        temperature, top_k, top_p: sampling warpers (transformers' own); ignored when greedy.
            ``top_k=0`` and ``top_p=1.0`` disable them.
        seed: sampling seed; row ``i`` draws from ``Generator(seed=f(seed, i))``.
        stop_strings: the completion is cut before the first of these.
        stop_token_ids: end-of-sequence ids; ``None`` = the model's and tokenizer's EOS ids.
    """

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop_strings: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 1:
            raise SafetyGeoError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0
                and np.isfinite(self.temperature)):
            raise SafetyGeoError(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise SafetyGeoError(f"top_p must lie in (0, 1], got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise SafetyGeoError(f"top_k must be an int >= 0, got {self.top_k!r}")
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise SafetyGeoError(f"stop strings must be non-empty str, got {self.stop_strings!r}")
        if self.stop_token_ids is not None:
            object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable record."""
        d = asdict(self)
        d["stop_strings"] = list(self.stop_strings)
        d["stop_token_ids"] = None if self.stop_token_ids is None else list(self.stop_token_ids)
        return d


@dataclass(frozen=True)
class Generations:
    """Completions of a list of prompts, in prompt order.

    Attributes:
        prompts: the instructions as given (before chat formatting).
        completions: decoded generated text (special tokens skipped, cut at a stop string).
        token_ids: generated token ids per prompt (EOS excluded).
        stop_reasons: one of :data:`STOP_REASONS` per prompt.
        settings: the decoding settings.
    """

    prompts: tuple[str, ...]
    completions: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]
    stop_reasons: tuple[str, ...]
    settings: GenerationSettings = field(default_factory=GenerationSettings)

    def __len__(self) -> int:
        return len(self.prompts)

    def to_frame(self) -> pd.DataFrame:
        """One row per prompt: ``index, prompt, completion, n_tokens, stop_reason, token_ids``.

        Example:
            >>> g = Generations(("Hi",), ("Hello.",), ((5, 6),), ("eos",))
            >>> g.to_frame()[["prompt", "completion", "n_tokens"]].values.tolist()
            [['Hi', 'Hello.', 2]]
        """
        return pd.DataFrame({
            "index": np.arange(len(self), dtype=np.int64),
            "prompt": list(self.prompts),
            "completion": list(self.completions),
            "n_tokens": [len(t) for t in self.token_ids],
            "stop_reason": list(self.stop_reasons),
            "token_ids": [list(t) for t in self.token_ids],
        })


def eos_token_ids(handle: ModelHandle) -> tuple[int, ...]:
    """End-of-sequence ids: the model's ``generation_config.eos_token_id`` (int or list) and
    the tokenizer's ``eos_token_id``, deduplicated.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> eos_token_ids(load_model(tiny_model_and_tokenizer("qwen2", n_layers=1, d_model=16)))
        (2,)
    """
    ids: list[int] = []
    gc = getattr(handle.model, "generation_config", None)
    for src in (getattr(gc, "eos_token_id", None), handle.tokenizer.eos_token_id):
        if src is None:
            continue
        for t in ([src] if isinstance(src, int) else list(src)):
            if int(t) not in ids:
                ids.append(int(t))
    return tuple(ids)


def _row_seed(seed: int, index: int) -> int:
    """Per-prompt seed derived from ``(seed, index)`` (independent streams per prompt)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(1)[0])


def _cache_kwarg(model: torch.nn.Module) -> str:
    """The forward argument carrying the KV cache (``cache`` in transformers 5,
    ``past_key_values`` before)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params or "past_key_values" not in params else "past_key_values"


def _cache_of(out: Any, default: Any = None) -> Any:
    for name in ("cache", "past_key_values"):
        c = getattr(out, name, None)
        if c is not None:
            return c
    return default


def _warpers(s: GenerationSettings) -> Any:
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if s.temperature != 1.0:
        procs.append(TemperatureLogitsWarper(float(s.temperature)))
    if s.top_k > 0:
        procs.append(TopKLogitsWarper(int(s.top_k)))
    if s.top_p < 1.0:
        procs.append(TopPLogitsWarper(float(s.top_p)))
    return procs


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    hits = [text.find(s) for s in stops if s in text]
    return (text[:min(hits)], True) if hits else (text, False)


def generate_variants(
    handle: ModelHandle,
    prompts: Sequence[str],
    n_variants: int,
    settings: GenerationSettings = GenerationSettings(),
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> list[Generations]:
    """Generate every prompt ``n_variants`` times in one batch laid out as variant groups.

    Each forward pass holds ``n_variants`` consecutive copies of a prompt batch, the layout
    that :func:`~safetygeo.interventions.hooks.ablate` / ``add`` expect for ``[k, d]``
    directions (row ``r`` uses direction ``r // batch``). Without such an intervention the
    variants are identical. Arguments are as in :func:`generate`; ``batch_size`` counts
    prompts (a forward pass holds ``batch_size * n_variants`` rows).

    Returns:
        ``n_variants`` :class:`Generations`, in variant order.
    """
    from tqdm.auto import tqdm

    if isinstance(n_variants, bool) or not isinstance(n_variants, int) or n_variants < 1:
        raise SafetyGeoError(f"n_variants must be an int >= 1, got {n_variants!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SafetyGeoError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not all(hasattr(settings, f) for f in ("max_new_tokens", "do_sample", "seed")):
        raise SafetyGeoError(f"settings must be a GenerationSettings, got {type(settings).__name__}")
    texts = prompt_list(prompts)
    ids = encode_checked(handle, texts)
    eos = set(settings.stop_token_ids if settings.stop_token_ids is not None
              else eos_token_ids(handle))
    n, k = len(ids), n_variants
    tok_out: list[list[list[int]]] = [[[] for _ in range(n)] for _ in range(k)]
    reasons: list[list[str]] = [["" for _ in range(n)] for _ in range(k)]
    texts_out: list[list[str]] = [["" for _ in range(n)] for _ in range(k)]
    ctx = handle.max_context
    pad = pad_id_of(handle)
    cache_kw = _cache_kwarg(handle.model)
    warpers = _warpers(settings) if settings.do_sample else None
    with tqdm(total=n, desc="generate", disable=not progress, leave=False) as bar:
        for batch in iter_batches(ids, batch_size, pad):
            rows = [(v, i) for v in range(k) for i in batch.indices]
            budgets = []
            for _, i in rows:
                room = settings.max_new_tokens if ctx is None else min(settings.max_new_tokens, ctx - len(ids[i]))
                budgets.append((room, ctx is not None and room < settings.max_new_tokens))
            seeds = [_row_seed(settings.seed, i) for _, i in rows]
            out_ids, out_reason = _decode_batch(
                handle, batch.input_ids.repeat(k, 1), batch.attention_mask.repeat(k, 1),
                batch.position_ids.repeat(k, 1), budgets, eos, settings, warpers, seeds,
                cache_kw,
            )
            for r, (v, i) in enumerate(rows):
                toks = out_ids[r]
                text = cast(str, handle.tokenizer.decode(toks, skip_special_tokens=True))
                reason = out_reason[r]
                if settings.stop_strings:
                    text, cut = _cut_at_stop(text, settings.stop_strings)
                    reason = "stop_string" if cut else reason
                tok_out[v][i], reasons[v][i], texts_out[v][i] = toks, reason, text
            bar.update(len(batch.indices))
    return [
        Generations(
            prompts=tuple(texts), completions=tuple(texts_out[v]),
            token_ids=tuple(tuple(t) for t in tok_out[v]), stop_reasons=tuple(reasons[v]),
            settings=settings,
        )
        for v in range(k)
    ]


@torch.inference_mode()
def _decode_batch(
    handle: ModelHandle, input_ids: Tensor, mask: Tensor, pos: Tensor,
    budgets: list[tuple[int, bool]], eos: set[int], s: GenerationSettings,
    warpers: Any, seeds: list[int], cache_kw: str,
) -> tuple[list[list[int]], list[str]]:
    """Prefill then decode one left-padded batch; returns generated ids and stop reasons."""
    device = handle.device
    input_ids, mask, pos = input_ids.to(device), mask.to(device), pos.to(device)
    b = input_ids.shape[0]
    out_ids: list[list[int]] = [[] for _ in range(b)]
    reason: list[str | None] = [None] * b
    for r, (room, _) in enumerate(budgets):
        if room <= 0:
            reason[r] = "context"
    tok = handle.tokenizer
    out = handle.model(input_ids=input_ids, attention_mask=mask, position_ids=pos,
                       use_cache=True, logits_to_keep=1)
    cache = _cache_of(out)
    next_pos = pos[:, -1:] + 1
    ctx = handle.max_context
    gens: list[torch.Generator] | None = None
    for _step in range(max(room for room, _ in budgets)):
        if all(x is not None for x in reason):
            break
        logits = out.logits[:, -1].float()
        if s.do_sample:
            if gens is None:  # on the logits' device (differs from the input's with device_map)
                gens = [torch.Generator(device=logits.device).manual_seed(x) for x in seeds]
            # temperature / top-k / top-p warpers act row by row and ignore input_ids
            probs = torch.softmax(warpers(input_ids, logits), dim=-1)
            nxt = torch.stack([torch.multinomial(probs[r], 1, generator=gens[r])[0]
                               for r in range(b)])
        else:
            nxt = logits.argmax(-1)
        chosen = nxt.tolist()
        for r in range(b):
            if reason[r] is not None:
                continue
            t = int(chosen[r])
            if t in eos:
                reason[r] = "eos"
                continue
            out_ids[r].append(t)
            if s.stop_strings and any(x in tok.decode(out_ids[r], skip_special_tokens=True)
                                      for x in s.stop_strings):
                reason[r] = "stop_string"
            elif len(out_ids[r]) >= budgets[r][0]:
                reason[r] = "context" if budgets[r][1] else "length"
        if all(x is not None for x in reason):
            break
        feed = nxt[:, None].to(device)  # finished rows are fed too; their outputs are ignored
        mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=device)], 1)
        out = handle.model(input_ids=feed, attention_mask=mask, position_ids=next_pos,
                           use_cache=True, logits_to_keep=1, **{cache_kw: cache})
        cache = _cache_of(out, cache)
        next_pos = next_pos + 1
        if ctx is not None:  # rows that stopped at the context edge are fed, never read
            next_pos = next_pos.clamp(max=ctx - 1)
    return out_ids, [x or "length" for x in reason]


def generate(
    handle: ModelHandle,
    prompts: Sequence[str],
    settings: GenerationSettings = GenerationSettings(),
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> Generations:
    """Generate a completion for each chat-formatted prompt (greedy by default).

    Args:
        handle: the model; interventions active in the caller's context apply.
        prompts: instructions (a list or a :class:`~safetygeo.data.PromptSet`; a bare
            string is one prompt), formatted with the handle's chat template.
        settings: decoding (:class:`GenerationSettings`: greedy by default; a sampled
            prompt's sample depends only on ``(settings.seed, its index)``).
        batch_size: prompts per forward pass (sorted by length to limit padding).
        progress: show a progress bar.

    Returns:
        :class:`Generations` in prompt order.

    Raises:
        EmptyPromptSetError: no prompts. PromptTooLongError: a prompt exceeds the context.
        SafetyGeoError: invalid settings.
    """
    return generate_variants(handle, prompts, 1, settings, batch_size=batch_size,
                             progress=progress)[0]
