"""`ModelHandle`: a causal LM, its tokenizer, and where its residual stream is.

Example:
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> handle = load_model(tiny_model_and_tokenizer("llama", n_layers=3, d_model=32))
    >>> handle.n_layers, handle.d_model, handle.arch.layers_path
    (3, 32, 'model.layers')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from safetygeo.errors import CheckpointError, LayerIndexError
from safetygeo.models.arch import ArchSpec, get_module, resolve_arch
from safetygeo.models.chat import ChatTemplate, EncodedPrompts
from safetygeo.models.checks import check_device, verify_weights
from safetygeo.models.gguf import load_gguf, resolve_gguf

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
    "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float64": torch.float64,
}


@dataclass
class ModelHandle:
    """A decoder LM ready for hooking.

    Layer indices follow the residual stream: layer ``l`` in ``[0, n_layers)`` is the
    input of block ``l`` (``resid_pre``); layer ``n_layers`` is the input of the final
    norm (the residual stream after the last block).

    Attributes:
        model: the Hugging Face causal LM (eval mode).
        tokenizer: its tokenizer.
        arch: module paths of blocks, final norm and embedding.
        model_id: hub id, local path, or a name for an in-memory model.
        revision: hub revision / commit, if known.
        template: the chat template used to format instructions.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    arch: ArchSpec
    model_id: str = "in-memory"
    revision: str | None = None
    template: ChatTemplate | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- structure ---------------------------------------------------------------------
    @property
    def blocks(self) -> nn.ModuleList:
        return get_module(self.model, self.arch.layers_path)  # type: ignore[return-value]

    @property
    def final_norm(self) -> nn.Module:
        return get_module(self.model, self.arch.final_norm_path)

    @property
    def n_layers(self) -> int:
        """Number of decoder blocks ``L`` (valid layer indices are ``0..L``)."""
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        cfg = self.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        for key in ("hidden_size", "n_embd", "d_model"):
            if isinstance(getattr(cfg, key, None), int):
                return int(getattr(cfg, key))
        return int(cast(torch.Tensor, self.model.get_input_embeddings().weight).shape[1])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def max_context(self) -> int | None:
        """Longest sequence the model accepts (from its config), or ``None`` if unknown."""
        cfg = self.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
            v = getattr(cfg, key, None)
            if isinstance(v, int) and v > 0:
                return v
        return None

    @property
    def trunk(self) -> nn.Module:
        """The module that runs embedding → blocks → final norm (no LM head).

        Extraction calls this instead of the full causal LM so the vocabulary
        projection is not computed when only activations are wanted.
        """
        parent = self.arch.layers_path.rsplit(".", 1)[0] if "." in self.arch.layers_path else ""
        return get_module(self.model, parent) if parent else self.model

    def check_layers(self, layers: Any) -> tuple[int, ...]:
        """Normalize a layer selection (``"all"``, int, or iterable of ints; negative ints
        count from ``n_layers + 1``) and validate it.

        Example:
            >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
            >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=3, d_model=32))
            >>> h.check_layers("all"), h.check_layers(-1)
            ((0, 1, 2, 3), (3,))
        """
        import numbers

        total = self.n_layers + 1
        if layers is None or (isinstance(layers, str) and layers == "all"):
            return tuple(range(total))
        if isinstance(layers, str):
            raise LayerIndexError(f"layers must be 'all', an int or a list of ints, got {layers!r}")
        if isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
            layers = [int(layers)]  # numpy / torch integers too
        try:
            layers = list(layers)
        except TypeError:
            raise LayerIndexError(f"layers must be 'all', an int or a list of ints, got "
                                  f"{layers!r}") from None
        out = []
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
                raise LayerIndexError(f"layer indices must be ints, got {layer!r}")
            layer = int(layer)
            idx = layer + total if layer < 0 else layer
            if not 0 <= idx < total:
                raise LayerIndexError(
                    f"layer {layer} out of range: this model has {self.n_layers} blocks, so "
                    f"layers are 0..{self.n_layers} (layer {self.n_layers} = final-norm input)"
                )
            out.append(idx)
        if not out:
            raise LayerIndexError("empty layer selection")
        return tuple(sorted(set(out)))

    # -- chat formatting ---------------------------------------------------------------
    def chat_template(self) -> ChatTemplate:
        """The template in use: the override if set, else derived from the tokenizer."""
        if self.template is None:
            self.template = ChatTemplate.from_tokenizer(self.tokenizer)
        return self.template

    def with_template(self, template: str | ChatTemplate | None = None, *,
                      system: str | None = None) -> ModelHandle:
        """Return a handle (sharing the model) that formats prompts with ``template``."""
        if isinstance(template, str):
            tmpl = ChatTemplate.from_string(template)
        elif template is None:
            tmpl = ChatTemplate.from_tokenizer(self.tokenizer, system=system)
        else:
            tmpl = template
        return ModelHandle(self.model, self.tokenizer, self.arch, self.model_id,
                           self.revision, tmpl, dict(self.extra))

    def format(self, instruction: str) -> str:
        """The chat-formatted text of one instruction."""
        return self.chat_template().format(instruction)

    def encode(self, instructions: list[str] | tuple[str, ...]) -> EncodedPrompts:
        """Token ids of chat-formatted instructions with the position layout."""
        return self.chat_template().encode(self.tokenizer, list(instructions))

    def describe(self) -> dict[str, Any]:
        """Provenance and shape facts, JSON-serializable (used in artifact metadata)."""
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "model_class": type(self.model).__name__,
            "model_type": getattr(self.model.config, "model_type", None),
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "dtype": str(self.dtype).replace("torch.", ""),
            "arch": {"layers": self.arch.layers_path, "final_norm": self.arch.final_norm_path,
                     "source": self.arch.source},
        }


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if not isinstance(dtype, str):
        raise CheckpointError(f"dtype must be a name like 'bf16', 'float32' or 'auto' (or a "
                              f"torch.dtype), got {dtype!r}")
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise CheckpointError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}") from None


