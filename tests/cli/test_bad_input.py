"""Bad input at the command line: every case exits with 2 and one line naming the flag or
file, before a model is loaded; nothing is a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from safetygeo.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    (d / "latin1.txt").write_bytes("Caf\xe9?\n".encode("latin-1"))
    (d / "ok.txt").write_text("How do I bake bread?\n")
    (d / "run.yaml").write_bytes("lr: 1\nx: \xe9\n".encode("latin-1"))
    (d / "a_file").write_text("x")
    return {"dir": d, "latin1": d / "latin1.txt", "ok": d / "ok.txt", "run": d / "run.yaml",
            "file": d / "a_file"}


CASES = [
    (["extract", "M", "--set", "h={latin1}"], "not UTF-8"),
    (["extract", "M", "--set", "h={ok}", "--out", "{file}"], "--out"),
    (["extract", "M", "--set", "h={ok}", "--device", "cuda"], "--device"),
    (["extract", "M", "--set", "h={ok}", "--device", "tpu"], "--device"),
    (["extract", "M", "--set", "h={ok}", "--positions", "-x"], "--positions"),
    (["select-carrier", "M", "--set", "harmful={ok}", "--set", "harmless={ok}", "--splits",
      "0.5,0.5"], "--splits"),
    (["select-carrier", "M", "--set", "harmful={ok}"], "harmless"),
    (["select-carrier", "M", "--set", "harmful={ok}", "--set", "harmless={ok}",
      "--refusal-token", "-3"], "integers"),
    (["sweep", "M", "--carriers", "{dir}", "--set", "harmful={ok}", "--set", "harmless={ok}",
      "--alphas", "inf"], "--alphas"),
    (["sweep", "M", "--carriers", "{dir}", "--set", "harmful={ok}", "--set", "harmless={ok}",
      "--ops", "scale"], "--ops"),
    (["sweep", "M", "--carriers", "{dir}", "--set", "harmful={ok}", "--set", "harmless={ok}"],
     "carrier-selection"),
    (["sweep", "M", "--carriers", "{dir}", "--set", "harmful={ok}", "--set", "harmless={ok}",
      "--heads", "two:1"], "--heads"),
    (["evaluate", "M", "--set", "harmful={ok}", "--judge", "gpt=x"], "--judge"),
    (["evaluate", "M", "--set", "harmful={ok}", "--candidate", "1:eoi-1"], "--candidate"),
    (["train", "M", "--method", "sft", "--config", "{run}"], "not UTF-8"),
    (["train", "M", "--method", "sft", "--set", "harmful={ok}", "--on-damaged", "delete"],
     "--on-damaged"),
    (["train", "M", "--method", "sft", "--set", "harmful={ok}", "--method-opt", "noequals"],
     "--method-opt"),
    (["train", "M", "--method", "sft", "--set", "harmful={ok}", "--max-steps", "0"],
     "--max-steps"),
    (["train", "M", "--method", "sft", "--set", "harmful={ok}", "--lora-r", "0"], "--lora-r"),
    (["train", "M", "--method", "sft", "--set", "harmful={ok}", "--bf16", "--fp16"], "--bf16"),
    (["attack-gcg", "M", "--set", "harmful={ok}"], "--target"),
    (["make-tiny", "{file}"], "not a folder"),
]


@pytest.mark.parametrize("args, text", CASES, ids=[" ".join(c[0][:1] + [c[1]]) for c in CASES])
def test_bad_cli_input(files, monkeypatch, args, text):
    import safetygeo.cli.common as common

    monkeypatch.setattr(common, "load_handle", lambda *a, **k: pytest.fail("model loaded"))
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    res = runner.invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert text in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output
