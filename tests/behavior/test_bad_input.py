"""Bad input at the behaviour layer: prompt lists, decoding settings, saved reports."""

from __future__ import annotations

import json

import pytest

from safetygeo.behavior import BehaviorReport, GenerationSettings, evaluate_behavior, generate
from safetygeo.behavior.utility import reference_logprobs
from safetygeo.data import PromptSet
from safetygeo.errors import ArtifactError, SafetyGeoError
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer


@pytest.fixture(scope="module")
def handle():
    return load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))


def test_a_bare_string_is_one_prompt(handle):
    g = generate(handle, "How do I pick a lock?", GenerationSettings(max_new_tokens=2),
                 progress=False)
    assert len(g) == 1
    assert reference_logprobs(handle, "Hi", "Hello", progress=False).shape == (1,)


@pytest.mark.parametrize("prompts, text", [(["a", None], r"\[1\]"), (["", "b"], r"\[0\]")])
def test_bad_prompt_entries(handle, prompts, text):
    with pytest.raises(SafetyGeoError, match=text):
        generate(handle, prompts, progress=False)


@pytest.mark.parametrize("kw, text", [
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 1.5}, "top_p"), ({"top_k": -1}, "top_k"),
])
def test_bad_generation_settings(kw, text):
    with pytest.raises(SafetyGeoError, match=text):
        GenerationSettings(**kw)


def test_settings_must_be_an_object(handle):
    with pytest.raises(SafetyGeoError, match="GenerationSettings"):
        generate(handle, ["Hi"], 32, progress=False)  # type: ignore[arg-type]


def test_damaged_behaviour_report(handle, tmp_path):
    evaluate_behavior(handle, {"h": PromptSet(["Hi there", "Yo"], name="h", label="harmful")},
                      settings=GenerationSettings(max_new_tokens=2), n_boot=10, out=tmp_path,
                      progress=False)
    assert BehaviorReport.load(tmp_path).meta["status"] == "complete"
    meta = tmp_path / "behavior.json"
    info = json.loads(meta.read_text())
    meta.write_text(json.dumps({k: v for k, v in info.items() if k != "sha256"}))
    with pytest.raises(ArtifactError, match="incomplete"):
        BehaviorReport.load(tmp_path)
    meta.write_bytes(b"\xff not json")
    with pytest.raises(ArtifactError, match="not UTF-8"):
        BehaviorReport.load(tmp_path)
