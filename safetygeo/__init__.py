"""safetygeo: the geometry of safety inside LLM checkpoints.

Top-level names are imported lazily, so ``import safetygeo.data`` does not pull in torch.

Example:
    >>> import safetygeo
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> handle = safetygeo.load_model(tiny_model_and_tokenizer("qwen2", n_layers=2, d_model=32))
    >>> stats = safetygeo.extract_activations(handle, ["Write a poem."], progress=False)
    >>> stats.layers
    (0, 1, 2)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from safetygeo.errors import SafetyGeoError

__version__ = "0.1.0"

_LAZY = {
    "ActivationStats": "safetygeo.activations",
    "extract_activations": "safetygeo.activations",
    "load_stats": "safetygeo.activations",
    "save_stats": "safetygeo.activations",
    "ChatTemplate": "safetygeo.models",
    "ModelHandle": "safetygeo.models",
    "load_model": "safetygeo.models",
    "PromptSet": "safetygeo.data",
    "load_prompt_set": "safetygeo.data",
}

__all__ = ["SafetyGeoError", "__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from safetygeo.activations import ActivationStats, extract_activations, load_stats, save_stats
    from safetygeo.data import PromptSet, load_prompt_set
    from safetygeo.models import ChatTemplate, ModelHandle, load_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'safetygeo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
