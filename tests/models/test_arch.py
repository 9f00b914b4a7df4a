from __future__ import annotations

import pytest
import torch
from torch import nn

from safetygeo.errors import UnknownArchitectureError
from safetygeo.models.arch import resolve_arch
from safetygeo.models.tiny import ARCHS, tiny_model

EXPECTED = {
    "llama": ("model.layers", "model.norm"),
    "mistral": ("model.layers", "model.norm"),
    "qwen2": ("model.layers", "model.norm"),
    "gemma": ("model.layers", "model.norm"),
    "gpt2": ("transformer.h", "transformer.ln_f"),
}


@pytest.mark.parametrize("arch", ARCHS)
def test_known_families(arch: str) -> None:
    spec = resolve_arch(tiny_model(arch, n_layers=2, d_model=16, n_heads=2))
    assert (spec.layers_path, spec.final_norm_path) == EXPECTED[arch]
    assert spec.source == "registry"


def test_derived_from_module_tree_for_unregistered_model_type() -> None:
    model = tiny_model("llama", n_layers=2, d_model=16, n_heads=2)
    model.config.model_type = "my_new_llama"
    spec = resolve_arch(model)
    assert spec.source == "module-tree"
    assert (spec.layers_path, spec.final_norm_path) == ("model.layers", "model.norm")
    assert spec.embed_path == "model.embed_tokens"


class _Odd(nn.Module):
    """Two block lists of equal length and no norm: ambiguous."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
        self.b = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
        self.head = nn.Linear(2, 2)


def test_unknown_architecture_is_a_clear_error() -> None:
    with pytest.raises(UnknownArchitectureError, match="layers_path"):
        resolve_arch(_Odd())


def test_user_named_paths() -> None:
    m = _Odd()
    spec = resolve_arch(m, layers_path="a", final_norm_path="head")
    assert spec.source == "user" and spec.layers_path == "a"
    with pytest.raises(UnknownArchitectureError, match="no submodule 'nope'"):
        resolve_arch(m, layers_path="nope", final_norm_path="head")
    with pytest.raises(UnknownArchitectureError, match="both"):
        resolve_arch(m, layers_path="a")
    with pytest.raises(UnknownArchitectureError, match="ModuleList"):
        resolve_arch(m, layers_path="head", final_norm_path="head")


def test_moe_like_inner_lists_do_not_confuse_derivation() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.experts = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])

    class Trunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([Block() for _ in range(3)])
            self.norm = nn.LayerNorm(4)

    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = Trunk()

    spec = resolve_arch(LM())
    assert (spec.layers_path, spec.final_norm_path) == ("model.layers", "model.norm")
    assert torch.is_tensor(LM().model.norm.weight)
