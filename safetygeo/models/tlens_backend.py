"""TransformerLens interop: a ``TransformerBridge`` of a :class:`~safetygeo.models.ModelHandle`
and back, and residual-stream capture through ``bridge.run_with_cache``.

TransformerLens 4.x loads Hugging Face models through ``TransformerBridge`` only
(``HookedTransformer`` conversion is gone). ``TransformerBridge.boot_transformers(name,
hf_model=...)`` rewrites the model it is given *in place* — bridge components replace its
submodules and attention is switched to ``"eager"`` — so :func:`to_transformer_lens` boots
it on a deep copy of ``handle.model``; the handle's model keeps its parameters, module
classes and attention implementation. The copy costs one model's worth of memory.

Upstream quirks handled here (transformer-lens 4.3):

* ``boot_transformers`` re-loads the tokenizer with ``add_bos_token=True`` from
  ``tokenizer.init_kwargs["name_or_path"]``, which fails offline for an in-memory tokenizer
  (and would ask the Hub for a hub id). The tokenizer is saved to a temporary folder and
  booted from there, so nothing is fetched. The bridge's tokenizer therefore prepends BOS
  when called directly (TransformerLens convention); safetygeo always tokenizes with
  ``add_special_tokens=False``, so extraction is unaffected.
* ``name`` is only recorded and used to look up aliases / remote-code patches; an empty
  name keeps the boot offline. ``bridge.cfg.model_name`` is set to the handle's id after.
* ``forward`` accepts ``attention_mask`` and ``position_ids`` and hands them to the HF model.
  Without ``position_ids`` the bridge derives ``cumsum(mask) - 1`` itself (same numbers
  for the real tokens); :func:`capture_resid_tlens` passes the batch's own positions
  anyway. Without an ``attention_mask`` a left-padded batch is silently wrong (real
  tokens attend to padding; GPT-2's absolute positions shift).
* Hook names: ``blocks.{l}.hook_resid_pre`` is the input of block ``l``;
  ``ln_final.hook_in`` is the input of the final norm (equal to
  ``blocks.{L-1}.hook_resid_post``). ``stop_at_layer=k`` stops before block ``k``, so
  hooks of blocks ``>= k`` never fire; it cannot stop before the final norm.
* The bridge runs eager attention while the handle's model may run SDPA; in fp32 the
  two differ by float rounding only (≈1e-8 on the tiny test models).

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> from safetygeo.models.batching import iter_batches
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> bridge = to_transformer_lens(h)
    >>> bridge.original_model is h.model, type(h.model.model.layers[0]).__name__
    (False, 'LlamaDecoderLayer')
    >>> b = next(iter_batches(h.encode(["Hi", "Write a poem."]).input_ids, 2, pad_id=0))
    >>> tuple(capture_resid_tlens(h, b, layers=(0, 2), offsets=(-2, -1))[2].shape)
    (2, 2, 32)
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from jaxtyping import Float
from torch import Tensor, nn

from safetygeo.errors import BackendError
from safetygeo.models.batching import Batch
from safetygeo.models.handle import ModelHandle, load_model

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedModel

_EXTRA_KEY = "transformer_lens"
_SOURCE_KEY = "transformer_lens.source"


def _import_bridge() -> type[TransformerBridge]:
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:  # pragma: no cover - transformer-lens is a dependency
        raise BackendError(
            "backend 'transformer_lens' needs transformer-lens>=3 (TransformerBridge); "
            f"import failed: {exc}"
        ) from exc
    return TransformerBridge


def _fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """Identity + in-place-edit state of ``model``'s parameters (cheap: no data read).

    ``Tensor._version`` increments on every in-place write, ``data_ptr`` changes when a
    parameter's storage is swapped, so a bridge booted from an older state is detected.
    """
    return (id(model),) + tuple(
        (id(p), p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters()
    )


def _check_supported(handle: ModelHandle) -> None:
    """Raise :class:`BackendError` before copying anything if the bridge has no adapter."""
    try:
        from transformer_lens.model_bridge.sources._hf_format import (
            determine_architecture_from_hf_config,
        )
    except ImportError:  # pragma: no cover - private helper moved; boot will tell
        return
    try:
        determine_architecture_from_hf_config(handle.model.config)
    except ValueError:
        cfg = handle.model.config
        raise BackendError(
            f"transformer-lens TransformerBridge does not support {type(handle.model).__name__} "
            f"(model_type={getattr(cfg, 'model_type', None)!r}, "
            f"architectures={getattr(cfg, 'architectures', None)}); see transformer_lens."
            "factories.architecture_adapter_factory.SUPPORTED_ARCHITECTURES. Use "
            "backend='native' or 'nnsight' for this model."
        ) from None


def _strip_nnsight(model: nn.Module) -> None:
    """Drop nnsight's per-instance controllers from a *copied* model (see nnsight_backend)."""
    for module in model.modules():
        fwd = module.__dict__.get("forward")
        if fwd is not None and type(fwd).__module__.startswith("nnsight"):
            del module.__dict__["forward"]
        module.__dict__.pop("__nnsight__", None)


