"""``measure-frontier`` and ``select-carrier --min-dimension`` end to end on a planted checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from safetygeo.causal.carriers import CarrierSelection
from safetygeo.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from safetygeo.toy.planted import planted_refusal_model

    pm = planted_refusal_model()
    d = tmp_path_factory.mktemp("planted-frontier")
    pm.handle.model.save_pretrained(d / "model")
    pm.handle.tokenizer.save_pretrained(d / "model")
    for name, texts in (("harmful", pm.harmful), ("harmless", pm.harmless)):
        (d / f"{name}.txt").write_text("\n".join(texts))
        (d / f"{name}_fit.txt").write_text("\n".join(texts[:24]))
        (d / f"{name}_eval.txt").write_text("\n".join(texts[24:]))
    res = runner.invoke(app, ["select-carrier", str(d / "model"), "--set",
                              f"harmful={d / 'harmful.txt'}", "--set",
                              f"harmless={d / 'harmless.txt'}", "--out", str(d / "carriers"),
                              "--min-dimension", "2"])
    assert res.exit_code == 0, res.output
    return d


def _sets(d: Path, fit: bool = True) -> list[str]:
    out = ["--set", f"harmful={d / 'harmful_eval.txt'}", "--set", f"harmless={d / 'harmless_eval.txt'}"]
    if fit:
        out += ["--set", f"fit.harmful={d / 'harmful_fit.txt'}",
                "--set", f"fit.harmless={d / 'harmless_fit.txt'}"]
    return out


def test_select_carrier_saves_the_refusal_dimension_beside_the_carrier(planted: Path) -> None:
    folder = planted / "carriers"
    info = json.loads((folder / "refusal_dimension.json").read_text())
    assert info["format"] == "safetygeo.refusal_dimension"
    assert info["summary"]["source_finder"] == "dim+pca"
    assert CarrierSelection.load(folder).chosen is not None  # the selection still loads


def test_measure_frontier_writes_a_table_with_nulls(planted: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["measure-frontier", str(planted / "model"), "--carriers",
                              str(planted / "carriers"), *_sets(planted), "--finders",
                              "diff-in-means,pca", "--k", "1,2", "--strengths", "0.5,1",
                              "--n-null", "4", "--max-new-tokens", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    t = pd.read_parquet(tmp_path / "frontier.parquet")
    assert len(t) == 6  # diff-in-means k=1 × 2 strengths + pca k=1,2 × 2 strengths
    assert {"refusals", "kl", "null_refusals_mean", "p_refusals", "pareto"} <= set(t.columns)
    assert (t.k_null == 4).all()
    assert (tmp_path / "frontier.html").is_file()


@pytest.mark.parametrize("args, message", [
    (["--finders", "pca,foo"], "choose from"),
    (["--k", "0"], "positive integers"),
    (["--strengths", "1.5"], "strengths must lie"),
    (["--modes", "weird"], "choose from"),
])
def test_measure_frontier_validates_before_loading(planted: Path, tmp_path: Path, args: list[str],
                                                   message: str) -> None:
    res = runner.invoke(app, ["measure-frontier", str(tmp_path / "no-such-model"), "--carriers",
                              str(planted / "carriers"), *_sets(planted), *args])
    assert res.exit_code == 2 and message in res.output


def test_measure_frontier_needs_fit_sets_for_fitted_finders(planted: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["measure-frontier", str(tmp_path / "no-such-model"), "--carriers",
                              str(planted / "carriers"), *_sets(planted, fit=False),
                              "--finders", "pca"])
    assert res.exit_code == 2 and "fit.harmful" in res.output


def test_measure_frontier_sequential_nulls(planted: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["measure-frontier", str(planted / "model"), "--carriers",
                              str(planted / "carriers"), *_sets(planted, fit=False),
                              "--finders", "diff-in-means", "--k", "1", "--n-null", "32", "--sequential",
                              "--max-new-tokens", "1",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    t = pd.read_parquet(tmp_path / "frontier.parquet")
    assert len(t) == 1 and 16 <= int(t.k_null[0]) <= 32
