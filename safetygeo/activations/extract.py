"""Streaming activation extraction: prompts → per-layer × per-position statistics.

Data flow: instructions are chat-formatted and tokenized (:mod:`safetygeo.models.chat`),
grouped into left-padded batches (:mod:`~safetygeo.models.batching`), run through a
*capture backend* that returns only the selected positions of the residual stream, and
reduced on the fly in float64 (:mod:`~safetygeo.activations.reducers`). The full
``[batch, seq, layers, d]`` cache is never held.

Backends: ``"native"`` (forward pre-hooks; the hot path), ``"nnsight"`` and
``"transformer_lens"`` (interop; same numbers, see tests), or any callable
``capture(handle, batch, layers, offsets) -> {layer: [batch, pos, d]}``.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> stats = extract_activations(h, ["Write a poem.", "Make a cake."], progress=False)
    >>> tuple(stats.mean.shape)  # layers 0..2, post-instruction positions, d_model
    (3, 8, 32)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import positive_int, prompt_list
from safetygeo.activations.positions import PositionSelection, PositionSpec, resolve_positions
from safetygeo.activations.reducers import MomentAccumulator, SecondMoment
from safetygeo.errors import (
    BackendError,
    EmptyPromptSetError,
    PositionError,
    PromptTooLongError,
    SafetyGeoError,
)
from safetygeo.models.batching import Batch, iter_batches_lazy
from safetygeo.models.handle import ModelHandle
from safetygeo.models.hooks import capture_resid

CaptureFn = Callable[[ModelHandle, Batch, Sequence[int], Sequence[int]], dict[int, Tensor]]


def get_backend(backend: str | CaptureFn) -> CaptureFn:
    """Resolve a backend name (``native``, ``nnsight``, ``transformer_lens``) to a capture fn."""
    if callable(backend):
        return backend
    if backend == "native":
        return capture_resid
    if backend == "nnsight":
        from safetygeo.models.nnsight_backend import capture_resid_nnsight

        return capture_resid_nnsight
    if backend in ("transformer_lens", "tlens", "transformer-lens"):
        from safetygeo.models.tlens_backend import capture_resid_tlens

        return capture_resid_tlens
    raise BackendError(f"unknown backend {backend!r}; use 'native', 'nnsight' or 'transformer_lens'")


def prompt_hash(prompts: Sequence[str]) -> str:
    """SHA-256 of the prompt texts (JSON list, UTF-8) — identifies a prompt set in artifacts."""
    return hashlib.sha256(json.dumps(list(prompts), ensure_ascii=False).encode()).hexdigest()


@dataclass
class ActivationStats:
    """Per-layer × per-position statistics of one prompt set.

    Attributes:
        mean: float64 mean activation, ``[layer, pos, d]``.
        count: number of prompts.
        layers: layer index of each slot (``n_layers`` = final-norm input).
        positions: offsets from the end and their labels.
        n_eoi: number of post-instruction tokens of the template used.
        mean_sq: float64 E[x²] per dimension (``second_moment="diag"``), or ``None``.
        mean_outer: float64 E[xxᵀ] (``second_moment="full"``), ``[layer, pos, d, d]``, or ``None``.
        vectors: per-prompt activations ``[n, layer, pos, d]`` (``keep_vectors=True``), or ``None``.
        meta: provenance (model, revision, prompt-set hash, template, backend, seed, ...).
    """

    mean: Float[Tensor, "layer pos d"]
    count: int
    layers: tuple[int, ...]
    positions: PositionSelection
    n_eoi: int
    mean_sq: Float[Tensor, "layer pos d"] | None = None
    mean_outer: Float[Tensor, "layer pos d d"] | None = None
    vectors: Float[Tensor, "n layer pos d"] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def slot(self, layer: int) -> int:
        """Index of ``layer`` in :attr:`layers`."""
        if layer not in self.layers:
            raise PositionError(f"layer {layer} was not extracted (have {self.layers})")
        return self.layers.index(layer)

    def at(self, layer: int, position: str | int) -> Float[Tensor, " d"]:
        """Mean vector at ``layer`` and ``position`` (label like ``'eoi-1'`` or offset)."""
        return self.mean[self.slot(layer), self.positions.index(position)]

    def variance(self) -> Float[Tensor, "layer pos d"]:
        """Per-dimension population variance (needs ``second_moment``)."""
        if self.mean_sq is not None:
            return (self.mean_sq - self.mean**2).clamp(min=0)
        if self.mean_outer is not None:
            return (torch.diagonal(self.mean_outer, dim1=-2, dim2=-1) - self.mean**2).clamp(min=0)
        raise SafetyGeoError("extract with second_moment='diag' or 'full' to get variances")

    def covariance(self) -> Float[Tensor, "layer pos d d"]:
        """Population covariance E[xxᵀ] − μμᵀ (needs ``second_moment='full'``)."""
        if self.mean_outer is None:
            raise SafetyGeoError("extract with second_moment='full' to get covariances")
        return self.mean_outer - torch.einsum("lpi,lpj->lpij", self.mean, self.mean)

    def save(self, path: str) -> None:
        """Write safetensors (+ JSON sidecar) atomically; see :mod:`~safetygeo.activations.store`."""
        from safetygeo.activations.store import save_stats

        save_stats(self, path)

    @classmethod
    def load(cls, path: str) -> ActivationStats:
        """Read an artifact written by :meth:`save`."""
        from safetygeo.activations.store import load_stats

        return load_stats(path)


#: Prompts tokenized at once while measuring lengths: memory stays flat in the number of
#: prompts (token ids of 20,000 prompts are never held together).
TOKENIZE_CHUNK = 1024


def token_lengths(handle: ModelHandle, texts: Sequence[str], chunk: int | None = None
                  ) -> tuple[list[int], int]:
    """Token count of every chat-formatted prompt and the template's ``n_eoi``, tokenizing
    ``chunk`` prompts at a time (default :data:`TOKENIZE_CHUNK`) and keeping only lengths.

    The ids are those of ``handle.encode(texts)`` (each prompt is tokenized on its own);
    the warning about prompts tokenized in two segments is given once for all of them.
    """
    import warnings

    chunk = TOKENIZE_CHUNK if chunk is None else chunk
    lengths: list[int] = []
    n_eoi, n_seg = 0, 0
    for start in range(0, len(texts), chunk):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = handle.encode(list(texts[start:start + chunk]))
        lengths.extend(len(ids) for ids in enc.input_ids)
        n_eoi, n_seg = enc.n_eoi, n_seg + sum(enc.segmented)
    if n_seg:
        warnings.warn(
            f"{n_seg} of {len(texts)} prompts tokenize differently across the "
            "instruction/template boundary; they were tokenized in two segments so that "
            "post-instruction positions stay exact", stacklevel=3)
    return lengths, n_eoi


def _encode_quietly(handle: ModelHandle, texts: Sequence[str], idx: list[int]) -> list[list[int]]:
    """One batch's token ids (the two-segment warning was given by :func:`token_lengths`)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return handle.encode([texts[i] for i in idx]).input_ids


