"""Errors raised by :mod:`safetygeo.training` (all :class:`~safetygeo.errors.SafetyGeoError`).

Example:
    >>> from safetygeo.errors import SafetyGeoError
    >>> issubclass(UnknownMethodError, SafetyGeoError)
    True
"""

from __future__ import annotations

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


__all__ = ["DatasetFormatError", "EmptyDatasetError", "LoraTargetError", "TrainConfigError",
           "TrainingError", "TrajectoryError", "TrajectoryMismatchError", "UnknownMethodError"]


class TrajectoryMismatchError(TrajectoryError):
    """A trajectory folder belongs to another model, method, data set or configuration."""
