"""nnsight interop: wrap a :class:`~safetygeo.models.ModelHandle` for nnsight and back,
and capture the residual stream through an nnsight trace.

:func:`to_nnsight` wraps the handle's own Hugging Face model (no copy: edits made through
nnsight act on the model safetygeo measures) in a
``nnsight.modeling.transformers.TransformersModel``. :func:`from_nnsight` goes the other
way: it takes the module and tokenizer out of a user's nnsight model.
:func:`capture_resid_nnsight` is the ``backend="nnsight"`` of
:func:`~safetygeo.activations.extract_activations`; it returns the same numbers as the
native forward pre-hooks (:func:`~safetygeo.models.hooks.capture_resid`).

Side effects worth knowing (nnsight 0.8):

* nnsight sets ``padding_side="left"`` (and a pad token, if missing) on the tokenizer it
  is given, so :func:`to_nnsight` hands it a *copy*; the handle's tokenizer is untouched.
* nnsight instruments every submodule it wraps by installing a ``forward`` entry in the
  module's ``__dict__`` (its "controller"). It is inert outside a trace — outputs,
  parameters and module classes are unchanged, and safetygeo's native hooks keep working —
  but the model object is not byte-for-byte the one you loaded.
* A trace of a left-padded batch computes ``position_ids`` from the attention mask only
  when none are given. :func:`capture_resid_nnsight` always passes the batch's own
  ``position_ids`` (``cumsum(mask) - 1``) so every backend sees the same positions.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> from safetygeo.models.batching import iter_batches
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> nns = to_nnsight(h)
    >>> nns._module is h.model, h.tokenizer.padding_side
    (True, 'right')
    >>> b = next(iter_batches(h.encode(["Hi", "Write a poem."]).input_ids, 2, pad_id=0))
    >>> acts = capture_resid_nnsight(h, b, layers=(0, 2), offsets=(-2, -1))
    >>> tuple(acts[2].shape)
    (2, 2, 32)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo.errors import BackendError
from safetygeo.models.batching import Batch
from safetygeo.models.handle import ModelHandle, load_model
from safetygeo.models.hooks import hidden_from_inputs

if TYPE_CHECKING:  # pragma: no cover
    from nnsight.modeling.transformers import TransformersModel
    from transformers import PreTrainedModel

_EXTRA_KEY = "nnsight"


def _import_transformers_model() -> type:
    try:
        from nnsight.modeling.transformers import TransformersModel
    except ImportError as exc:  # pragma: no cover - nnsight is a dependency
        raise BackendError(
            "backend 'nnsight' needs nnsight>=0.5 (nnsight.modeling.transformers."
            f"TransformersModel); import failed: {exc}"
        ) from exc
    return TransformersModel


def to_nnsight(handle: ModelHandle) -> TransformersModel:
    """An nnsight ``TransformersModel`` over the handle's own model (cached on the handle).

    The wrapped module *is* ``handle.model`` (no copy); the tokenizer is a copy, because
    nnsight switches its tokenizer to left padding. The wrapper is cached in
    ``handle.extra["nnsight"]`` and rebuilt if ``handle.model`` was replaced.

    Args:
        handle: the model to wrap.

    Returns:
        ``nnsight.modeling.transformers.TransformersModel`` (task ``text-generation``),
        already dispatched (real weights, no meta build).

    Raises:
        BackendError: nnsight is not installed or cannot wrap the model.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
        >>> nns = to_nnsight(h)
        >>> nns is to_nnsight(h), nns._module is h.model, nns.tokenizer is h.tokenizer
        (True, True, False)
    """
    cached = handle.extra.get(_EXTRA_KEY)
    if cached is not None and getattr(cached, "_module", None) is handle.model:
        return cached
    transformers_model = _import_transformers_model()
    tokenizer = copy.deepcopy(handle.tokenizer)
    try:
        nns = transformers_model(handle.model, tokenizer=tokenizer)
    except Exception as exc:
        raise BackendError(
            f"nnsight could not wrap {type(handle.model).__name__} "
            f"({handle.model_id}): {exc}"
        ) from exc
    handle.extra[_EXTRA_KEY] = nns
    return nns


def _hf_module(nns_model: Any) -> torch.nn.Module:
    """The underlying ``nn.Module`` of an nnsight model (dispatching a meta build first)."""
    if getattr(nns_model, "dispatched", True) is False and hasattr(nns_model, "dispatch"):
        nns_model.dispatch()  # a lazily built model lives on meta until dispatched
    module = getattr(nns_model, "_module", None)
    if not isinstance(module, torch.nn.Module):
        raise BackendError(
            f"{type(nns_model).__name__} is not an nnsight model wrapping a torch module "
            "(expected an Envoy with `._module`, e.g. nnsight TransformersModel / LanguageModel)"
        )
    return module


def from_nnsight(nns_model: Any, **load_kwargs: Any) -> ModelHandle:
    """A :class:`ModelHandle` over the module and tokenizer of an nnsight model.

    The handle shares the module with ``nns_model`` (no copy) and remembers the nnsight
    model, so ``to_nnsight(from_nnsight(m)) is m``.

    Args:
        nns_model: an nnsight ``TransformersModel`` / ``LanguageModel`` (a lazily built
            one is dispatched first), or any nnsight ``NNsight`` envoy with a
            ``tokenizer=`` given here.
        **load_kwargs: passed to :func:`~safetygeo.models.load_model` (``template=``,
            ``layers_path=``, ``dtype=``, ``tokenizer=`` to override nnsight's...).

    Raises:
        BackendError: not an nnsight model, or no tokenizer is available.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
        >>> h2 = from_nnsight(to_nnsight(h))
        >>> h2.model is h.model, h2.n_layers, to_nnsight(h2) is to_nnsight(h)
        (True, 2, True)
    """
    module = _hf_module(nns_model)
    tokenizer = load_kwargs.pop("tokenizer", None) or getattr(nns_model, "tokenizer", None)
    if tokenizer is None:
        raise BackendError(
            f"{type(nns_model).__name__} has no tokenizer; pass one: "
            "from_nnsight(model, tokenizer=...)"
        )
    if not load_kwargs.get("model_id") and isinstance(getattr(nns_model, "repo_id", None), str):
        load_kwargs["model_id"] = nns_model.repo_id or None
    handle = load_model(cast("PreTrainedModel", module), tokenizer, **load_kwargs)
    handle.extra[_EXTRA_KEY] = nns_model
    return handle


def _envoy_at(nns: Any, path: str) -> Any:
    try:
        return nns.get(path) if path else nns
    except AttributeError as exc:
        raise BackendError(f"nnsight model has no module at {path!r}") from exc


def capture_resid_nnsight(
    handle: ModelHandle,
    batch: Batch,
    layers: Sequence[int],
    offsets: Sequence[int],
) -> dict[int, Float[Tensor, "batch pos d"]]:
    """Residual stream at ``layers`` × ``offsets`` through an nnsight trace.

    Same contract as :func:`~safetygeo.models.hooks.capture_resid`: layer ``l <
    n_layers`` is the input of block ``l``, layer ``n_layers`` the input of the final
    norm; columns are ``seq + offset`` of the left-padded batch; the result is
    ``{layer: [batch, len(offsets), d]}`` in the model's dtype. The trace is given the
    batch's ``input_ids``, ``attention_mask`` and ``position_ids`` explicitly, reads each
    module's ``.inputs`` in forward order, ``.save()``\\ s only the selected columns, and
    stops the forward (``tracer.stop()``) after the deepest requested layer.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> from safetygeo.models.batching import iter_batches
        >>> from safetygeo.models.hooks import capture_resid
        >>> h = load_model(tiny_model_and_tokenizer("gpt2", n_layers=2, d_model=32),
        ...                template="User: {instruction}\\nAssistant:")
        >>> b = next(iter_batches(h.encode(["Hi", "Write a poem."]).input_ids, 2, pad_id=0))
        >>> a = capture_resid_nnsight(h, b, (1, 2), (-1,))
        >>> bool(torch.allclose(a[1], capture_resid(h, b, (1, 2), (-1,))[1], atol=1e-6))
        True
    """
    nns = to_nnsight(handle)
    layers = tuple(sorted(set(layers)))
    n_layers = handle.n_layers
    seq = batch.input_ids.shape[1]
    cols = torch.tensor([seq + o for o in offsets], device=batch.input_ids.device)
    blocks = _envoy_at(nns, handle.arch.layers_path)
    final_norm = _envoy_at(nns, handle.arch.final_norm_path)
    envoys = [blocks[layer] if layer < n_layers else final_norm for layer in layers]
    saved: list[Any] = []
    with torch.inference_mode(), nns.trace(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    ) as tracer:
        # Reads must follow the forward's order: layers are sorted, norm is last.
        for envoy in envoys:
            args, kwargs = envoy.inputs
            hidden = hidden_from_inputs(args, kwargs)
            saved.append(hidden.index_select(1, cols.to(hidden.device)).save())  # type: ignore[attr-defined]  # nnsight proxy method
        tracer.stop()
    out = {}
    for layer, value in zip(layers, saved):
        if not isinstance(value, Tensor):  # pragma: no cover - defensive
            raise BackendError(f"nnsight returned {type(value).__name__} for layer {layer}")
        out[layer] = value
    return out
