from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from safetygeo.activations import extract_activations, load_stats
from safetygeo.cli import app, parse_layers
from safetygeo.data import load_example
from safetygeo.models import load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny"
    res = runner.invoke(app, ["tiny-model", str(out), "--n-layers", "2", "--d-model", "32"])
    assert res.exit_code == 0, res.output
    return out


def test_extract_writes_artifacts_equal_to_the_api(ckpt: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, [
        "extract", str(ckpt), "-p", "example:harmful", "-p", "example:harmless",
        "--positions", "t_inst", "--layers", "0-2", "--out", str(tmp_path), "--batch-size", "4",
    ])
    assert res.exit_code == 0, res.output
    harmful = load_stats(tmp_path / "harmful.safetensors")
    assert harmful.count == 16 and harmful.layers == (0, 1, 2)
    assert harmful.meta["prompt_set"]["label"] == "harmful"
    ref = extract_activations(load_model(str(ckpt)), load_example("harmful"),
                              positions="t_inst", batch_size=4, progress=False)
    assert torch.equal(harmful.mean, ref.mean)
    assert (tmp_path / "harmless.json").is_file()


def test_info_prints_arch_and_template(ckpt: Path) -> None:
    res = runner.invoke(app, ["info", str(ckpt)])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout[res.stdout.index("{"):])
    assert info["n_layers"] == 2 and info["arch"]["layers"] == "model.layers"
    assert info["template"]["source"] == "tokenizer" and info["template"]["n_eoi"] > 0


def test_clear_errors(ckpt: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["extract", str(tmp_path / "missing"), "-p", "example:harmful"])
    assert res.exit_code == 2 and "CheckpointError" in res.output
    res = runner.invoke(app, ["extract", str(ckpt), "-p", "example:harmful", "--layers", "7",
                              "--out", str(tmp_path)])
    assert res.exit_code == 2 and "LayerIndexError" in res.output
    res = runner.invoke(app, ["extract", str(ckpt), "-p", str(tmp_path / "nope.txt")])
    assert res.exit_code == 2 and "nope.txt" in res.output


def test_parse_layers() -> None:
    assert parse_layers("0-2,5") == [0, 1, 2, 5]
    assert parse_layers("-1") == [-1]
    assert parse_layers(" all ") == "all"
    with pytest.raises(Exception, match="cannot parse"):
        parse_layers("a-b")


def test_carriers_command_on_a_planted_checkpoint(tmp_path: Path) -> None:
    from safetygeo.toy.planted import planted_refusal_model

    pm = planted_refusal_model()
    ckpt = tmp_path / "planted"
    pm.handle.model.save_pretrained(ckpt)
    pm.handle.tokenizer.save_pretrained(ckpt)
    (tmp_path / "harmful.txt").write_text("\n".join(pm.harmful))
    (tmp_path / "harmless.txt").write_text("\n".join(pm.harmless))
    out = tmp_path / "carriers"
    res = runner.invoke(app, ["carriers", str(ckpt), "--harmful", str(tmp_path / "harmful.txt"),
                              "--harmless", str(tmp_path / "harmless.txt"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "carriers.json").read_text())
    assert info["chosen"][0] in range(*pm.layer_band)
    assert len(info["candidates"]) == 5 * 8 and "admissible" in info["candidates"][0]
    import pandas as pd

    assert len(pd.read_parquet(out / "candidates.parquet")) == 40
    res = runner.invoke(app, ["carriers", str(ckpt), "--harmful", str(tmp_path / "harmful.txt"),
                              "--harmless", str(tmp_path / "harmless.txt"), "--splits", "1,0"])
    assert res.exit_code != 0 and "three fractions" in res.output


def test_sweep_command_over_saved_carriers(tmp_path: Path) -> None:
    from safetygeo.toy.planted import planted_refusal_model

    pm = planted_refusal_model()
    ckpt = tmp_path / "planted"
    pm.handle.model.save_pretrained(ckpt)
    pm.handle.tokenizer.save_pretrained(ckpt)
    (tmp_path / "harmful.txt").write_text("\n".join(pm.harmful))
    (tmp_path / "harmless.txt").write_text("\n".join(pm.harmless))
    sets = ["--harmful", str(tmp_path / "harmful.txt"), "--harmless", str(tmp_path / "harmless.txt")]
    res = runner.invoke(app, ["carriers", str(ckpt), *sets, "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "s"
    res = runner.invoke(app, ["sweep", str(tmp_path / "c"), str(ckpt), *sets, "--out", str(out),
                              "--layers", "1,2", "--n-null", "8", "--limit", "6",
                              "--candidate", "3:eoi-1"])
    assert res.exit_code == 0, res.output
    import pandas as pd

    table = pd.read_parquet(out / "sweep.parquet")
    names = set(table.direction)
    assert "candidate 3:eoi-1" in names and len(names) == 2
    assert any(n.startswith("carrier ") for n in names)
    assert len(table) == 2 * 3 * 3
    assert "<html>" in (out / "sweep.html").read_text()[:200].lower()
    res = runner.invoke(app, ["sweep", str(tmp_path / "c"), str(ckpt), *sets, "--n-null", "0"])
    assert res.exit_code != 0 and "n-null" in res.output
