"""`safetygeo demo` end to end (small statistics) on the cached toy anchor."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from safetygeo.cli import app


def test_demo_cli_writes_report_and_summary(toy_built, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text(),
                         parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert summary["carrier"]["chosen"] is not None
    abl = summary["ablation"]["d_refusal_harmful"]  # a NullComparison row
    assert abl["metric"] == "d_refusal_harmful" and abl["real"] < abl["null_q025"]
    assert abl["p"] == 1 / (1 + abl["k"]) and abl["z"] < 0  # below every null: the p floor
    rank = summary["carrier_rank"]  # Estimate rows
    assert set(rank) == {"erank", "pr"}
    for name, row in rank.items():
        assert row["metric"] == name and row["value"] >= 1.0
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    beh = summary["behavior"]
    assert beh["anchor"]["harmful full_refusal_rate"] >= 0.9
    assert beh["base"]["harmful full_refusal_rate"] <= 0.1
    assert (beh["anchor, carrier ablated"]["harmful full_refusal_rate"]
            <= beh["anchor"]["harmful full_refusal_rate"])
    gen = summary["generation_ablation"]  # a GenerationEffect row
    assert gen["metric"] == "d_refusal_rate_gen" and gen["op"] == "ablate"
    assert gen["real"] < 0 and gen["real"] <= gen["null_q025"]
    assert gen["real"] == gen["real_rate"] - gen["base_rate"]
    html = (out / "report.html").read_text()
    for section in ("Behaviour", "Refusal carrier", "matched random directions",
                    "Harmfulness vs refusal"):
        assert section in html
    assert "plotly" in html.lower()
    for sub in ("carriers/carriers.json", "sweep.parquet", "behavior/anchor/behavior.parquet"):
        assert (out / sub).is_file(), sub
    assert "carrier: layer" in res.output and "report.html" in res.output
