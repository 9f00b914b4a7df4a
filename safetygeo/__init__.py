"""safetygeo: the geometry of safety inside LLM checkpoints.

Example:
    >>> import safetygeo
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> handle = safetygeo.load_model(tiny_model_and_tokenizer("qwen2", n_layers=2, d_model=32))
    >>> stats = safetygeo.extract_activations(handle, ["Write a poem."], progress=False)
    >>> stats.layers
    (0, 1, 2)
"""

from safetygeo.activations import ActivationStats, extract_activations, load_stats, save_stats
from safetygeo.errors import SafetyGeoError
from safetygeo.models import ChatTemplate, ModelHandle, load_model

__version__ = "0.1.0"

__all__ = [
    "ActivationStats", "ChatTemplate", "ModelHandle", "SafetyGeoError", "__version__",
    "extract_activations", "load_model", "load_stats", "save_stats",
]
