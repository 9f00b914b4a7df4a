"""Bad input at the interventions layer: directions, strengths and null specifications."""

from __future__ import annotations

import pytest
import torch

from safetygeo.errors import LayerIndexError, NonFiniteError, SafetyGeoError
from safetygeo.interventions import NullSpec, ablate, add, matched_variants
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer


@pytest.fixture(scope="module")
def handle():
    return load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))


@pytest.mark.parametrize("direction, err, text", [
    ("abc", SafetyGeoError, "direction must be a tensor"),
    (None, SafetyGeoError, "direction must be a tensor"),
    (torch.ones(31), SafetyGeoError, "d_model=32"),
    (torch.zeros(32), SafetyGeoError, "zero norm"),
    (torch.full((32,), float("nan")), NonFiniteError, "NaN"),
])
def test_bad_directions(handle, direction, err, text):
    with pytest.raises(err, match=text):
        with ablate(handle, direction):
            pass


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_alpha(handle, alpha):
    with pytest.raises(NonFiniteError, match="alpha"):
        with add(handle, torch.ones(32), 1, alpha):
            pass


def test_alpha_must_be_a_number(handle):
    with pytest.raises(SafetyGeoError, match="alpha"):
        with add(handle, torch.ones(32), 1, "2"):  # type: ignore[arg-type]
            pass


@pytest.mark.parametrize("kw, text", [
    ({"k": 0}, "NullSpec.k"), ({"k": 2.5}, "NullSpec.k"), ({"k": True}, "NullSpec.k"),
    ({"max_variants": 0}, "max_variants"), ({"kind": "cube"}, "kind"),
    ({"kind": "covariance"}, "covariance"), ({"seed": "0"}, "seed"),
])
def test_bad_null_specs(kw, text):
    with pytest.raises(SafetyGeoError, match=text):
        NullSpec(**kw)


def test_matched_variants_validates_the_intervention(handle):
    with pytest.raises(SafetyGeoError, match="op must be"):
        matched_variants(handle, torch.ones(32), "scale", NullSpec(k=2))
    with pytest.raises(SafetyGeoError, match="needs a layer"):
        matched_variants(handle, torch.ones(32), "add", NullSpec(k=2))
    with pytest.raises(LayerIndexError, match="out of range"):
        matched_variants(handle, torch.ones(32), "add", NullSpec(k=2), layer=9)
    with pytest.raises(SafetyGeoError, match="NullSpec"):
        matched_variants(handle, torch.ones(32), "ablate", 8)  # type: ignore[arg-type]
