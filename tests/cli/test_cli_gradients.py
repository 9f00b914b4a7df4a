"""`safetygeo compare-gradients` / `measure-g-effect` (and the hidden aliases `gradients`,
`g-effect`): outputs equal the API, inputs are validated before the model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from safetygeo.cli import app
from safetygeo.gradients import LossSpec, UnlearningObjective, g_effect, layer_gradient_cosines
from safetygeo.models import load_model
from tests.gradients.conftest import BENIGN_PAIRS, HARMFUL_PAIRS, fresh


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("grad_cli")
    h = fresh()
    h.model.save_pretrained(d / "tiny")
    h.tokenizer.save_pretrained(d / "tiny")
    out = {"model": d / "tiny"}
    for name, pairs in (("harm", HARMFUL_PAIRS), ("benign", BENIGN_PAIRS)):
        p = d / f"{name}.jsonl"
        p.write_text("".join(json.dumps({"prompt": q, "response": r}) + "\n" for q, r in pairs))
        out[name] = p
    prompts = d / "harmful.txt"
    prompts.write_text("\n".join(q for q, _ in HARMFUL_PAIRS) + "\n")
    out["prompts"] = prompts
    return out


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("verb", ["compare-gradients", "gradients"])
def test_compare_gradients_equals_the_api(files, tmp_path, verb) -> None:
    out = tmp_path / "out"
    r = _run(verb, files["model"], "--set", f"a={files['harm']}", "--set", f"b={files['prompts']}",
             "--loss-a", "harmful_ce", "--loss-b", "refusal_ce", "--out", out)
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "gradient_cosines.parquet")
    assert (out / "gradient_cosines.html").stat().st_size > 10_000
    h = load_model(str(files["model"]))
    api = layer_gradient_cosines(h, LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce"),
                                 LossSpec.from_data([q for q, _ in HARMFUL_PAIRS], "refusal_ce"))
    want = api.to_frame().set_index("group").cosine
    got = df.set_index("group").cosine
    assert (got - want).abs().max() < 1e-9
    assert set(df.loss_a) == {"a:harmful_ce"} and set(df.loss_b) == {"b:refusal_ce"}
    meta = json.loads((out / "gradient_cosines.json").read_text())
    assert meta["loss_b"]["kind"] == "refusal_ce" and meta["loss_b"]["n"] == len(HARMFUL_PAIRS)


@pytest.mark.parametrize("verb", ["measure-g-effect", "g-effect"])
def test_measure_g_effect_equals_the_api(files, tmp_path, verb) -> None:
    out = tmp_path / "out"
    r = _run(verb, files["model"], "--forget", files["harm"], "--retain", files["benign"],
             "--objective", "ga", "--objective", "npo:0.5", "--out", out, "--tokens", 2)
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "g_effect.parquet")
    assert set(df.objective) == {"ga", "npo"}
    h = load_model(str(files["model"]))
    forget = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    retain = LossSpec.from_data(BENIGN_PAIRS)
    for obj in (UnlearningObjective("ga"), UnlearningObjective("npo", 0.5)):
        api = g_effect(h, obj, forget, retain).to_frame().set_index(["risk", "group"]).g_effect
        got = df[df.objective == obj.name].set_index(["risk", "group"]).g_effect
        assert ((got - api).abs() <= 1e-9 * api.abs().max()).all()
    tw = pd.read_parquet(out / "token_weights.parquet")
    assert set(tw.example) == {0, 1} and set(tw.objective) == {"ga", "npo"}
    assert "< 0 on retain = damages" in r.output


def test_aliases_are_hidden_in_help() -> None:
    r = _run("--help")
    listed = {line.split()[0] for line in r.output.splitlines() if line.startswith("  ") and line.split()}
    assert {"compare-gradients", "measure-g-effect"} <= listed
    assert not {"gradients", "g-effect"} & listed


@pytest.mark.parametrize("args,needle", [
    (["compare-gradients", "--set", "a=example:harmful"], "pass exactly --set a=SPEC and --set b=SPEC"),
    (["compare-gradients", "--set", "a=example:harmful", "--set", "b=example:harmless",
      "--loss-a", "nll"], "'nll'; use one of ce, refusal_ce, harmful_ce"),
    (["compare-gradients", "--set", "a=example:harmful", "--set", "b=example:harmless"],
     "needs responses"),
    (["compare-gradients", "--set", "a=missing.jsonl", "--set", "b=example:harmless",
      "--loss-a", "refusal_ce"], "missing.jsonl"),
    (["compare-gradients", "--set", "a=example:harmful", "--set", "b=example:harmless",
      "--refusal", "No."], "--refusal only applies"),
    (["measure-g-effect", "--forget", "example:harmful", "--retain", "example:harmless",
      "--objective", "rmu"], "unknown unlearning objective 'rmu'"),
    (["measure-g-effect", "--forget", "example:harmful", "--retain", "example:harmless",
      "--objective", "npo:x"], "beta 'x' is not a number"),
    (["measure-g-effect", "--forget", "example:harmful", "--retain", "example:harmless",
      "--objective", "ga:0.5"], "'ga' has no beta"),
    (["measure-g-effect", "--forget", "example:harmful", "--retain", "example:harmless",
      "--reference", "./no-such-model"], "not a checkpoint folder"),
])
def test_bad_input_is_refused_before_the_model_loads(args, needle) -> None:
    # MODEL does not exist: an error about it would mean the model was loaded first
    r = _run(args[0], "./no-such-checkpoint", *args[1:])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert needle in text, text
    assert "no-such-checkpoint" not in text
