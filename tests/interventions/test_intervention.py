"""Sites named by ArchSpec, head ablation against an independent weight edit, matched head
nulls, and Intervention values against the hooks they wrap."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from safetygeo.errors import LayerIndexError, SafetyGeoError
from safetygeo.interventions.heads import ablate_heads
from safetygeo.interventions.hooks import ablate, add
from safetygeo.interventions.intervention import (
    DirectionAblation,
    DirectionAddition,
    HeadAblation,
    SubspaceAblation,
    from_op,
)
from safetygeo.interventions.nulls import NullSpec, matched_variants, random_head_sets
from safetygeo.interventions.subspace import ablate_subspace, matched_subspace_variants
from safetygeo.models import load_model
from safetygeo.models.arch import block_parts
from safetygeo.models.sites import SITE_NAMES, Site, attention_heads, n_heads
from safetygeo.models.tiny import ARCHS, tiny_model_and_tokenizer

IDS = torch.tensor([[1, 5, 7, 9, 11], [3, 4, 8, 2, 6]])


def _handle(arch: str, n_layers: int = 2):
    return load_model(tiny_model_and_tokenizer(arch, n_layers=n_layers, d_model=32, n_heads=4))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_family_names_its_sites(arch: str) -> None:
    h = _handle(arch)
    parts = h.arch.parts
    assert parts is not None and parts == block_parts(h.blocks[0])
    block = h.blocks[1]
    assert block.get_submodule(parts.attn_out) is Site("attn_heads", 1).module(h)
    assert Site("attn_out", 1).module(h) is block.get_submodule(parts.attn)
    assert Site("mlp_out", -1).module(h) is block.get_submodule(parts.mlp)
    assert Site("resid_in", 2).module(h) is h.final_norm
    assert Site("resid_out", 0).module(h) is h.blocks[1]
    proj, nh, hd = attention_heads(h, 0)
    assert nh == n_heads(h) == 4 and hd * nh in proj.weight.shape
    with pytest.raises(SafetyGeoError, match="not one module"):
        Site("resid_all").module(h)
    assert set(SITE_NAMES) >= {"resid_in", "resid_out", "attn_out", "mlp_out", "attn_heads"}


def test_bad_sites_are_refused() -> None:
    h = _handle("llama")
    with pytest.raises(SafetyGeoError, match="needs a layer"):
        Site("attn_out")
    with pytest.raises(SafetyGeoError, match="takes no layer"):
        Site("resid_all", 1)
    with pytest.raises(SafetyGeoError, match="unknown site"):
        Site(*["resid_mid", 1])
    with pytest.raises(LayerIndexError, match="needs a block"):
        Site("attn_heads", 2).module(h)


def _zero_head_columns(model: nn.Module, proj_path: str, heads: tuple[int, ...], hd: int) -> None:
    """The reference: zero the output projection's weights that read those heads."""
    proj = model.get_submodule(proj_path)
    with torch.no_grad():
        for head in heads:
            cols = slice(head * hd, (head + 1) * hd)
            if isinstance(proj, nn.Linear):  # weight [out, in]
                proj.weight[:, cols] = 0.0
            else:  # GPT-2 Conv1D: weight [in, out]
                proj.weight[cols, :] = 0.0


@pytest.mark.parametrize("arch", ARCHS)
def test_head_ablation_equals_zeroed_projection_columns(arch: str) -> None:
    h = _handle(arch)
    _, _, hd = attention_heads(h, 1)
    path = f"{h.arch.layers_path}.1.{h.arch.parts.attn_out}"
    for heads in ((1,), (0, 3)):
        ref = copy.deepcopy(h.model)
        _zero_head_columns(ref, path, heads, hd)
        with torch.no_grad():
            want = ref(IDS).logits
            with HeadAblation(1, heads).apply(h):
                got = h.model(IDS).logits
            base = h.model(IDS).logits
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        assert (got - base).abs().max() > 1e-4  # the ablation did something


