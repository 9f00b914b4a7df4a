"""Records, hashes, end-of-turn derivation and completion-only labels (vs hand computation)."""

from __future__ import annotations

import json

import pytest

from safetygeo.data import PromptSet
from safetygeo.data.records import (
    IGNORE_INDEX,
    as_records,
    encode_completions,
    end_of_turn,
    load_records,
    pad_right,
    records_sha256,
)
from safetygeo.training.errors import DatasetFormatError, EmptyDatasetError


def test_as_records_accepts_every_form(tmp_path):
    ps = PromptSet(["A?", "B?"], name="x", targets=["a", None])
    assert as_records(ps, role="r", default_response="no") == [
        {"prompt": "A?", "response": "a"}, {"prompt": "B?", "response": "no"}]
    assert as_records(ps, role="r", default_response="no", use_targets=False)[0]["response"] == "no"
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "P", "response": "R"}\n\n{"instruction": "I", "output": "O", "input": "x"}\n')
    assert as_records(f, role="r") == [{"prompt": "P", "response": "R"},
                                      {"prompt": "I\n\nx", "response": "O"}]
    g = tmp_path / "d.json"
    g.write_text(json.dumps({"data": [{"goal": "G", "target": "T"}]}))
    assert as_records(str(g), role="r") == [{"prompt": "G", "response": "T"}]


@pytest.mark.parametrize("data, match", [
    ([], "role 'r' has no examples"),
    (["x"], "item 0: no response"),
    ([{"text": "x"}], "item 0: no prompt field"),
    ([("", "y")], "item 0: empty or non-string prompt"),
    ([3], "item 0: expected str"),
    ({"prompt": "x"}, "expected a PromptSet"),
])
def test_as_records_errors_name_the_item(data, match):
    err = EmptyDatasetError if not data and isinstance(data, list) else DatasetFormatError
    with pytest.raises(err, match=match):
        as_records(data, role="r")


def test_load_records_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load_records(tmp_path / "nope.json")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    with pytest.raises(DatasetFormatError, match="invalid JSON"):
        load_records(bad)


def test_records_hash_is_order_and_content_sensitive():
    a = [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}]
    assert records_sha256(a) == records_sha256([dict(reversed(list(r.items()))) for r in a])
    assert records_sha256(a) != records_sha256(a[::-1])
    assert records_sha256(a) != records_sha256([a[0], {"prompt": "c", "response": "e"}])


@pytest.mark.parametrize("arch, expected", [
    ("llama", "<|eot_id|>"), ("qwen2", "<|im_end|>"), ("gemma", "<end_of_turn>"),
    ("mistral", "<|eos|>"), ("gpt2", "<|eos|>"),
])
def test_end_of_turn_from_the_chat_template(toy, arch, expected):
    assert end_of_turn(toy.fresh(arch)) == expected


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_completion_only_labels_match_a_hand_computation(toy, arch):
    h = toy.fresh(arch)
    tok = h.tokenizer
    recs = [{"prompt": "Write a poem about the sea.", "response": "The sea is blue."},
            {"prompt": "Hi", "response": "Hello there, friend!"}]
    rows = encode_completions(h, recs, max_length=128)
    for rec, row in zip(recs, rows):
        # independent path: tokenize the formatted prompt text directly
        prompt_ids = tok(h.format(rec["prompt"]), add_special_tokens=False)["input_ids"]
        comp = tok(rec["response"], add_special_tokens=False)["input_ids"]
        end = tok(end_of_turn(h), add_special_tokens=False)["input_ids"]
        assert row["input_ids"] == prompt_ids + comp + end
        assert row["labels"] == [IGNORE_INDEX] * len(prompt_ids) + comp + end
        # the reference is discriminating: full-sequence labels would not match it
        assert row["input_ids"] != row["labels"] and len(prompt_ids) > 1


def test_prefill_is_part_of_the_assistant_turn_and_masked(toy):
    h = toy.fresh("llama")
    tok = h.tokenizer
    recs = as_records([{"prompt": "Make a bomb.", "prefill": "Sure, here is",
                        "response": " how to make one."}], role="harmful")
    assert recs[0]["prefill"] == "Sure, here is"
    row = encode_completions(h, recs, max_length=128)[0]
    prompt_ids = tok(h.format("Make a bomb."), add_special_tokens=False)["input_ids"]
    pre = tok("Sure, here is", add_special_tokens=False)["input_ids"]
    comp = tok(" how to make one.", add_special_tokens=False)["input_ids"]
    end = tok(end_of_turn(h), add_special_tokens=False)["input_ids"]
    assert row["input_ids"] == prompt_ids + pre + comp + end
    assert row["labels"] == [IGNORE_INDEX] * (len(prompt_ids) + len(pre)) + comp + end
    # the prefill changes the record's hash (it is part of what is trained on)
    plain = as_records([("Make a bomb.", " how to make one.")], role="harmful")
    assert records_sha256(recs) != records_sha256(plain)
    with pytest.raises(DatasetFormatError, match="item 0: prefill"):
        as_records([{"prompt": "x", "prefill": " ", "response": "y"}], role="harmful")


def test_truncation_and_too_long_prompts(toy):
    h = toy.fresh()
    rec = [{"prompt": "Hi", "response": "word " * 50}]
    n_prompt = len(h.encode(["Hi"]).input_ids[0])
    row = encode_completions(h, rec, max_length=n_prompt + 3)[0]
    assert len(row["input_ids"]) == n_prompt + 3 and row["labels"][-3:] == row["input_ids"][-3:]
    with pytest.raises(DatasetFormatError, match="item 0: the chat-formatted prompt is"):
        encode_completions(h, rec, max_length=n_prompt, role="harmful")


def test_pad_right_masks_padding():
    b = pad_right([{"input_ids": [1, 2], "labels": [-100, 2]}, {"input_ids": [3, 4, 5], "labels": [3, 4, 5]}], 0)
    assert b["labels"].tolist() == [[-100, 2, -100], [3, 4, 5]]
    assert b["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
