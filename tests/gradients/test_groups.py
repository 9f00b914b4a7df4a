"""Parameter groups: every parameter once, in the right group; tied embeddings."""

from __future__ import annotations

import pytest

from safetygeo.gradients import parameter_groups
from tests.gradients.conftest import brute_group, fresh


@pytest.mark.parametrize("arch,tied", [("llama", False), ("llama", True), ("gpt2", False),
                                       ("qwen2", False)])
def test_every_parameter_once_in_its_group(arch: str, tied: bool) -> None:
    h = fresh(arch, tied=tied, n_layers=3)
    groups = parameter_groups(h)
    assert groups.names == ("embed", "block.0", "block.1", "block.2", "head")
    owner = groups.group_of()
    named = dict(h.model.named_parameters())
    assert set(owner) == set(named)  # each (shared) parameter exactly once
    for n, g in owner.items():
        assert g == brute_group(n), n
    assert sum(g.numel for g in groups) == sum(p.numel() for p in h.model.parameters())


def test_tied_embedding_counted_once_in_embed() -> None:
    h = fresh("llama", tied=True)
    groups = parameter_groups(h)
    assert groups.tied_embeddings
    assert groups["head"].params == ("model.norm.weight",)
    assert "model.embed_tokens.weight" in groups["embed"].params
    untied = parameter_groups(fresh("llama"))
    assert not untied.tied_embeddings and "lm_head.weight" in untied["head"].params
    with pytest.raises(Exception, match="no parameter group 'block.9'"):
        groups["block.9"]