def to_transformer_lens(handle: ModelHandle) -> TransformerBridge:
    """A TransformerLens ``TransformerBridge`` over a deep copy of ``handle.model`` (cached).

    The bridge is cached in ``handle.extra["transformer_lens"]`` and rebooted when the
    handle's model was replaced or its parameters were edited in place since.

    Args:
        handle: the model to bridge; left untouched.

    Returns:
        ``transformer_lens.model_bridge.TransformerBridge`` on the handle's device and
        dtype, hook names ``blocks.{l}.hook_resid_pre``, ``ln_final.hook_in``, ...

    Raises:
        BackendError: the architecture has no TransformerBridge adapter, or boot failed.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> h = load_model(tiny_model_and_tokenizer("gpt2", n_layers=2, d_model=32),
        ...                template="User: {instruction}\\nAssistant:")
        >>> bridge = to_transformer_lens(h)
        >>> bridge is to_transformer_lens(h), bridge.cfg.n_layers
        (True, 2)
        >>> "blocks.1.hook_resid_pre" in bridge.hook_dict, "ln_final.hook_in" in bridge.hook_dict
        (True, True)
    """
    cached = handle.extra.get(_EXTRA_KEY)
    fingerprint = _fingerprint(handle.model)
    if cached is not None and handle.extra.get(_SOURCE_KEY) == fingerprint:
        return cached
    bridge_cls = _import_bridge()
    _check_supported(handle)
    hf_copy = copy.deepcopy(handle.model)
    _strip_nnsight(hf_copy)
    tokenizer = copy.deepcopy(handle.tokenizer)
    original_name = handle.tokenizer.name_or_path
    try:
        with tempfile.TemporaryDirectory(prefix="safetygeo-tok-") as tmp:
            tokenizer.save_pretrained(tmp)
            tokenizer.init_kwargs["name_or_path"] = tmp
            bridge = bridge_cls.boot_transformers(
                "", hf_model=hf_copy, tokenizer=tokenizer, device=handle.device,
                dtype=handle.dtype,
            )
    except Exception as exc:
        raise BackendError(
            f"transformer-lens could not bridge {type(handle.model).__name__} "
            f"({handle.model_id}): {type(exc).__name__}: {exc}"
        ) from exc
    if bridge.tokenizer is not None:
        bridge.tokenizer.name_or_path = original_name
        bridge.tokenizer.init_kwargs["name_or_path"] = original_name
    bridge.cfg.model_name = handle.model_id
    handle.extra[_EXTRA_KEY] = bridge
    handle.extra[_SOURCE_KEY] = fingerprint
    return bridge


