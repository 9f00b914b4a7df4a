"""Per-token entropy of a model's outputs: the "collapsed or not" read-out of generations.

The **output entropy** of a generated completion is the mean, over its generation steps,
of the Shannon entropy (in nats) of the next-token distribution the model generated it
from: one distribution per generated token, plus the one that produced EOS when the
generation stopped there (so an empty completion still has one step). It is computed
teacher-forced from the prompt's chat-formatted ids followed by the *generated token ids*
(:attr:`~safetygeo.behavior.generate.Generations.token_ids`, not re-tokenized text), left
padded with explicit ``position_ids`` like every batch in safetygeo, softmax in float64.

A healthy assistant sits in between; a model collapsed onto one fixed token (CTRAP's trap)
has entropy near 0 and a model that lost its language modelling (gradient-ascent damage)
near ``log(vocab)``. Task accuracy says *whether* the model still works; entropy says
*how* it failed. :func:`output_entropy` is the one definition (the defenses benchmark and
the trajectory-level entropy diagnostics use it).

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> from safetygeo.behavior.generate import GenerationSettings, generate
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
    >>> g = generate(h, ["Hi", "Name a colour."], GenerationSettings(max_new_tokens=4),
    ...              progress=False)
    >>> ent = generation_entropies(h, g)
    >>> ent.shape, bool(((ent > 0) & (ent <= np.log(h.model.config.vocab_size) + 1e-9)).all())
    ((2,), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from safetygeo.activations.logits import encode_checked, pad_id_of
from safetygeo.behavior.generate import Generations, eos_token_ids
from safetygeo.behavior.metrics import mean_score
from safetygeo.errors import SafetyGeoError
from safetygeo.models.batching import iter_batches
from safetygeo.models.handle import ModelHandle
from safetygeo.results import Estimate

__all__ = ["generation_entropies", "ids_token_entropies", "output_entropy", "token_entropies"]


def token_entropies(
    handle: ModelHandle,
    prompts: Sequence[str],
    token_ids: Sequence[Sequence[int]],
    *,
    ended: Sequence[bool] | None = None,
    batch_size: int = 32,
) -> list[np.ndarray]:
    """Entropy (nats, float64) of each next-token distribution a completion was drawn from.

    Args:
        handle: the model.
        prompts: the instructions (chat-formatted with the handle's template).
        token_ids: the generated ids of each completion (without the final EOS).
        ended: per completion, whether generation stopped at EOS (then the distribution
            that produced it is included); default: all ``False``.
        batch_size: sequences per forward pass.

    Returns:
        One array per completion, of length ``len(token_ids[i]) + ended[i]``.

    Raises:
        SafetyGeoError: lengths differ, or a completion has no generation step at all.
    """
    if len(prompts) != len(token_ids):
        raise SafetyGeoError(f"{len(prompts)} prompts but {len(token_ids)} completions")
    return ids_token_entropies(handle, encode_checked(handle, list(prompts)), token_ids,
                               ended=ended, batch_size=batch_size)


def ids_token_entropies(
    handle: ModelHandle,
    prompt_ids: Sequence[Sequence[int]],
    token_ids: Sequence[Sequence[int]],
    *,
    ended: Sequence[bool] | None = None,
    batch_size: int = 32,
) -> list[np.ndarray]:
    """:func:`token_entropies` from already formatted prompt token ids (e.g. the ids an RL
    trainer rendered its rollouts from)."""
    if len(prompt_ids) != len(token_ids):
        raise SafetyGeoError(f"{len(prompt_ids)} prompts but {len(token_ids)} completions")
    stops = [False] * len(prompt_ids) if ended is None else [bool(e) for e in ended]
    if len(stops) != len(prompt_ids):
        raise SafetyGeoError(f"{len(prompt_ids)} prompts but {len(stops)} 'ended' flags")
    gen = [list(map(int, t)) for t in token_ids]
    steps = [len(t) + s for t, s in zip(gen, stops)]
    for i, n in enumerate(steps):
        if n == 0:
            raise SafetyGeoError(f"completion {i} has no generation step (no tokens and no EOS)")
    # the last generated token predicts nothing we need: the sequence ends with it unless
    # the EOS step is wanted, whose distribution is read after the last generated token
    seqs = [list(map(int, p)) + t for p, t in zip(prompt_ids, gen)]
    out: list[np.ndarray] = [np.empty(0)] * len(seqs)
    model = handle.model
    was = model.training
    model.eval()
    try:
        for batch in iter_batches(seqs, batch_size, pad_id_of(handle)):
            b = batch.to(handle.device)
            keep = max(steps[i] for i in batch.indices) + 1
            with torch.inference_mode():
                logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                               position_ids=b.position_ids, use_cache=False,
                               logits_to_keep=keep).logits
            width = logits.shape[1]
            for row, i in enumerate(batch.indices):
                # distributions at the last prompt token and after each generated token
                first = width - len(gen[i]) - 1
                lp = torch.log_softmax(logits[row, first:first + steps[i]].double(), dim=-1)
                out[i] = (-(lp.exp() * lp).sum(-1)).cpu().numpy()
    finally:
        model.train(was)
    return out


def generation_entropies(handle: ModelHandle, generations: Generations, *,
                         batch_size: int = 32) -> np.ndarray:
    """Mean per-token output entropy (nats) of each completion of ``generations`` (see the
    module docstring); EOS steps are included where generation stopped at EOS."""
    ended = [r == "eos" for r in generations.stop_reasons]
    if not eos_token_ids(handle):
        ended = [False] * len(ended)
    per = token_entropies(handle, generations.prompts, generations.token_ids, ended=ended,
                          batch_size=batch_size)
    return np.array([float(x.mean()) for x in per], dtype=np.float64)


def output_entropy(handle: ModelHandle, generations: Generations, *, n_boot: int = 1000,
                   ci: float = 0.95, seed: int = 0, batch_size: int = 32) -> Estimate:
    """Mean output entropy over completions (metric ``output_entropy``, nats) with a
    percentile-bootstrap CI over prompts."""
    values = generation_entropies(handle, generations, batch_size=batch_size)
    return mean_score(values, metric="output_entropy", n_boot=n_boot, ci=ci, seed=seed)
