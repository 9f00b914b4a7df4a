"""Benign utility that needs no judge: teacher-forced likelihood of reference answers.

:func:`reference_logprobs` scores reference answers under the model without generating:
the chat-formatted prompt's ids are followed by the reference's ids (tokenized on their
own, exactly as a generated reply would follow the prompt), the batch is left-padded with
explicit ``position_ids`` as everywhere in safetygeo, and the log-probability of each
reference token given everything before it is read off the logits. It returns the mean
per-token log-prob (``reduction="sum"`` for the total). Interventions active in the
caller's context apply.

Sets with reference answers (``targets``) are scored by exact match and by this
likelihood in ``evaluate_behavior``; a world makes its own (the toy world's task sets:
:func:`safetygeo.toy.zoo.toy_task_set`).

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
    >>> lp = reference_logprobs(h, ["Name a colour."], ["Blue."], progress=False)
    >>> tuple(lp.shape), bool(lp[0] < 0)
    ((1,), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import prompt_list
from safetygeo.activations.logits import encode_checked, pad_id_of
from safetygeo.errors import PromptTooLongError, SafetyGeoError
from safetygeo.models.batching import iter_batches
from safetygeo.models.handle import ModelHandle

__all__ = ["reference_logprobs"]


def reference_logprobs(
    handle: ModelHandle,
    prompts: Sequence[str],
    references: Sequence[str],
    *,
    reduction: Literal["mean", "sum"] = "mean",
    batch_size: int = 8,
    progress: bool = True,
) -> Float[Tensor, " n"]:
    """Teacher-forced log-probability of each reference answer after its prompt (float64).

    Args:
        handle: the model.
        prompts: instructions (chat-formatted with the handle's template).
        references: one reference reply per prompt (non-empty).
        reduction: ``"mean"`` per reference token, or ``"sum"``.
        batch_size: sequences per forward pass.
        progress: show a progress bar.

    Raises:
        SafetyGeoError: lengths differ, or a reference is empty (names the index).
        PromptTooLongError: prompt + reference exceed the context (names the index).
    """
    from tqdm.auto import tqdm

    if reduction not in ("mean", "sum"):
        raise SafetyGeoError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    texts = prompt_list(prompts)
    if isinstance(references, str):
        references = [references]
    if len(texts) != len(references):
        raise SafetyGeoError(f"{len(texts)} prompts but {len(references)} references")
    p_ids = encode_checked(handle, texts)
    r_ids: list[list[int]] = []
    for i, ref in enumerate(references):
        if not isinstance(ref, str) or not ref.strip():
            raise SafetyGeoError(f"reference answer at prompt index {i} is empty or missing")
        r_ids.append(list(handle.tokenizer(ref, add_special_tokens=False)["input_ids"]))
    seqs = [p + r for p, r in zip(p_ids, r_ids, strict=True)]
    ctx = handle.max_context
    for i, s in enumerate(seqs):
        if ctx is not None and len(s) > ctx:
            raise PromptTooLongError(f"prompt {i} + reference is {len(s)} tokens; context is {ctx}")
    out = torch.empty(len(seqs), dtype=torch.float64)
    device = handle.device
    with tqdm(total=len(seqs), desc="reference log-probs", disable=not progress,
              leave=False) as bar:
        for batch in iter_batches(seqs, batch_size, pad_id_of(handle)):
            b = batch.to(device)
            keep = max(len(r_ids[i]) for i in batch.indices) + 1  # only the reference's logits
            with torch.inference_mode():
                logits = handle.model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                                      position_ids=b.position_ids, use_cache=False,
                                      logits_to_keep=keep).logits
            width = logits.shape[1]
            for row, i in enumerate(batch.indices):
                m = len(r_ids[i])
                lp = torch.log_softmax(logits[row, width - m - 1:width - 1].double(), dim=-1)
                tgt = torch.as_tensor(r_ids[i], device=lp.device)
                tok_lp = lp.gather(-1, tgt[:, None])[:, 0]
                out[i] = tok_lp.mean() if reduction == "mean" else tok_lp.sum()
            bar.update(len(batch.indices))
    return out
