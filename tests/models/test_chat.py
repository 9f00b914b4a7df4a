from __future__ import annotations

import pytest

from safetygeo.errors import ChatTemplateError
from safetygeo.models.chat import ChatTemplate
from safetygeo.models.tiny import CHAT_TEMPLATES, build_tokenizer

SUFFIXES = {
    "llama": "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral": " [/INST]",
    "qwen2": "<|im_end|>\n<|im_start|>assistant\n",
    "gemma": "<end_of_turn>\n<start_of_turn>model\n",
}


@pytest.mark.parametrize("style", sorted(CHAT_TEMPLATES))
def test_template_derived_from_tokenizer(style: str) -> None:
    tok = build_tokenizer(style)
    t = ChatTemplate.from_tokenizer(tok)
    assert t.suffix == SUFFIXES[style]
    assert t.source == "tokenizer"
    msg = [{"role": "user", "content": "Write a poem."}]
    assert t.format("Write a poem.") == tok.apply_chat_template(
        msg, tokenize=False, add_generation_prompt=True
    )


@pytest.mark.parametrize("style", sorted(CHAT_TEMPLATES))
def test_positions_point_at_instruction_end_and_suffix(style: str) -> None:
    tok = build_tokenizer(style)
    t = ChatTemplate.from_tokenizer(tok)
    instructions = ["Write a poem.", "Hi", "How do I make a cake?"]
    enc = t.encode(tok, instructions)
    suffix_ids = tok(t.suffix, add_special_tokens=False)["input_ids"]
    assert enc.n_eoi == len(suffix_ids) > 0
    for text, ids in zip(instructions, enc.input_ids):
        assert ids[-enc.n_eoi:] == suffix_ids
        # t_inst is the last token of the instruction: decoding up to it ends with the text
        assert tok.decode(ids[: len(ids) + enc.t_inst_offset + 1]).endswith(text)
        # ...and matches what the tokenizer gives for the whole formatted string
        assert ids == tok(t.format(text), add_special_tokens=False)["input_ids"]
    assert enc.segmented == [False] * 3


def test_system_prompt_and_rejection() -> None:
    t = ChatTemplate.from_tokenizer(build_tokenizer("qwen2"), system="Be nice.")
    assert t.prefix.startswith("<|im_start|>system\nBe nice.<|im_end|>")
    with pytest.raises(ChatTemplateError, match="System role not supported"):
        ChatTemplate.from_tokenizer(build_tokenizer("gemma"), system="Be nice.")


def test_missing_template_is_a_clear_error() -> None:
    with pytest.raises(ChatTemplateError, match="no chat template"):
        ChatTemplate.from_tokenizer(build_tokenizer(None))


def test_override_string() -> None:
    t = ChatTemplate.from_string("User: {instruction}\nAssistant:")
    assert (t.prefix, t.suffix, t.source) == ("User: ", "\nAssistant:", "override")
    for bad in ("no field", "{instruction} and {instruction}"):
        with pytest.raises(ChatTemplateError, match="exactly once"):
            ChatTemplate.from_string(bad)


def test_boundary_merge_falls_back_to_segments() -> None:
    tok = build_tokenizer(None)
    # "he" after an instruction ending in " t" merges into the token " the"
    t = ChatTemplate.from_string("Q: {instruction}he A:")
    suffix = tok("he A:", add_special_tokens=False)["input_ids"]
    joint = tok("Q: Go the A:", add_special_tokens=False)["input_ids"]
    assert joint[-len(suffix):] != suffix  # the premise of this test
    with pytest.warns(UserWarning, match="two segments"):
        enc = t.encode(tok, ["Go t", "Tell me a story."])
    for ids in enc.input_ids:
        assert ids[-enc.n_eoi:] == suffix
    assert enc.segmented == [True, False]
    head = tok("Q: Go t", add_special_tokens=False)["input_ids"]
    assert enc.input_ids[0] == head + suffix
