from __future__ import annotations

import math

import pytest
import torch

from safetygeo.activations.refusal import (
    RefusalScoring,
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


def test_refusal_scoring_phrases_ids_and_round_trip() -> None:
    tok = build_tokenizer("llama")
    default = RefusalScoring()
    assert default.ids(tok) == refusal_token_ids(tok)
    by_phrase = RefusalScoring(phrases=("Sorry",))
    assert by_phrase.ids(tok) == refusal_token_ids(tok, ["Sorry"])
    assert RefusalScoring(phrases="Sorry") == by_phrase  # a bare string is one phrase
    by_ids = RefusalScoring(token_ids=[7, 5])
    assert by_ids.ids(tok) == [7, 5] and by_ids.token_ids == (7, 5)  # ids win over phrases
    for s in (default, by_phrase, by_ids):
        assert RefusalScoring.from_dict(s.to_dict()) == s
    assert by_ids.to_dict() == {"phrases": list(default.phrases), "token_ids": [7, 5]}
    for bad in (dict(phrases=()), dict(phrases=("",)), dict(token_ids=()),
                dict(token_ids=(-1,)), dict(token_ids=(True,)), dict(token_ids=(1.5,))):
        with pytest.raises(SafetyGeoError):
            RefusalScoring(**bad)
    with pytest.raises(SafetyGeoError, match="outside the vocabulary"):
        RefusalScoring(token_ids=(len(tok),)).ids(tok)
    with pytest.raises(SafetyGeoError, match="unknown refusal-scoring keys"):
        RefusalScoring.from_dict({"phrases": ["No"], "ids": [1]})


def test_refusal_score_uses_the_given_scoring() -> None:
    pm = planted_refusal_model()
    i_ids = refusal_token_ids(pm.handle.tokenizer, ["I cannot"])
    by_ids = refusal_score(pm.handle, pm.harmful[:4], scoring=RefusalScoring(token_ids=i_ids))
    by_phrase = refusal_score(pm.handle, pm.harmful[:4],
                              scoring=RefusalScoring(phrases=("I cannot",)))
    assert torch.equal(by_ids, by_phrase) and float(by_ids.min()) > 2.0
    other = refusal_score(pm.handle, pm.harmful[:4], scoring=RefusalScoring(phrases=("Sorry",)))
    assert float(other.max()) < 0  # the planted model never starts with "Sorry"
    with pytest.raises(TypeError):
        refusal_score(pm.handle, pm.harmful[:4], token_ids=i_ids)  # type: ignore[call-arg]
