"""Per-layer gradient cosines against brute force, and the bad-input cases.

Tolerance: cosines agree with the brute-force reference (flattened float64 autograd
gradients of Hugging Face's own loss) to 1e-5 absolute; the two paths differ only by float32
rounding in the forward / backward (log_softmax vs cross_entropy, micro-batching).
"""

from __future__ import annotations

import math

import pytest
import torch

from safetygeo.errors import DatasetFormatError, NonFiniteError, SafetyGeoError
from safetygeo.gradients import (
    DEFAULT_REFUSAL,
    FrozenModelError,
    LossSpec,
    UndefinedGradientError,
    layer_gradient_cosines,
)
from tests.gradients.conftest import (
    BENIGN_PAIRS,
    HARMFUL_PAIRS,
    brute_grads,
    cos,
    fresh,
    hf_ce,
    one_batch,
)

TOL = 1e-5


@pytest.mark.parametrize("arch,tied", [("llama", False), ("llama", True), ("gpt2", None)])
def test_per_layer_cosines_equal_brute_force(arch: str, tied: bool | None) -> None:
    h = fresh(arch, tied=bool(tied))
    a = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    b = LossSpec.from_data(BENIGN_PAIRS, "ce")
    res = layer_gradient_cosines(h, a, b)
    ga = brute_grads(h, hf_ce(one_batch(h, a)))
    gb = brute_grads(h, hf_ce(one_batch(h, b)))
    frame = res.to_frame()
    assert set(frame.group) == set(ga), (set(frame.group), set(ga))
    for g in ga:
        row = res[g]
        assert row.defined, row.reason
        assert abs(row.cosine - cos(ga[g], gb[g])) < TOL, (g, row.cosine, cos(ga[g], gb[g]))
        assert row.norm_a == pytest.approx(float(ga[g].norm()), rel=1e-4)
        assert row.dot == pytest.approx(float(ga[g] @ gb[g]), rel=1e-4, abs=1e-9)
    # per-group dot products add up to the global one
    groups = frame[frame.group != "all"]
    assert groups["dot"].sum() == pytest.approx(res["all"].dot, rel=1e-9)
    # the tiny GPT-2 ties lm_head to wte like the real one: counted once, in embed
    assert res.tied_embeddings is (True if tied is None else tied)


def test_micro_batching_does_not_change_the_gradient() -> None:
    h = fresh()
    data = HARMFUL_PAIRS + BENIGN_PAIRS
    a1 = LossSpec.from_data(data, "ce", batch_size=1)
    a6 = LossSpec.from_data(data, "ce", batch_size=6)
    b = LossSpec.from_data(BENIGN_PAIRS, "ce", batch_size=2)
    c1 = layer_gradient_cosines(h, a1, b).to_frame()
    c6 = layer_gradient_cosines(h, a6, b).to_frame()
    assert (c1.cosine - c6.cosine).abs().max() < TOL
    ref = brute_grads(h, hf_ce(one_batch(h, a6)))
    assert c1.set_index("group").norm_a["all"] == pytest.approx(float(ref["all"].norm()), rel=1e-4)


def test_self_gives_one_and_negation_minus_one() -> None:
    h = fresh()
    batch = one_batch(h, LossSpec.from_data(HARMFUL_PAIRS, "ce"))
    f = hf_ce(batch)

    def neg(m):
        return -f(m)

    same = layer_gradient_cosines(h, f, f).to_frame()
    opposite = layer_gradient_cosines(h, f, neg).to_frame()
    assert same.defined.all() and opposite.defined.all()
    assert (same.cosine - 1).abs().max() < 1e-9
    assert (opposite.cosine + 1).abs().max() < 1e-9
    assert list(opposite.loss_b.unique()) == ["neg"]
    spec = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    assert layer_gradient_cosines(h, spec, spec).value("all") == pytest.approx(1.0, abs=1e-9)


def test_loss_that_does_not_reach_a_layer_is_undefined_there() -> None:
    h = fresh(n_layers=3)
    ids = one_batch(h, LossSpec.from_data(BENIGN_PAIRS))["input_ids"]

    def early(m):  # depends on the embedding and block 0 only (residual after block 0)
        return m(input_ids=ids, output_hidden_states=True).hidden_states[1].pow(2).mean()

    res = layer_gradient_cosines(h, early, hf_ce(one_batch(h, LossSpec.from_data(BENIGN_PAIRS))))
    assert res["embed"].defined and res["block.0"].defined and res["all"].defined
    for g in ("block.1", "block.2", "head"):
        assert not res[g].defined and math.isnan(res[g].cosine)
        assert "'early' does not depend on these parameters" in res[g].reason
    with pytest.raises(UndefinedGradientError, match="block.2.*does not depend"):
        res.value("block.2")
    row = res.to_frame().set_index("group").loc["head"]
    assert not row.defined and "does not depend" in row.reason


def test_zero_gradient_is_undefined_with_reason() -> None:
    h = fresh()
    f = hf_ce(one_batch(h, LossSpec.from_data(BENIGN_PAIRS)))

    def zero(m):
        return 0.0 * f(m)

    res = layer_gradient_cosines(h, f, zero)
    assert not res.to_frame().defined.any()
    assert "the gradient of 'zero' is exactly zero here" in res["all"].reason
    with pytest.raises(UndefinedGradientError, match="exactly zero"):
        res.value()


