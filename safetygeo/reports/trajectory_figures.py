"""Figures of a trajectory report: each takes the report table (:data:`~safetygeo.reports.
trajectory_report.TABLE_COLUMNS`) and overlays the trajectories against the training step.

* :func:`carrier_layer_figure` — admissible-carrier layer vs step;
* :func:`bypass_heatmap_figure` — bypass score (best position per layer), layer × step, with
  the chosen carrier marked;
* :func:`rank_figure`, :func:`drift_figure` — effective rank and drift vs step with CIs;
* :func:`coupling_figure` — H/R cosine vs step at the carrier layer, with CIs;
* :func:`ablation_figure` — ablation effect vs the matched-null band, per step;
* :func:`behavior_steps_figure` — refusal, judged ASR, over-refusal, utility vs step;
* :func:`frontier_figure` — robustness–utility frontier (ASR vs task accuracy, by step);
* :func:`transfer_figure` — transfer ASR of fixed-source GCG suffixes vs step;
* :func:`export_figures` — static PNG / SVG through kaleido, when installed.

Where a figure needs one layer (drift, coupling), it is the admissible carrier's layer at
the trajectory's first checkpoint that has one (else the report's most frequent carrier
layer). Each trajectory keeps its colour across figures.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"trajectory": ["a", "a"], "step": [0, 10], "metric": "carrier_layer",
    ...                   "value": [5.0, 3.0], "position": "eoi-1", "note": None,
    ...                   "protocol_step": "carriers"})
    >>> [tr.name for tr in carrier_layer_figure(t).data]
    ['a']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ablation_figure", "behavior_steps_figure", "bypass_heatmap_figure",
           "carrier_layer_figure", "coupling_figure", "drift_figure", "export_figures",
           "frontier_figure", "rank_figure", "reference_layer", "transfer_figure"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _colors(table: pd.DataFrame) -> dict[str, str]:
    """One colour per trajectory, by its order in the (whole) table: the same trajectory has
    the same colour in every figure of a report."""
    return {name: _color(i) for i, name in enumerate(_trajectories(table))}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _rows(table: pd.DataFrame, metric: str, **eq: Any) -> pd.DataFrame:
    t = table[table.metric == metric]
    for k, v in eq.items():
        if k in t:
            t = t[t[k] == v]
    return t.sort_values(["trajectory", "step"])


def _trajectories(table: pd.DataFrame) -> list[str]:
    return [str(x) for x in dict.fromkeys(table.trajectory.dropna())]


def _empty(title: str, why: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=260,
                      annotations=[dict(text=why, showarrow=False, x=0.5, y=0.5,
                                        xref="paper", yref="paper")])
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _err(t: pd.DataFrame) -> dict[str, Any] | None:
    if t.ci_high.isna().all():
        return None
    return dict(type="data", array=(t.ci_high - t.value).clip(lower=0).tolist(),
                arrayminus=(t.value - t.ci_low).clip(lower=0).tolist(), thickness=1)


def reference_layer(table: pd.DataFrame, trajectory: str) -> int | None:
    """The layer figures use for ``trajectory``: the admissible carrier layer of its first
    checkpoint that has one; else the most frequent carrier layer of the whole report (so
    trajectories without any admissible carrier are read at the same layer as the others);
    else ``None``."""
    t = _rows(table, "carrier_layer", trajectory=trajectory).dropna(subset=["value"])
    if len(t):
        return int(t.iloc[0].value)
    every = table[table.metric == "carrier_layer"].value.dropna()
    return int(every.mode().iloc[0]) if len(every) else None


def carrier_layer_figure(table: pd.DataFrame) -> Any:
    """Admissible-carrier layer vs step, trajectories overlaid (hover: position, notes)."""
    import plotly.graph_objects as go

    t = _rows(table, "carrier_layer")
    if not len(t):
        return _empty("Admissible carrier layer", "no carrier rows (the carriers step did not run)")
    fig = go.Figure()
    colors = _colors(table)
    for name in _trajectories(t):
        g = t[t.trajectory == name]
        fig.add_trace(go.Scatter(
            x=g.step.tolist(), y=g.value.tolist(), mode="lines+markers", name=name,
            line=dict(color=colors[name], shape="hv"), marker=dict(size=8),
            customdata=list(zip(g.position.fillna("none"), g.note.fillna(""))),
            hovertemplate="step %{x}<br>layer %{y} (%{customdata[0]})<br>%{customdata[1]}"
                          "<extra>" + name + "</extra>"))
    fig.update_layout(title="Admissible refusal carrier: layer vs training step",
                      xaxis_title="training step", yaxis_title="carrier layer",
                      template="plotly_white", yaxis=dict(dtick=1))
    return fig


def bypass_heatmap_figure(table: pd.DataFrame, metric: str = "bypass") -> Any:
    """Heatmap of ``metric`` (best post-instruction position per layer) over layer × step,
    one panel per trajectory; stars mark each checkpoint's admissible carrier."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t = _rows(table, metric).dropna(subset=["layer"])
    if not len(t):
        return _empty(f"{metric} score over layers and steps", "no candidate rows")
    names = _trajectories(t)
    fig = make_subplots(rows=len(names), cols=1, subplot_titles=names, vertical_spacing=0.12)
    for i, name in enumerate(names, start=1):
        g = t[t.trajectory == name]
        grid = g.groupby(["layer", "step"]).value.min().unstack("step").sort_index()
        fig.add_trace(go.Heatmap(
            z=grid.to_numpy(), x=[str(s) for s in grid.columns], y=[int(v) for v in grid.index],
            colorscale="RdBu_r", zmid=0, showscale=i == 1,
            colorbar=dict(title=metric, len=0.8),
            hovertemplate="step %{x}<br>layer %{y}<br>" + metric + " %{z:.3f}<extra>" + name
                          + "</extra>"), row=i, col=1)
        c = _rows(table, "carrier_layer", trajectory=name).dropna(subset=["value"])
        if len(c):
            fig.add_trace(go.Scatter(x=[str(s) for s in c.step], y=c.value.tolist(),
                                     mode="markers", name="admissible carrier",
                                     showlegend=i == 1,
                                     marker=dict(symbol="star", size=13, color="gold",
                                                 line=dict(color="black", width=1))),
                          row=i, col=1)
        fig.update_yaxes(title_text="layer", dtick=1, row=i, col=1)
    fig.update_xaxes(title_text="training step", type="category")
    fig.update_layout(title=f"{metric} score of the best candidate per layer (lower = ablation "
                            "removes more refusal)", template="plotly_white",
                      height=max(320, 260 * len(names)))
    return fig


