"""Matched random-direction null controls: the null specification and the direction sampler.

A causal effect of a direction is reported next to the effects of ``K`` random directions
applied with the same operation, layer, positions and strength (for addition: the same
norm as the real vector). :class:`NullSpec` says how many, from which distribution, with
which seed and how many ride along the batch per forward pass; :func:`matched_variants`
validates one intervention and stacks the real direction with its nulls. The comparison
itself (p, z, the table row) is :class:`safetygeo.results.NullComparison`.

Example:
    >>> spec = NullSpec(k=8, seed=1)
    >>> random_directions(spec.k, 16, seed=spec.seed).shape
    torch.Size([8, 16])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import positive_int
from safetygeo.errors import SafetyGeoError
from safetygeo.models.handle import ModelHandle

__all__ = ["NULL_KINDS", "NullSpec", "matched_variants", "random_directions"]

NullKind = Literal["sphere", "covariance"]
NULL_KINDS: tuple[str, ...] = ("sphere", "covariance")


@dataclass(frozen=True)
class NullSpec:
    """How matched null directions are drawn and batched.

    Attributes:
        k: number of null directions ``K`` (≥ 1); the p-value floor is ``1 / (K + 1)``.
        kind: ``"sphere"`` (uniform on the unit sphere) or ``"covariance"`` (Gaussian with
            the activation covariance, normalized — "covariance-matched" nulls).
        covariance: ``[d, d]`` covariance for ``kind="covariance"`` (not saved with a
            table's identity; its hash is).
        seed: null-direction seed; the first ``K'`` directions of a seed do not depend on ``K``.
        max_variants: directions evaluated per forward pass (variants along the batch).

    Example:
        >>> NullSpec(k=4).identity()
        {'k': 4, 'kind': 'sphere', 'seed': 0, 'covariance_sha256': None}
    """

    k: int = 64
    kind: NullKind = "sphere"
    covariance: Tensor | None = field(default=None, repr=False, compare=False)
    seed: int = 0
    max_variants: int = 16

    def __post_init__(self) -> None:
        positive_int(self.k, "NullSpec.k (number of null directions)")
        positive_int(self.max_variants, "NullSpec.max_variants (directions per forward pass)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise SafetyGeoError(f"NullSpec.seed must be an integer, got {self.seed!r}")
        if self.kind not in NULL_KINDS:
            raise SafetyGeoError(f"NullSpec.kind must be one of {NULL_KINDS}, got {self.kind!r}")
        if self.kind == "covariance" and self.covariance is None:
            raise SafetyGeoError("NullSpec(kind='covariance') needs the activation covariance")

    def replace(self, **changes: Any) -> NullSpec:
        """A copy with ``changes``."""
        return replace(self, **changes)

    def covariance_sha256(self) -> str | None:
        if self.covariance is None or self.kind != "covariance":
            return None
        import hashlib

        arr = self.covariance.detach().to("cpu", torch.float64).contiguous().numpy()
        return hashlib.sha256(arr.tobytes()).hexdigest()

    def identity(self) -> dict[str, Any]:
        """What determines the null sample (for resumable tables): not ``max_variants``."""
        return {"k": self.k, "kind": self.kind, "seed": int(self.seed),
                "covariance_sha256": self.covariance_sha256()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("covariance")
        return {**d, "covariance_sha256": self.covariance_sha256()}


def random_directions(
    k: int,
    d: int,
    *,
    seed: int = 0,
    covariance: Float[Tensor, "d d"] | None = None,
    norm: float = 1.0,
) -> Float[Tensor, "k d"]:
    """``k`` random directions of length ``norm`` (float64).

    Uniform on the sphere by default (normalized standard Gaussians); with ``covariance``,
    Gaussians with that covariance, normalized — directions distributed like activation
    variation ("covariance-matched" nulls). The first ``k'`` directions for a seed are the
    same whatever ``k`` is, so growing ``K`` extends a null set rather than replacing it.
    """
    k = positive_int(k, "number of null directions K")
    # numpy fills row by row, so the first K' of K directions do not depend on K
    z = torch.from_numpy(np.random.default_rng(seed).standard_normal((k, d)))
    if covariance is not None:
        cov = torch.as_tensor(covariance).double()
        if cov.shape != (d, d):
            raise SafetyGeoError(f"covariance has shape {tuple(cov.shape)}, expected ({d}, {d})")
        evals, evecs = torch.linalg.eigh((cov + cov.T) / 2)
        z = z @ (evecs * evals.clamp(min=0).sqrt()).T
    n = z.norm(dim=-1, keepdim=True)
    if (n <= 1e-12).any():
        raise SafetyGeoError("covariance is degenerate: a sampled direction has zero norm")
    return z / n * norm


def matched_variants(
    handle: ModelHandle,
    direction: Float[Tensor, " d"],
    op: str,
    nulls: NullSpec,
    *,
    layer: int | None = None,
) -> tuple[Float[Tensor, "k1 d"], int | None]:
    """Validate one intervention and stack the real direction with its ``nulls.k`` matched
    nulls: ``([1 + K, d] float64 with the real vector first, resolved layer)``.

    Nulls have the real vector's norm (uniform on the sphere, or drawn from the covariance).

    Raises:
        SafetyGeoError: unknown ``op``, addition without a layer, or a bad direction (wrong
            ``d_model``, zero norm, NaN).
        LayerIndexError: a layer outside ``0..L``.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
        >>> v, layer = matched_variants(h, torch.ones(32), "add", NullSpec(k=4), layer=-1)
        >>> tuple(v.shape), layer, bool(torch.allclose(v.norm(dim=-1), v[0].norm()))
        ((5, 32), 2, True)
    """
    from safetygeo.interventions.hooks import as_directions

    if not hasattr(nulls, "identity") or not hasattr(nulls, "max_variants"):  # a NullSpec
        raise SafetyGeoError(f"nulls must be a NullSpec, got {type(nulls).__name__}")
    if op not in ("ablate", "add"):
        raise SafetyGeoError(f"op must be 'ablate' or 'add', got {op!r}")
    if op == "add":
        if layer is None:
            raise SafetyGeoError("addition needs a layer")
        (layer,) = handle.check_layers(layer)
    real = as_directions(direction, handle.d_model, normalize=False)[0]
    null_dirs = random_directions(nulls.k, handle.d_model, seed=nulls.seed, norm=float(real.norm()),
                                  covariance=nulls.covariance if nulls.kind == "covariance" else None)
    return torch.cat([real[None], null_dirs]), layer
