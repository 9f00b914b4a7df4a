"""The HTML of a trajectory report: overview, failed checkpoints, one section per protocol
step, prompt sets and the protocol — self-contained (plotly.js inlined once), every piece of
user text escaped (:class:`~safetygeo.reports.html.HtmlReport`).

A protocol step contributes its section through ``ProtocolStep.section`` (plug-ins) or the
built-in sections here (:data:`SECTIONS`); a step with neither gets its rows as a table, so
every step of the protocol has a section. A section is ``fn(report, table, info)`` with
``info`` a :class:`ReportInfo` (``info.figure(report, name, fig)`` adds a figure and
names it for the static export).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from safetygeo import __version__
from safetygeo.reports import trajectory_figures as tf
from safetygeo.reports.html import HtmlReport
from safetygeo.reports.registry import get_step

__all__ = ["SECTIONS", "ReportInfo", "build_report", "summary_table"]


@dataclass
class ReportInfo:
    """What sections may read besides the table: the :class:`ReportResult`, drift
    references, report-level preparations and the cache (for files such as completions)."""

    result: Any
    refs: Mapping[Any, Any]
    prepared: Mapping[str, Any]
    cache: Any
    figures: dict[str, Any] = field(default_factory=dict)

    def figure(self, r: HtmlReport, name: str, fig: Any, caption: str | None = None) -> None:
        """Add ``fig`` to the report and remember it by ``name`` (for static export)."""
        r.figure(fig, caption=caption)
        self.figures[name] = fig

    def cached_file(self, step: str, key: str, name: str) -> bytes | None:
        res = self.cache.load(step, key, files=True) if self.cache is not None else None
        return None if res is None else res.files.get(name)


def _fmt_ci(v: float, lo: float, hi: float, digits: int = 3) -> str:
    if pd.isna(v):
        return ""
    v, lo, hi = (0.0 if abs(x) < 1e-9 else x for x in (v, lo, hi))  # round-off of exact zeros
    if pd.isna(lo) or pd.isna(hi):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per checkpoint with the headline numbers (carrier, erank, drift and H/R
    cosine at the reference carrier layer, ablation effect and p, ASR, over-refusal,
    accuracy, transfer ASR)."""
    t = table[table.step.notna() & (table.metric != "error")]
    rows = []
    for (traj, step), g in t.groupby(["trajectory", "step"], sort=False):
        layer = tf.reference_layer(table, str(traj))

        def one(metric: str, **eq: Any) -> pd.Series | None:
            r = g[g.metric == metric]
            for k, v in eq.items():
                r = r[r[k] == v]
            return None if not len(r) else r.iloc[0]

        row: dict[str, Any] = {"trajectory": traj, "step": int(step)}
        c = one("carrier_layer")
        row["carrier"] = "" if c is None or pd.isna(c.value) else f"{int(c.value)}:{c.position}"
        for col, metric, eq in (("erank", "erank", {}),
                                ("drift°", "drift_angle_deg", {"layer": layer}),
                                ("cos(h,r)", "hr_cos", {"layer": layer})):
            r = one(metric, **eq) if (layer is not None or not eq) else None
            row[col] = "" if r is None else _fmt_ci(r.value, r.ci_low, r.ci_high)
        r = one("d_refusal_harmful", protocol_step="ablation")
        tail = None if r is None else getattr(r, "p_tail", None)
        row["ablation Δrefusal (p)"] = "" if r is None or pd.isna(r.value) else \
            f"{r.value:.3g} (p={r.p:.2g}" + ("" if tail is None or pd.isna(tail) else
                                              f", tail p≈{tail:.1g}") + ")"
        b = g[g.protocol_step == "behavior"]
        for col, metric, method in (("ASR", "asr", "ours"), ("ASR judged", "asr", "judge_score"),
                                    ("over-refusal (safe)", "over_refusal_rate", "ours"),
                                    ("accuracy", "exact_match", "ours")):
            r = b[(b.metric == metric) & (b.method == method)]
            if metric == "over_refusal_rate":
                safe = tf._sets_of_role(table, "safe")
                r = r[r.set.isin(safe)]
            row[col] = "" if not len(r) else f"{r.value.iloc[0]:.2f}"
        tr = g[(g.metric == "transfer_asr")]
        tr = tr[tr.method == ("judge_score" if (tr.method == "judge_score").any() else "ours")]
        row["transfer ASR"] = "" if not len(tr) else f"{tr.value.iloc[0]:.2f}"
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.loc[:, [c for c in out.columns if c in ("trajectory", "step") or (out[c] != "").any()]]