def extract_activations(
    handle: ModelHandle,
    prompts: Sequence[str] | Any,
    *,
    layers: str | int | Sequence[int] = "all",
    positions: PositionSpec = "post_instruction",
    batch_size: int = 8,
    second_moment: SecondMoment = None,
    keep_vectors: bool = False,
    backend: str | CaptureFn = "native",
    progress: bool = True,
    seed: int | None = 0,
) -> ActivationStats:
    """Stream ``prompts`` through ``handle`` and reduce activations on the fly.

    Args:
        handle: the model.
        prompts: instructions (a :class:`~safetygeo.data.PromptSet` or a list of strings);
            they are chat-formatted with ``handle``'s template.
        layers: ``"all"`` (``0..L``), an int, or ints; ``L`` is the final-norm input.
        positions: see :mod:`~safetygeo.activations.positions`.
        batch_size: prompts per forward pass.
        second_moment: ``None``, ``"diag"`` or ``"full"``.
        keep_vectors: also return per-prompt vectors (memory ∝ prompts × layers × pos × d).
        backend: ``"native"`` (hot path), ``"nnsight"``, ``"transformer_lens"`` or a callable.
        progress: show a progress bar.
        seed: recorded in the provenance. Extraction draws no random numbers (eval mode), so
            it does not touch torch's global RNG: a notebook's sampling state survives.

    Raises:
        EmptyPromptSetError, LayerIndexError, PositionError, PromptTooLongError, ChatTemplateError.
    """
    set_name = getattr(prompts, "name", None)
    texts = prompt_list(prompts, f"prompt set {set_name}" if set_name else "prompts",
                        allow_empty=True)
    if not texts:
        raise EmptyPromptSetError(f"prompt set {set_name or ''!s} is empty".replace("  ", " "))
    batch_size = positive_int(batch_size, "batch_size")
    if second_moment not in (None, "diag", "full"):
        raise SafetyGeoError(f"second_moment must be None, 'diag' or 'full', got {second_moment!r}")
    layer_sel = handle.check_layers(layers)
    capture = get_backend(backend)
    lengths, n_eoi = token_lengths(handle, texts)
    sel = resolve_positions(positions, n_eoi)
    max_ctx = handle.max_context
    for i, n in enumerate(lengths):
        if max_ctx is not None and n > max_ctx:
            raise PromptTooLongError(
                f"prompt {i} is {n} tokens after chat formatting; the model's context is "
                f"{max_ctx} tokens"
            )
        if -min(sel.offsets) > n:
            raise PositionError(
                f"position offset {min(sel.offsets)} is before the start of prompt {i} "
                f"({n} tokens)"
            )
    device = handle.device
    acc = MomentAccumulator(
        len(layer_sel), len(sel), handle.d_model, len(texts), second_moment=second_moment,
        keep_vectors=keep_vectors, device=device,
    )
    pad_id = handle.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = handle.tokenizer.eos_token_id or 0
    from tqdm.auto import tqdm

    bar = tqdm(total=len(texts), desc="extract", unit="prompt", disable=not progress, leave=False)
    try:
        for batch in iter_batches_lazy(lengths, lambda idx: _encode_quietly(handle, texts, idx),
                                       batch_size, pad_id):
            batch = batch.to(device)
            acts = capture(handle, batch, layer_sel, sel.offsets)
            for slot, layer in enumerate(layer_sel):
                acc.update(slot, acts[layer], batch.indices)
            bar.update(len(batch.indices))
    finally:
        bar.close()
    meta = {
        **handle.describe(),
        "prompt_set": {"name": set_name, "label": getattr(prompts, "label", None),
                        "n": len(texts), "sha256": prompt_hash(texts)},
        "template": {"prefix": handle.chat_template().prefix,
                     "suffix": handle.chat_template().suffix,
                     "source": handle.chat_template().source},
        "positions": {"offsets": list(sel.offsets), "labels": list(sel.labels),
                       "spec": positions if isinstance(positions, (str, int)) else list(positions)},
        "layers": list(layer_sel),
        "n_eoi": n_eoi,
        "batch_size": batch_size,
        "backend": backend if isinstance(backend, str) else getattr(backend, "__name__", "custom"),
        "second_moment": second_moment,
        "seed": seed,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return ActivationStats(
        mean=acc.mean(), count=acc.count, layers=layer_sel, positions=sel, n_eoi=n_eoi,
        mean_sq=acc.mean_sq(), mean_outer=acc.mean_outer(), vectors=acc.vectors, meta=meta,
    )
