from __future__ import annotations

from pathlib import Path

import pytest
import torch

from safetygeo.errors import CheckpointError, LayerIndexError
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer
from tests.conftest import tiny_handle


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tok = tiny_model_and_tokenizer("llama", n_layers=2, d_model=32)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-llama"
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def test_in_memory_handle_facts(any_handle) -> None:
    assert any_handle.n_layers == 3
    assert any_handle.d_model == 32
    assert any_handle.max_context == 256
    assert any_handle.dtype == torch.float32
    assert any_handle.describe()["n_layers"] == 3


def test_load_from_local_path_matches_in_memory(saved_checkpoint: Path) -> None:
    h = load_model(str(saved_checkpoint), dtype="float32")
    ref_model, _ = tiny_model_and_tokenizer("llama", n_layers=2, d_model=32)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        torch.testing.assert_close(h.model(ids).logits, ref_model(ids).logits)
    assert h.model_id == str(saved_checkpoint)
    assert h.chat_template().source == "tokenizer"


def test_dtype_option(saved_checkpoint: Path) -> None:
    assert load_model(str(saved_checkpoint), dtype="bf16").dtype == torch.bfloat16
    with pytest.raises(CheckpointError, match="unknown dtype"):
        load_model(str(saved_checkpoint), dtype="float8")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(str(tmp_path))


def test_checkpoint_without_safetensors_is_refused(saved_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pickle-only"
    bad.mkdir()
    (bad / "config.json").write_text((saved_checkpoint / "config.json").read_text())
    (bad / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        load_model(str(bad))


def test_corrupt_checkpoint(saved_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt"
    bad.mkdir()
    for f in saved_checkpoint.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 200])
    with pytest.raises(CheckpointError, match="could not load checkpoint"):
        load_model(str(bad))


def test_in_memory_model_needs_tokenizer() -> None:
    model, _ = tiny_model_and_tokenizer("llama", n_layers=2, d_model=32)
    with pytest.raises(CheckpointError, match="needs a tokenizer"):
        load_model(model)


def test_check_layers() -> None:
    h = tiny_handle("llama")
    assert h.check_layers("all") == (0, 1, 2, 3)
    assert h.check_layers([3, 0, 0]) == (0, 3)
    assert h.check_layers(-1) == (3,)
    for bad in (4, -5, [0, 7]):
        with pytest.raises(LayerIndexError, match="out of range"):
            h.check_layers(bad)
    with pytest.raises(LayerIndexError, match="ints"):
        h.check_layers(["1"])


def test_with_template_shares_model() -> None:
    h = tiny_handle("llama")
    h2 = h.with_template("Q: {instruction} A:")
    assert h2.model is h.model
    assert h2.format("x") == "Q: x A:"
    assert h.format("x") != h2.format("x")
