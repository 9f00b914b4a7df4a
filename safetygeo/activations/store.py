"""Save / load :class:`~safetygeo.activations.extract.ActivationStats` artifacts.

One artifact is one ``.safetensors`` file whose header metadata holds the JSON provenance
(key ``"safetygeo"``), so tensors and metadata can never disagree; a human-readable JSON
sidecar (same stem, ``.json``) is written next to it. Both writes are atomic (temporary file
+ rename).

Example:
    >>> import tempfile, torch
    >>> from safetygeo.activations.extract import ActivationStats
    >>> from safetygeo.activations.positions import resolve_positions
    >>> s = ActivationStats(torch.zeros(1, 1, 4, dtype=torch.float64), 3, (0,),
    ...                     resolve_positions("last", 0), 0)
    >>> p = tempfile.mkdtemp() + "/acts.safetensors"
    >>> _ = save_stats(s, p); load_stats(p).count
    3
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from safetygeo._io import atomic_path, atomic_write_json
from safetygeo.activations.positions import PositionSelection
from safetygeo.errors import ArtifactError

FORMAT_VERSION = 1
_TENSORS = ("mean", "mean_sq", "mean_outer", "vectors")


def _header(stats: Any) -> dict[str, Any]:
    return {
        "format": "safetygeo.activation_stats",
        "format_version": FORMAT_VERSION,
        "count": stats.count,
        "layers": list(stats.layers),
        "positions": {"offsets": list(stats.positions.offsets),
                      "labels": list(stats.positions.labels)},
        "n_eoi": stats.n_eoi,
        "meta": stats.meta,
    }


def save_stats(stats: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``stats`` to ``path`` (``.safetensors`` appended if missing) and a JSON sidecar."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    tensors = {k: getattr(stats, k).contiguous() for k in _TENSORS if getattr(stats, k) is not None}
    header = _header(stats)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"safetygeo": json.dumps(header, default=str)})
    atomic_write_json(path.with_suffix(".json"), header)
    return path


def load_stats(path: str | os.PathLike[str]) -> Any:
    """Read an artifact written by :func:`save_stats`, checking it is complete and consistent."""
    from safetensors import safe_open

    from safetygeo.activations.extract import ActivationStats

    path = Path(path)
    if not path.is_file() and path.with_name(path.name + ".safetensors").is_file():
        path = path.with_name(path.name + ".safetensors")
    if not path.is_file():
        raise ArtifactError(f"no activation artifact at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("safetygeo")
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"corrupt activation artifact {str(path)!r}: {exc}") from exc
    if raw is None:
        raise ArtifactError(f"{str(path)!r} is a safetensors file without safetygeo metadata")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise ArtifactError(f"{str(path)!r}: damaged safetygeo metadata ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != "safetygeo.activation_stats":
        fmt = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ArtifactError(f"{str(path)!r} holds {fmt!r}, not activation stats")
    missing = [k for k in ("layers", "positions", "count", "n_eoi", "meta") if k not in header]
    if missing or not isinstance(header.get("positions"), dict) or \
            not {"offsets", "labels"} <= set(header["positions"]):
        raise ArtifactError(f"{str(path)!r}: incomplete safetygeo metadata (missing "
                            f"{missing or ['positions.offsets/labels']})")
    for key in ("count", "n_eoi"):
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ArtifactError(f"{str(path)!r}: metadata {key!r} must be a non-negative "
                                f"integer, got {value!r}")
    mean = tensors.get("mean")
    n_layers, n_pos = len(header["layers"]), len(header["positions"]["offsets"])
    if mean is None or tuple(mean.shape[:2]) != (n_layers, n_pos):
        raise ArtifactError(
            f"{str(path)!r}: tensor 'mean' has shape {None if mean is None else tuple(mean.shape)}, "
            f"metadata says {n_layers} layers × {n_pos} positions"
        )
    return ActivationStats(
        mean=mean,
        count=int(header["count"]),
        layers=tuple(header["layers"]),
        positions=PositionSelection(tuple(header["positions"]["offsets"]),
                                    tuple(header["positions"]["labels"])),
        n_eoi=int(header["n_eoi"]),
        mean_sq=tensors.get("mean_sq"),
        mean_outer=tensors.get("mean_outer"),
        vectors=tensors.get("vectors"),
        meta=header["meta"],
    )
