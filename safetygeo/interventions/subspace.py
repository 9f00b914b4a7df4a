"""Subspace interventions: ``k``-dimensional ablation (plain, norm-preserving, biprojected,
magnitude-preserving), differentiable variants for optimizing directions, and matched
random-subspace nulls.

Ablation of a subspace with orthonormal basis ``B`` (``[k, d]``) and projector
``P = BᵀB``, at strength ``s``:

* ``mode="project"`` — every **write** into the residual stream loses ``s`` times its
  component in the subspace: the token (and learned position) embeddings, and the
  attention and MLP outputs of the blocks in ``layers`` (default: all). With ``s = 1``,
  all layers and ``k = 1`` this is exactly Arditi et al.'s directional ablation
  (:func:`safetygeo.interventions.hooks.ablate`, which also projects the block inputs —
  a no-op once every write is projected); for every ``s``, ``k`` and layer window it is
  exactly the weight edit ``W ← (I − sP) W`` of
  :func:`safetygeo.interventions.subspace_weights.ablated_copy` (heretic's abliteration
  with a per-layer weight is this with a layer-dependent ``s``).
* ``mode="norm_preserving"`` — at the residual stream **entering** each layer in
  ``layers`` (``0..L``; ``L`` = final-norm input): ``x ← (x − sPx)·‖x‖/‖x − sPx‖`` per
  token, i.e. the subspace is removed and the residual rescaled to its original norm.
  With ``s = 1`` and no rescaling this would again be the plain ablation; the rescaling is
  a per-token non-linearity, so there is **no** exact weight version of it. The weight-space
  row-wise norm-preserving weight edit (heretic's ``row_normalization="full"``: each weight
  row keeps its norm) is :func:`mpoa_ablate` here and ``ablated_copy(...,
  norm_preserving=True)`` in weights; those two are equal. grimjim's norm-preserving
  abliteration is a different, *column-wise* edit (each column one hidden unit writes keeps
  its norm): ``norm="columns-renormalized"`` in :mod:`safetygeo.interventions.kernel`, which
  also has heretic's ``"pre"`` mode and the layer kernel.
* **biprojected** — not a mode but a basis: :func:`biprojected_bases` removes from the
  refusal directions their component along the *harmless mean* of each layer, giving one
  basis per layer ``[L+1, k, d]``; pass it with ``per_layer=True`` (the writes of block ``l``
  use basis ``l + 1``, i.e. the harmless mean at the *output* of block ``l``; the
  embeddings basis ``0``, the input of layer ``l`` basis ``l``). This is heretic's
  projected direction in its per-layer scope only; heretic's global scope (the mean at the
  direction's own layer, one vector for all blocks) and grimjim's (the mean at the *input*
  of block ``l``) are ``projected="harmless-own-slot"`` / ``"harmless-block-input"`` in
  :mod:`safetygeo.interventions.kernel`.

Variants: ``basis`` ``[v, k, d]`` (or ``[v, L+1, k, d]`` per layer) applies ``v`` subspaces
to ``v`` consecutive groups of the batch (the layout of
:func:`~safetygeo.interventions.hooks.ablate` / :func:`~safetygeo.activations.logits.last_logprobs`
``repeat=v``), e.g. a real subspace and its matched random nulls (:func:`matched_subspace_variants`).

``differentiable=True`` keeps the basis in the autograd graph (it is orthonormalized by a
differentiable QR), for optimizing directions through the frozen model
(:mod:`safetygeo.causal.finders`); :func:`add_vector` is the differentiable addition.

Example:
    >>> import torch
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    >>> b = torch.randn(2, 32)
    >>> with torch.no_grad(), ablate_subspace(h, b):
    ...     out = h.model(torch.tensor([[1, 5, 7]]), output_hidden_states=True)
    >>> q = as_bases(b, 32)[0]
    >>> float((out.hidden_states[2][0] @ q.T.float()).abs().max()) < 1e-5
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, cast

import torch
from jaxtyping import Float
from torch import Tensor, nn

from safetygeo._validate import finite_float
from safetygeo.errors import NonFiniteError, SafetyGeoError, UnknownArchitectureError
from safetygeo.geometry.cones import random_subspaces
from safetygeo.interventions.hooks import (
    installed_hooks,
    map_output,
    replace_hidden,
    residual_writers,
)
from safetygeo.models.arch import find_output_projection
from safetygeo.models.handle import ModelHandle
from safetygeo.models.hooks import resid_module

__all__ = ["AblationMode", "ABLATION_MODES", "ablate_subspace", "add_vector", "as_bases",
           "biprojected_bases", "embedding_modules", "fill_unused_slots", "matched_subspace_variants", "mpoa_ablate",
           "mpoa_matrix", "output_projection", "project_out_basis"]

AblationMode = Literal["project", "norm_preserving"]
ABLATION_MODES: tuple[str, ...] = ("project", "norm_preserving")


# ----------------------------------------------------------------------------- bases
def as_bases(basis: Any, d_model: int, *, differentiable: bool = False,
             per_layer: int | None = None) -> Tensor:
    """Validate and orthonormalize a subspace basis.

    Args:
        basis: ``[d]``, ``[k, d]`` or variants ``[v, k, d]``; with ``per_layer=n`` also
            ``[n, k, d]`` (one basis per layer) or ``[v, n, k, d]``.
        d_model: the residual width.
        differentiable: keep ``basis`` in the autograd graph (no detach, its dtype kept);
            otherwise float64.
        per_layer: number of layers of a per-layer basis (``L + 1``), or ``None``.

    Returns:
        ``[v, k, d]`` (or ``[v, n, k, d]``) with orthonormal rows per basis; the first row
        is the first given direction, normalized (QR with the sign fixed).

    Raises:
        SafetyGeoError: wrong shape, zero norm, linearly dependent directions;
        NonFiniteError: NaN / inf.
    """
    if not torch.is_tensor(basis):
        try:
            basis = torch.as_tensor(basis)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SafetyGeoError(f"basis must be numeric, got {type(basis).__name__}") from exc
    b = basis if differentiable else basis.detach().to("cpu", torch.float64)
    if not b.is_floating_point():
        b = b.double()
    lead = 1 if per_layer is None else 2
    if per_layer is None:
        b = b[None, None] if b.ndim == 1 else (b[None] if b.ndim == 2 else b)
    else:  # [n, d] (one direction per layer), [n, k, d] or [v, n, k, d]
        b = b[None, :, None] if b.ndim == 2 else (b[None] if b.ndim == 3 else b)
    if b.ndim != lead + 2 or b.shape[-1] != d_model or (per_layer is not None and b.shape[1] != per_layer):
        want = ("[d], [k, d] or [v, k, d]" if per_layer is None
                else f"[{per_layer}, d], [{per_layer}, k, d] or [v, {per_layer}, k, d]")
        raise SafetyGeoError(f"basis has shape {tuple(basis.shape)}; expected {want} with "
                             f"d = {d_model}")
    if b.shape[-2] > d_model:
        raise SafetyGeoError(f"a {b.shape[-2]}-dimensional subspace does not fit in d = {d_model}")
    if not torch.isfinite(b.detach()).all():
        raise NonFiniteError("basis contains NaN or inf")
    flat = b.reshape(-1, b.shape[-2], d_model)
    if (flat.detach().norm(dim=-1) <= 1e-12).any():
        raise SafetyGeoError("a basis direction has zero norm")
    q, r = torch.linalg.qr(flat.transpose(1, 2))  # [n, d, k]
    diag = torch.diagonal(r, dim1=1, dim2=2)
    scale = flat.detach().norm(dim=-1).amax(dim=-1, keepdim=True)
    if (diag.detach().abs() <= 1e-9 * scale).any():
        raise SafetyGeoError("basis directions are linearly dependent (rank < k)")
    q = q * torch.sign(diag.detach())[:, None, :]
    return q.transpose(1, 2).reshape(b.shape)


def fill_unused_slots(basis: Any, used: Sequence[int]) -> Any:
    """A per-layer basis (``[n, d]``, ``[n, k, d]`` or ``[v, n, k, d]``) whose slots outside
    ``used`` that are zero are filled with the first used slot (they are never applied), so
    that e.g. diff-in-means at the last template token — whose slot 0 is zero, every prompt
    embedding the same token there — can be ablated in a layer window. Anything else is
    returned unchanged (validation happens in :func:`as_bases`).

    Example:
        >>> b = torch.stack([torch.zeros(3), torch.ones(3), torch.ones(3)])
        >>> fill_unused_slots(b, [1, 2])[0].tolist()
        [1.0, 1.0, 1.0]
    """
    if not torch.is_tensor(basis) or basis.ndim not in (2, 3, 4) or not used:
        return basis
    axis = 1 if basis.ndim == 4 else 0
    n = basis.shape[axis]
    keep = sorted({int(u) for u in used if 0 <= int(u) < n})
    if not keep:
        return basis
    b = basis.clone()
    view = b if axis == 0 else b.transpose(0, 1)
    for slot in range(n):
        if slot not in keep and bool((view[slot].detach().abs().amax() == 0).all()):
            view[slot] = view[keep[0]]
    return b


def biprojected_bases(basis: Any, harmless_means: Any) -> Float[Tensor, "n k d"]:
    """Per-layer bases with each layer's harmless-mean direction removed (biprojection).

    For every layer ``l`` with harmless mean ``μ_l`` (``harmless_means`` ``[n, d]``), every
    basis direction ``b`` becomes ``b − (b·μ̂_l) μ̂_l``, and the result is re-orthonormalized:
    ablating it removes only the part of the refusal directions orthogonal to what harmless
    prompts carry at that layer ("projected abliteration", applied at every layer).

    Example:
        >>> import torch
        >>> e = torch.eye(3, dtype=torch.float64)
        >>> biprojected_bases(e[0] + e[1], torch.stack([e[1], e[2]]))[0, 0].abs().tolist()
        [1.0, 0.0, 0.0]
    """
    b = torch.as_tensor(basis).detach().to("cpu", torch.float64)
    if b.ndim == 1:
        b = b[None]
    mu = torch.as_tensor(harmless_means).detach().to("cpu", torch.float64)
    if mu.ndim != 2 or mu.shape[1] != b.shape[-1]:
        raise SafetyGeoError(f"harmless_means must be [layers, {b.shape[-1]}], got "
                             f"{tuple(mu.shape)}")
    norms = mu.norm(dim=1, keepdim=True)
    if (norms <= 1e-12).any():
        raise SafetyGeoError("a harmless mean has zero norm")
    mh = mu / norms
    out = b[None] - (b[None] @ mh[:, :, None]) * mh[:, None, :]  # [n, k, d]
    return as_bases(out, b.shape[-1], per_layer=len(mu))[0]


def matched_subspace_variants(basis: Any, k_null: int, *, seed: int = 0) -> Float[Tensor, "v k d"]:
    """The real basis (orthonormalized) followed by ``k_null`` Haar-random subspaces of the
    same dimension: ``[1 + k_null, k, d]`` float64 (:func:`~safetygeo.geometry.cones.random_subspaces`)."""
    b = torch.as_tensor(basis).detach().to("cpu", torch.float64)
    real = as_bases(b, b.shape[-1])[0]
    nulls = random_subspaces(k_null, real.shape[0], real.shape[1], seed=seed)
    return torch.cat([real[None], nulls])


# ----------------------------------------------------------------------------- projection
def project_out_basis(x: Tensor, bases: Tensor, strength: float | Tensor = 1.0) -> Tensor:
    """``x − s·(x Bᵀ) B`` with ``bases[i]`` (``[k, d]``, orthonormal) applied to the ``i``-th
    of ``v`` consecutive row groups of ``x`` (``[rows, ..., d]``; ``v = 1``: every row).

    Example:
        >>> x, b = torch.randn(4, 3, 8), as_bases(torch.randn(2, 2, 8), 8).float()
        >>> y = project_out_basis(x, b)
        >>> bool((y[:2] @ b[0].T).abs().max() < 1e-5 and (y[2:] @ b[1].T).abs().max() < 1e-5)
        True
    """
    v = bases.shape[0]
    B = bases.to(device=x.device, dtype=x.dtype)
    if v == 1:
        return x - strength * ((x @ B[0].T) @ B[0])
    if x.shape[0] % v:
        raise SafetyGeoError(f"batch of {x.shape[0]} rows is not {v} groups of equal size")
    xg = x.reshape(v, -1, x.shape[-1])
    coef = torch.bmm(xg, B.transpose(1, 2))
    return (xg - strength * torch.bmm(coef, B)).reshape(x.shape)


def _rescale(new: Tensor, old: Tensor) -> Tensor:
    n_old = old.norm(dim=-1, keepdim=True)
    n_new = new.norm(dim=-1, keepdim=True)
    return new * (n_old / n_new.clamp(min=torch.finfo(new.dtype).tiny))


def embedding_modules(handle: ModelHandle) -> list[nn.Module]:
    """The modules whose outputs are the residual stream's first writes: the token
    embedding and any learned position embedding (GPT-2 ``wpe``, OPT ``embed_positions``)."""
    mods: list[nn.Module] = [handle.model.get_input_embeddings()]
    for name in ("wpe", "embed_positions"):
        child = getattr(handle.trunk, name, None)
        if isinstance(child, nn.Embedding):
            mods.append(child)
    return mods


def _check_layers(handle: ModelHandle, layers: Sequence[int] | None, top: int) -> list[int]:
    if layers is None:
        return list(range(top + 1))
    out = sorted({int(x) for x in handle.check_layers(list(layers))})
    bad = [x for x in out if x > top]
    if bad:
        raise SafetyGeoError(f"layers {bad} out of range 0..{top} for this ablation")
    return out


def _used_slots(handle: ModelHandle, layers: Sequence[int] | None, mode: str) -> list[int]:
    """The per-layer basis slots an ablation reads: the layer inputs for
    ``norm_preserving``; else slot 0 (embeddings, only with all layers) and ``l + 1`` per block."""
    if mode == "norm_preserving":
        return _check_layers(handle, layers, handle.n_layers)
    blocks = _check_layers(handle, layers, handle.n_layers - 1)
    return ([0] if layers is None else []) + [l + 1 for l in blocks]


def _strength(strength: float | Tensor) -> float | Tensor:
    if torch.is_tensor(strength):
        return strength
    s = finite_float(strength, "strength")
    if not 0.0 <= s <= 1.0:
        raise SafetyGeoError(f"ablation strength must lie in [0, 1], got {s}")
    return s


@contextlib.contextmanager
def ablate_subspace(
    handle: ModelHandle,
    basis: Any,
    *,
    mode: AblationMode = "project",
    strength: float | Tensor = 1.0,
    layers: Sequence[int] | None = None,
    per_layer: bool = False,
    differentiable: bool = False,
) -> Iterator[None]:
    """Ablate a subspace (see the module docstring for the modes).

    Args:
        handle: the model.
        basis: ``[k, d]`` or variants ``[v, k, d]``; with ``per_layer`` ``[L+1, k, d]`` or
            ``[v, L+1, k, d]`` (e.g. :func:`biprojected_bases`). Orthonormalized here.
        mode: ``"project"`` (writes; weight-equivalent) or ``"norm_preserving"`` (layer
            inputs, each token's residual rescaled to its original norm).
        strength: ``s`` in ``[0, 1]`` (1 = remove the whole component).
        layers: ``project``: the blocks whose attention / MLP writes are edited (the
            embeddings are edited only when ``layers`` is ``None``); ``norm_preserving``:
            the layers ``0..L`` whose input residual is edited. Default: all.
        per_layer: ``basis`` holds one basis per layer ``0..L``.
        differentiable: keep ``basis`` in the autograd graph.

    Raises:
        SafetyGeoError: bad basis, mode, strength or layers.
    """
    if mode not in ABLATION_MODES:
        raise SafetyGeoError(f"mode must be one of {ABLATION_MODES}, got {mode!r}")
    n_slots = handle.n_layers + 1
    if per_layer:
        basis = fill_unused_slots(basis, _used_slots(handle, layers, mode))
    bases = as_bases(basis, handle.d_model, differentiable=differentiable,
                     per_layer=n_slots if per_layer else None)
    s = _strength(strength)

    def at(slot: int) -> Tensor:
        return bases[:, slot] if per_layer else bases

    pre: list[tuple[nn.Module, Callable[..., Any]]] = []
    post: list[tuple[nn.Module, Callable[..., Any]]] = []
    if mode == "project":
        blocks = _check_layers(handle, layers, handle.n_layers - 1)

        def writer_hook(b: Tensor) -> Callable[..., Any]:
            def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
                return map_output(output, lambda y: project_out_basis(y, b, s))
            return hook

        if layers is None:
            post += [(m, writer_hook(at(0))) for m in embedding_modules(handle)]
        for l in blocks:
            post += [(w, writer_hook(at(l + 1))) for w in residual_writers(handle.blocks[l])]
    else:
        slots = _check_layers(handle, layers, handle.n_layers)

        def input_hook(b: Tensor) -> Callable[..., Any]:
            def hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
                return replace_hidden(args, kwargs,
                                       lambda x: _rescale(project_out_basis(x, b, s), x))
            return hook

        pre += [(resid_module(handle, l), input_hook(at(l))) for l in slots]
    with installed_hooks(pre, post):
        yield


# ----------------------------------------------------------------------------- MPOA
def output_projection(writer: nn.Module) -> nn.Module:
    """The linear map whose output a residual writer adds (``o_proj``, ``down_proj``, ...)."""
    proj = find_output_projection(writer)
    if proj is None:
        raise UnknownArchitectureError(
            f"cannot find the output projection of {type(writer).__name__} (children: "
            f"{sorted(dict(writer.named_children()))}); mixture-of-experts writers are not "
            "supported here")
    return proj


def _rows_out(layer: nn.Module) -> Tensor:
    """The weight with one row per *output* (residual) coordinate: ``[d, in]``."""
    w = cast(Tensor, layer.weight)
    if isinstance(layer, nn.Linear):
        return w
    if type(layer).__name__ == "Conv1D":  # GPT-2: weight [in, out]
        return w.T
    raise UnknownArchitectureError(f"cannot edit {type(layer).__name__}")


def mpoa_matrix(weight_rows: Tensor, basis: Tensor, strength: float = 1.0) -> Tensor:
    """The ``[d, d]`` map ``M`` with ``M W`` = the magnitude-preserving ablation of ``W``.

    ``W`` is ``[d, in]`` (one row per residual coordinate). Rows are normalized, the
    subspace removed on the output side (``(I − sP) Ŵ``), and each row rescaled to the
    norm the original row had (heretic's ``row_normalization="full"``; not grimjim's
    column-wise edit): ``M = diag(‖W_i‖ / ‖((I − sP)Ŵ)_i‖)
    (I − sP) diag(1 / ‖W_i‖)``. Zero rows stay zero.
    """
    w = weight_rows.detach().double()
    b = basis.detach().to(w.device, torch.float64)
    d = w.shape[0]
    proj = torch.eye(d, dtype=torch.float64, device=w.device) - strength * (b.T @ b)
    r = w.norm(dim=1)
    inv_r = torch.where(r > 0, 1.0 / r.clamp(min=1e-300), torch.zeros_like(r))
    edited = proj @ (w * inv_r[:, None])
    er = edited.norm(dim=1)
    gain = torch.where(er > 0, r / er.clamp(min=1e-300), torch.zeros_like(er))
    return gain[:, None] * proj * inv_r[None, :]


@contextlib.contextmanager
def mpoa_ablate(handle: ModelHandle, basis: Any, *, strength: float = 1.0,
                layers: Sequence[int] | None = None, per_layer: bool = False) -> Iterator[None]:
    """Activation-space twin of the magnitude-preserving weight edit (MPOA).

    Each writer's output ``y`` becomes ``M y`` with :func:`mpoa_matrix` of its output
    projection; each embedding row (the vector a token writes) loses ``s`` times its
    subspace component and is rescaled to its original norm. Equal to
    ``ablated_copy(handle, basis, norm_preserving=True, ...)`` up to rounding. One subspace
    (no variants); ``layers``, ``per_layer`` and ``strength`` as in :func:`ablate_subspace`.
    """
    n_slots = handle.n_layers + 1
    if per_layer:
        basis = fill_unused_slots(basis, _used_slots(handle, layers, "project"))
    bases = as_bases(basis, handle.d_model, per_layer=n_slots if per_layer else None)
    if bases.shape[0] != 1:
        raise SafetyGeoError("mpoa_ablate takes one subspace, not variants")
    s = cast(float, _strength(strength))
    at = (lambda slot: bases[0, slot]) if per_layer else (lambda slot: bases[0])
    blocks = _check_layers(handle, layers, handle.n_layers - 1)
    post: list[tuple[nn.Module, Callable[..., Any]]] = []

    def emb_hook(b: Tensor) -> Callable[..., Any]:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
            return _rescale(project_out_basis(output, b[None], s), output)
        return hook

    def map_hook(m: Tensor) -> Callable[..., Any]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            return map_output(output, lambda y: y @ m.to(y.device, y.dtype).T)
        return hook

    if layers is None:
        post += [(e, emb_hook(at(0))) for e in embedding_modules(handle)]
    for l in blocks:
        for w in residual_writers(handle.blocks[l]):
            m = mpoa_matrix(_rows_out(output_projection(w)), at(l + 1), s)
            post.append((w, map_hook(m)))
    with installed_hooks([], post):
        yield


# ----------------------------------------------------------------------------- addition
@contextlib.contextmanager
def add_vector(handle: ModelHandle, vector: Tensor, layer: int) -> Iterator[None]:
    """Add ``vector`` (``[d]``, or variants ``[v, d]``) to every position of the residual
    stream entering ``layer`` — differentiable (the vector stays in the autograd graph).

    The no-grad equivalent is :func:`safetygeo.interventions.hooks.add`.
    """
    (layer,) = handle.check_layers(layer)
    if vector.shape[-1] != handle.d_model or vector.ndim not in (1, 2):
        raise SafetyGeoError(f"vector has shape {tuple(vector.shape)}; expected [d] or [v, d] "
                             f"with d = {handle.d_model}")
    vec = vector if vector.ndim == 2 else vector[None]

    def shift(x: Tensor) -> Tensor:
        v = vec.to(device=x.device, dtype=x.dtype)
        if v.shape[0] == 1:
            return x + v[0]
        if x.shape[0] % v.shape[0]:
            raise SafetyGeoError(f"batch of {x.shape[0]} rows is not {v.shape[0]} groups")
        return x + v.repeat_interleave(x.shape[0] // v.shape[0], dim=0)[:, None, :]

    def pre(module: nn.Module, args: tuple, kwargs: dict) -> Any:
        return replace_hidden(args, kwargs, shift)

    with installed_hooks([(resid_module(handle, layer), pre)], []):
        yield