def _vs_step(table: pd.DataFrame, metric: str, title: str, ylabel: str, *,
             layer_from_reference: bool = False, **eq: Any) -> Any:
    import plotly.graph_objects as go

    t = _rows(table, metric, **eq)
    if not len(t):
        return _empty(title, f"no {metric} rows")
    fig = go.Figure()
    colors = _colors(table)
    used = []
    for name in _trajectories(t):
        g = t[t.trajectory == name]
        if layer_from_reference:
            layer = reference_layer(table, name)
            if layer is None:
                layer = int(g.layer.dropna().median()) if g.layer.notna().any() else None
            if layer is not None:
                g = g[g.layer == layer]
            used.append(f"{name}: layer {layer}")
        if not len(g):
            continue
        fig.add_trace(go.Scatter(x=g.step.tolist(), y=g.value.tolist(), mode="lines+markers",
                                 name=name, line=dict(color=colors[name]), error_y=_err(g),
                                 hovertemplate="step %{x}<br>%{y:.3f}<extra>" + name + "</extra>"))
    sub = f" ({'; '.join(used)})" if used else ""
    fig.update_layout(title=title + sub, xaxis_title="training step", yaxis_title=ylabel,
                      template="plotly_white")
    return fig


def rank_figure(table: pd.DataFrame, metric: str = "erank") -> Any:
    """Effective rank (or ``pr``) of the carrier subspace vs step, 95 % bootstrap CIs."""
    return _vs_step(table, metric, f"{'Effective rank' if metric == 'erank' else 'Participation ratio'}"
                    " of the carrier subspace (at each checkpoint's carrier layer)", metric)


def drift_figure(table: pd.DataFrame, metric: str = "drift_angle_deg") -> Any:
    """Principal angle between each checkpoint's carrier subspace and its reference's vs
    step, at the reference carrier layer, 95 % paired-bootstrap CIs."""
    return _vs_step(table, metric, "Carrier drift against the reference", "largest principal "
                    "angle (degrees)", layer_from_reference=True)


def coupling_figure(table: pd.DataFrame) -> Any:
    """cos(harmfulness, refusal direction) vs step at the reference carrier layer, CIs."""
    return _vs_step(table, "hr_cos", "H/R coupling: cos(harmfulness at t_inst, refusal direction)",
                    "cosine", layer_from_reference=True)


