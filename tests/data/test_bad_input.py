"""Bad input at the data layer: files that are not UTF-8, malformed records, bad entries —
each a typed error naming the file or the entry."""

from __future__ import annotations

import pytest

from safetygeo.data import PromptSet, load_prompt_set
from safetygeo.data.records import as_records, load_records
from safetygeo.errors import DatasetFormatError, PromptSetFormatError, SafetyGeoError

LATIN1 = "Caf\xe9 au lait?\n".encode("latin-1")


@pytest.mark.parametrize("name, spec", [
    ("p.txt", "{p}"), ("p.jsonl", "{p}"), ("p.json", "{p}"), ("p.csv", "{p}"),
    ("p.txt", "lines={p}"), ("p.jsonl", "jsonl={p}"),
])
def test_non_utf8_prompt_files_are_named(tmp_path, name, spec):
    p = tmp_path / name
    p.write_bytes(b"prompt\n" + LATIN1 if name.endswith(".csv") else LATIN1)
    with pytest.raises(PromptSetFormatError, match=name):
        load_prompt_set(spec.format(p=p))


def test_non_utf8_training_records_are_named(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_bytes(b'{"prompt": "' + "Caf\xe9".encode("latin-1") + b'", "response": "x"}\n')
    with pytest.raises(DatasetFormatError, match="train.jsonl.*not UTF-8"):
        load_records(p)


@pytest.mark.parametrize("prompts", [["a", None], ["a", ""], ["a", 3]])
def test_prompt_set_rejects_bad_entries(prompts):
    with pytest.raises(SafetyGeoError):
        PromptSet(prompts, name="x")


def test_records_missing_response_are_named():
    with pytest.raises(DatasetFormatError, match="response"):
        as_records([{"prompt": "Hi"}], role="harmless")


def test_unknown_format_kind_is_named(tmp_path):
    with pytest.raises(PromptSetFormatError, match="'advbenchh'"):
        load_prompt_set("advbenchh=data.csv")


@pytest.mark.parametrize("name, data", [
    ("p.txt", b"fine prompt\nbad\x00prompt\n"),
    ("p.jsonl", b'{"prompt": "fine"}\n{"prompt": "bad\\u0000prompt"}\n'),
    ("p.csv", b"prompt\nfine\nbad\x00prompt\n"),
])
def test_prompt_files_with_a_nul_byte_are_named(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(PromptSetFormatError, match=rf"{name}.*NUL byte"):
        load_prompt_set(str(p))


def test_prompt_set_rejects_a_nul_byte():
    with pytest.raises(PromptSetFormatError, match="index 1 contains a NUL byte at offset 3"):
        PromptSet(["fine", "bad\x00"], name="x")
