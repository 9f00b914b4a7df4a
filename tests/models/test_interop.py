"""The nnsight and TransformerLens backends give the native numbers, and leave the handle alone.

Tolerances (fp32, CPU, tiny models, left-padded batches of 4):

* nnsight wraps the *same* module and reads block / final-norm inputs from the same
  forward: observed max |diff| = 0 exactly. Asserted with ``ATOL_NNSIGHT = 1e-6``.
* TransformerLens runs a deep copy booted into a ``TransformerBridge`` with eager attention
  (the handle's model uses SDPA): observed max |diff| <= 1.5e-8. Asserted with
  ``ATOL_TLENS = 1e-5`` (room for BLAS differences), the same as the native-vs-HF tests.

Models are built here (not taken from ``tests.conftest``'s shared cache) because nnsight
instruments the modules it wraps; that must not leak into other test files.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import transformers

from safetygeo.activations import extract_activations
from safetygeo.models.batching import iter_batches
from safetygeo.models.hooks import capture_resid
from safetygeo.errors import BackendError
from safetygeo.models import ModelHandle, load_model
from safetygeo.models.nnsight_backend import capture_resid_nnsight, from_nnsight, to_nnsight
from safetygeo.models.tiny import ARCHS, build_tokenizer, tiny_model_and_tokenizer
from safetygeo.models.tlens_backend import (
    capture_resid_tlens,
    from_transformer_lens,
    to_transformer_lens,
)
from tests.conftest import GPT2_TEMPLATE, PROMPTS

ATOL_NNSIGHT = 1e-6
ATOL_TLENS = 1e-5
POSITIONS = "t_inst+post_instruction"
BACKENDS = ("nnsight", "transformer_lens")

# (backend, arch) -> upstream reason. Empty: every tiny family passes on nnsight 0.8.1 and
# transformer-lens 4.3.0. Add an entry (with the upstream issue) rather than loosening ATOL.
QUARANTINE: dict[tuple[str, str], str] = {}


def _cases() -> list:
    return [
        pytest.param(backend, arch, id=f"{backend}-{arch}", marks=(
            [pytest.mark.skip(reason=QUARANTINE[(backend, arch)])]
            if (backend, arch) in QUARANTINE else []
        ))
        for backend in BACKENDS for arch in ARCHS
    ]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """d_model=32 gains nothing from intra-op threads; on a loaded 2-core box OpenMP
    spin-waiting made this file ~15x slower (37 s vs 2 s). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.cache
def _weights(arch: str) -> tuple:
    return tiny_model_and_tokenizer(arch, n_layers=3, d_model=32)


def fresh_handle(arch: str = "llama") -> ModelHandle:
    """A handle on a private copy of the tiny model (interop may instrument its modules)."""
    model, tok = _weights(arch)
    kw = {"template": GPT2_TEMPLATE} if arch == "gpt2" else {}
    return load_model(copy.deepcopy(model), copy.deepcopy(tok), **kw)


def extract(handle: ModelHandle, backend: str, batch_size: int = 4):
    return extract_activations(handle, PROMPTS, positions=POSITIONS, batch_size=batch_size,
                               keep_vectors=True, progress=False, backend=backend)


def assert_same(a, b, atol: float) -> None:
    assert a.layers == b.layers and a.positions.offsets == b.positions.offsets
    torch.testing.assert_close(a.mean, b.mean, atol=atol, rtol=0)
    torch.testing.assert_close(a.vectors.double(), b.vectors.double(), atol=atol, rtol=0)


def snapshot(handle: ModelHandle) -> dict:
    return {
        "params": {k: v.detach().clone() for k, v in handle.model.state_dict().items()},
        "classes": [(n, type(m)) for n, m in handle.model.named_modules()],
        "attn": handle.model.config._attn_implementation,
        "padding_side": handle.tokenizer.padding_side,
        "tok_name": handle.tokenizer.name_or_path,
        "ids": handle.tokenizer(PROMPTS[0])["input_ids"],
    }


def assert_untouched(before: dict, handle: ModelHandle) -> None:
    after = snapshot(handle)
    assert after["classes"] == before["classes"]
    assert after["params"].keys() == before["params"].keys()
    for k, v in before["params"].items():
        assert torch.equal(after["params"][k], v), k
    for key in ("attn", "padding_side", "tok_name", "ids"):
        assert after[key] == before[key], key


