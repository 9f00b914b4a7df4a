"""Errors raised by :mod:`safetygeo.training` (all :class:`~safetygeo.errors.SafetyGeoError`).

Example:
    >>> from safetygeo.errors import SafetyGeoError
    >>> issubclass(UnknownMethodError, SafetyGeoError)
    True
"""

from __future__ import annotations

import os

from safetygeo.errors import CheckpointError, DatasetFormatError, EmptyDatasetError, SafetyGeoError


class TrainingError(SafetyGeoError):
    """Base class of training errors caused by user input."""


class UnknownMethodError(TrainingError):
    """A method name is not registered (the message lists the known ones)."""


class TrainConfigError(TrainingError):
    """A training or method configuration value is invalid or unknown."""


class LoraTargetError(TrainingError):
    """LoRA target modules are absent from the model (the message lists the Linear names)."""


class TrajectoryError(CheckpointError):
    """A trajectory folder is missing, incomplete or cannot be written."""


__all__ = ["DamagedCheckpointError", "DatasetFormatError", "EmptyDatasetError", "LoraTargetError",
           "TrainConfigError", "TrainingError", "TrajectoryError", "TrajectoryMismatchError",
           "UnknownMethodError"]


class TrajectoryMismatchError(TrajectoryError):
    """A trajectory folder belongs to another model, method, data set or configuration."""


class DamagedCheckpointError(TrajectoryError):
    """A checkpoint that was once complete is damaged: its marker is missing or torn, or a
    file is missing, truncated or no longer matches its recorded SHA-256.

    Attributes:
        step: the checkpoint's step (from its folder name).
        path: the checkpoint folder.
        reason: what is wrong, naming the file.
    """

    def __init__(self, message: str, *, step: int | None = None,
                 path: str | os.PathLike[str] | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.path = path
        self.reason = reason
