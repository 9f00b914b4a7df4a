"""Refusal tokens on a lower-case word tokenizer: the phrases' lower-cased first words are
used as markers, with a warning naming them; nothing at all is a one-line error."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from safetygeo.activations.refusal import refusal_token_ids
from safetygeo.errors import SafetyGeoError


def _word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["[UNK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_lower_case_tokenizer_falls_back_to_markers_with_a_warning() -> None:
    tok = _word_tokenizer(["i", "cannot", "sorry", "help", "the"])
    with pytest.warns(UserWarning, match=r"lower-cased first words.*'i', 'sorry'"):
        ids = refusal_token_ids(tok)
    assert tok.convert_ids_to_tokens(ids) == ["i", "sorry"]


def test_no_token_and_no_marker_is_a_clear_error() -> None:
    tok = _word_tokenizer(["help", "the"])
    with pytest.raises(SafetyGeoError, match="--refusal-token"):
        refusal_token_ids(tok)