def _looks_like_path(s: str) -> bool:
    return (
        os.path.isabs(s) or s.startswith((".", "~")) or os.path.exists(s) or s.count("/") > 1
        or os.sep != "/" and os.sep in s
    )


def _check_local_checkpoint(path: Path, allow_pickle: bool) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint path {str(path)!r} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint path {str(path)!r} is not a directory")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} has no config.json")
    weights = list(path.glob("*.safetensors")) + list(path.glob("*.safetensors.index.json"))
    if allow_pickle:
        weights += list(path.glob("*.bin")) + list(path.glob("*.bin.index.json"))
    if not weights:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has no *.safetensors weights"
            + ("" if allow_pickle else " (pickle *.bin weights are refused unless allow_pickle=True)")
        )


def load_model(
    model: str | os.PathLike[str] | PreTrainedModel | tuple[PreTrainedModel, PreTrainedTokenizerBase],
    tokenizer: PreTrainedTokenizerBase | str | None = None,
    *,
    revision: str | None = None,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    layers_path: str | None = None,
    final_norm_path: str | None = None,
    template: str | ChatTemplate | None = None,
    model_id: str | None = None,
    verify: str | Mapping[str, str] | None = None,
) -> ModelHandle:
    """Load a decoder LM into a :class:`ModelHandle`.

    Args:
        model: a hub id, a local checkpoint folder, an in-memory ``PreTrainedModel``, a
            ``(model, tokenizer)`` pair, or a GGUF spec (``gguf:PATH``, ``*.gguf``, or a named
            model a package ships such as ``smollm2``: :mod:`safetygeo.models.gguf`;
            dequantized to float32, then cast to ``dtype``).
        tokenizer: tokenizer (or its hub id / path) when ``model`` is a bare model or when
            it must differ from the checkpoint's.
        revision: hub revision (branch, tag or commit).
        dtype: ``"auto"`` (the checkpoint's), a ``torch.dtype`` or a name like ``"bf16"``.
        device: where to put the model (``"cpu"``, ``"cuda"``, ``"cuda:1"``...), or ``"auto"``
            to load a hub id / folder with ``device_map="auto"`` (accelerate spreads a model
            too large for one device over the visible GPUs, then CPU).
        trust_remote_code: run custom modelling code from the hub. Off by default.
        allow_pickle: accept ``*.bin`` (pickle) weights; off by default (safetensors only).
        layers_path, final_norm_path: name the block list and final norm of an
            architecture safetygeo does not know.
        template: chat-template override (string with one ``{instruction}`` field).
        model_id: name recorded in artifacts (defaults to the id / path).
        verify: for a local folder, the record of its weight bytes to check before loading:
            :func:`~safetygeo.models.checks.weights_digest` (a string) or
            :func:`~safetygeo.models.checks.weight_hashes` (``{file: sha256}``).

    Raises:
        CheckpointError: missing, incomplete or corrupt checkpoint; weights that do not
            match ``verify``; ``verify`` with a hub id or an in-memory model.
        DeviceError: an unknown device name or one this machine does not have.
        UnknownArchitectureError: the residual stream cannot be located.
    """
    if isinstance(model, tuple):
        if len(model) != 2:
            raise CheckpointError(f"a (model, tokenizer) pair is expected, got a tuple of {len(model)}")
        model, tokenizer = model
    if not isinstance(model, (str, os.PathLike, nn.Module)):
        raise CheckpointError(f"model must be a hub id, a folder, a PreTrainedModel or a "
                              f"(model, tokenizer) pair, got {type(model).__name__}")
    device = check_device(device)
    auto = isinstance(device, str) and device == "auto"
    gguf = None if isinstance(model, nn.Module) else resolve_gguf(model)
    if gguf is not None:  # a GGUF file, or a named model that a package ships
        if auto:
            raise CheckpointError("device='auto' (device_map) does not apply to a GGUF file; "
                                  "save a dequantized copy (safetygeo.models.gguf) and load that")
        gguf_model, gguf_tok = load_gguf(gguf)
        model, tokenizer = gguf_model, tokenizer if tokenizer is not None else gguf_tok
        model_id = model_id or gguf.name
    if isinstance(model, nn.Module):
        if auto:
            raise CheckpointError("device='auto' (device_map) applies when loading from a hub id "
                                  "or folder, not to an in-memory model")
        if tokenizer is None:
            raise CheckpointError("an in-memory model needs a tokenizer: load_model(model, tokenizer)")
        if getattr(model, "config", None) is None or not callable(getattr(model, "forward", None)):
            raise CheckpointError(f"load_model needs a Hugging Face model with a .config (a "
                                  f"PreTrainedModel), got {type(model).__name__}")
        if verify is not None:
            raise CheckpointError("verify= checks a local checkpoint folder, not an in-memory "
                                  "model")
        name = model_id or getattr(model, "name_or_path", None) or "in-memory"
        hf_model = model
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name = str(model)
        is_local = _looks_like_path(name)
        if is_local:
            _check_local_checkpoint(Path(name).expanduser(), allow_pickle)
            if verify is not None:
                verify_weights(Path(name), verify)
        elif verify is not None:
            raise CheckpointError(f"verify= checks a local checkpoint folder; {name!r} is a hub "
                                  "id (pin a commit with revision= instead)")
        kwargs: dict[str, Any] = dict(
            revision=revision, trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
        )
        resolved = _resolve_dtype(dtype)
        if resolved is not None:
            kwargs["dtype"] = resolved
        if auto:
            kwargs["device_map"] = "auto"
        try:
            hf_model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        except Exception as exc:  # OSError, SafetensorError, hub errors, config errors...
            raise CheckpointError(f"could not load checkpoint {name!r}: {exc}") from exc
        if tokenizer is None or isinstance(tokenizer, str):
            try:
                tokenizer = AutoTokenizer.from_pretrained(
                    tokenizer or name, revision=revision, trust_remote_code=trust_remote_code
                )
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"could not load the tokenizer of {name!r}: {exc}") from exc
        name = model_id or name
    if isinstance(tokenizer, str):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=trust_remote_code)
    # (ignores below) transformers wraps .to with @wraps(nn.Module.to): its stub loses `self`
    if isinstance(model, nn.Module):
        resolved = _resolve_dtype(dtype)
        if isinstance(resolved, torch.dtype):
            hf_model = hf_model.to(resolved)  # type: ignore[arg-type]
    if device is not None and not auto:
        hf_model = hf_model.to(device)  # type: ignore[arg-type]
    hf_model.eval()
    arch = resolve_arch(hf_model, layers_path=layers_path, final_norm_path=final_norm_path)
    tmpl = ChatTemplate.from_string(template) if isinstance(template, str) else template
    return ModelHandle(hf_model, tokenizer, arch, model_id=name, revision=revision, template=tmpl)
