"""Streaming reduction of per-layer × per-position activations into float64 moments.

Example:
    >>> import torch
    >>> acc = MomentAccumulator(n_layers=1, n_pos=1, d=2, n_prompts=2)
    >>> acc.update(0, torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]]), indices=(0, 1))
    >>> acc.mean()[0, 0].tolist()
    [2.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo.errors import SafetyGeoError

SecondMoment = Literal["diag", "full"] | None


class MomentAccumulator:
    """Running float64 sums over prompts, per layer slot and position.

    Args:
        n_layers: number of layer slots.
        n_pos: number of positions.
        d: model width.
        n_prompts: total number of prompts (for ``keep_vectors``).
        second_moment: ``None``, ``"diag"`` (Σx² per dimension) or ``"full"`` (Σxxᵀ,
            ``d × d`` per layer and position — large for big models).
        keep_vectors: also keep every prompt's vectors (``[n_prompts, layer, pos, d]``),
            in ``vectors_dtype``, in the prompts' original order.
        device: where the sums live (the model's device avoids host syncs).
    """

    def __init__(
        self,
        n_layers: int,
        n_pos: int,
        d: int,
        n_prompts: int,
        *,
        second_moment: SecondMoment = None,
        keep_vectors: bool = False,
        vectors_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if second_moment not in (None, "diag", "full"):
            raise SafetyGeoError(f"second_moment must be None, 'diag' or 'full', got {second_moment!r}")
        f64: dict[str, Any] = dict(dtype=torch.float64, device=device)
        self.sum = torch.zeros(n_layers, n_pos, d, **f64)
        self.sq = torch.zeros(n_layers, n_pos, d, **f64) if second_moment == "diag" else None
        self.outer = torch.zeros(n_layers, n_pos, d, d, **f64) if second_moment == "full" else None
        self.vectors = (
            torch.zeros(n_prompts, n_layers, n_pos, d, dtype=vectors_dtype)
            if keep_vectors else None
        )
        self.counts = [0] * n_layers

    def update(self, slot: int, x: Float[Tensor, "batch pos d"], indices: Sequence[int]) -> None:
        """Add one batch of activations for layer ``slot``."""
        x64 = x.to(torch.float64)
        self.sum[slot] += x64.sum(0)
        if self.sq is not None:
            self.sq[slot] += (x64 * x64).sum(0)
        if self.outer is not None:
            self.outer[slot] += torch.einsum("bpi,bpj->pij", x64, x64)
        if self.vectors is not None:
            self.vectors[list(indices), slot] = x.detach().to("cpu", self.vectors.dtype)
        self.counts[slot] += x.shape[0]

    @property
    def count(self) -> int:
        if len(set(self.counts)) != 1:
            raise RuntimeError(f"layer slots saw different prompt counts: {self.counts}")
        return self.counts[0]

    def mean(self) -> Float[Tensor, "layer pos d"]:
        return (self.sum / max(self.count, 1)).cpu()

    def mean_sq(self) -> Float[Tensor, "layer pos d"] | None:
        return None if self.sq is None else (self.sq / max(self.count, 1)).cpu()

    def mean_outer(self) -> Float[Tensor, "layer pos d d"] | None:
        return None if self.outer is None else (self.outer / max(self.count, 1)).cpu()
