"""Chat formatting and the token positions the geometry needs.

A :class:`ChatTemplate` splits a chat-formatted single-turn prompt into a fixed
``prefix``, the user's instruction, and a fixed ``suffix`` (the post-instruction template
tokens, e.g. ``<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n``). It is derived
from the tokenizer's own chat template by rendering a sentinel instruction, or given by the
user as a string with one ``{instruction}`` field.

Positions (Zhao et al. 2025; Arditi et al. 2024), as offsets from the end of the prompt:

* post-instruction positions: ``range(-n_eoi, 0)`` — the suffix tokens;
* ``t_inst``: ``-n_eoi - 1`` — the last token of the instruction.

Tokenization keeps those positions exact: the full string is tokenized; if its tail is
not exactly the separately tokenized suffix (a merge across the boundary), the prompt is
tokenized in two segments instead and a warning is issued once.

Example:
    >>> from safetygeo.models.tiny import build_tokenizer
    >>> tok = build_tokenizer("qwen2")
    >>> t = ChatTemplate.from_tokenizer(tok)
    >>> t.format("Hi")
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    >>> enc = t.encode(tok, ["Hi", "Write a poem."])
    >>> enc.n_eoi, len(enc.input_ids)
    (7, 2)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from safetygeo.errors import ChatTemplateError

_SENTINEL = "XQZSENTINELQZX"


@dataclass(frozen=True)
class EncodedPrompts:
    """Token ids of chat-formatted prompts (unpadded) with their shared position layout.

    Attributes:
        input_ids: one list of token ids per prompt.
        n_eoi: number of post-instruction tokens (identical for every prompt).
        segmented: per prompt, whether it had to be tokenized in two segments.
    """

    input_ids: list[list[int]]
    n_eoi: int
    segmented: list[bool]

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    @property
    def t_inst_offset(self) -> int:
        """Offset from the end of the last instruction token (``-n_eoi - 1``)."""
        return -self.n_eoi - 1


@dataclass(frozen=True)
class ChatTemplate:
    """A single-turn chat format: ``prefix + instruction + suffix``.

    Attributes:
        prefix: text before the instruction (including any BOS / system turn).
        suffix: the post-instruction template text (generation prompt included).
        source: ``"tokenizer"`` (derived from its chat template) or ``"override"``.
    """

    prefix: str
    suffix: str
    source: str = "override"

    @classmethod
    def from_string(cls, template: str) -> ChatTemplate:
        """Parse a user template with exactly one ``{instruction}`` field.

        Example:
            >>> ChatTemplate.from_string("User: {instruction}\\nAssistant:").suffix
            '\\nAssistant:'
        """
        if template.count("{instruction}") != 1:
            raise ChatTemplateError(
                "a template override must contain '{instruction}' exactly once, got "
                f"{template!r}"
            )
        prefix, suffix = template.split("{instruction}")
        return cls(prefix, suffix, source="override")

    @classmethod
    def from_tokenizer(
        cls, tokenizer: PreTrainedTokenizerBase, *, system: str | None = None
    ) -> ChatTemplate:
        """Derive prefix and suffix from ``tokenizer.apply_chat_template``.

        Args:
            tokenizer: a tokenizer with a ``chat_template``.
            system: optional system prompt, rendered as a system turn.

        Raises:
            ChatTemplateError: no chat template, the template rejects the messages, or the
                instruction is not placed verbatim exactly once.
        """
        if not getattr(tokenizer, "chat_template", None):
            raise ChatTemplateError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
                "pass template='User: {instruction}\\nAssistant:' (or any string with one "
                "'{instruction}' field) to format prompts"
            )
        messages: list[dict[str, Any]] = []
        if system is not None:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": _SENTINEL})
        try:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja errors, raise_exception(...) in templates
            raise ChatTemplateError(f"the tokenizer's chat template failed: {exc}") from exc
        if not isinstance(text, str) or text.count(_SENTINEL) != 1:
            raise ChatTemplateError(
                "the tokenizer's chat template does not place the instruction verbatim "
                "exactly once; pass an explicit template override"
            )
        prefix, suffix = text.split(_SENTINEL)
        return cls(prefix, suffix, source="tokenizer")

    def format(self, instruction: str) -> str:
        """The full prompt text for ``instruction``."""
        return f"{self.prefix}{instruction}{self.suffix}"

    def suffix_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        """Token ids of the post-instruction template (``n_eoi`` = their count)."""
        return list(tokenizer(self.suffix, add_special_tokens=False)["input_ids"])

    def encode(
        self, tokenizer: PreTrainedTokenizerBase, instructions: list[str] | tuple[str, ...]
    ) -> EncodedPrompts:
        """Tokenize formatted prompts so that the suffix is always the last ``n_eoi`` ids."""
        suffix_ids = self.suffix_ids(tokenizer)
        n_eoi = len(suffix_ids)
        full = tokenizer(
            [self.format(s) for s in instructions], add_special_tokens=False
        )["input_ids"]
        out: list[list[int]] = []
        segmented: list[bool] = []
        for instruction, ids in zip(instructions, full):
            ids = list(ids)
            if n_eoi == 0 or ids[-n_eoi:] == suffix_ids and len(ids) > n_eoi:
                out.append(ids)
                segmented.append(False)
                continue
            head = tokenizer(self.prefix + instruction, add_special_tokens=False)["input_ids"]
            out.append(list(head) + suffix_ids)
            segmented.append(True)
        if any(segmented):
            warnings.warn(
                f"{sum(segmented)} of {len(out)} prompts tokenize differently across the "
                "instruction/template boundary; they were tokenized in two segments so that "
                "post-instruction positions stay exact",
                stacklevel=2,
            )
        return EncodedPrompts(out, n_eoi, segmented)
