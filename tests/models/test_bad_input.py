"""Bad input at the models layer: each case a typed SafetyGeoError naming the input (or a
documented, tested acceptance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safetygeo.errors import CheckpointError, DeviceError, LayerIndexError, SafetyGeoError
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


@pytest.mark.parametrize("device, text", [
    ("gpu", "unknown device 'gpu'"), (3.0, "got float"), ("cuda", "CUDA is not available"),
    ("cuda:0", "CUDA is not available"),
])
def test_bad_or_absent_devices_are_named(handle, monkeypatch, device, text):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=text):
        load_model((handle.model, handle.tokenizer), device=device)


def test_a_cuda_index_beyond_the_visible_devices(handle, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match=r"'cuda:3': only 1 CUDA device"):
        load_model((handle.model, handle.tokenizer), device="cuda:3")
    assert load_model((handle.model, handle.tokenizer), device="cpu").device.type == "cpu"


def test_overwritten_weights_fail_verify(folder, tmp_path):
    import shutil

    from safetygeo.models.checks import weight_hashes, weights_digest

    d = tmp_path / "copy"
    shutil.copytree(folder, d)
    digest, hashes = weights_digest(d), weight_hashes(d)
    assert set(hashes) == {"model.safetensors"}
    ref = load_model(str(d), verify=digest)  # the recorded digest matches
    before = [t.clone() for t in ref.model.state_dict().values()]  # (weights may be mmapped)
    w = d / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-64:] = bytes(64)  # overwrite the last tensor bytes: same size, still loadable
    w.write_bytes(bytes(raw))
    silently = load_model(str(d))  # without verify= the damage goes unnoticed
    assert any(not torch.equal(a, b) for a, b in zip(before,
                                                       silently.model.state_dict().values()))
    with pytest.raises(CheckpointError, match="do not match the recorded digest"):
        load_model(str(d), verify=digest)
    with pytest.raises(CheckpointError, match="'model.safetensors' does not match"):
        load_model(str(d), verify=hashes)
    with pytest.raises(CheckpointError, match="local checkpoint folder"):
        load_model((ref.model, ref.tokenizer), verify=digest)
    with pytest.raises(CheckpointError, match="mapping"):
        load_model(str(d), verify={})
