from __future__ import annotations

import pytest
import torch

from safetygeo.errors import LayerIndexError, SafetyGeoError
from safetygeo.interventions.nulls import NullSpec, matched_variants, random_directions
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer

# p-values, z-scores and BH q-values moved to safetygeo.stats.pvalues: tests/stats/test_pvalues.py


def test_random_directions_are_unit_and_isotropic() -> None:
    dirs = random_directions(4000, 8, seed=1)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(4000, dtype=torch.float64))
    # uniform on the sphere: E[u uᵀ] = I/d
    second = dirs.T @ dirs / 4000
    torch.testing.assert_close(second, torch.eye(8, dtype=torch.float64) / 8, atol=0.01, rtol=0)
    assert torch.equal(random_directions(3, 8, seed=1), dirs[:3])
    assert not torch.equal(random_directions(3, 8, seed=2), dirs[:3])
    scaled = random_directions(5, 8, seed=0, norm=3.0)
    torch.testing.assert_close(scaled.norm(dim=-1), torch.full((5,), 3.0, dtype=torch.float64))


def test_covariance_matched_directions_follow_the_covariance() -> None:
    cov = torch.diag(torch.tensor([100.0, 1.0, 1.0, 1.0]))
    dirs = random_directions(2000, 4, seed=0, covariance=cov)
    assert float(dirs[:, 0].abs().mean()) > 0.8  # mostly along the high-variance axis
    with pytest.raises(SafetyGeoError, match="covariance has shape"):
        random_directions(2, 3, covariance=cov)
    with pytest.raises(SafetyGeoError, match="null directions K"):
        random_directions(0, 4)


def test_null_spec_validation_and_identity() -> None:
    spec = NullSpec(k=8, seed=3, max_variants=4)
    assert spec.identity() == {"k": 8, "kind": "sphere", "seed": 3, "covariance_sha256": None}
    # batching does not change the null sample, so it is not part of the identity
    assert spec.replace(max_variants=2).identity() == spec.identity()
    for bad in (dict(k=0), dict(k=1.5), dict(k=True), dict(max_variants=0), dict(seed=1.0),
                dict(kind="gauss"), dict(kind="covariance")):
        with pytest.raises(SafetyGeoError):
            NullSpec(**bad)
    cov = torch.eye(4, dtype=torch.float64)
    c1 = NullSpec(kind="covariance", covariance=cov).identity()["covariance_sha256"]
    c2 = NullSpec(kind="covariance", covariance=2 * cov).identity()["covariance_sha256"]
    assert c1 is not None and c2 is not None and c1 != c2


def test_matched_variants_stack_the_real_direction_with_norm_matched_nulls() -> None:
    h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
    v = torch.randn(32, dtype=torch.float64) * 3
    out, layer = matched_variants(h, v, "add", NullSpec(k=5, seed=2), layer=-1)
    assert out.shape == (6, 32) and layer == 2 and torch.equal(out[0], v)
    torch.testing.assert_close(out.norm(dim=-1), torch.full((6,), float(v.norm()),
                                                             dtype=torch.float64))
    torch.testing.assert_close(out[1:] / v.norm(), random_directions(5, 32, seed=2))
    out2, layer2 = matched_variants(h, v, "ablate", NullSpec(k=5, seed=2))
    assert layer2 is None and torch.equal(out2, out)
    with pytest.raises(SafetyGeoError, match="NullSpec"):
        matched_variants(h, v, "add", 5, layer=1)  # type: ignore[arg-type]
    with pytest.raises(SafetyGeoError, match="layer"):
        matched_variants(h, v, "add", NullSpec(k=2))
    with pytest.raises(SafetyGeoError, match="op"):
        matched_variants(h, v, "steer", NullSpec(k=2))
    with pytest.raises(LayerIndexError):
        matched_variants(h, v, "add", NullSpec(k=2), layer=9)
