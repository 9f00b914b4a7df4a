from __future__ import annotations

import math

import pytest
import torch

from safetygeo.activations.refusal import (
    refusal_score,
    refusal_score_from_logprobs,
    refusal_token_ids,
)
from safetygeo.errors import SafetyGeoError
from safetygeo.models.tiny import build_tokenizer
from safetygeo.toy.planted import planted_refusal_model


def test_score_is_log_odds_of_refusal_mass() -> None:
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    got = refusal_score_from_logprobs(p.log(), [0, 2])
    assert math.isclose(float(got), math.log(0.4 + 1e-8) - math.log(0.6 + 1e-8), rel_tol=1e-6)
    with pytest.raises(SafetyGeoError):
        refusal_score_from_logprobs(p.log(), [])


def test_tokens_derived_from_the_tokenizer() -> None:
    tok = build_tokenizer("llama")
    ids = refusal_token_ids(tok, ["I cannot", "Sorry"])
    assert tok.convert_ids_to_tokens(ids)[0] == "I"
    assert all(tok.decode([i]).strip() for i in ids)  # never a bare whitespace token
    assert ids == sorted(set(ids), key=ids.index)
    with pytest.raises(SafetyGeoError, match="empty"):
        refusal_token_ids(tok, [])


def test_planted_model_refuses_harmful_only() -> None:
    pm = planted_refusal_model()
    harmful = refusal_score(pm.handle, pm.harmful)
    harmless = refusal_score(pm.handle, pm.harmless)
    assert float(harmful.min()) > 2.0 > -2.0 > float(harmless.max())
    off = planted_refusal_model(plant=False)
    assert abs(float(refusal_score(off.handle, off.harmful).mean())) > 2.0  # no refusal
    assert float(refusal_score(off.handle, off.harmful).mean()) < 0


def test_unknown_first_tokens_are_not_refusal_tokens() -> None:
    from safetygeo.toy.world import ToyWorld

    tok = ToyWorld().tokenizer()  # word-level: "sorry", "unfortunately" ... are <unk>
    ids = refusal_token_ids(tok)
    assert tok.unk_token_id not in ids
    assert tok.convert_ids_to_tokens(ids) == ["i"]  # "I cannot" lower-cased by the tokenizer
    with pytest.raises(SafetyGeoError, match="known token"):
        refusal_token_ids(tok, ["Unfortunately", "Apologies"])