def ablation_figure(table: pd.DataFrame, metric: str = "d_refusal_harmful") -> Any:
    """The carrier's ablation effect per step next to the band (2.5–97.5 %) of its matched
    random directions; hover gives p and q."""
    import plotly.graph_objects as go

    t = _rows(table, metric, protocol_step="ablation").dropna(subset=["value"])
    if not len(t):
        return _empty(f"Ablation: {metric}", "no ablation rows")
    fig = go.Figure()
    colors = _colors(table)
    for name in _trajectories(t):
        g = t[t.trajectory == name]
        c = colors[name]
        fig.add_trace(go.Scatter(x=g.step.tolist(), y=g.null_q975.tolist(), mode="lines",
                                 line=dict(width=0, color=c), showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=g.step.tolist(), y=g.null_q025.tolist(), mode="lines",
                                 line=dict(width=0, color=c), fill="tonexty",
                                 fillcolor=_rgba(c, 0.18), name=f"{name}: null band"))
        fig.add_trace(go.Scatter(
            x=g.step.tolist(), y=g.value.tolist(), mode="lines+markers", name=f"{name}: carrier",
            line=dict(color=c), customdata=list(zip(g.p.tolist(), g.q.tolist(), g.layer.tolist())),
            hovertemplate="step %{x}<br>effect %{y:.3f}<br>p %{customdata[0]:.3g}, q "
                          "%{customdata[1]:.3g}<br>layer %{customdata[2]}<extra></extra>"))
    fig.update_layout(title=f"Ablating the admissible carrier: {metric} vs matched random "
                            "directions", xaxis_title="training step", yaxis_title=metric,
                      template="plotly_white")
    return fig


_BEHAVIOR = (("refusal of harmful prompts", "asr", "harmful", True),
             ("ASR (judged compliance)", "asr", "harmful", False),
             ("over-refusal of safe prompts", "over_refusal_rate", "safe", False),
             ("task accuracy (benign)", "exact_match", "benign", False))


def _behavior_rows(table: pd.DataFrame, metric: str, role: str, method: str | None) -> pd.DataFrame:
    t = table[(table.protocol_step == "behavior") & (table.metric == metric)]
    sets = _sets_of_role(table, role)
    t = t[t.set.isin(sets)] if sets else t.iloc[0:0]
    if method is not None:
        t = t[t.method == method]
    return t.sort_values(["trajectory", "step"])


def _sets_of_role(table: pd.DataFrame, role: str) -> list[str]:
    """Behaviour sets of a role, read off the metrics each role gets."""
    b = table[table.protocol_step == "behavior"]
    by_metric = {"harmful": "asr", "safe": "over_refusal_rate", "benign": "exact_match"}
    if role == "safe":  # safe sets have over-refusal but neither ASR nor exact match
        other = set(b[b.metric.isin(["asr", "exact_match", "ref_logprob"])].set)
        return sorted(set(b[b.metric == "over_refusal_rate"].set) - other)
    return sorted(set(b[b.metric == by_metric[role]].set))


