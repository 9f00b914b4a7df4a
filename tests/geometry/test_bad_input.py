"""Bad input at the geometry layer: NaN activations raise, undefined angles are NaN with a
reason — never a number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safetygeo.activations.extract import ActivationStats
from safetygeo.activations.positions import resolve_positions
from safetygeo.errors import NonFiniteError, SafetyGeoError
from safetygeo.geometry import diff_in_means, direction_cosine, geometric_coupling


def stats(mean: torch.Tensor, vectors: torch.Tensor | None = None) -> ActivationStats:
    pos = resolve_positions("t_inst+post_instruction", 2)
    return ActivationStats(mean, 4, (0, 1), pos, 2, vectors=vectors)


def test_nan_activations_raise():
    a = torch.zeros(2, 3, 8)
    a[1, 0, 3] = float("nan")
    with pytest.raises(NonFiniteError, match="harmful.*layer 1"):
        diff_in_means(stats(a), stats(torch.zeros(2, 3, 8)))
    with pytest.raises(NonFiniteError, match="harmful"):
        geometric_coupling(stats(a), stats(torch.zeros(2, 3, 8)))


def test_identical_means_give_an_undefined_angle_not_zero():
    m = torch.randn(2, 3, 8)
    h = m.clone()
    h[1] += torch.randn(3, 8)  # layer 1 differs, layer 0 identical
    table = geometric_coupling(stats(h), stats(m))
    assert np.isnan(table.cos.iloc[0]) and "undefined" in table.note.iloc[0]
    assert np.isfinite(table.cos.iloc[1]) and table.note.iloc[1] == ""


def test_direction_cosine_of_a_zero_direction_raises():
    v = torch.randn(4, 2, 3, 8)
    a = (stats(v.mean(0), v), stats(v.mean(0), v))
    with pytest.raises(SafetyGeoError, match="zero-norm"):
        direction_cosine(a, a, layer_a=0, position_a="t_inst", n_boot=0)


def test_diff_in_means_of_different_widths_is_named():
    with pytest.raises(SafetyGeoError, match=r"different widths \(d_model 8 vs 16\)"):
        diff_in_means(stats(torch.zeros(2, 3, 8)), stats(torch.zeros(2, 3, 16)))
