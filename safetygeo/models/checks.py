"""Checks ``load_model`` runs before touching torch: the device string and its availability,
and the weight bytes of a local checkpoint folder against a recorded hash.

A trajectory checkpoint records every file's SHA-256 in its completeness marker; a plain
Hugging Face folder records nothing, so :func:`weight_hashes` gives the record to keep
(e.g. next to an experiment's config) and ``load_model(folder, verify=record)`` checks it.

Example:
    >>> check_device("cpu"), check_device(None), check_device("auto")
    ('cpu', None, 'auto')
    >>> check_device("gpu")
    Traceback (most recent call last):
    ...
    safetygeo.errors.DeviceError: unknown device 'gpu': use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from safetygeo._identity import sha256_json
from safetygeo._io import file_sha256
from safetygeo.errors import CheckpointError, DeviceError

__all__ = ["check_device", "verify_weights", "weight_hashes", "weights_digest"]

_WEIGHT_GLOBS = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json")


def check_device(device: str | torch.device | None) -> str | torch.device | None:
    """``device`` unchanged if torch knows it and this machine has it; else :class:`DeviceError`.

    ``None`` (leave the model where it is) and ``"auto"`` (accelerate's ``device_map``)
    pass through.

    Raises:
        DeviceError: an unknown name (``"gpu"``), CUDA / MPS on a machine without it, or a
            CUDA index beyond the visible devices.
    """
    if device is None or isinstance(device, str) and device == "auto":
        return device
    if not isinstance(device, (str, torch.device)):
        raise DeviceError(f"device must be a string like 'cpu' or 'cuda:0' (or a torch.device), "
                          f"got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N', 'mps' or "
                          "'auto'") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise DeviceError(f"device {device!r}: CUDA is not available on this machine (torch "
                              f"{torch.__version__}, no visible GPU); use device='cpu'")
        if dev.index is not None and dev.index >= n:
            raise DeviceError(f"device {device!r}: only {n} CUDA device(s) are visible "
                              f"(cuda:0..cuda:{n - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r}: MPS is not available on this machine; use 'cpu'")
    return device


def weight_hashes(folder: str | os.PathLike[str]) -> dict[str, str]:
    """``{file name: SHA-256}`` of a checkpoint folder's weight files (``*.safetensors``,
    ``*.bin`` and their index files), sorted by name: the record ``verify=`` checks.

    Raises:
        CheckpointError: the folder has no weight files.
    """
    path = Path(folder).expanduser()
    files = sorted({p for g in _WEIGHT_GLOBS for p in path.glob(g) if p.is_file()})
    if not files:
        raise CheckpointError(f"checkpoint {str(path)!r} has no weight files to hash")
    return {p.name: file_sha256(p) for p in files}


def weights_digest(folder: str | os.PathLike[str]) -> str:
    """One SHA-256 over :func:`weight_hashes` (names and hashes): a single string to record."""
    return sha256_json(weight_hashes(folder))


def verify_weights(folder: str | os.PathLike[str], expected: str | Mapping[str, str]) -> None:
    """Check a folder's weight bytes against a record from :func:`weights_digest` (a string)
    or :func:`weight_hashes` (a mapping; only the files it names are hashed).

    Raises:
        CheckpointError: a weight file is missing or its bytes differ from the record (the
            message names the file when the record is a mapping), or the record is malformed.
    """
    path = Path(folder).expanduser()
    if isinstance(expected, str):
        got = weights_digest(path)
        if got != expected.lower():
            raise CheckpointError(
                f"checkpoint {str(path)!r}: weight files do not match the recorded digest "
                f"({got[:12]}… ≠ {expected[:12]}…); the weights were changed or replaced")
        return
    if not isinstance(expected, Mapping) or not expected or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in expected.items()):
        raise CheckpointError("verify= must be a digest string (weights_digest) or a non-empty "
                              f"{{file name: sha256}} mapping (weight_hashes), got {expected!r}")
    for name, digest in sorted(expected.items()):
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r}: recorded weight file {name!r} is "
                                  "missing")
        if file_sha256(f) != digest.lower():
            raise CheckpointError(f"checkpoint {str(path)!r}: weight file {name!r} does not match "
                                  "its recorded SHA-256; the weights were changed or replaced")
