"""Models: loading, architecture lookup, chat formatting, tiny offline models."""

from safetygeo.models.arch import ArchSpec, resolve_arch
from safetygeo.models.chat import ChatTemplate, EncodedPrompts
from safetygeo.models.handle import ModelHandle, load_model

__all__ = ["ArchSpec", "ChatTemplate", "EncodedPrompts", "ModelHandle", "load_model", "resolve_arch"]
