"""Activations: positions, left-padded batching, native hooks, streaming reducers, artifacts."""

from safetygeo.activations.extract import ActivationStats, extract_activations, get_backend
from safetygeo.activations.positions import PositionSelection, resolve_positions
from safetygeo.activations.store import load_stats, save_stats

__all__ = [
    "ActivationStats", "PositionSelection", "extract_activations", "get_backend", "load_stats",
    "resolve_positions", "save_stats",
]