def behavior_steps_figure(table: pd.DataFrame) -> Any:
    """Refusal of harmful prompts (1 − ASR, our classifier), judged ASR (harmful
    usefulness), over-refusal of safe prompts and benign task accuracy vs step."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = []
    for title, metric, role, invert in _BEHAVIOR:
        method = "ours" if (invert or metric != "asr") else None
        t = _behavior_rows(table, metric, role, method)
        if metric == "asr" and not invert:
            t = t[t.method.isin(["judge_score", "judge"])]
        if len(t):
            panels.append((title, t, invert))
    if not panels:
        return _empty("Behaviour", "no behaviour rows")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels],
                        horizontal_spacing=0.06)
    names = _trajectories(table)
    colors = _colors(table)
    for j, (_title, t, invert) in enumerate(panels, start=1):
        for name in names:
            g = t[t.trajectory == name]
            if not len(g):
                continue
            y = (1 - g.value) if invert else g.value
            lo, hi = ((1 - g.ci_high), (1 - g.ci_low)) if invert else (g.ci_low, g.ci_high)
            fig.add_trace(go.Scatter(
                x=g.step.tolist(), y=y.tolist(), mode="lines+markers", name=name,
                legendgroup=name, showlegend=j == 1, line=dict(color=colors[name]),
                error_y=dict(type="data", array=(hi - y).clip(lower=0).tolist(),
                             arrayminus=(y - lo).clip(lower=0).tolist(), thickness=1),
                hovertemplate="step %{x}<br>%{y:.2f}<extra>" + name + "</extra>"), row=1, col=j)
        fig.update_yaxes(range=[-0.03, 1.03], row=1, col=j)
    fig.update_xaxes(title_text="training step")
    fig.update_layout(title="Behaviour on held-out prompts (95 % bootstrap CIs)",
                      template="plotly_white", height=380)
    return fig


def frontier_figure(table: pd.DataFrame) -> Any:
    """Robustness–utility frontier: ASR on harmful prompts (x; judged when a judge ran)
    against benign task accuracy (y), one point per checkpoint labelled by its step,
    joined in step order per trajectory."""
    import plotly.graph_objects as go

    asr = _behavior_rows(table, "asr", "harmful", None)
    judged = asr[asr.method == "judge_score"]
    asr = judged if len(judged) else asr[asr.method == "ours"]
    util = _behavior_rows(table, "exact_match", "benign", "ours")
    if not len(util):
        util = 1 - _behavior_rows(table, "over_refusal_rate", "benign", "ours").set_index(
            ["trajectory", "step"]).value
        util = util.rename("value").reset_index()
        ylab = "benign answered (1 − over-refusal)"
    else:
        ylab = "benign task accuracy (exact match)"
    if not len(asr) or not len(util):
        return _empty("Robustness–utility frontier", "needs harmful and benign behaviour sets")
    a = asr.groupby(["trajectory", "step"]).value.mean().rename("asr")
    u = util.groupby(["trajectory", "step"]).value.mean().rename("utility")
    both = pd.concat([a, u], axis=1).dropna().reset_index()
    fig = go.Figure()
    colors = _colors(table)
    for name in _trajectories(both):
        g = both[both.trajectory == name].sort_values("step")
        fig.add_trace(go.Scatter(x=g.asr.tolist(), y=g.utility.tolist(), mode="lines+markers+text",
                                 text=[str(s) for s in g.step], textposition="top right",
                                 textfont=dict(size=9), name=name,
                                 line=dict(color=colors[name], dash="dot"),
                                 hovertemplate="step %{text}<br>ASR %{x:.2f}<br>utility "
                                               "%{y:.2f}<extra>" + name + "</extra>"))
    fig.update_layout(title="Robustness–utility frontier (points labelled by step; up-left is "
                            "better)", xaxis_title="attack success rate on harmful prompts"
                      + (" (judged)" if len(judged) else ""), yaxis_title=ylab,
                      template="plotly_white", xaxis_range=[-0.05, 1.05], yaxis_range=[-0.05, 1.1])
    return fig


def transfer_figure(table: pd.DataFrame) -> Any:
    """Transfer ASR of the fixed-source GCG suffixes vs step (solid), next to the bare
    instructions' ASR (dotted); our classifier, and the judge when one ran."""
    import plotly.graph_objects as go

    t = table[table.metric.isin(["transfer_asr", "transfer_asr_no_suffix"])]
    if not len(t):
        return _empty("Transfer ASR", "no transfer rows")
    judged = t[t.method == "judge_score"]
    t = judged if len(judged) else t[t.method == "ours"]
    fig = go.Figure()
    colors = _colors(table)
    source = ", ".join(str(s) for s in dict.fromkeys(t.set.dropna()))
    for name in _trajectories(t):
        for metric, dash, label in (("transfer_asr", "solid", "with suffix"),
                                    ("transfer_asr_no_suffix", "dot", "no suffix")):
            g = t[(t.trajectory == name) & (t.metric == metric)].sort_values("step")
            if not len(g):
                continue
            fig.add_trace(go.Scatter(x=g.step.tolist(), y=g.value.tolist(), mode="lines+markers",
                                     name=f"{name} ({label})", line=dict(color=colors[name], dash=dash),
                                     error_y=_err(g) if metric == "transfer_asr" else None))
    fig.update_layout(title=f"Transfer ASR of GCG suffixes optimized on {source}"
                            + (" (judged)" if len(judged) else ""),
                      xaxis_title="training step", yaxis_title="attack success rate",
                      yaxis_range=[-0.03, 1.03], template="plotly_white")
    return fig


def export_figures(figures: Mapping[str, Any], folder: str | os.PathLike[str], *,
                   formats: Sequence[str] = ("png", "svg"), scale: float = 2.0) -> list[Path]:
    """Write each figure as static images (``NAME.png``, ``NAME.svg``) through kaleido (one
    browser session for all of them where plotly offers ``write_images``); returns the
    files written — empty, with nothing written, when kaleido is not installed or cannot
    start its browser (it needs a Chrome / Chromium)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return []
    import plotly.io as pio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(fig, folder / f"{name}.{fmt}", fmt) for name, fig in figures.items() for fmt in formats]
    try:
        if hasattr(pio, "write_images"):
            pio.write_images([j[0] for j in jobs], [str(j[1]) for j in jobs],
                             format=[j[2] for j in jobs], scale=scale)
        else:  # pragma: no cover - older plotly
            for fig, path, fmt in jobs:
                fig.write_image(str(path), format=fmt, scale=scale)
    except Exception:  # noqa: BLE001 - export is optional; the HTML has every figure
        return [p for _, p, _ in jobs if p.is_file()]
    return [p for _, p, _ in jobs]
