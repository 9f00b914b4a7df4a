"""Matched null controls: the null specification, the direction and head-set samplers and
the (fixed-K or sequential) driver that evaluates them.

Which null family an intervention is compared with is the intervention's
(:meth:`safetygeo.interventions.intervention.Intervention.variants`: random directions,
random subspaces, random other heads of the layer); :class:`NullSpec` sets K, the seed, the
batching and the sequential rule for all of them, and ``kind`` refines direction nulls.

A causal effect of a direction is reported next to the effects of random directions
applied with the same operation, layer, positions and strength (for addition: the same
norm as the real vector). :class:`NullSpec` says how many, from which distribution, with
which seed, how many ride along the batch per forward pass, and whether they are drawn all
at once (fixed K) or in sequential batches that stop once a decision is settled;
:func:`matched_variants` validates one intervention and stacks the real direction with its
nulls; :func:`run_null_test` evaluates them and decides. The comparison itself (p, z, the
table row) is :class:`safetygeo.results.NullComparison`.

**Sequential tests** (``NullSpec(h=...)``, Besag & Clifford 1991,
:mod:`safetygeo.stats.sequential`): a pilot of ``first_look`` nulls (16) with the real
direction, then ``batch`` (8) at a time; after each step every metric's test is checked, and
a metric is *settled* once ``h`` nulls reach its real effect (``p = h / l``, clearly not
significant) or ``k_max`` nulls were drawn (``p = (g + 1) / (k_max + 1)``). Metrics of one
intervention share their forward passes, so a cell **stops when every metric is settled**;
each metric still reports its own p and ``n_null_used`` (the draws its p used), and the
cell's cost is ``1 + k`` directions (``k`` = nulls drawn = the largest ``n_null_used``,
rounded up to the batch). The nulls are the first ``k`` of the fixed-K sample with the same
seed, so ``h = None`` (or ``inf``) with ``k = k_max`` is the fixed-K test exactly.

Example:
    >>> spec = NullSpec(k=8, seed=1)
    >>> random_directions(spec.k, 16, seed=spec.seed).shape
    torch.Size([8, 16])
    >>> seq = NullSpec.sequential(h=3, k_max=64, batch=16)
    >>> seq.is_sequential, seq.n_max, seq.checkpoints()
    (True, 64, [16, 32, 48, 64])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import positive_int
from safetygeo.errors import SafetyGeoError
from safetygeo.models.handle import ModelHandle
from safetygeo.results import NullComparison
from safetygeo.stats.pvalues import ALTERNATIVES, Alternative
from safetygeo.stats.sequential import SequentialP, besag_clifford_p, schedule

__all__ = ["DEFAULT_BATCH", "DEFAULT_FIRST", "DEFAULT_H", "NULL_KINDS", "NullDraws", "NullSpec",
           "check_spec", "matched_variants", "random_directions", "random_head_sets",
           "run_null_test"]

#: Default exceedance threshold of sequential tests (``NullSpec.sequential``). Why 4: a
#: metric whose true p is 0.5 is settled within 16 nulls with probability 0.99 (0.75 at
#: p = 0.3; 0.96 / 0.55 with h = 5), while a metric with true p = 0.02 — whose fixed K = 64 p
#: is ≈ 0.035 — stops early (p ≥ 4/64) with probability 0.04 (binomial tails).
DEFAULT_H = 4
#: Default nulls per sequential step. Why 8 rather than a full pass of ``max_variants`` = 16:
#: the cost of a cell moves in steps of ``batch``, and on the planted model's random-direction
#: cells 8 gave a mean cost of 0.28 of a fixed K = 64 (16: 0.32, with cells at 0.51 where one
#: metric sat at p ≈ 0.25); a forward of a large model is already full with the prompts alone.
DEFAULT_BATCH = 8
#: Nulls drawn before a sequential test looks for the first time (unless ``batch`` is larger):
#: the two-sided centre (the median of the real value and the nulls drawn) needs a sample to stand on.
DEFAULT_FIRST = 16

NullKind = Literal["sphere", "covariance"]
NULL_KINDS: tuple[str, ...] = ("sphere", "covariance")


@dataclass(frozen=True)
class NullSpec:
    """How matched null directions are drawn, batched and tested.

    Attributes:
        k: number of null directions ``K`` of a fixed-K test (≥ 1); the p-value floor is
            ``1 / (K + 1)``. With ``h`` set, the default ``k_max``.
        kind: ``"sphere"`` (uniform on the unit sphere) or ``"covariance"`` (Gaussian with
            the activation covariance, normalized — "covariance-matched" nulls). Applies
            to direction nulls; subspace and head interventions refuse ``"covariance"``.
        covariance: ``[d, d]`` covariance for ``kind="covariance"`` (not saved with a
            table's identity; its hash is).
        seed: null-direction seed; the first ``K'`` directions of a seed do not depend on ``K``.
        max_variants: directions evaluated per forward pass (variants along the batch).
        h: sequential test (Besag–Clifford): stop a metric once ``h`` nulls reach its real
            effect (integer ≥ 2). ``None`` (or ``math.inf``) = the fixed-K test. With
            ``h > k_max`` nothing stops early: the fixed-K p of ``k_max`` nulls.
        k_max: the most nulls a sequential test draws (default ``k``); only with ``h``.
        batch: nulls drawn per sequential step (default :data:`DEFAULT_BATCH` = 8); only
            with ``h``. Distinct from ``max_variants``: a step of 32 with 16 per pass is two
            passes; a step of 8 is one pass of 8 (9 with the real direction).
        first: nulls drawn before the first look (default ``max(batch, 16)``,
            :data:`DEFAULT_FIRST`); only with ``h``.
        tail: also estimate a tail p-value when no null reaches the real effect
            (:func:`~safetygeo.stats.tail.tail_p`; an approximation reported beside the
            exact p, which BH uses where it is below the exact p).

    Example:
        >>> NullSpec(k=4).identity()
        {'k': 4, 'kind': 'sphere', 'seed': 0, 'covariance_sha256': None}
        >>> NullSpec(k=64, h=5, tail=True).identity()["sequential"]
        {'h': 5, 'k_max': 64, 'batch': 8, 'first': 16}
    """

    k: int = 64
    kind: NullKind = "sphere"
    covariance: Tensor | None = field(default=None, repr=False, compare=False)
    seed: int = 0
    max_variants: int = 16
    h: int | None = None
    k_max: int | None = None
    batch: int | None = None
    tail: bool = False
    first: int | None = None

    def __post_init__(self) -> None:
        positive_int(self.k, "NullSpec.k (number of null directions)")
        positive_int(self.max_variants, "NullSpec.max_variants (directions per forward pass)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise SafetyGeoError(f"NullSpec.seed must be an integer, got {self.seed!r}")
        if self.kind not in NULL_KINDS:
            raise SafetyGeoError(f"NullSpec.kind must be one of {NULL_KINDS}, got {self.kind!r}")
        if self.kind == "covariance" and self.covariance is None:
            raise SafetyGeoError("NullSpec(kind='covariance') needs the activation covariance")
        if not isinstance(self.tail, (bool, np.bool_)):
            raise SafetyGeoError(f"NullSpec.tail must be True or False, got {self.tail!r}")
        if isinstance(self.h, float) and math.isinf(self.h) and self.h > 0:
            object.__setattr__(self, "h", None)  # h = ∞: never stop early = fixed K
        if self.h is None:
            for name in ("k_max", "batch", "first"):
                if getattr(self, name) is not None:
                    raise SafetyGeoError(f"NullSpec.{name} applies to sequential tests only: set "
                                         f"h too (a fixed-K test draws k={self.k} nulls)")
            return
        positive_int(self.h, "NullSpec.h (exceedances that stop a sequential test)", minimum=2)
        if self.k_max is not None:
            positive_int(self.k_max, "NullSpec.k_max (most nulls of a sequential test)")
        if self.batch is not None:
            positive_int(self.batch, "NullSpec.batch (nulls per sequential step)")
        if self.first is not None:
            positive_int(self.first, "NullSpec.first (nulls before the first look)")

    @classmethod
    def sequential(cls, h: int = DEFAULT_H, k_max: int = 64, *, batch: int | None = None,
                   tail: bool = True, **kw: Any) -> NullSpec:
        """A sequential spec: ``h`` exceedances, at most ``k_max`` nulls, tail estimates on.

        Example:
            >>> NullSpec.sequential().n_max, NullSpec.sequential(batch=8).step
            (64, 8)
        """
        return cls(k=k_max, h=h, batch=batch, tail=tail, **kw)

    @property
    def is_sequential(self) -> bool:
        return self.h is not None

    @property
    def n_max(self) -> int:
        """The most nulls one test draws: ``k_max`` (default ``k``) if sequential, else ``k``."""
        return int(self.k_max if self.h is not None and self.k_max is not None else self.k)

    @property
    def step(self) -> int:
        """Nulls drawn per sequential step (``batch``, default :data:`DEFAULT_BATCH`)."""
        return int(self.batch if self.batch is not None else DEFAULT_BATCH)

    @property
    def first_look(self) -> int:
        """Nulls drawn before the first look (``first``, default ``max(batch, 16)``)."""
        return int(self.first if self.first is not None else max(self.step, DEFAULT_FIRST))

    def checkpoints(self) -> list[int]:
        """Null counts after which the test looks (``[k]`` for a fixed K)."""
        if not self.is_sequential:
            return [self.k]
        return schedule(self.n_max, self.step, min(self.first_look, self.n_max))

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
        """What determines the rows of a null-controlled table (for resumable tables).

        Not ``max_variants`` (it only batches). A fixed-K spec without tail estimates gives
        the same identity as before sequential tests existed (older tables resume); a
        sequential one adds ``sequential: {h, k_max, batch, first}`` (``batch`` and ``first``
        set where the test looks, hence the nulls drawn), ``tail: True`` when tail estimates
        are on.
        """
        out: dict[str, Any] = {"k": self.k, "kind": self.kind, "seed": int(self.seed),
                               "covariance_sha256": self.covariance_sha256()}
        if self.is_sequential:
            out["sequential"] = {"h": int(self.h),  # type: ignore[arg-type]
                                 "k_max": self.n_max, "batch": self.step,
                                 "first": self.first_look}
        if self.tail:
            out["tail"] = True
        return out

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


def random_head_sets(heads: Sequence[int], n_heads: int, k: int, *,
                     seed: int = 0) -> tuple[list[tuple[int, ...]], bool]:
    """Matched null head sets: ``k`` sets of ``len(heads)`` heads of the same layer, each
    *disjoint* from ``heads`` ("other heads"), distinct, in a seeded random order.

    When there are at most ``k`` such sets, all of them are returned (in a seeded random
    order) and the second value is ``True``: the null is *exhaustive*, and the Monte Carlo
    p is the exact rank of the real heads among all ``1 + n`` sets (floor ``1 / (1 + n)``;
    for one head of ``H``: ``1 / H``). Otherwise ``k`` distinct sets are drawn by rejection
    (the first ``k'`` sets of a seed do not depend on ``k``) and the second value is ``False``.

    Raises:
        SafetyGeoError: no other head set exists (``heads`` leaves fewer than ``len(heads)``
            other heads).

    Example:
        >>> sets, exhaustive = random_head_sets([0], 4, 64, seed=1)
        >>> sorted(sets), exhaustive
        ([(1,), (2,), (3,)], True)
        >>> len(random_head_sets([0, 1], 16, 5)[0]), random_head_sets([0, 1], 16, 5)[1]
        (5, False)
    """
    import itertools

    k = positive_int(k, "number of null head sets K")
    real = sorted(set(int(h) for h in heads))
    others = [h for h in range(n_heads) if h not in real]
    m = len(real)
    total = math.comb(len(others), m) if m else 0
    if total == 0:
        raise SafetyGeoError(f"heads {real} of {n_heads} leave no other set of {m} heads to "
                             "compare with")
    rng = np.random.default_rng(seed)
    if total <= k:
        every = list(itertools.combinations(others, m))
        return [every[i] for i in rng.permutation(total)], True
    seen: set[tuple[int, ...]] = set()
    out: list[tuple[int, ...]] = []
    while len(out) < k:
        s = tuple(sorted(int(x) for x in rng.choice(others, m, replace=False)))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out, False


def matched_variants(
    handle: ModelHandle,
    direction: Float[Tensor, " d"],
    op: str,
    nulls: NullSpec,
    *,
    layer: int | None = None,
) -> tuple[Float[Tensor, "k1 d"], int | None]:
    """The direction stack of a directional intervention given as an op string (the older
    API; :class:`~safetygeo.interventions.intervention.Intervention` values carry their own
    nulls): ``([1 + n, d] float64 with the real vector first, resolved layer)``,
    ``n = nulls.n_max`` (``k``, or ``k_max`` for a sequential test — which evaluates only as
    many as it needs).

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
    from safetygeo.interventions.intervention import from_op

    nulls = check_spec(nulls)
    iv = from_op(op, direction, layer=layer).resolved(handle)
    real = as_directions(direction, handle.d_model, normalize=False)[0]
    return torch.cat([real[None], sphere_or_covariance(nulls, real)]), iv.site.layer


def check_spec(nulls: Any) -> NullSpec:
    """``nulls`` if it is a :class:`NullSpec`, else a one-line :class:`SafetyGeoError`."""
    if not hasattr(nulls, "identity") or not hasattr(nulls, "max_variants"):  # a NullSpec
        raise SafetyGeoError(f"nulls must be a NullSpec, got {type(nulls).__name__}")
    return cast(NullSpec, nulls)


def sphere_or_covariance(nulls: NullSpec, real: Float[Tensor, " d"]) -> Float[Tensor, "n d"]:
    """``nulls.n_max`` random directions with ``real``'s norm (``nulls.kind``)."""
    return random_directions(nulls.n_max, real.shape[-1], seed=nulls.seed,
                             norm=float(real.norm()),
                             covariance=nulls.covariance if nulls.kind == "covariance" else None)


@dataclass(frozen=True, eq=False)
class NullDraws:
    """What :func:`run_null_test` evaluated and decided.

    Attributes:
        values: ``[1 + k, m]`` metric values, row 0 the real direction, then the ``k``
            nulls drawn, in draw order.
        decisions: per metric, the settled sequential decision (``None`` for a fixed K).
        metrics: ``(name, alternative)`` per column.
        tail: whether tail estimates were asked for (``NullSpec.tail``).
    """

    values: np.ndarray
    decisions: list[SequentialP | None]
    metrics: list[tuple[str, str]]
    tail: bool

    @property
    def k(self) -> int:
        """Nulls drawn (the cell's cost is ``1 + k`` directions)."""
        return int(self.values.shape[0] - 1)

    def comparison(self, j: int, **kw: Any) -> NullComparison:
        """The :class:`~safetygeo.results.NullComparison` of metric ``j`` (``kw``: CI, extra)."""
        name, alt = self.metrics[j]
        return NullComparison.from_null(name, float(self.values[0, j]), self.values[1:, j],
                                        alt, sequential=self.decisions[j],  # type: ignore[arg-type]
                                        tail=self.tail, **kw)

    def comparisons(self) -> dict[str, NullComparison]:
        return {name: self.comparison(j) for j, (name, _) in enumerate(self.metrics)}


def run_null_test(
    nulls: NullSpec,
    evaluate: Callable[[list[int]], np.ndarray],
    metrics: Sequence[tuple[str, Alternative]],
) -> NullDraws:
    """Evaluate the real direction and its nulls — all ``k`` at once, or sequentially.

    Args:
        nulls: the spec (fixed K, or sequential with ``h``, ``k_max``, ``batch``).
        evaluate: ``indices -> [len(indices), m]`` metric values of those variants of
            :func:`matched_variants`' stack (0 = the real direction, ``i`` = the i-th null);
            it batches them into forward passes itself (``nulls.max_variants`` per pass).
        metrics: ``(name, alternative)`` of the ``m`` columns.

    Returns:
        a :class:`NullDraws`; a sequential test stops after the first batch at which every
        metric is settled (see the module docstring).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> effects = np.concatenate([[5.0], rng.normal(size=64)])  # a real effect, 64 nulls
        >>> ev = lambda idx: np.stack([effects[idx], rng.normal(size=len(idx))], 1)
        >>> d = run_null_test(NullSpec.sequential(h=3, batch=16), ev,
        ...                   [("strong", "greater"), ("null-like", "two-sided")])
        >>> c = d.comparisons()
        >>> c["strong"].stop_reason, c["strong"].n_null_used, c["null-like"].stop_reason
        ('k_max', 64, 'h_exceedances')
    """
    alts = [a for _, a in metrics]
    for a in alts:
        if a not in ALTERNATIVES:
            raise SafetyGeoError(f"unknown alternative {a!r}; use one of {ALTERNATIVES}")

    def run(idx: list[int]) -> np.ndarray:
        return np.asarray(evaluate(idx), dtype=np.float64).reshape(len(idx), len(metrics))

    m = len(metrics)
    if not nulls.is_sequential:
        values = run(list(range(nulls.k + 1)))
        return NullDraws(values, [None] * m, [(n, a) for n, a in metrics], nulls.tail)
    cps = nulls.checkpoints()
    parts: list[np.ndarray] = []
    drawn = 0
    decisions: list[SequentialP | None] = [None] * m
    for c in cps:
        parts.append(run(([0] if drawn == 0 else []) + list(range(drawn + 1, c + 1))))
        drawn = c
        values = np.concatenate(parts)
        now = [besag_clifford_p(float(values[0, j]), values[1:, j], alts[j], h=nulls.h,
                                k_max=nulls.n_max, checkpoints=cps) for j in range(m)]
        decisions = list(now)
        if all(d.settled for d in now):
            break
    return NullDraws(np.concatenate(parts), decisions, [(n, a) for n, a in metrics], nulls.tail)