# ----------------------------------------------------------------------------- sections
def _carriers(r: HtmlReport, table: pd.DataFrame, info: ReportInfo) -> None:
    r.text("Per checkpoint, the admissible refusal carrier (Arditi et al. filters on the val "
           "split: induce ≥ 0, KL ≤ 0.1, layer < 0.8 L; lowest bypass wins), re-scored on "
           "held-out test prompts. A jump in the line is the carrier relocating.")
    info.figure(r, "carrier_layer", tf.carrier_layer_figure(table))
    info.figure(r, "bypass_heatmap", tf.bypass_heatmap_figure(table))
    c = table[table.metric.isin(["carrier_layer", "carrier_weak"])]
    if len(c):
        piv = c.pivot_table(index=["trajectory", "step"], columns="metric", values="value",
                            aggfunc="first").reset_index()
        piv.columns.name = None
        order = {t: i for i, t in enumerate(dict.fromkeys(table.trajectory.dropna()))}
        piv = piv.iloc[sorted(range(len(piv)), key=lambda i: (order.get(piv.trajectory.iloc[i], 0),
                                                              piv.step.iloc[i]))]
        notes = c[c.metric == "carrier_layer"].set_index(["trajectory", "step"]).note
        piv["notes"] = [notes.get((a, b)) if isinstance(notes.get((a, b)), str) else ""
                        for a, b in zip(piv.trajectory, piv.step)]
        r.table(piv, caption="admissible carrier per checkpoint (carrier_weak = 1: weak or none)")


def _rank(r: HtmlReport, table: pd.DataFrame, info: ReportInfo) -> None:
    r.text("Effective rank (Roy–Vetterli) of the stack of refusal directions across the "
           "post-instruction positions at each checkpoint's carrier layer; 1 = one direction.")
    info.figure(r, "erank", tf.rank_figure(table))


def _drift(r: HtmlReport, table: pd.DataFrame, info: ReportInfo) -> None:
    refs = sorted({f"{t.trajectory} → {ref.label}" for (t, _), ref in info.refs.items()
                   if ref is not None})
    r.text("Largest principal angle between each checkpoint's carrier subspace and its "
           "reference's (paired bootstrap over the same held-out prompts). References: "
           + "; ".join(refs))
    info.figure(r, "drift", tf.drift_figure(table))


def _coupling(r: HtmlReport, table: pd.DataFrame, info: ReportInfo) -> None:
    r.text("Geometric H/R coupling: cosine between the harmfulness direction (diff-in-means "
           "at t_inst) and the refusal direction (post-instruction), at the carrier layer.")
    info.figure(r, "coupling", tf.coupling_figure(table))


def _ablation(r: HtmlReport, table: pd.DataFrame, info: ReportInfo) -> None:
    r.text("Ablating each checkpoint's admissible carrier on held-out prompts, next to the "
           "same ablation of matched random directions (shaded: their 2.5–97.5 % band). p from "
           "the nulls, q = Benjamini–Hochberg across the report.")
    info.figure(r, "ablation", tf.ablation_figure(table))
    a = table[(table.protocol_step == "ablation") & table.value.notna()]
    if len(a):
        r.table(a[["trajectory", "step", "layer", "position", "metric", "value", "null_q025",
                   "null_q975", "p", "q"]], caption="ablation effects vs matched nulls")


def _examples(r: HtmlReport, info: ReportInfo, step: str, title: str, n: int = 4) -> None:
    """A few completions of each trajectory's last checkpoint (escaped)."""
    res = info.result
    last: dict[str, Any] = {}
    for s in res.status.itertuples():
        if s.protocol_step == step and s.status in ("computed", "cached"):
            last[s.trajectory] = s
    frames = []
    for traj, s in last.items():
        blob = info.cached_file(step, s.key, "completions.parquet")
        if blob is None:
            continue
        df = pd.read_parquet(io.BytesIO(blob))
        keep = [c for c in ("set", "prompt", "completion", "label", "judge_score") if c in df]
        part = df.groupby("set", sort=False).head(n)[keep]
        part.insert(0, "checkpoint", s.checkpoint)
        frames.append(part)
    if frames:
        r.heading(title, level=3)
        r.table(pd.concat(frames, ignore_index=True), max_rows=60)


def _behavior(r: HtmlReport, table: pd.DataFrame, info: ReportInfo) -> None:
    r.text("Robust refusal (harmful prompts), harmful usefulness (ASR judged for real "
           "compliance, when a judge ran), exaggerated safety (over-refusal of safe "
           "look-alikes), benign utility (task accuracy); greedy decoding, bootstrap CIs.")
    info.figure(r, "behavior", tf.behavior_steps_figure(table))
    info.figure(r, "frontier", tf.frontier_figure(table))
    _examples(r, info, "behavior", "Example completions (last checkpoint of each trajectory)")


