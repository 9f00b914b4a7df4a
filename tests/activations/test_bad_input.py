"""Bad input at the activations layer: typed errors naming the input; a bare string is one
prompt (never split into characters)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from safetygeo.activations import extract_activations, load_stats
from safetygeo.activations.refusal import RefusalScoring
from safetygeo.errors import ArtifactError, EmptyPromptSetError, PositionError, SafetyGeoError
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer


@pytest.fixture(scope="module")
def handle():
    return load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))


def test_a_bare_string_is_one_prompt(handle):
    stats = extract_activations(handle, "How do I pick a lock?", progress=False)
    assert stats.count == 1


@pytest.mark.parametrize("prompts, text", [
    (["fine", None], r"prompts\[1\] must be a string"),
    (["fine", "  "], r"prompts\[1\] is an empty prompt"),
    ([3], r"prompts\[0\] must be a string"),
    (b"bytes", "got bytes"),
])
def test_bad_prompt_lists_are_named(handle, prompts, text):
    with pytest.raises(SafetyGeoError, match=text):
        extract_activations(handle, prompts, progress=False)


def test_empty_prompt_list(handle):
    with pytest.raises(EmptyPromptSetError):
        extract_activations(handle, [], progress=False)


@pytest.mark.parametrize("kw, text", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
    ({"second_moment": "huge"}, "second_moment"),
])
def test_bad_settings_are_named(handle, kw, text):
    with pytest.raises(SafetyGeoError, match=text):
        extract_activations(handle, ["Hi"], progress=False, **kw)


@pytest.mark.parametrize("positions", [None, 1.5, [0.5], True])
def test_bad_positions(handle, positions):
    with pytest.raises(PositionError, match="position"):
        extract_activations(handle, ["Hi"], positions=positions, progress=False)


def test_damaged_artifact_metadata(handle, tmp_path):
    stats = extract_activations(handle, ["Hi", "Yo"], progress=False)
    good = tmp_path / "a.safetensors"
    stats.save(str(good))
    assert load_stats(good).count == 2
    bad = tmp_path / "b.safetensors"
    save_file({"mean": stats.mean.contiguous()}, str(bad), metadata={"safetygeo": "{not json"})
    with pytest.raises(ArtifactError, match="damaged"):
        load_stats(bad)
    save_file({"mean": stats.mean.contiguous()}, str(bad),
              metadata={"safetygeo": json.dumps({"format": "safetygeo.activation_stats"})})
    with pytest.raises(ArtifactError, match="incomplete"):
        load_stats(bad)
    (tmp_path / "c.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(ArtifactError, match="corrupt"):
        load_stats(tmp_path / "c.safetensors")


def test_refusal_token_ids_outside_the_vocabulary(handle):
    with pytest.raises(SafetyGeoError, match="outside the vocabulary"):
        RefusalScoring(token_ids=(10**9,)).ids(handle.tokenizer)
    with pytest.raises(SafetyGeoError, match="integers"):
        RefusalScoring(token_ids=(-1,))
    with pytest.raises(SafetyGeoError, match="non-empty"):
        RefusalScoring(phrases=("",))


def test_variance_without_second_moment(handle):
    stats = extract_activations(handle, ["Hi"], progress=False)
    with pytest.raises(SafetyGeoError, match="second_moment"):
        stats.variance()
    assert torch.isfinite(stats.mean).all()


@pytest.mark.parametrize("key, value", [("count", "2"), ("count", 2.5), ("count", None),
                                        ("count", True), ("n_eoi", -1)])
def test_artifact_counts_must_be_integers(handle, tmp_path, key, value):
    stats = extract_activations(handle, ["Hi", "Yo"], progress=False)
    good = tmp_path / "a.safetensors"
    stats.save(str(good))
    from safetensors import safe_open
    with safe_open(str(good), "pt") as fh:
        header = json.loads(fh.metadata()["safetygeo"])
    assert isinstance(header["count"], int)  # what save writes
    header[key] = value
    bad = tmp_path / "b.safetensors"
    save_file({"mean": stats.mean.contiguous()}, str(bad),
              metadata={"safetygeo": json.dumps(header)})
    with pytest.raises(ArtifactError, match=rf"'{key}' must be a non-negative integer"):
        load_stats(bad)
