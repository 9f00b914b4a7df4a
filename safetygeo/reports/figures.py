"""Plotly figures for reports and notebooks: carrier scores, null distributions, behaviour,
H/R coupling, sweeps. Each takes the tidy tables the analysis functions return.

Example:
    >>> from safetygeo.results import NullComparison
    >>> eff = NullComparison.from_null("d_refusal", -5.0, [0.1, -0.2, 0.05])
    >>> fig = null_figure(eff, "Δ refusal score")
    >>> [t.type for t in fig.data]
    ['histogram']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from safetygeo.errors import SafetyGeoError
from safetygeo.results import NullComparison

_METRIC_TITLES = {"bypass": "bypass (harmful, ablated)", "induce": "induce (harmless, added)",
                  "kl": "KL (harmless, ablated)"}


def carrier_scores_figure(candidates: pd.DataFrame, chosen: Sequence[Any] | None = None) -> Any:
    """Heatmaps of bypass / induce / KL over layer × post-instruction position; hover says
    why a candidate was filtered, the chosen carrier is marked with a star."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = [m for m in ("bypass", "induce", "kl") if m in candidates]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[_METRIC_TITLES[m] for m in metrics],
                        shared_yaxes=True, horizontal_spacing=0.08)
    positions = list(dict.fromkeys(candidates.position))
    layers = sorted(candidates.layer.unique())
    for i, m in enumerate(metrics, start=1):
        grid = candidates.pivot(index="layer", columns="position", values=m).reindex(
            index=layers, columns=positions)
        why = candidates.pivot(index="layer", columns="position", values="reason").reindex(
            index=layers, columns=positions).fillna("").replace("", "admissible")
        fig.add_trace(go.Heatmap(
            z=grid.to_numpy(), x=positions, y=layers, text=why.to_numpy(),
            colorscale="RdBu_r" if m != "kl" else "Viridis", zmid=0 if m != "kl" else None,
            colorbar=dict(x=(i - 0.12) / len(metrics), len=0.8, thickness=10),
            hovertemplate="layer %{y}, %{x}<br>" + m + " %{z:.3f}<br>%{text}<extra></extra>"),
            row=1, col=i)
        if chosen is not None:
            fig.add_trace(go.Scatter(x=[chosen[1]], y=[chosen[0]], mode="markers",
                                     marker=dict(symbol="star", size=16, color="gold",
                                                 line=dict(color="black", width=1)),
                                     name="chosen carrier", showlegend=i == 1), row=1, col=i)
    fig.update_yaxes(title_text="layer", col=1)
    fig.update_layout(title="Refusal-carrier candidates (validation split)", template="plotly_white",
                      height=380 + 12 * len(layers))
    return fig


def null_figure(effect: NullComparison, xlabel: str, *, title: str | None = None) -> Any:
    """Histogram of the matched-null effects with the real effect as a line."""
    import plotly.graph_objects as go

    if not (hasattr(effect, "null") and hasattr(effect, "real") and hasattr(effect, "p")):
        raise SafetyGeoError(f"null_figure needs a NullComparison, got {type(effect).__name__}")
    fig = go.Figure(go.Histogram(x=effect.null.tolist(), name=f"{effect.k} matched nulls",
                                 marker_color="gray", opacity=0.7))
    fig.add_vline(x=effect.real, line_color="crimson", line_width=3,
                  annotation_text=f"real {effect.real:.3g} (p={effect.p:.3g})")
    fig.update_layout(title=title or f"{xlabel}: real direction vs matched random directions",
                      xaxis_title=xlabel, yaxis_title="null directions", template="plotly_white",
                      showlegend=True)
    return fig