def _transfer(r: HtmlReport, table: pd.DataFrame, info: ReportInfo) -> None:
    r.text("GCG suffixes optimized once against the source checkpoint, then evaluated on "
           "every checkpoint: transfer ASR vs step.")
    info.figure(r, "transfer", tf.transfer_figure(table))
    prep = info.prepared.get("transfer")
    if prep is not None:
        d = prep.data
        r.heading(f"Adversarial prompts (optimized on {d.get('source')})", level=3)
        r.table(pd.DataFrame({"instruction": d["instructions"], "suffix": d["suffixes"],
                              "target": d["targets"]}), max_rows=50)
    _examples(r, info, "transfer", "Transfer completions (last checkpoint of each trajectory)")


#: Built-in sections by step name.
SECTIONS: dict[str, Callable[[HtmlReport, pd.DataFrame, ReportInfo], None]] = {
    "carriers": _carriers, "rank": _rank, "drift": _drift, "coupling": _coupling,
    "ablation": _ablation, "behavior": _behavior, "transfer": _transfer}

_TITLES = {"carriers": "Admissible refusal carrier", "rank": "Effective rank",
           "drift": "Carrier drift", "coupling": "Harmfulness–refusal coupling",
           "ablation": "Null-controlled ablation of the carrier", "behavior": "Behaviour",
           "transfer": "Fixed-source transfer robustness"}


def _rows_section(name: str) -> Callable[[HtmlReport, pd.DataFrame, ReportInfo], None]:
    """The section of a step without one of its own: its rows as a table."""

    def section(r: HtmlReport, table: pd.DataFrame, info: ReportInfo) -> None:
        rows = table[table.protocol_step == name]
        if not len(rows):
            r.text(f"The {name} step produced no rows.", note=True)
            return
        cols = [c for c in ("trajectory", "step", "layer", "position", "set", "metric",
                            "method", "value", "ci_low", "ci_high", "p", "n", "note")
                if c in rows and rows[c].notna().any()]
        r.table(rows[cols], caption=f"every row of the {name} step", max_rows=400)

    return section


def section_title(name: str) -> str:
    """The heading of step ``name``'s section in the HTML report.

    Example:
        >>> section_title("rank")
        'Effective rank'
    """
    return _TITLES.get(name) or get_step(name).description or name


def build_report(result: Any, *, title: str | None = None, refs: Mapping[Any, Any] | None = None,
                 prepared: Mapping[str, Any] | None = None, cache: Any = None,
                 info: ReportInfo | None = None) -> HtmlReport:
    """The :class:`HtmlReport` of a :class:`~safetygeo.reports.trajectory_report.ReportResult`
    (pass ``info`` to collect the figures it draws in ``info.figures``)."""
    table = result.table
    info = info or ReportInfo(result, refs or {}, prepared or {}, cache)
    names = list(dict.fromkeys(table.trajectory.dropna()))
    r = HtmlReport(title or f"safetygeo trajectory report: {', '.join(map(str, names))}")
    r.heading("Overview")
    n_ckpt = table[table.step.notna()].groupby(["trajectory", "step"]).ngroups
    r.key_values({"trajectories": ", ".join(map(str, names)), "checkpoints": n_ckpt,
                  "protocol steps": ", ".join(result.protocol.step_names),
                  "step results computed": result.counts["computed"],
                  "step results from the cache": result.counts["cached"],
                  "failed": result.counts["failed"], "models loaded": result.counts["models_loaded"],
                  "wall time (s)": round(result.seconds, 1),
                  "executor": ", ".join(f"{k}={v}" for k, v in result.executor.items()),
                  "safetygeo": __version__})
    r.text("Every number is in table.parquet / table.csv (trajectory, step, layer, position, "
           "metric, value, ci_low, ci_high, p, q, ...); status.csv says what was computed, "
           "read from the cache or failed; protocol.yaml reruns this report.")
    s = summary_table(table)
    if len(s):
        r.table(s, caption="headline numbers per checkpoint (95 % CIs in brackets)", max_rows=400)
    r.heading("Failed checkpoints")
    if len(result.failures):
        r.text(f"{len(result.failures)} step result(s) failed; the other checkpoints finished. "
               "A failed checkpoint is retried by the next run.", note=True)
        r.table(result.failures, max_rows=500)
    else:
        r.text("None: every selected checkpoint and step completed.")
    for name in result.protocol.step_names:
        step = get_step(name)
        section = step.section or SECTIONS.get(name) or _rows_section(name)
        r.heading(section_title(name))
        section(r, table, info)
    if result.sets is not None:
        r.heading("Prompt sets")
        r.table(pd.DataFrame(result.sets.describe()), caption="one example prompt per set")
    r.heading("Protocol")
    r.code(result.protocol.to_yaml())
    return r
