"""Toy worlds with known ground truth (a hand-planted refusal mechanism for now)."""

from safetygeo.toy.planted import PlantedModel, planted_refusal_model

__all__ = ["PlantedModel", "planted_refusal_model"]