def from_transformer_lens(bridge: Any, **load_kwargs: Any) -> ModelHandle:
    """A :class:`ModelHandle` over the HF model a ``TransformerBridge`` wraps.

    The handle shares ``bridge.original_model`` (the bridge-rewritten HF module: its
    blocks are bridge components, but module paths, inputs and outputs are the HF ones)
    and uses ``bridge.tokenizer``; ``to_transformer_lens`` on the result returns
    ``bridge`` itself.

    Args:
        bridge: a TransformerLens ``TransformerBridge`` on a local torch model.
        **load_kwargs: passed to :func:`~safetygeo.models.load_model` (``template=``,
            ``tokenizer=`` to override the bridge's, ...).

    Raises:
        BackendError: the bridge exposes no local ``nn.Module`` (vLLM / remote drivers)
            or has no tokenizer.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
        >>> h2 = from_transformer_lens(to_transformer_lens(h))
        >>> h2.n_layers, h2.arch.layers_path, to_transformer_lens(h2) is to_transformer_lens(h)
        (2, 'model.layers', True)
    """
    try:
        module = bridge.original_model
    except AttributeError as exc:
        raise BackendError(
            f"{type(bridge).__name__} exposes no local torch model (original_model): {exc}. "
            "Only bridges booted on a local Hugging Face model can become a ModelHandle."
        ) from exc
    if not isinstance(module, nn.Module):
        raise BackendError(f"bridge.original_model is a {type(module).__name__}, not nn.Module")
    tokenizer = load_kwargs.pop("tokenizer", None) or getattr(bridge, "tokenizer", None)
    if tokenizer is None:
        raise BackendError(
            "the bridge has no tokenizer; pass from_transformer_lens(bridge, tokenizer=...)"
        )
    model_name = getattr(getattr(bridge, "cfg", None), "model_name", None)
    if not load_kwargs.get("model_id") and isinstance(model_name, str) and model_name:
        load_kwargs["model_id"] = model_name
    handle = load_model(cast("PreTrainedModel", module), tokenizer, **load_kwargs)
    handle.extra[_EXTRA_KEY] = bridge
    handle.extra[_SOURCE_KEY] = _fingerprint(handle.model)
    return handle


def resid_hook_name(bridge: Any, layer: int, n_layers: int) -> str:
    """The bridge hook whose value is safetygeo's residual-stream ``layer``.

    ``blocks.{layer}.hook_resid_pre`` for ``layer < n_layers``; ``ln_final.hook_in`` (or,
    if the bridge has no final-norm hook, ``blocks.{n_layers-1}.hook_resid_post``) for
    ``layer == n_layers``.
    """
    hooks = bridge.hook_dict
    candidates = (
        [f"blocks.{layer}.hook_resid_pre"] if layer < n_layers
        else ["ln_final.hook_in", f"blocks.{n_layers - 1}.hook_resid_post"]
    )
    for name in candidates:
        if name in hooks:
            return name
    raise BackendError(f"TransformerBridge has none of the hooks {candidates} for layer {layer}")


def capture_resid_tlens(
    handle: ModelHandle,
    batch: Batch,
    layers: Sequence[int],
    offsets: Sequence[int],
) -> dict[int, Float[Tensor, "batch pos d"]]:
    """Residual stream at ``layers`` × ``offsets`` through ``bridge.run_with_cache``.

    Same contract as :func:`~safetygeo.models.hooks.capture_resid`. The bridge gets the
    batch's ``input_ids``, ``attention_mask`` and ``position_ids``; the cache holds only the
    requested hooks (``names_filter``) and columns (``pos_slice``), and the forward stops
    before the first unneeded block (``stop_at_layer``). Tensors come back on the batch's
    device in the model's dtype.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> from safetygeo.models.batching import iter_batches
        >>> from safetygeo.models.hooks import capture_resid
        >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
        >>> b = next(iter_batches(h.encode(["Hi", "Write a poem."]).input_ids, 2, pad_id=0))
        >>> a = capture_resid_tlens(h, b, (0, 1), (-1,))
        >>> bool(torch.allclose(a[1], capture_resid(h, b, (0, 1), (-1,))[1], atol=1e-5))
        True
    """
    bridge = to_transformer_lens(handle)
    layers = tuple(sorted(set(layers)))
    n_layers = handle.n_layers
    names = {layer: resid_hook_name(bridge, layer, n_layers) for layer in layers}
    seq = batch.input_ids.shape[1]
    cols = [seq + o for o in offsets]
    deepest = max(layers)
    stop_at = deepest + 1 if deepest + 1 < n_layers else None
    device = next(bridge.original_model.parameters()).device
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(
            batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            position_ids=batch.position_ids.to(device),
            names_filter=sorted(set(names.values())),
            stop_at_layer=stop_at,
            pos_slice=cols,
            return_type=None,
        )
    out_device = batch.input_ids.device
    out = {}
    for layer, name in names.items():
        try:
            value = cache[name]
        except KeyError:
            raise BackendError(f"hook {name!r} did not fire in the bridge's forward") from None
        out[layer] = value.to(out_device)
    return out
