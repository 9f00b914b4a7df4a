"""The GCG driver: build a pool (:func:`gcg_init`), step it (:func:`gcg_step`), run it to the
end (:func:`gcg_run`), and the one-call attacks built on them. See :mod:`safetygeo.attacks.gcg`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from safetygeo.attacks.gcg.candidates import (
    _candidate_losses,
    _suffix_texts,
    allowed_tokens,
    candidate_losses,
    sample_candidates,
)
from safetygeo.attacks.gcg.config import GCGConfig, GCGError, ModelLike
from safetygeo.attacks.gcg.model import (
    _as_handle,
    _embed_onehot,
    _eval_mode,
    _prefixes,
    _token_gradient,
)
from safetygeo.attacks.gcg.state import GCGItem, GCGPrompt, GCGResult, GCGState
from safetygeo.errors import PromptTooLongError
from safetygeo.models.handle import ModelHandle


def _layout(
    handle: ModelHandle, instruction: str, target: str, config: GCGConfig, where: str
) -> tuple[GCGPrompt, list[int]]:
    tok, template = handle.tokenizer, handle.chat_template()
    if not isinstance(instruction, str):
        raise GCGError(f"{where}: instruction must be a string, got {type(instruction).__name__}")
    if not isinstance(target, str) or not target.strip():
        raise GCGError(f"{where}: target is empty ({target!r}); GCG needs a target completion "
                       "such as AdvBench's 'Sure, here is ...'")
    target_ids = list(tok(target, add_special_tokens=False)["input_ids"])
    if not target_ids:
        raise GCGError(f"{where}: target {target!r} tokenizes to 0 tokens")
    sep = config.separator if instruction else ""
    before_text = template.prefix + instruction
    full = list(tok(before_text + sep + config.suffix_init + template.suffix,
                    add_special_tokens=False)["input_ids"])
    before = list(tok(before_text, add_special_tokens=False)["input_ids"])
    after = template.suffix_ids(tok)
    n_suffix = len(full) - len(before) - len(after)
    if n_suffix <= 0 and full[:len(before)] == before:
        raise GCGError(f"suffix_init {config.suffix_init!r} tokenizes to 0 tokens")
    if (n_suffix <= 0 or full[:len(before)] != before
            or (after and full[len(full) - len(after):] != after)):
        raise GCGError(
            f"{where}: the tokenizer merges the suffix {config.suffix_init!r} with the "
            f"instruction {instruction!r} or the chat template; change suffix_init or separator"
        )
    suffix = full[len(before):len(full) - len(after)]
    ctx = handle.max_context
    total = len(full) + len(target_ids)
    if ctx is not None and total > ctx:
        raise PromptTooLongError(f"{where}: prompt + suffix + target is {total} tokens; "
                                 f"context is {ctx}")
    prompt = GCGPrompt(instruction, target, before_text, template.suffix, tuple(before),
                       tuple(after), tuple(target_ids))
    return prompt, suffix


def _check_embedding(handle: ModelHandle, ids: Tensor) -> None:
    embed = handle.model.get_input_embeddings()
    weight = cast(Tensor, embed.weight)
    with torch.no_grad():
        onehot = F.one_hot(ids.to(handle.device), weight.shape[0]).to(weight.dtype)
        if not torch.allclose(_embed_onehot(embed, onehot), embed(ids.to(handle.device)),
                              rtol=1e-3, atol=1e-5):
            raise GCGError(
                f"the input embedding {type(embed).__name__} is not a (scaled) lookup of its "
                "weight matrix; one-hot token gradients are not defined for it"
            )


def gcg_init(
    model: ModelLike,
    instructions: Sequence[str],
    targets: Sequence[str],
    config: GCGConfig | None = None,
    *,
    universal: bool = False,
) -> GCGState:
    """Set up a pool: one item per (instruction, target), or one ``universal`` item over all.

    Args:
        model: a :class:`ModelHandle`, or a ``(model, tokenizer)`` pair (for a model in
            training: its train/eval mode is left as it is).
        instructions: user instructions (a :class:`~safetygeo.data.PromptSet` works).
        targets: one target completion per instruction.
        config: hyper-parameters (default :class:`GCGConfig`).
        universal: optimize a single suffix for all prompts (mean loss, Zou et al. Alg. 2).

    Raises:
        GCGError: empty or mismatched inputs, empty target, suffix_init with no tokens,
            no allowed tokens, unsupported embedding.
        PromptTooLongError: the formatted prompt + suffix + target exceeds the context.
    """
    config = config or GCGConfig()
    handle = _as_handle(model)
    instructions = list(getattr(instructions, "prompts", instructions))
    if targets is None:
        raise GCGError("targets is None: pass one target completion per instruction")
    targets = list(targets)
    if not instructions:
        raise GCGError("no instructions to attack")
    if len(targets) != len(instructions):
        raise GCGError(f"got {len(instructions)} instructions but {len(targets)} targets")
    n_vocab = cast(Tensor, handle.model.get_input_embeddings().weight).shape[0]
    allowed = allowed_tokens(handle.tokenizer, n_vocab, allow_non_ascii=config.allow_non_ascii,
                             forbidden_token_ids=config.forbidden_token_ids)
    if not allowed.any():
        raise GCGError("no allowed tokens: every token is special, non-ASCII or forbidden")
    layouts = [_layout(handle, i, t, config, f"prompt {k}")
               for k, (i, t) in enumerate(zip(instructions, targets))]
    groups = [layouts] if universal else [[lay] for lay in layouts]
    items = []
    for group in groups:
        ids = group[0][1]
        for k, (_, other) in enumerate(group):
            if other != ids:
                raise GCGError(f"suffix_init tokenizes differently after prompt {k}; universal "
                               "mode needs one token sequence for all prompts")
        prompts = tuple(p for p, _ in group)
        suffix_ids = torch.tensor(ids, dtype=torch.long)
        _check_embedding(handle, suffix_ids)
        texts, ok = _suffix_texts(handle.tokenizer, prompts, suffix_ids[None])
        text = texts[0]
        if text is None:
            if config.filter_tokenization:
                raise GCGError(f"suffix_init {config.suffix_init!r} does not round-trip through "
                               "the tokenizer in context; choose another suffix_init")
            text = config.separator + config.suffix_init
        item = GCGItem(prompts, suffix_ids, text, math.nan, math.nan, suffix_ids.clone(), text,
                       math.inf)
        with _eval_mode(handle.model):
            loss, greedy = candidate_losses(handle, item, suffix_ids[None],
                                            use_prefix_cache=config.use_prefix_cache)
        item.loss = item.initial_loss = item.best_loss = float(loss[0])
        item.solved = bool(greedy[0])
        items.append(item)
    gen = torch.Generator()
    if config.seed is None:
        gen.seed()
    else:
        gen.manual_seed(config.seed)
    return GCGState(items, config, allowed, gen)


def _step_item(handle: ModelHandle, item: GCGItem, state: GCGState, config: GCGConfig) -> None:
    t0 = time.perf_counter()
    prefixes = _prefixes(handle.model, item, config.use_prefix_cache)  # shared by both passes
    grad, current = _token_gradient(handle.model, item, prefixes)
    cands = sample_candidates(item.suffix_ids, grad, state.allowed, search_width=config.search_width,
                              topk=config.topk, n_replace=config.n_replace,
                              generator=state.generator)
    cands = torch.unique(cands, dim=0)
    if config.filter_tokenization:
        texts, ok = _suffix_texts(handle.tokenizer, item.prompts, cands)
        cands, texts = cands[ok], [t for t in texts if t is not None]
    else:
        texts = [None] * len(cands)
    item.n_candidates.append(int(cands.shape[0]))
    if cands.shape[0] == 0:  # nothing survived the filter: stay (the loss is re-measured)
        item.loss = current
        item.losses.append(current)
        item.wall_time_s += time.perf_counter() - t0
        return
    loss, greedy = _candidate_losses(handle.model, item, cands, prefixes, config.eval_batch_size)
    if config.early_stop and bool(greedy.any()):
        j = int(torch.where(greedy, loss, torch.full_like(loss, math.inf)).argmin())
    else:
        j = int(loss.argmin())
    text = texts[j]
    if text is None:  # filter off: best-effort text
        text = cast(str, handle.tokenizer.decode(cands[j].tolist(),
                                                 clean_up_tokenization_spaces=False))
    item.suffix_ids, item.suffix, item.loss = cands[j].clone(), text, float(loss[j])
    item.solved = bool(greedy[j])
    item.losses.append(item.loss)
    if item.loss < item.best_loss:
        item.best_ids, item.best_suffix, item.best_loss = item.suffix_ids.clone(), text, item.loss
    item.wall_time_s += time.perf_counter() - t0


def gcg_step(model: ModelLike, state: GCGState, config: GCGConfig | None = None) -> GCGState:
    """Advance every item of the pool by one GCG step against the model as it is now.

    The model runs in eval mode and each submodule's train/eval flag is restored
    afterwards; parameter ``.grad`` is never written (gradients are taken w.r.t. the
    one-hot suffix only). With ``config.early_stop``, solved items are skipped.

    Args:
        model: a :class:`ModelHandle` or ``(model, tokenizer)`` pair.
        state: the pool (updated in place and returned).
        config: overrides ``state.config`` for this step (e.g. a smaller search width).
    """
    config = config or state.config
    handle = _as_handle(model)
    with _eval_mode(handle.model):
        for item in state.items:
            if config.early_stop and item.solved:
                continue
            _step_item(handle, item, state, config)
    state.step += 1
    return state


def gcg_run(
    model: ModelLike, state: GCGState, num_steps: int | None = None, *, progress: bool = True,
) -> list[GCGResult]:
    """Run ``num_steps`` (default ``state.config.num_steps``) steps; one result per item."""
    from tqdm.auto import tqdm

    n = state.config.num_steps if num_steps is None else num_steps
    with tqdm(range(n), desc="gcg", disable=not progress, leave=False) as bar:
        for _ in bar:
            gcg_step(model, state)
            bar.set_postfix(loss=f"{min(i.loss for i in state.items):.3f}",
                            solved=sum(i.solved for i in state.items))
            if state.config.early_stop and all(i.solved for i in state.items):
                break
    return [GCGResult.from_item(i) for i in state.items]


def gcg_attack(
    model: ModelLike,
    instruction: str | Sequence[str],
    target: str | Sequence[str],
    config: GCGConfig | None = None,
    *,
    progress: bool = True,
) -> GCGResult:
    """Optimize one GCG suffix for ``instruction`` (or one universal suffix for a list).

    Args:
        model: a :class:`ModelHandle` or ``(model, tokenizer)`` pair.
        instruction: the instruction, or several for a universal suffix.
        target: the target completion (one per instruction).
        config: hyper-parameters (``num_steps`` steps are run).
        progress: show a tqdm bar.
    """
    single = isinstance(instruction, str)
    instructions = [instruction] if isinstance(instruction, str) else list(instruction)
    targets = [target] if isinstance(target, str) else list(target)
    if isinstance(target, str) and not single:
        targets = targets * len(instructions)
    state = gcg_init(model, instructions, targets, config, universal=True)
    return gcg_run(model, state, progress=progress)[0]


def gcg_adversarial_prompts(
    model: ModelLike,
    instructions: Sequence[str],
    targets: Sequence[str] | None = None,
    config: GCGConfig | None = None,
    *,
    progress: bool = True,
    return_results: bool = False,
) -> list[str] | tuple[list[str], list[GCGResult]]:
    """Fresh GCG attack on each instruction against this checkpoint (adaptive attack).

    Each instruction gets its own suffix (``config.num_steps`` steps); the returned prompts
    ``instruction + suffix`` go to the behaviour module's generation + refusal
    classification, so ASR under GCG = ASR on these prompts.

    Args:
        model: the checkpoint to attack.
        instructions: harmful instructions, or a ``PromptSet`` (its ``targets`` are used
            when ``targets`` is None, e.g. AdvBench / JailbreakBench targets).
        targets: target completions, one per instruction.
        config: hyper-parameters.
        progress: show a tqdm bar over steps.
        return_results: also return the per-prompt :class:`GCGResult`.
    """
    texts = list(getattr(instructions, "prompts", instructions))
    if targets is None:
        targets = getattr(instructions, "targets", None)
        if targets is None:
            raise GCGError("no targets given and the prompt set has none; pass targets=[...] "
                           "(e.g. 'Sure, here is ...')")
    targets = list(targets)
    missing = [i for i, t in enumerate(targets) if t is None]
    if missing:
        raise GCGError(f"prompts {missing[:5]} have no target")
    state = gcg_init(model, texts, targets, config)
    results = gcg_run(model, state, progress=progress)
    prompts = [r.prompt for r in results]
    return (prompts, results) if return_results else prompts


# ----------------------------------------------------------------------------- ASR under GCG
