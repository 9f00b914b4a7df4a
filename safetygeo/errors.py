"""Typed exceptions raised by safetygeo.

Every error a user can trigger with bad input is a subclass of :class:`SafetyGeoError`
(which is also a ``ValueError`` so generic handlers keep working), and its message names
the offending input.

Example:
    >>> from safetygeo.errors import EmptyPromptSetError, SafetyGeoError
    >>> issubclass(EmptyPromptSetError, SafetyGeoError)
    True
"""

from __future__ import annotations


class SafetyGeoError(ValueError):
    """Base class of every safetygeo error caused by user input."""


class EmptyPromptSetError(SafetyGeoError):
    """A prompt set has no prompts (after filtering)."""


class LayerIndexError(SafetyGeoError, IndexError):
    """A layer index is outside ``[0, n_layers]`` (``n_layers`` = final-norm input)."""


class PositionError(SafetyGeoError):
    """A position specification cannot be resolved for the formatted prompts."""


class ChatTemplateError(SafetyGeoError):
    """The tokenizer has no usable chat template and no override was given."""


class PromptTooLongError(SafetyGeoError):
    """A formatted prompt is longer than the model's context window."""


class UnknownArchitectureError(SafetyGeoError):
    """The decoder's block list / final norm could not be located in the module tree."""


class CheckpointError(SafetyGeoError):
    """A checkpoint path is missing, incomplete or corrupt."""


class DamagedCheckpointWarning(UserWarning):
    """A checkpoint that was once complete no longer matches its completeness marker (it is
    reported, and quarantined by a rerun of training, never deleted)."""


class PromptSetFormatError(SafetyGeoError):
    """A prompt file cannot be parsed in the requested format."""


class PromptIndexError(SafetyGeoError, IndexError):
    """A prompt index is outside ``[-len(prompt_set), len(prompt_set))``."""


class PromptFileNotFoundError(SafetyGeoError, FileNotFoundError):
    """A prompt file does not exist (or is not a regular file)."""


class DeviceError(SafetyGeoError):
    """A device string torch does not know, or a device this machine does not have."""


class ArtifactError(SafetyGeoError):
    """A saved artifact is missing, corrupt or inconsistent with its metadata."""


class BackendError(SafetyGeoError):
    """An interop backend (nnsight, transformer-lens) is unavailable or misused."""


class EmptyDatasetError(EmptyPromptSetError):
    """A dataset (e.g. training records of one data role) has no examples."""


class DatasetFormatError(SafetyGeoError):
    """Records cannot be read or lack a required field (the message names it)."""


class NonFiniteError(SafetyGeoError):
    """A NaN or infinite value where a finite number is required (an effect, a strength,
    activations); never silently turned into a p-value, a cosine or a CI."""


class SettingsError(SafetyGeoError):
    """A settings object (``NullSpec``, ``RefusalScoring``, ``GenerationSettings``, ...) or
    a saved analysis does not match the settings of the run it is combined with."""
