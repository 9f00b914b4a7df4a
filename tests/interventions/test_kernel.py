"""The abliteration kernel and its modes against independent plain-torch re-implementations
of the public peers' published formulas (written here from their descriptions), hooks vs
weights, in-place trial edits, saved checkpoints, and the zero slot."""

from __future__ import annotations

import copy
import math
from typing import Any, cast

import pytest
import torch

from safetygeo.activations.logits import last_logprobs
from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.kernel import (
    AbliterationKernel,
    LayerKernel,
    abliterate_,
    abliterated_copy,
    block_directions,
    edited_weights,
    kernel_hooks,
)
from safetygeo.interventions.orthogonalize import orthogonalized_copy
from safetygeo.interventions.subspace import ablate_subspace, mpoa_ablate
from safetygeo.interventions.subspace_weights import ablated_copy
from safetygeo.models import load_model
from tests.conftest import PROMPTS, tiny_handle

F = torch.nn.functional


def _fresh(arch: str = "llama", n_layers: int = 4):
    h = tiny_handle(arch, n_layers=n_layers)
    return load_model(copy.deepcopy(h.model), h.tokenizer, template=h.template)


def _data(h, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    d, n = h.d_model, h.n_layers
    return (torch.randn(n + 1, d, generator=g, dtype=torch.float64),
            torch.randn(n + 1, d, generator=g, dtype=torch.float64) + 3.0)


# ----------------------------------------------------------------- the peers' formulas
def heretic_weight(layer: int, mx: float, pos: float, mn: float, dist: float) -> float:
    """heretic: skip layers farther than min_weight_distance from max_weight_position, else
    interpolate linearly from max_weight (at the position) to min_weight (at the distance)."""
    distance = abs(layer - pos)
    if distance > dist:
        return 0.0
    return mx + (distance / dist) * (mn - mx)


def heretic_directions(bad_minus_good: torch.Tensor, good: torch.Tensor, index: float | None,
                       orthogonalize: bool) -> list[torch.Tensor]:
    """heretic's direction for each block (its residuals list has the embeddings first)."""
    r = F.normalize(bad_minus_good, dim=1)
    if orthogonalize:
        g = F.normalize(good, dim=1)
        r = F.normalize(r - (r * g).sum(1, keepdim=True) * g, dim=1)
    n_blocks = r.shape[0] - 1
    if index is None:
        return [r[i + 1] for i in range(n_blocks)]
    frac, whole = math.modf(index + 1)
    one = F.normalize(r[int(whole)].lerp(r[int(whole) + 1], frac), dim=0)
    return [one] * n_blocks


def heretic_edit(W: torch.Tensor, v: torch.Tensor, w: float, rows: str) -> torch.Tensor:
    """heretic's update of W [out, in]: lora_B lora_A = -w v (vᵀ W), with row normalization
    none / pre (the update from normalized rows, scaled by the row norms) / full (normalize
    rows, update, renormalize, restore row norms)."""
    norms = W.norm(dim=1, keepdim=True)
    Wn = F.normalize(W, dim=1) if rows != "none" else W
    a = (v @ Wn)[None]
    b = (-w * v)[:, None]
    if rows == "none":
        return W + b @ a
    if rows == "pre":
        return W + (norms * b) @ a
    return F.normalize(Wn + b @ a, dim=1) * norms


def grimjim_edit(W: torch.Tensor, r: torch.Tensor, scale: float) -> torch.Tensor:
    """grimjim's norm-preserving abliteration of W [out, in]: per input unit (a column of W,
    a row of Wᵀ): normalize, remove scale·r, renormalize, remove r again, renormalize,
    restore the column norm."""
    Wt = W.T
    norm = Wt.norm(dim=-1, keepdim=True)
    dirn = F.normalize(Wt, dim=-1)
    dirn = dirn - scale * (dirn @ r)[:, None] * r
    dirn = F.normalize(dirn, dim=-1)
    dirn = dirn - (dirn @ r)[:, None] * r
    dirn = F.normalize(dirn, dim=-1)
    return (norm * dirn).T


def grimjim_projected(r: torch.Tensor, harmless_at_block_input: torch.Tensor) -> torch.Tensor:
    h = F.normalize(harmless_at_block_input, dim=0)
    r = r - (r @ h) * h
    r = r - (r @ h) * h
    return F.normalize(r, dim=0)


ATTN = LayerKernel(1.3, peak=2.0, min_weight=0.4, distance=1.5)
MLP = LayerKernel(0.7, peak=1.0, min_weight=0.1, distance=2.5)


@pytest.mark.filterwarnings("ignore:kernel weight")
@pytest.mark.parametrize("norm,peer", [("plain", "none"), ("rows-renormalized", "full"),
                                       ("rows-prescaled", "pre"),
                                       ("columns-renormalized", "grimjim")])
@pytest.mark.parametrize("index", [None, 1.6])
@pytest.mark.parametrize("projected", ["none", "harmless-own-slot", "harmless-block-input"])
def test_each_mode_equals_the_peers_formula(norm: str, peer: str, index: float | None,
                                            projected: str) -> None:
    h = tiny_handle("llama", n_layers=4)
    dirs, means = _data(h)
    # heretic's index i is our slot i + 1
    k = AbliterationKernel(ATTN, MLP, None if index is None else index + 1, cast(Any, norm),
                           cast(Any, projected))
    edited = abliterated_copy(h, dirs, k, means)
    ref_dirs = heretic_directions(dirs, means, index, projected == "harmless-own-slot")
    for l in range(h.n_layers):
        blk, new = h.model.model.layers[l], edited.model.model.layers[l]
        r = ref_dirs[l]
        if projected == "harmless-block-input":
            r = grimjim_projected(r, means[l])
        for mod, kern in (("self_attn.o_proj", ATTN), ("mlp.down_proj", MLP)):
            W = blk.get_submodule(mod).weight.double()
            w = heretic_weight(l, kern.max_weight, kern.peak, kern.min_weight, kern.distance)
            if w == 0:
                want = W
            elif peer == "grimjim":
                want = grimjim_edit(W, r, w)
            else:
                want = heretic_edit(W, r, w, peer)
            got = new.get_submodule(mod).weight.double()
            torch.testing.assert_close(got, want, atol=3e-7, rtol=0)


def test_kernel_weights_match_heretic_and_warn_above_one() -> None:
    for l in range(8):
        assert ATTN.weight(l) == pytest.approx(heretic_weight(l, 1.3, 2.0, 0.4, 1.5))
    h = tiny_handle("llama", n_layers=4)
    dirs, _ = _data(h)
    with pytest.warns(UserWarning, match="over-ablation"):
        abliterated_copy(h, dirs, AbliterationKernel(ATTN, MLP))
    with pytest.raises(SafetyGeoError, match="distance"):
        LayerKernel(1.0, distance=0)
    with pytest.raises(SafetyGeoError, match=">= 0"):
        LayerKernel(-0.5)


def test_full_plain_kernel_with_embeddings_is_arditi_orthogonalization() -> None:
    h = tiny_handle("llama", n_layers=3)
    r = torch.randn(h.d_model, dtype=torch.float64)
    k = AbliterationKernel(embeddings=True)
    got = last_logprobs(abliterated_copy(h, r.expand(4, -1), k), PROMPTS, progress=False)
    want = last_logprobs(orthogonalized_copy(h, r), PROMPTS, progress=False)
    torch.testing.assert_close(got, want, atol=5e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:kernel weight")
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("norm", ["plain", "rows-renormalized", "rows-prescaled"])
def test_hooks_equal_weight_edits_for_the_row_wise_modes(arch: str, norm: str) -> None:
    h = tiny_handle(arch, n_layers=3)
    dirs, means = _data(h, seed=1)
    k = AbliterationKernel(ATTN, MLP, 1.3, cast(Any, norm), "harmless-own-slot",
                           embeddings=True)
    want = last_logprobs(abliterated_copy(h, dirs, k, means), PROMPTS, progress=False)
    with kernel_hooks(h, dirs, k, means):
        got = last_logprobs(h, PROMPTS, progress=False)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


def test_the_column_wise_edit_has_no_hook_form() -> None:
    h = tiny_handle("llama")
    dirs, _ = _data(h)
    with pytest.raises(SafetyGeoError, match="weights"), \
            kernel_hooks(h, dirs, AbliterationKernel(norm="columns-renormalized")):
        pass


@pytest.mark.filterwarnings("ignore:kernel weight")
def test_in_place_trial_edit_equals_the_copy_and_restores_exactly() -> None:
    h = _fresh("gpt2", n_layers=3)  # tied embeddings and biases
    dirs, means = _data(h, seed=2)
    before = {n: p.detach().clone() for n, p in h.model.named_parameters()}
    k = AbliterationKernel(ATTN, MLP, None, "rows-renormalized", "harmless-block-input",
                           embeddings=True)
    want = last_logprobs(abliterated_copy(h, dirs, k, means), PROMPTS, progress=False)
    with edited_weights(h, dirs, k, means):
        got = last_logprobs(h, PROMPTS, progress=False)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    after = dict(h.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert h.model.get_output_embeddings().weight is h.model.get_input_embeddings().weight


def test_saved_edited_checkpoint_reproduces_the_in_memory_logits(tmp_path) -> None:
    h = tiny_handle("llama", n_layers=3)
    dirs, means = _data(h, seed=3)
    k = AbliterationKernel(LayerKernel(0.9, peak=1, min_weight=0.3, distance=2), MLP, 2.25,
                           "columns-renormalized", "harmless-own-slot")
    edited = abliterated_copy(h, dirs, k, means)
    edited.model.save_pretrained(tmp_path, safe_serialization=True)
    h.tokenizer.save_pretrained(tmp_path)
    back = load_model(str(tmp_path), dtype="float32", template=h.template)
    # the saved weights are the edited ones, bit for bit ...
    saved = dict(back.model.named_parameters())
    for name, p in edited.model.named_parameters():
        assert torch.equal(saved[name], p), name
    # ... and the logits agree to float32 rounding (kernels may sum in another order: a
    # CI run under load differed by 1.4e-6 in 16 of 2560 log-probs)
    torch.testing.assert_close(last_logprobs(back, PROMPTS, progress=False),
                               last_logprobs(edited, PROMPTS, progress=False), atol=1e-5, rtol=1e-5)


def test_an_unused_zero_slot_is_accepted() -> None:
    h = tiny_handle("llama", n_layers=3)
    b = torch.randn(4, h.d_model)
    b[0] = 0  # diff-in-means at the last template token: the embeddings are all equal there
    ablated_copy(h, b, per_layer=True, layers=[0, 1, 2])  # slot 0 unused
    with ablate_subspace(h, b, per_layer=True, layers=[0, 1, 2]), \
            mpoa_ablate(h, b, per_layer=True, layers=[1, 2]):
        last_logprobs(h, PROMPTS[:1], progress=False)
    abliterated_copy(h, b, AbliterationKernel())
    with pytest.raises(SafetyGeoError, match="zero norm"):
        ablated_copy(h, b, per_layer=True)  # slot 0 edits the embeddings
    dirs = block_directions(b, AbliterationKernel(embeddings=True), 3)
    torch.testing.assert_close(dirs[0], dirs[1])  # the embeddings lose block 0's direction
    with pytest.raises(SafetyGeoError, match="slot 0"):
        block_directions(b, AbliterationKernel(direction_index=0.0), 3)


def test_projected_modes_need_harmless_means_and_abliterate_in_place() -> None:
    h = _fresh("llama", n_layers=2)
    dirs, _ = _data(h)
    with pytest.raises(SafetyGeoError, match="harmless means"):
        abliterate_(h, dirs, AbliterationKernel(projected="harmless-own-slot"))
    with pytest.raises(SafetyGeoError, match="direction_index"):
        abliterate_(h, dirs, AbliterationKernel(direction_index=7.0))
    raw = AbliterationKernel(ATTN, MLP, 1.5, "rows-prescaled", "harmless-own-slot").to_dict()
    assert AbliterationKernel.from_dict(raw).to_dict() == raw
