"""Figures of the refusals-vs-KL frontier (:func:`safetygeo.causal.frontier.refusal_frontier`)
and of the minimal refusal dimension.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"edit": ["dim", "dim"], "mode": ["project"] * 2, "k": [1, 2],
    ...                   "strength": [1.0, 1.0], "layers": ["all"] * 2, "refusals": [3, 1],
    ...                   "refusals_ci_low": [1, 0], "refusals_ci_high": [5, 2],
    ...                   "kl": [0.1, 0.3], "kl_ci_low": [0.05, 0.2], "kl_ci_high": [0.2, 0.4],
    ...                   "null_refusals_mean": [20, 20], "null_kl_mean": [0.0, 0.01],
    ...                   "null_refusals_q025": [20, 20], "null_refusals_q975": [20, 20],
    ...                   "null_kl_q025": [0, 0], "null_kl_q975": [0.01, 0.02],
    ...                   "pareto": [True, True]})
    >>> [trace.name for trace in frontier_figure(t).data][:2]
    ['random subspaces', 'dim']
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["frontier_figure", "refusal_dimension_figure"]


def _label(r: Any) -> str:
    return f"{r.edit} {r.mode} k={r.k} s={r.strength:g} layers={r.layers}"


def frontier_figure(table: pd.DataFrame, *, title: str | None = None, log_kl: bool = True) -> Any:
    """Refusals (y) vs first-token KL (x) per edit, with 95% CIs; the matched random
    subspaces of every point as grey crosses (null means, with their 2.5–97.5% ranges);
    Pareto-optimal points joined per finder."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=table.null_kl_mean, y=table.null_refusals_mean, mode="markers", name="random subspaces",
        marker=dict(symbol="x", color="gray", size=8),
        error_x=dict(type="data", symmetric=False,
                     array=(table.null_kl_q975 - table.null_kl_mean).clip(lower=0),
                     arrayminus=(table.null_kl_mean - table.null_kl_q025).clip(lower=0),
                     color="lightgray"),
        error_y=dict(type="data", symmetric=False,
                     array=(table.null_refusals_q975 - table.null_refusals_mean).clip(lower=0),
                     arrayminus=(table.null_refusals_mean - table.null_refusals_q025).clip(lower=0),
                     color="lightgray"),
        text=[_label(r) for r in table.itertuples()], hoverinfo="text+x+y"))
    for name, g in table.groupby("edit", sort=False):
        g = g.sort_values("kl")
        front = g[g.pareto] if "pareto" in g else g
        fig.add_trace(go.Scatter(
            x=g.kl, y=g.refusals, mode="markers", name=str(name),
            error_x=dict(type="data", symmetric=False, array=(g.kl_ci_high - g.kl).clip(lower=0),
                         arrayminus=(g.kl - g.kl_ci_low).clip(lower=0)),
            error_y=dict(type="data", symmetric=False,
                         array=(g.refusals_ci_high - g.refusals).clip(lower=0),
                         arrayminus=(g.refusals - g.refusals_ci_low).clip(lower=0)),
            text=[_label(r) for r in g.itertuples()], hoverinfo="text+x+y"))
        if len(front) > 1:
            fig.add_trace(go.Scatter(x=front.kl, y=front.refusals, mode="lines",
                                     showlegend=False, line=dict(dash="dot", width=1)))
    fig.update_layout(title=title or "refusals vs first-token KL (lower left is better)",
                      xaxis_title="first-token KL(base ‖ edited) on harmless prompts",
                      yaxis_title="refused generations of held-out harmful prompts",
                      template="plotly_white")
    if log_kl:
        fig.update_xaxes(type="log")
    return fig


def refusal_dimension_figure(tables: dict[str, pd.DataFrame], *, title: str | None = None) -> Any:
    """Refusal rate against ``k`` (ablating the first ``k`` directions) per checkpoint, with
    the random ``k``-subspace band."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, t in tables.items():
        n = t.n_harmful.iloc[0]
        fig.add_trace(go.Scatter(x=t.k, y=t.refusals / n, mode="lines+markers", name=str(name)))
        fig.add_trace(go.Scatter(x=t.k, y=t.null_refusals_mean / n, mode="lines",
                                 name=f"{name}: random subspaces",
                                 line=dict(dash="dash", color="gray")))
    fig.update_layout(title=title or "how many dimensions does refusal need?",
                      xaxis_title="k (dimensions ablated)", yaxis_title="refusal rate",
                      template="plotly_white", yaxis_range=[-0.02, 1.02])
    return fig
