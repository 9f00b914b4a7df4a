"""Abliteration with a layer-dependent kernel: the weight edits users ship, named by what
they do, with the public tools they come from as references.

**Directions.** ``directions`` is ``[L+1, d]``: one candidate per residual slot (slot ``l``
= the residual stream entering block ``l``, slot ``L`` = the final norm's input; the
project's convention for diff-in-means candidates). Block ``l``'s writers use

* ``direction_index=None`` ("per layer"): slot ``l + 1`` — the residual block ``l`` writes
  into (heretic's per-layer scope, whose index ``i`` is our slot ``i + 1``);
* ``direction_index=x`` (a float): one direction for all blocks, the normalized linear
  interpolation of the unit directions of slots ``⌊x⌋`` and ``⌊x⌋ + 1`` (heretic's global
  scope; heretic's index ``i`` is our ``x = i + 1``).

Slots no block uses may be zero (diff-in-means at the last template token gives a zero
slot 0: every prompt embeds the same token there).

**Kernel** (:class:`LayerKernel`, one for attention outputs and one for MLP outputs): block
``l`` is edited with weight ``w(l) = max + (|l − peak| / distance)·(min − max)`` when
``|l − peak| ≤ distance``, else not at all (heretic's linear kernel). Weights above 1
over-remove the direction (allowed; a warning says so).

**Projection of the direction** (``projected``), against ``harmless_means`` ``[L+1, d]``:

* ``"harmless-own-slot"`` — every slot's direction loses its component along that slot's
  harmless mean *before* it is chosen or interpolated (heretic's ``orthogonalize_direction``,
  after grimjim's projected abliteration): with a global index, one vector for all blocks;
* ``"harmless-block-input"`` — block ``l``'s direction loses its component along the
  harmless mean entering block ``l`` (slot ``l``; grimjim's llm-abliteration).

**How a writer's output matrix ``W`` (``[d, in]``, one row per residual coordinate)
changes** (``norm``), with unit direction ``r`` and weight ``w``:

* ``"plain"`` — ``W ← W − w·r (rᵀW)`` (Arditi et al.; FailSpy; heretic without row
  normalization). Biases ``b ← b − w (r·b) r``.
* ``"rows-renormalized"`` — rows normalized, projected, renormalized, original row norms
  restored: ``W ← diag(‖W_i‖) rownorm(Ŵ − w·r (rᵀŴ))`` (heretic's ``row_normalization =
  "full"``, computed exactly rather than as a low-rank adapter).
* ``"rows-prescaled"`` — the update is computed on row-normalized weights and scaled back
  by the row norms: ``W ← W − w·(‖W‖ ⊙ r)(rᵀŴ)`` (heretic's ``"pre"``).
* ``"columns-renormalized"`` — each column (what one input unit writes into the residual)
  is normalized, projected with weight ``w``, renormalized, projected again fully,
  renormalized and rescaled to its original norm: no ``r`` component is left whatever ``w``
  (grimjim's norm-preserving abliteration). Biases as in ``plain``.

The three row-wise edits are left multiplications ``W ← M W`` (biases ``b ← M b``), so a hook
mapping each writer's output ``y ↦ M y`` (:func:`kernel_hooks`) computes what the edited
weights compute; the column-wise edit rescales input units (``W ← M W D``) and exists in
weights only. The embeddings are left alone unless ``embeddings=True`` (then their rows lose
the direction block 0's writers lose, plainly, with weight 1 — so slot 0, zero for
diff-in-means at a template token, is never read; heretic leaves the embeddings alone too).

Example:
    >>> import torch
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=3, d_model=32))
    >>> k = AbliterationKernel(attention=LayerKernel(1.0, peak=1, min_weight=0.5, distance=1),
    ...                        mlp=LayerKernel(0.0), direction_index=1.5)
    >>> [round(w, 2) for w in k.attention.weights(3)]
    [0.5, 1.0, 0.5]
    >>> edited = abliterated_copy(h, torch.randn(4, 32), k)
    >>> edited.model_id.endswith("+abliterated")
    True
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from safetygeo._validate import finite_float
from safetygeo.errors import NonFiniteError, SafetyGeoError, UnknownArchitectureError
from safetygeo.interventions.hooks import installed_hooks, map_output
from safetygeo.interventions.subspace import embedding_modules, output_projection
from safetygeo.models.handle import ModelHandle

__all__ = ["NORM_MODES", "PROJECTIONS", "AbliterationKernel", "LayerKernel", "abliterate_",
           "abliterated_copy", "block_directions", "edit_matrix", "edited_weights",
           "kernel_hooks", "lora_factors"]

NormMode = Literal["plain", "rows-renormalized", "rows-prescaled", "columns-renormalized"]
NORM_MODES: tuple[str, ...] = ("plain", "rows-renormalized", "rows-prescaled",
                               "columns-renormalized")
Projection = Literal["none", "harmless-own-slot", "harmless-block-input"]
PROJECTIONS: tuple[str, ...] = ("none", "harmless-own-slot", "harmless-block-input")
#: The public tools' names for the modes (for ``--mode`` and the model card).
PEER_NAMES: dict[str, str] = {
    "plain": "Arditi et al. / FailSpy / heretic row_normalization=none",
    "rows-renormalized": "heretic row_normalization=full",
    "rows-prescaled": "heretic row_normalization=pre",
    "columns-renormalized": "grimjim norm-preserving abliteration",
    "none": "no projection",
    "harmless-own-slot": "heretic orthogonalize_direction (grimjim's projected abliteration)",
    "harmless-block-input": "grimjim llm-abliteration --projected",
}
_TINY = 1e-300


@dataclass(frozen=True)
class LayerKernel:
    """Weight per block for one component: ``max_weight`` at ``peak``, falling linearly to
    ``min_weight`` at ``distance`` layers away, zero beyond (heretic's kernel).

    The default (weight 1 everywhere) is the plain full ablation.

    Example:
        >>> [round(w, 6) for w in LayerKernel(1.2, peak=2, min_weight=0.2, distance=2).weights(5)]
        [0.2, 0.7, 1.2, 0.7, 0.2]
    """

    max_weight: float = 1.0
    peak: float = 0.0
    min_weight: float | None = None
    distance: float = math.inf

    def __post_init__(self) -> None:
        mx = finite_float(self.max_weight, "max_weight")
        mn = mx if self.min_weight is None else finite_float(self.min_weight, "min_weight")
        object.__setattr__(self, "max_weight", mx)
        object.__setattr__(self, "min_weight", mn)
        object.__setattr__(self, "peak", finite_float(self.peak, "peak"))
        if mx < 0 or mn < 0:
            raise SafetyGeoError(f"kernel weights must be >= 0, got max {mx}, min {mn}")
        dist = float(self.distance)
        if math.isnan(dist) or dist <= 0:
            raise SafetyGeoError(f"kernel distance must be > 0 (layers), got {self.distance}")
        object.__setattr__(self, "distance", dist)

    def weight(self, layer: int) -> float:
        """The weight of block ``layer``."""
        d = abs(layer - self.peak)
        mn = cast(float, self.min_weight)
        if d > self.distance:
            return 0.0
        if math.isinf(self.distance):
            return self.max_weight
        return self.max_weight + (d / self.distance) * (mn - self.max_weight)

    def weights(self, n_layers: int) -> list[float]:
        """The weights of blocks ``0..n_layers-1``."""
        return [self.weight(l) for l in range(n_layers)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["distance"] = None if math.isinf(self.distance) else self.distance
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LayerKernel:
        dist = raw.get("distance")
        return cls(float(raw["max_weight"]), float(raw.get("peak", 0.0)),
                   raw.get("min_weight"), math.inf if dist is None else float(dist))


@dataclass(frozen=True)
class AbliterationKernel:
    """What an abliteration edits and how (see the module docstring).

    Attributes:
        attention, mlp: the per-block weights of the attention and MLP output projections.
        direction_index: fractional slot of one direction for all blocks, or ``None``
            (block ``l`` uses slot ``l + 1``).
        norm: how each matrix is edited (``NORM_MODES``).
        projected: how the direction is made orthogonal to the harmless mean
            (``PROJECTIONS``); needs ``harmless_means``.
        embeddings: also edit the embeddings (plain, weight 1).
    """

    attention: LayerKernel = field(default_factory=LayerKernel)
    mlp: LayerKernel = field(default_factory=LayerKernel)
    direction_index: float | None = None
    norm: NormMode = "plain"
    projected: Projection = "none"
    embeddings: bool = False

    def __post_init__(self) -> None:
        if self.norm not in NORM_MODES:
            raise SafetyGeoError(f"norm must be one of {NORM_MODES}, got {self.norm!r}")
        if self.projected not in PROJECTIONS:
            raise SafetyGeoError(f"projected must be one of {PROJECTIONS}, got {self.projected!r}")
        if self.direction_index is not None:
            x = finite_float(self.direction_index, "direction_index")
            if x < 0:
                raise SafetyGeoError(f"direction_index must be >= 0, got {x}")
            object.__setattr__(self, "direction_index", x)

    def check(self, n_layers: int) -> None:
        """Validate against a model of ``n_layers`` blocks; warn about weights above 1."""
        if self.direction_index is not None and self.direction_index > n_layers:
            raise SafetyGeoError(f"direction_index {self.direction_index} is outside the slots "
                                 f"0..{n_layers} of this model")
        big = max(max(self.attention.weights(n_layers)), max(self.mlp.weights(n_layers)))
        if big > 1:
            warnings.warn(f"kernel weight {big:.3g} > 1 removes more than the direction's "
                          "component (over-ablation)", stacklevel=3)

    def replace(self, **changes: Any) -> AbliterationKernel:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"attention": self.attention.to_dict(), "mlp": self.mlp.to_dict(),
                "direction_index": self.direction_index, "norm": self.norm,
                "projected": self.projected, "embeddings": self.embeddings,
                "references": {"norm": PEER_NAMES[self.norm],
                               "projected": PEER_NAMES[self.projected]}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AbliterationKernel:
        """Inverse of :meth:`to_dict` (``references`` ignored)."""
        try:
            di = raw.get("direction_index")
            return cls(LayerKernel.from_dict(raw["attention"]), LayerKernel.from_dict(raw["mlp"]),
                       None if di is None else float(di), raw.get("norm", "plain"),
                       raw.get("projected", "none"), bool(raw.get("embeddings", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise SafetyGeoError(f"not an abliteration kernel: {exc}") from exc


# ----------------------------------------------------------------------------- directions
def _unit(v: Tensor, what: str) -> Tensor:
    n = v.norm()
    if n <= 1e-12:
        raise SafetyGeoError(f"{what} has zero norm")
    return v / n


def _orth(v: Tensor, mean: Tensor) -> Tensor:
    m = _unit(mean, "a harmless mean")
    return v - (v @ m) * m


def _as_slots(x: Any, n_slots: int, d: int, what: str) -> Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.ndim != 2 or t.shape != (n_slots, d):
        raise SafetyGeoError(f"{what} has shape {tuple(t.shape)}; expected [L+1={n_slots}, d={d}]")
    if not torch.isfinite(t).all():
        raise NonFiniteError(f"{what} contains NaN or inf")
    return t


def block_directions(directions: Any, kernel: AbliterationKernel, n_layers: int,
                     harmless_means: Any = None) -> Tensor:
    """``[L+1, d]`` unit directions: row ``l + 1`` for block ``l``'s writers, row 0 for the
    embeddings (= row 1 when they are edited, else zero; see the module docstring). Only the
    slots used must be non-zero.

    Example:
        >>> e = torch.eye(3, dtype=torch.float64)
        >>> dirs = torch.stack([torch.zeros(3), e[0], e[1]])
        >>> block_directions(dirs, AbliterationKernel(direction_index=1.5), 2)[1].tolist()
        [0.7071067811865475, 0.7071067811865475, 0.0]
    """
    n_slots = n_layers + 1
    dirs = torch.as_tensor(directions).detach().to("cpu", torch.float64)
    if dirs.ndim != 2 or dirs.shape[0] != n_slots:
        raise SafetyGeoError(f"directions have shape {tuple(dirs.shape)}; expected "
                             f"[L+1={n_slots}, d] (one per residual slot)")
    d = dirs.shape[1]
    dirs = _as_slots(dirs, n_slots, d, "directions")
    if kernel.projected != "none" and harmless_means is None:
        raise SafetyGeoError(f"projected={kernel.projected!r} needs the harmless means per slot")
    means = None if harmless_means is None else _as_slots(harmless_means, n_slots, d,
                                                          "harmless_means")

    def slot(i: int) -> Tensor:  # a unit slot direction, heretic-projected if asked
        v = _unit(dirs[i], f"the direction of slot {i} (used by the edit)")
        if kernel.projected == "harmless-own-slot":
            assert means is not None
            v = _unit(_orth(v, means[i]), f"the projected direction of slot {i}")
        return v

    x = kernel.direction_index
    if x is not None:
        lo = int(math.floor(x))
        frac = x - lo
        if frac == 0.0 or lo + 1 >= n_slots:
            glob = slot(min(lo, n_slots - 1))
        else:
            glob = _unit(torch.lerp(slot(lo), slot(lo + 1), frac), "the interpolated direction")
    out = torch.zeros(n_slots, d, dtype=torch.float64)
    for l in range(n_layers):
        v = glob if x is not None else slot(l + 1)
        if kernel.projected == "harmless-block-input":
            assert means is not None
            v = _unit(_orth(v, means[l]), f"the projected direction of block {l}")
        out[l + 1] = v
    if kernel.embeddings:  # the embeddings lose what block 0's writers lose
        out[0] = out[1]
    return out


# ----------------------------------------------------------------------------- matrices
def _row_map(w_rows: Tensor, r: Tensor, weight: float, norm: str) -> Tensor:
    """``M`` with ``M W`` = the row-wise edit of ``W`` (``[d, in]``)."""
    d = w_rows.shape[0]
    eye = torch.eye(d, dtype=torch.float64, device=w_rows.device)
    proj = eye - weight * torch.outer(r, r)
    if norm == "plain":
        return proj
    n = w_rows.double().norm(dim=1)
    inv = torch.where(n > 0, 1.0 / n.clamp(min=_TINY), torch.zeros_like(n))
    if norm == "rows-prescaled":
        return eye - weight * torch.outer(n * r, r * inv)
    edited = proj @ (w_rows.double() * inv[:, None])
    en = edited.norm(dim=1)
    gain = torch.where(en > 0, n / en.clamp(min=_TINY), torch.zeros_like(en))
    return gain[:, None] * proj * inv[None, :]


def _columns(w_rows: Tensor, r: Tensor, weight: float) -> Tensor:
    w = w_rows.double()
    cn = w.norm(dim=0, keepdim=True)
    c = w / cn.clamp(min=_TINY)
    c = c - weight * torch.outer(r, r @ c)
    c = c / c.norm(dim=0, keepdim=True).clamp(min=_TINY)
    c = c - torch.outer(r, r @ c)
    c = c / c.norm(dim=0, keepdim=True).clamp(min=_TINY)
    return torch.where(cn > 0, c * cn, torch.zeros_like(c))


def edit_matrix(w_rows: Tensor, direction: Tensor, weight: float,
                norm: NormMode = "plain") -> Tensor:
    """The edited ``[d, in]`` matrix (float64) for unit ``direction`` and ``weight``.

    Example:
        >>> w, r = torch.randn(4, 6, dtype=torch.float64), torch.eye(4, dtype=torch.float64)[0]
        >>> float((r @ edit_matrix(w, r, 1.0, "columns-renormalized")).abs().max()) < 1e-12
        True
    """
    r = direction.to(w_rows.device, torch.float64)
    if norm == "columns-renormalized":
        return _columns(w_rows, r, weight)
    return _rank_one(w_rows.double(), r, weight, norm)[0]


def _rank_one(w: Tensor, r: Tensor, weight: float, norm: str,
              vec: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """The row-wise edit of ``w`` (``[d, in]``) in ``O(d·in)`` (no ``d × d`` matrix), and the
    same map ``M`` applied to a vector ``vec`` (a bias): ``(M w, M vec)``."""
    if norm == "plain":
        new = w - weight * torch.outer(r, r @ w)
        mv = None if vec is None else vec - weight * (r @ vec) * r
        return new, mv
    n = w.norm(dim=1)
    inv = torch.where(n > 0, 1.0 / n.clamp(min=_TINY), torch.zeros_like(n))
    wn = w * inv[:, None]
    if norm == "rows-prescaled":
        new = w - weight * torch.outer(n * r, r @ wn)
        mv = None if vec is None else vec - weight * (r @ (vec * inv)) * (n * r)
        return new, mv
    edited = wn - weight * torch.outer(r, r @ wn)
    en = edited.norm(dim=1)
    gain = torch.where(en > 0, n / en.clamp(min=_TINY), torch.zeros_like(en))
    mv = None
    if vec is not None:
        vi = vec * inv
        mv = gain * (vi - weight * (r @ vi) * r)
    return edited * gain[:, None], mv


# ----------------------------------------------------------------------------- models
def _rows(layer: nn.Module) -> Tensor:
    w = cast(Tensor, layer.weight)
    if isinstance(layer, nn.Linear):
        return w
    if type(layer).__name__ == "Conv1D":  # GPT-2: [in, out]
        return w.T
    raise UnknownArchitectureError(f"cannot edit {type(layer).__name__}")


def _plan(handle: ModelHandle, dirs: Tensor,
          kernel: AbliterationKernel) -> list[tuple[nn.Module, Tensor, float]]:
    """``(output projection, unit direction, weight)`` of every matrix edited."""
    for block in handle.blocks:
        children = dict(block.named_children())
        if "post_attention_layernorm" in children and "post_feedforward_layernorm" in children:
            raise UnknownArchitectureError(
                f"{type(block).__name__} normalizes its outputs before the residual add; a "
                "weight edit is not equivalent there")
    n = handle.n_layers
    kernel.check(n)
    plan = []
    for l, block in enumerate(handle.blocks):
        parts = handle.arch.block_parts(block)
        for path, lk in ((parts.attn, kernel.attention), (parts.mlp, kernel.mlp)):
            w = lk.weight(l)
            if w == 0:
                continue
            plan.append((output_projection(block.get_submodule(path)), dirs[l + 1], w))
    return plan


@torch.no_grad()
def _edit_layer(layer: nn.Module, r: Tensor, w: float, norm: NormMode) -> None:
    rows = _rows(layer)
    r = r.to(rows.device, torch.float64)
    bias = getattr(layer, "bias", None)
    b = None if bias is None else bias.detach().to(rows.device, torch.float64)
    if norm == "columns-renormalized":
        new = _columns(rows, r, w)
        nb = None if b is None else _rank_one(rows.double(), r, w, "plain", b)[1]
    else:
        new, nb = _rank_one(rows.double(), r, w, norm, b)
    if bias is not None and nb is not None:
        bias.copy_(nb.to(bias.device, bias.dtype))
    rows.copy_(new.to(rows.dtype))


@torch.no_grad()
def _edit_embeddings(handle: ModelHandle, r: Tensor) -> None:
    inp = handle.model.get_input_embeddings()
    out = handle.model.get_output_embeddings()
    if out is not None and out.weight is inp.weight:
        out.weight = nn.Parameter(inp.weight.detach().clone())
        handle.model.config.tie_word_embeddings = False
    for emb in embedding_modules(handle):
        ew = cast(Tensor, emb.weight)
        u = r.to(ew.device, ew.dtype)
        ew -= torch.outer(ew @ u, u)


def abliterate_(handle: ModelHandle, directions: Any, kernel: AbliterationKernel,
                harmless_means: Any = None) -> ModelHandle:
    """Edit ``handle``'s weights in place (see the module docstring); returns it."""
    dirs = block_directions(directions, kernel, handle.n_layers, harmless_means)
    for layer, r, w in _plan(handle, dirs, kernel):
        _edit_layer(layer, r, w, kernel.norm)
    if kernel.embeddings:
        _edit_embeddings(handle, dirs[0])
    return handle


def abliterated_copy(handle: ModelHandle, directions: Any, kernel: AbliterationKernel,
                     harmless_means: Any = None) -> ModelHandle:
    """A deep copy of ``handle`` with the kernel's edit in its weights (``model_id`` +
    ``"+abliterated"``); the original is never modified."""
    model = copy.deepcopy(handle.model)
    edited = ModelHandle(model, handle.tokenizer, handle.arch,
                         model_id=f"{handle.model_id}+abliterated", revision=handle.revision,
                         template=handle.template)
    return abliterate_(edited, directions, kernel, harmless_means)


@contextlib.contextmanager
def edited_weights(handle: ModelHandle, directions: Any, kernel: AbliterationKernel,
                   harmless_means: Any = None) -> Iterator[None]:
    """The edit applied to ``handle``'s weights in place for the ``with`` block, the original
    weights restored afterwards (no copy of the whole model: what a search trial needs)."""
    dirs = block_directions(directions, kernel, handle.n_layers, harmless_means)
    plan = _plan(handle, dirs, kernel)
    saved: list[tuple[Tensor, Tensor]] = []
    for layer, _, _ in plan:
        for p in (cast(Tensor, layer.weight), getattr(layer, "bias", None)):
            if p is not None:
                saved.append((p, p.detach().clone()))
    inp = handle.model.get_input_embeddings()
    out = handle.model.get_output_embeddings()
    tied = out is not None and out.weight is inp.weight
    tie_flag = getattr(handle.model.config, "tie_word_embeddings", None)
    if kernel.embeddings:
        for emb in embedding_modules(handle):
            saved.append((cast(Tensor, emb.weight), cast(Tensor, emb.weight).detach().clone()))
    try:
        with torch.no_grad():
            for layer, r, w in plan:
                _edit_layer(layer, r, w, kernel.norm)
            if kernel.embeddings:
                _edit_embeddings(handle, dirs[0])
        yield
    finally:
        with torch.no_grad():
            for p, old in saved:
                p.copy_(old)
            if tied and out is not None:
                out.weight = inp.weight
                handle.model.config.tie_word_embeddings = tie_flag


@contextlib.contextmanager
def kernel_hooks(handle: ModelHandle, directions: Any, kernel: AbliterationKernel,
                 harmless_means: Any = None) -> Iterator[None]:
    """Activation-space twin of the row-wise edits: every edited writer's output ``y``
    becomes ``M y`` (the embeddings' rows lose the slot-0 direction). Equal to
    :func:`abliterated_copy` up to rounding.

    Raises:
        SafetyGeoError: ``norm="columns-renormalized"`` (it rescales input units; weights only).
    """
    if kernel.norm == "columns-renormalized":
        raise SafetyGeoError("the column-wise (grimjim) edit rescales each input unit "
                             "(W <- M W D); it has no output-hook form: edit the weights")
    dirs = block_directions(directions, kernel, handle.n_layers, harmless_means)
    post: list[tuple[nn.Module, Callable[..., Any]]] = []

    def hook_of(m: Tensor) -> Callable[..., Any]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            return map_output(output, lambda y: y @ m.to(y.device, y.dtype).T)
        return hook

    for layer, r, w in _plan(handle, dirs, kernel):
        post.append((layer, hook_of(_row_map(_rows(layer).detach(), r, w, kernel.norm))))
    if kernel.embeddings:
        m0 = torch.eye(handle.d_model, dtype=torch.float64) - torch.outer(dirs[0], dirs[0])
        post += [(e, hook_of(m0)) for e in embedding_modules(handle)]
    with installed_hooks([], post):
        yield



def lora_factors(handle: ModelHandle, directions: Any, kernel: AbliterationKernel,
                 harmless_means: Any = None) -> dict[str, tuple[Tensor, Tensor]]:
    """The edit as exact rank-1 LoRA factors ``{module name: (A [1, in], B [d, 1])}`` with
    ``W + B A`` = the edited weight — for the modes whose update is rank 1 (``plain``:
    ``B = −w r``, ``A = rᵀW``; ``rows-prescaled``: ``B = −w (‖W‖ ⊙ r)``, ``A = rᵀŴ``).

    Raises:
        SafetyGeoError: a norm-preserving mode (a full-rank change of each matrix), edited
            embeddings, biases or non-``Linear`` projections (a LoRA adapter carries none).
    """
    if kernel.norm not in ("plain", "rows-prescaled"):
        raise SafetyGeoError(f"norm={kernel.norm!r} changes each matrix at full rank; a LoRA "
                             "adapter holds only plain or rows-prescaled edits (rank 1): write "
                             "the merged checkpoint instead")
    if kernel.embeddings:
        raise SafetyGeoError("a LoRA adapter cannot edit the embeddings; drop --embeddings or "
                             "write the merged checkpoint")
    names = {m: n for n, m in handle.model.named_modules()}
    dirs = block_directions(directions, kernel, handle.n_layers, harmless_means)
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for layer, r, w in _plan(handle, dirs, kernel):
        if not isinstance(layer, nn.Linear) or layer.bias is not None:
            raise SafetyGeoError(f"{names[layer]} is not a bias-free Linear; a LoRA adapter "
                                 "cannot hold its edit: write the merged checkpoint")
        W = layer.weight.detach().double().cpu()
        if kernel.norm == "plain":
            a, b = r @ W, -w * r
        else:
            n = W.norm(dim=1)
            inv = torch.where(n > 0, 1.0 / n.clamp(min=_TINY), torch.zeros_like(n))
            a, b = r @ (W * inv[:, None]), -w * n * r
        out[names[layer]] = (a[None], b[:, None])
    return out
