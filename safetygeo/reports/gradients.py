"""Plotly figures of gradient geometry, from the tidy tables of :mod:`safetygeo.gradients`.

* :func:`gradient_cosine_figure` — cosine vs parameter group (one line per step when the
  table has several); undefined groups are gaps with the reason in the hover text.
* :func:`g_effect_figure` — G-effect vs parameter group, unlearning and retaining panels,
  one line per objective (and step); :func:`g_effect_steps_figure` — G-effect vs step per
  group (EMA-smoothed when the table has ``g_effect_ema``).
* :func:`token_weights_figure` — per-token ``w_p`` (log scale) against the token's
  probability, one colour per objective: GA's ``1/p`` line.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"group": ["embed", "block.0", "head", "all"], "cosine": [0.1, -0.3, float("nan"), -0.1],
    ...                    "defined": [True, True, False, True], "reason": [None, None, "frozen", None]})
    >>> fig = gradient_cosine_figure(df)
    >>> [t.type for t in fig.data], list(fig.data[0].x)
    (['scatter'], ['embed', 'block.0', 'head'])
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from safetygeo.errors import SafetyGeoError

__all__ = ["g_effect_figure", "g_effect_steps_figure", "gradient_cosine_figure",
           "token_weights_figure"]

_RISK_TITLES = {"unlearn": "unlearning G-effect (forget NLL; < 0 = removes)",
                "retain": "retaining G-effect (retain NLL; < 0 = damages)"}


def _need(df: pd.DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in df]
    if missing:
        raise SafetyGeoError(f"{what} needs columns {missing}; got {list(df.columns)}")


def _groups_in_order(df: pd.DataFrame) -> list[str]:
    return [g for g in dict.fromkeys(df.group) if g != "all"]


def _hover(sub: pd.DataFrame, value: str) -> list[str]:
    out = []
    for _, r in sub.iterrows():
        why = r.get("reason") if "reason" in sub else r.get("note")
        ok = bool(r.get("defined", True))
        out.append(f"{r.group}: {r[value]:.4g}" if ok else f"{r.group}: undefined — {why}")
    return out


def gradient_cosine_figure(frame: pd.DataFrame, *, title: str | None = None) -> Any:
    """Cosine of the two losses' gradients per parameter group (the ``all`` value in the
    legend). With a ``step`` column, one line per step (colour = step)."""
    import plotly.graph_objects as go

    _need(frame, ("group", "cosine"), "gradient_cosine_figure")
    fig = go.Figure()
    steps = list(dict.fromkeys(frame.step)) if "step" in frame and frame.step.notna().any() else [None]
    for i, s in enumerate(steps):
        sub = frame if s is None else frame[frame.step == s]
        total = sub[sub.group == "all"].cosine
        sub = sub[sub.group != "all"]
        y = [None if not bool(d) else c for c, d in zip(sub.cosine, sub.get("defined", [True] * len(sub)))]
        name = "cosine" if s is None else f"step {s}"
        if len(total) and pd.notna(total.iloc[0]):
            name += f" (all: {total.iloc[0]:.3f})"
        color = None
        if s is not None and len(steps) > 1:
            import plotly.colors as pc

            color = pc.sample_colorscale("Viridis", [i / (len(steps) - 1)])[0]
        fig.add_trace(go.Scatter(x=list(sub.group), y=y, mode="lines+markers", name=name,
                                 hovertext=_hover(sub, "cosine"), hoverinfo="text",
                                 line={"color": color} if color else None))
    la = frame.loss_a.iloc[0] if "loss_a" in frame else "A"
    lb = frame.loss_b.iloc[0] if "loss_b" in frame else "B"
    fig.add_hline(y=0, line_dash="dot", line_color="grey")
    fig.update_layout(title=title or f"gradient cosine per layer: ∇{la} vs ∇{lb}",
                      xaxis_title="parameter group", yaxis_title="cosine",
                      yaxis_range=[-1.05, 1.05], template="plotly_white")
    return fig


def g_effect_figure(frame: pd.DataFrame, *, value: str = "g_effect", title: str | None = None) -> Any:
    """G-effect per parameter group: unlearning and retaining side by side, one line per
    objective (× step when there are several steps)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _need(frame, ("risk", "group", "objective", value), "g_effect_figure")
    risks = [r for r in ("unlearn", "retain") if r in set(frame.risk)]
    fig = make_subplots(rows=1, cols=len(risks), subplot_titles=[_RISK_TITLES[r] for r in risks])
    keys = ["objective", "beta"] + (["step"] if "step" in frame and frame.step.nunique() > 1 else [])
    for c, risk in enumerate(risks, start=1):
        sub = frame[(frame.risk == risk) & (frame.group != "all")]
        for k, g in sub.groupby(keys, dropna=False, sort=False):
            k = k if isinstance(k, tuple) else (k,)
            label = k[0] if pd.isna(k[1]) else f"{k[0]}(β={k[1]:g})"
            if len(k) > 2:
                label += f" step {k[2]}"
            y = [v if bool(d) else None for v, d in zip(g[value], g.get("defined", [True] * len(g)))]
            fig.add_trace(go.Scatter(x=list(g.group), y=y, mode="lines+markers", name=label,
                                     legendgroup=label, showlegend=c == 1,
                                     hovertext=_hover(g, value), hoverinfo="text"), row=1, col=c)
        fig.add_hline(y=0, line_dash="dot", line_color="grey", row=1, col=c)
    fig.update_layout(title=title or "G-effect per layer", template="plotly_white")
    return fig


