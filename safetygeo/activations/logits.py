"""Next-token log-probabilities at the last prompt position, batched and left-padded.

Variants: pass ``repeat=k`` to run every batch as ``k`` consecutive copies (the layout
:func:`safetygeo.interventions.hooks.ablate` / ``add`` expect for ``[k, d]`` directions);
the result is then ``[k, n, vocab]``. With ``fan_out_layer=l`` the copies are made at the
input of block ``l`` instead of at the input (:func:`~safetygeo.models.hooks.fan_out`),
so the layers before an intervention at ``l`` run once for all ``k`` variants.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> lp = last_logprobs(h, ["Hi", "Write a poem."], progress=False)
    >>> tuple(lp.shape), bool(abs(lp.exp().sum(-1) - 1).max() < 1e-4)
    ((2, 512), True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo.errors import EmptyPromptSetError, PromptTooLongError
from safetygeo.models.batching import iter_batches
from safetygeo.models.handle import ModelHandle
from safetygeo.models.hooks import fan_out


def encode_checked(handle: ModelHandle, prompts: Sequence[str]) -> list[list[int]]:
    """Chat-format and tokenize; raise clear errors for empty sets or over-long prompts."""
    texts = list(getattr(prompts, "prompts", prompts))
    if not texts:
        raise EmptyPromptSetError("prompt set is empty")
    ids = handle.encode(texts).input_ids
    ctx = handle.max_context
    for i, row in enumerate(ids):
        if ctx is not None and len(row) > ctx:
            raise PromptTooLongError(
                f"prompt {i} is {len(row)} tokens after chat formatting; context is {ctx}"
            )
    return ids


def pad_id_of(handle: ModelHandle) -> int:
    tok = handle.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)


def last_logprobs(
    handle: ModelHandle,
    prompts: Sequence[str],
    *,
    batch_size: int = 16,
    repeat: int = 1,
    fan_out_layer: int | None = None,
    progress: bool = True,
) -> Float[Tensor, "*k n vocab"]:
    """Log-softmax of the next-token logits at the last position of each prompt (float32).

    Interventions active in the caller's context apply (this only runs the model).

    Args:
        repeat: run ``k`` copies of every batch (variants laid out in consecutive groups).
        fan_out_layer: make the copies at the input of this block instead of at the input
            (identical numbers, less compute when nothing differs before that layer).
    """
    from tqdm.auto import tqdm

    ids = encode_checked(handle, prompts)
    out: Tensor | None = None
    device = handle.device
    inside = fan_out_layer is not None and repeat > 1
    rep = lambda t: t.repeat(repeat, 1) if repeat > 1 and not inside else t  # noqa: E731
    copies = (fan_out(handle, fan_out_layer, repeat) if inside and fan_out_layer is not None
              else contextlib.nullcontext())
    with tqdm(total=len(ids), desc="logits", disable=not progress, leave=False) as bar, copies:
        for batch in iter_batches(ids, batch_size, pad_id_of(handle)):
            b = batch.to(device)
            with torch.inference_mode():
                logits = handle.model(
                    input_ids=rep(b.input_ids), attention_mask=rep(b.attention_mask),
                    position_ids=rep(b.position_ids), use_cache=False, logits_to_keep=1,
                ).logits[:, -1].float()
            lp = torch.log_softmax(logits, dim=-1).cpu().view(repeat, len(b.indices), -1)
            if out is None:
                out = torch.empty(repeat, len(ids), lp.shape[-1])
            out[:, list(b.indices)] = lp
            bar.update(len(b.indices))
    assert out is not None
    return out if repeat > 1 else out[0]
