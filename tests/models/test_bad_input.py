"""Bad input at the models layer: each case a typed SafetyGeoError naming the input (or a
documented, tested acceptance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safetygeo.errors import CheckpointError, LayerIndexError, SafetyGeoError
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer


@pytest.fixture(scope="module")
def handle():
    return load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    m, t = tiny_model_and_tokenizer("llama", n_layers=1, d_model=16)
    d = tmp_path_factory.mktemp("m") / "tiny"
    m.save_pretrained(d)
    t.save_pretrained(d)
    return d


@pytest.mark.parametrize("model, text", [
    (123, "got int"),
    ((1, 2, 3), "tuple of 3"),
    (None, "got NoneType"),
])
def test_load_model_rejects_non_models(model, text):
    with pytest.raises(CheckpointError, match=text):
        load_model(model)


def test_load_model_rejects_a_module_without_config():
    _, tok = tiny_model_and_tokenizer("llama", n_layers=1, d_model=16)
    with pytest.raises(CheckpointError, match="Linear"):
        load_model(torch.nn.Linear(2, 2), tok)


@pytest.mark.parametrize("dtype", [16, 2.5, ["bf16"]])
def test_dtype_must_be_a_name(folder, dtype):
    with pytest.raises(CheckpointError, match="dtype"):
        load_model(str(folder), dtype=dtype)


def test_unknown_dtype_name_is_named(folder):
    with pytest.raises(CheckpointError, match="'fp7'"):
        load_model(str(folder), dtype="fp7")


def test_numpy_and_torch_integers_are_accepted_as_layers(handle):
    assert handle.check_layers(np.int64(1)) == (1,)
    assert handle.check_layers([np.int32(0), torch.tensor(2).item()]) == (0, 2)


@pytest.mark.parametrize("layers, text", [
    (99, "layer 99 out of range"), (1.5, "1.5"), ("first", "'first'"), ([0, "x"], "'x'"),
    ([], "empty"), (True, "True"),
])
def test_bad_layers_are_named(handle, layers, text):
    with pytest.raises(LayerIndexError, match=text):
        handle.check_layers(layers)
    assert issubclass(LayerIndexError, SafetyGeoError)