# -- equality with the native backend -------------------------------------------------------
@pytest.mark.parametrize(("backend", "arch"), _cases())
def test_backend_matches_native_on_left_padded_batches(backend: str, arch: str) -> None:
    h = fresh_handle(arch)
    native = extract(h, "native")
    other = extract(h, backend)
    assert other.meta["backend"] == backend
    assert_same(other, native, ATOL_NNSIGHT if backend == "nnsight" else ATOL_TLENS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gpt2_padded_rows_equal_unpadded_prompts(backend: str) -> None:
    """Absolute positions: a wrong position_ids would shift every padded row of GPT-2."""
    h = fresh_handle("gpt2")
    batched = extract(h, backend, batch_size=4)
    single = extract(h, backend, batch_size=1)
    assert_same(batched, single, ATOL_TLENS)


@pytest.mark.parametrize("capture", [capture_resid_nnsight, capture_resid_tlens])
def test_capture_layer_subsets_and_shapes(capture) -> None:
    h = fresh_handle("llama")
    b = next(iter_batches(h.encode(PROMPTS[:3]).input_ids, 3, pad_id=0))
    for layers in [(0,), (1,), (2,), (3,), (0, 3), (1, 2)]:
        got = capture(h, b, layers, (-1, -3))
        ref = capture_resid(h, b, layers, (-1, -3))
        assert sorted(got) == list(layers)
        for layer in layers:
            assert got[layer].shape == (3, 2, 32) and got[layer].dtype == ref[layer].dtype
            torch.testing.assert_close(got[layer], ref[layer], atol=ATOL_TLENS, rtol=0)


# -- nnsight ---------------------------------------------------------------------------------
def test_nnsight_wraps_same_model_and_round_trips() -> None:
    h = fresh_handle("llama")
    nns = to_nnsight(h)
    assert nns._module is h.model and nns.tokenizer is not h.tokenizer
    assert to_nnsight(h) is nns and h.extra["nnsight"] is nns
    h2 = from_nnsight(nns)
    assert h2.model is h.model and to_nnsight(h2) is nns
    assert_same(extract(h2, "native"), extract(h, "native"), 0.0)
    assert_same(extract(h2, "nnsight"), extract(h, "native"), ATOL_NNSIGHT)


def test_from_user_built_nnsight_model() -> None:
    from nnsight.modeling.transformers import TransformersModel

    model, tok = _weights("qwen2")
    user = TransformersModel(copy.deepcopy(model), tokenizer=copy.deepcopy(tok))
    h = from_nnsight(user)
    assert h.model is user._module and h.tokenizer is user.tokenizer and h.arch.layers_path
    assert_same(extract(h, "nnsight"), extract(h, "native"), ATOL_NNSIGHT)


def test_from_nnsight_rejects_other_objects() -> None:
    with pytest.raises(BackendError, match="not an nnsight model"):
        from_nnsight(object())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_native_still_matches_hf_after_nnsight(arch: str) -> None:
    """nnsight's left-padding tokenizer setting and module instrumentation must not leak."""
    h = fresh_handle(arch)
    before = snapshot(h)
    extract(h, "nnsight")
    assert_untouched(before, h)
    stats = extract(h, "native")
    enc = h.encode(PROMPTS)
    ref = []
    for ids in enc.input_ids:
        with torch.no_grad():
            hs = h.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        cols = [len(ids) + o for o in stats.positions.offsets]
        ref.append(torch.stack(hs)[:-1, 0][:, cols])  # resid_pre of blocks 0..L-1
    L = h.n_layers
    torch.testing.assert_close(stats.vectors[:, :L].double(), torch.stack(ref).double(),
                               atol=ATOL_TLENS, rtol=0)


# -- TransformerLens -------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_to_transformer_lens_leaves_handle_model_unchanged(arch: str) -> None:
    h = fresh_handle(arch)
    before = snapshot(h)
    bridge = to_transformer_lens(h)
    extract(h, "transformer_lens")
    assert bridge.original_model is not h.model
    assert h.extra["transformer_lens"] is bridge and to_transformer_lens(h) is bridge
    assert_untouched(before, h)


def test_transformer_lens_round_trip_and_rebuild_after_weight_edit() -> None:
    h = fresh_handle("gpt2")
    bridge = to_transformer_lens(h)
    h2 = from_transformer_lens(bridge, template=GPT2_TEMPLATE)
    assert h2.model is bridge.original_model and to_transformer_lens(h2) is bridge
    assert_same(extract(h2, "native"), extract(h, "native"), ATOL_TLENS)
    assert_same(extract(h2, "transformer_lens"), extract(h, "native"), ATOL_TLENS)
    with torch.no_grad():  # an in-place weight edit makes the cached deep copy stale
        h.blocks[0].mlp.c_proj.weight.mul_(2.0)
    assert to_transformer_lens(h) is not bridge
    assert_same(extract(h, "transformer_lens"), extract(h, "native"), ATOL_TLENS)


def test_nnsight_then_transformer_lens_on_one_handle() -> None:
    h = fresh_handle("llama")
    a = extract(h, "nnsight")
    b = extract(h, "transformer_lens")
    c = extract(h, "nnsight")
    assert_same(a, b, ATOL_TLENS)
    assert_same(a, c, 0.0)


def test_unsupported_architecture_raises_backend_error() -> None:
    cfg = transformers.BioGptConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64,
                                    max_position_embeddings=64)
    h = load_model(transformers.AutoModelForCausalLM.from_config(cfg), build_tokenizer("llama"))
    with pytest.raises(BackendError, match="does not support BioGptForCausalLM"):
        to_transformer_lens(h)
    with pytest.raises(BackendError, match="does not support"):
        extract_activations(h, PROMPTS[:2], backend="transformer_lens", progress=False)
    assert "transformer_lens" not in h.extra
