"""Gradient-geometry figures from real tables: traces, undefined gaps, steps."""

from __future__ import annotations

import pandas as pd
import pytest

from safetygeo.errors import SafetyGeoError
from safetygeo.gradients import (
    GEffectSeries,
    LossSpec,
    g_effect,
    layer_gradient_cosines,
    per_token_weights,
)
from safetygeo.reports import (
    g_effect_figure,
    g_effect_steps_figure,
    gradient_cosine_figure,
    token_weights_figure,
)
from tests.gradients.conftest import BENIGN_PAIRS, HARMFUL_PAIRS, fresh


def test_figures_from_result_tables() -> None:
    h = fresh()
    for n, p in h.model.named_parameters():
        if n.startswith("model.layers.1."):
            p.requires_grad_(False)
    forget = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    retain = LossSpec.from_data(BENIGN_PAIRS)
    cos = layer_gradient_cosines(h, forget, retain).to_frame()
    fig = gradient_cosine_figure(cos)
    assert list(fig.data[0].x) == ["embed", "block.0", "block.1", "head"]
    assert fig.data[0].y[2] is None and "undefined" in fig.data[0].hovertext[2]
    two = pd.concat([cos.assign(step=0), cos.assign(step=5)])
    assert len(gradient_cosine_figure(two).data) == 2

    res = [g_effect(h, o, forget, retain, step=s) for s in (0, 1) for o in ("ga", "npo")]
    frame = pd.concat([r.to_frame() for r in res[:2]])
    fig = g_effect_figure(frame)
    assert {t.name for t in fig.data} == {"ga", "npo(β=0.1)"} and len(fig.data) == 4
    series = GEffectSeries.from_results(res, ema=0.4).to_frame()
    fig = g_effect_steps_figure(series)
    assert any("(EMA)" in (t.name or "") for t in fig.data)
    with pytest.raises(SafetyGeoError, match="no rows for group 'block.7'"):
        g_effect_steps_figure(series, group="block.7")

    tw = per_token_weights(h, ["ga", "wga"], forget).to_frame()
    fig = token_weights_figure(tw)
    assert len(fig.data) == 2 and fig.layout.yaxis.type == "log"
    with pytest.raises(SafetyGeoError, match="needs columns"):
        token_weights_figure(tw.drop(columns=["w_p"]))