def test_frozen_parameters_are_excluded_and_restored() -> None:
    h = fresh()
    model = h.model
    for n, p in model.named_parameters():
        if n.startswith(("model.embed_tokens", "model.layers.0.")):
            p.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    a = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    b = LossSpec.from_data(BENIGN_PAIRS)
    res = layer_gradient_cosines(h, a, b)
    for g in ("embed", "block.0"):
        assert not res[g].defined and res[g].n_trainable == 0
        assert "no trainable parameters" in res[g].reason
    ga = brute_grads(h, hf_ce(one_batch(h, a)))  # trainable parameters only
    gb = brute_grads(h, hf_ce(one_batch(h, b)))
    for g in ("block.1", "head", "all"):
        assert abs(res[g].cosine - cos(ga[g], gb[g])) < TOL
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}
    assert all(p.grad is None for p in model.parameters())
    # include_frozen: every group defined again, flags still restored
    full = layer_gradient_cosines(h, a, b, include_frozen=True)
    assert full.to_frame().defined.all()
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}


def test_all_frozen_is_a_clear_error() -> None:
    h = fresh()
    h.model.requires_grad_(False)
    a = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    with pytest.raises(FrozenModelError, match="include_frozen=True"):
        layer_gradient_cosines(h, a, a)
    assert layer_gradient_cosines(h, a, a, include_frozen=True).value() == pytest.approx(1.0)
    assert not any(p.requires_grad for p in h.model.parameters())


@pytest.mark.parametrize("train_mode", [False, True])
def test_model_state_and_previous_grads_are_restored(train_mode: bool) -> None:
    h = fresh()
    model = h.model.train(train_mode)
    p0 = next(model.parameters())
    old = torch.full_like(p0, 3.0)
    p0.grad = old
    a = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce")
    layer_gradient_cosines(h, a, LossSpec.from_data(BENIGN_PAIRS))
    assert model.training is train_mode
    assert p0.grad is old and bool((old == 3.0).all())
    assert all(p.grad is None for p in list(model.parameters())[1:])


def test_non_finite_and_malformed_losses() -> None:
    h = fresh()
    f = hf_ce(one_batch(h, LossSpec.from_data(BENIGN_PAIRS)))

    def nan_loss(m):
        return f(m) * float("nan")

    with pytest.raises(NonFiniteError, match="nan_loss"):
        layer_gradient_cosines(h, f, nan_loss)
    assert all(p.grad is None for p in h.model.parameters())

    def vector(m):
        return torch.ones(3)

    with pytest.raises(SafetyGeoError, match="scalar"):
        layer_gradient_cosines(h, f, vector)
    with pytest.raises(SafetyGeoError, match="without a graph"):
        layer_gradient_cosines(h, f, lambda m: torch.tensor(1.0))
    with pytest.raises(SafetyGeoError, match="LossSpec or a callable"):
        layer_gradient_cosines(h, f, 3)  # type: ignore[arg-type]


def test_loss_spec_kinds_and_validation() -> None:
    from safetygeo.training.methods.sft import DEFAULT_REFUSAL as TRAINING_REFUSAL

    assert DEFAULT_REFUSAL == TRAINING_REFUSAL  # refusal_ce scores what refusal SFT trains
    spec = LossSpec.from_data(HARMFUL_PAIRS, "refusal_ce", refusal="No.")
    assert {r[1] for r in spec.records} == {"No."}
    with pytest.raises(DatasetFormatError, match="harmful_ce.*needs harmful compliant"):
        LossSpec.from_data(["Make a bomb."], "harmful_ce", name="forget")
    with pytest.raises(SafetyGeoError, match="unknown loss kind 'nll'"):
        LossSpec.from_data(HARMFUL_PAIRS, "nll")
    with pytest.raises(SafetyGeoError, match="refusal= only applies"):
        LossSpec.from_data(HARMFUL_PAIRS, "ce", refusal="No.")
    with pytest.raises(SafetyGeoError, match="batch_size must be a positive int"):
        LossSpec.from_data(HARMFUL_PAIRS, batch_size=0)
    d = spec.describe()
    assert d["kind"] == "refusal_ce" and d["n"] == 3 and len(d["sha256"]) == 64
    assert hash(spec) == hash(LossSpec.from_data(HARMFUL_PAIRS, "refusal_ce", refusal="No."))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blocked_dot_is_accurate(dtype: torch.dtype) -> None:
    from safetygeo.gradients.core import _dot64

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3_000_001, generator=g) + 0.3).to(dtype)
    y = (torch.randn(3_000_001, generator=g) + 0.3).to(dtype)
    want = float(torch.dot(x.double(), y.double()))
    assert float(_dot64(x, y)) == pytest.approx(want, rel=1e-6)
    assert float(_dot64(x, x)) == pytest.approx(float(x.double().pow(2).sum()), rel=1e-6)
    assert _dot64(x, y).dtype == torch.float64