def test_head_variants_along_the_batch_equal_one_at_a_time() -> None:
    h = _handle("llama")
    sets = [(1,), (), (0, 2)]
    with torch.no_grad():
        with ablate_heads(h, 0, sets):
            batched = h.model(IDS.repeat(3, 1)).logits.view(3, *IDS.shape, -1)
        for i, s in enumerate(sets):
            with ablate_heads(h, 0, [s]):
                torch.testing.assert_close(batched[i], h.model(IDS).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(SafetyGeoError, match="out of range"):
        HeadAblation(0, (4,)).resolved(h)
    with pytest.raises(SafetyGeoError, match="repeat"):
        HeadAblation(0, (1, 1)).resolved(h)
    with pytest.raises(SafetyGeoError, match="at least one"):
        HeadAblation(0, ()).resolved(h)


def test_random_head_sets_are_other_heads_exhaustive_when_few() -> None:
    sets, exhaustive = random_head_sets([2], 8, 64, seed=3)
    assert exhaustive and sorted(sets) == [(h,) for h in range(8) if h != 2]
    pairs, exhaustive = random_head_sets([0, 1], 6, 64)
    assert exhaustive and len(pairs) == 6 and all(not {0, 1} & set(p) for p in pairs)  # C(4,2)
    many, exhaustive = random_head_sets([0, 1], 32, 20, seed=5)
    assert not exhaustive and len(set(many)) == 20 and all(not {0, 1} & set(p) for p in many)
    assert random_head_sets([0, 1], 32, 7, seed=5)[0] == many[:7]  # a seed's prefix is fixed
    with pytest.raises(SafetyGeoError, match="no other set"):
        random_head_sets([0, 1], 3, 8)


def test_null_interventions_are_values_of_the_same_kind() -> None:
    h = _handle("llama")
    spec = NullSpec(k=2, seed=1)
    for iv in (HeadAblation(1, (2,)), DirectionAddition(torch.ones(32), layer=1, alpha=2.0),
               SubspaceAblation(torch.randn(2, 32, generator=torch.Generator().manual_seed(0)))):
        stack, nulls = iv.variants(h, spec), iv.null_interventions(h, spec)
        assert len(nulls) == 2 and all(type(n) is type(iv) for n in nulls)
        assert all(n.columns()["site"] == iv.columns()["site"] for n in nulls)
        with torch.no_grad():
            for i, n in enumerate(nulls):
                with n.apply(h):
                    got = h.model(IDS).logits
                with stack.apply([i + 1]):
                    torch.testing.assert_close(got, h.model(IDS).logits)
    assert all(not {2} & set(n.heads) for n in HeadAblation(1, (2,)).null_interventions(h, spec))


def test_head_stack_caps_the_spec_to_the_nulls_that_exist() -> None:
    h = _handle("llama")
    seq = HeadAblation(1, (2,)).variants(h, NullSpec.sequential())
    assert seq.size == 4 and seq.exhaustive and seq.nulls.n_max == 3 and not seq.nulls.tail
    assert seq.fan_out_layer == 1 and "floor 1/4" in (seq.note or "")
    fixed = HeadAblation(1, (2,)).variants(h, NullSpec(k=2))
    assert fixed.size == 3 and not fixed.exhaustive and fixed.nulls.k == 2 and fixed.note is None
    with pytest.raises(SafetyGeoError, match="direction nulls only"):
        HeadAblation(1, (2,)).variants(h, NullSpec(k=2, kind="covariance",
                                                   covariance=torch.eye(32)))


def test_direction_interventions_are_the_hooks_and_nulls_of_before() -> None:
    h = _handle("llama")
    v = torch.randn(32, generator=torch.Generator().manual_seed(0))
    spec = NullSpec(k=5, seed=2)
    add_iv = DirectionAddition(v, layer=-1, alpha=2.0)
    stack = add_iv.variants(h, spec)
    want, layer = matched_variants(h, v, "add", spec, layer=-1)
    assert stack.size == 6 and stack.fan_out_layer == layer == 2
    with torch.no_grad():
        for idx in ([0], [3, 1]):
            with stack.apply(idx):
                got = h.model(IDS.repeat(len(idx), 1)).logits
            with add(h, want[idx], 2, 2.0):
                ref = h.model(IDS.repeat(len(idx), 1)).logits
            torch.testing.assert_close(got, ref)
        with DirectionAblation(v).apply(h):
            got = h.model(IDS).logits
        with ablate(h, v):
            torch.testing.assert_close(got, h.model(IDS).logits)
    assert from_op("ablate", v).columns() == {"op": "ablate", "site": "resid_all",
                                              "layer": pytest.approx(float("nan"), nan_ok=True),
                                              "alpha": pytest.approx(float("nan"), nan_ok=True),
                                              "heads": None}
    assert add_iv.resolved(h).columns()["layer"] == 2.0
    with pytest.raises(SafetyGeoError, match="op must be one of"):
        from_op("steer", v)
    with pytest.raises(SafetyGeoError, match="needs a layer"):
        DirectionAddition(v).variants(h, spec)


def test_subspace_intervention_uses_haar_nulls_of_its_dimension() -> None:
    h = _handle("llama")
    basis = torch.randn(2, 32, generator=torch.Generator().manual_seed(1))
    stack = SubspaceAblation(basis).variants(h, NullSpec(k=3, seed=4))
    want = matched_subspace_variants(basis, 3, seed=4)
    with torch.no_grad():
        with stack.apply([0, 2]):
            got = h.model(IDS.repeat(2, 1)).logits
        with ablate_subspace(h, want[[0, 2]]):
            torch.testing.assert_close(got, h.model(IDS.repeat(2, 1)).logits)
