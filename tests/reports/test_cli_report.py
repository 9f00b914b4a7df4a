"""``safetygeo report``: one command over trajectory folders (or toy:NAME), a protocol file
or preset, one-line errors before anything is loaded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from safetygeo.cli import app
from tests.reports.conftest import small_protocol

runner = CliRunner()


def _flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.mark.slow
def test_report_command_end_to_end(toy_zoo, tmp_path: Path) -> None:
    proto = tmp_path / "protocol.yaml"
    p = small_protocol((300,), base=False).with_steps(transfer=None)
    proto.write_text(p.to_yaml())
    out = tmp_path / "rep"
    res = runner.invoke(app, ["report", "toy:anchor", "--protocol", str(proto), "--steps",
                              "behavior,coupling", "--out", str(out)])
    assert res.exit_code == 0, res.output
    t = pd.read_parquet(out / "table.parquet")
    assert set(t.protocol_step) == {"behavior", "coupling"} and set(t.step) == {300}
    assert "computed" in res.output and (out / "report.html").is_file()
    again = runner.invoke(app, ["report", str(toy_zoo["anchor"]), "--protocol", str(proto),
                                "--steps", "behavior,coupling", "--out", str(out)])
    assert again.exit_code == 0, again.output
    status = pd.read_csv(out / "status.csv")
    assert set(status.status) == {"cached"}


@pytest.mark.parametrize("args, message", [
    (["--executor", "dask"], "'dask'; use local or ray"),
    (["--steps", "carriers,nope"], "unknown step(s) ['nope']"),
    (["--protocol", "nosuch.yaml"], "neither a protocol file nor a preset"),
    (["--set", "evil=x.txt"], "unknown role 'evil'"),
])
def test_report_command_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2 and message in _flat(res.output), res.output


def test_report_command_bad_protocol_file(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("steps:\n  ablation: {K: 3}\n")
    res = runner.invoke(app, ["report", str(tmp_path), "--protocol", str(bad)])
    assert res.exit_code == 2
    assert "ProtocolError" in res.output and "unknown steps.ablation key(s) ['K']" in _flat(res.output)
    assert "Traceback" not in res.output


def test_report_of_a_folder_that_is_no_trajectory(tmp_path: Path) -> None:
    proto = tmp_path / "p.yaml"
    proto.write_text("steps: {coupling: {}}\n")
    res = runner.invoke(app, ["report", str(tmp_path / "nothing"), "--protocol", str(proto),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "1 failed" in _flat(res.output) and "not a trajectory folder" in _flat(res.output)
    t = pd.read_csv(tmp_path / "o" / "table.csv")
    assert t.metric.tolist() == ["error"]