def g_effect_steps_figure(frame: pd.DataFrame, *, group: str = "all", title: str | None = None) -> Any:
    """G-effect of ``group`` against step, unlearning and retaining panels, one line per
    objective (EMA-smoothed values when the table has ``g_effect_ema``, raw dotted)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    _need(frame, ("risk", "group", "objective", "step", "g_effect"), "g_effect_steps_figure")
    sub = frame[frame.group == group]
    if sub.empty:
        raise SafetyGeoError(f"no rows for group {group!r}; groups: {sorted(set(frame.group))}")
    risks = [r for r in ("unlearn", "retain") if r in set(sub.risk)]
    fig = make_subplots(rows=1, cols=len(risks), subplot_titles=[_RISK_TITLES[r] for r in risks])
    smooth = "g_effect_ema" in sub
    for c, risk in enumerate(risks, start=1):
        for (name, beta), g in sub[sub.risk == risk].groupby(["objective", "beta"], dropna=False,
                                                             sort=False):
            label = name if pd.isna(beta) else f"{name}(β={beta:g})"
            g = g.sort_values("step")
            fig.add_trace(go.Scatter(x=g.step, y=g.g_effect_ema if smooth else g.g_effect,
                                     mode="lines+markers", name=label + (" (EMA)" if smooth else ""),
                                     legendgroup=label, showlegend=c == 1), row=1, col=c)
            if smooth:
                fig.add_trace(go.Scatter(x=g.step, y=g.g_effect, mode="markers", opacity=0.35,
                                         name=label, legendgroup=label, showlegend=False),
                              row=1, col=c)
        fig.add_hline(y=0, line_dash="dot", line_color="grey", row=1, col=c)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title or f"G-effect along steps ({group})", template="plotly_white")
    return fig


def token_weights_figure(frame: pd.DataFrame, *, title: str | None = None) -> Any:
    """Per-token weight on ``∇p`` (``w_p``, log scale) against the token's probability."""
    import plotly.graph_objects as go

    _need(frame, ("objective", "p", "w_p", "token"), "token_weights_figure")
    fig = go.Figure()
    for (name, beta), g in frame.groupby(["objective", "beta"], dropna=False, sort=False):
        label = name if pd.isna(beta) else f"{name}(β={beta:g})"
        text = [f"{t!r}: p={p:.3g}, w_p={w:.3g}" for t, p, w in zip(g.token, g.p, g.w_p)]
        fig.add_trace(go.Scatter(x=g.p, y=g.w_p, mode="markers", name=label, hovertext=text,
                                 hoverinfo="text"))
    fig.update_layout(title=title or "per-token weight on ∇p (GA: 1/p, the inverse-confidence term)",
                      xaxis_title="p(token)", yaxis_title="w_p", xaxis_type="log",
                      yaxis_type="log", template="plotly_white")
    return fig