def behavior_figure(table: pd.DataFrame, *, metrics: Sequence[str] | None = None,
                    by: str = "checkpoint", method: str = "ours") -> Any:
    """Grouped bars of behaviour metrics with their bootstrap CIs (rows of a
    :class:`~safetygeo.behavior.BehaviorReport` table, possibly several checkpoints)."""
    import plotly.express as px

    t = table[table["method"] == method] if "method" in table else table
    if metrics is not None:
        t = t[t.metric.isin(metrics)]
    t = t.assign(label=t["set"] + " · " + t["metric"])
    fig = px.bar(t, x="label", y="value", color=by if by in t else None, barmode="group",
                 error_y=t.ci_high - t.value, error_y_minus=t.value - t.ci_low,
                 hover_data=["n"], template="plotly_white",
                 title="Behaviour (95% bootstrap CIs)")
    fig.update_layout(xaxis_title="", yaxis_title="rate / score", yaxis_range=[0, 1.05])
    return fig


def coupling_figure(table: pd.DataFrame) -> Any:
    """Per-layer cos(harmfulness direction, refusal direction) with its CI band."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if {"ci_low", "ci_high"} <= set(table.columns):
        fig.add_trace(go.Scatter(x=table.layer, y=table.ci_high, mode="lines", line=dict(width=0),
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=table.layer, y=table.ci_low, mode="lines", line=dict(width=0),
                                 fill="tonexty", fillcolor="rgba(31,119,180,0.2)", name="95% CI"))
    fig.add_trace(go.Scatter(x=table.layer, y=table.cos, mode="lines+markers", name="cos(h, r)"))
    fig.update_layout(title="Harmfulness (t_inst) vs refusal (post-instruction) direction",
                      xaxis_title="layer", yaxis_title="cosine", template="plotly_white",
                      yaxis_range=[-1, 1])
    return fig


def sweep_figure(table: pd.DataFrame, metric: str = "d_refusal_harmless") -> Any:
    """Plotly figure: effect vs layer for every intervention that has a layer (additions
    per direction and strength; head ablations at their layer), with the null band
    (2.5–97.5 % of the matched nulls: random directions, random other heads) shaded.
    Ablations that act on every layer have no layer and are not drawn.

    Hover shows p, the tail estimate, which p BH used, q, the nulls the p used out of
    those drawn, and why the test stopped; cells whose BH p is a tail estimate are drawn
    as diamonds, cells a sequential test stopped early (clearly null) as open circles.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    sub = table[(table.metric == metric) & table.layer.notna()].sort_values("layer").copy()
    defaults = {"n_null_used": sub.get("k"), "stop_reason": "fixed", "p_tail": float("nan"),
                "p_used": "exact"}
    for col, val in defaults.items():  # tables written before sequential tests
        if col not in sub:
            sub[col] = val
    for (name, op, alpha), grp in sub.groupby(["direction", "op", "alpha"], dropna=False):
        label = name if alpha != alpha else f"{name} ({op}, α={alpha:g})"
        fig.add_trace(go.Scatter(x=grp.layer, y=grp.null_q975, mode="lines", line=dict(width=0),
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=grp.layer, y=grp.null_q025, mode="lines", line=dict(width=0),
                                 fill="tonexty", fillcolor="rgba(150,150,150,0.3)",
                                 name=f"null band {label}"))
        symbols = ["diamond" if u == "tail" else "circle-open" if s == "h_exceedances"
                   else "circle" for u, s in zip(grp.p_used, grp.stop_reason)]
        fig.add_trace(go.Scatter(
            x=grp.layer, y=grp.real, mode="lines+markers", name=label,
            marker=dict(symbol=symbols, size=9),
            customdata=grp[["p", "q", "n_null_used", "k", "stop_reason", "p_used",
                            "p_tail"]].to_numpy(dtype=object),
            hovertemplate="layer %{x}<br>effect %{y:.3f}<br>p %{customdata[0]:.3g} (exact)"
                          "<br>p tail %{customdata[6]:.3g}<br>BH on %{customdata[5]} p"
                          "<br>q %{customdata[1]:.3g}<br>nulls used %{customdata[2]} of "
                          "%{customdata[3]} drawn<br>stop: %{customdata[4]}<extra></extra>"))
    fig.update_layout(title=f"{metric}: interventions vs matched nulls by layer "
                            "(◇ BH on a tail estimate, ○ stopped early: clearly null)",
                      xaxis_title="layer", yaxis_title=metric, template="plotly_white")
    return fig
