"""Training examples: (prompt, completion) records, their hashes, and how they are tokenized.

A *record* is a plain ``{"prompt": ..., "response": ...}`` dict of strings. Methods turn
whatever the user passes for a data role (a :class:`~safetygeo.data.PromptSet`, a list of
prompts, ``(prompt, response)`` tuples or dicts, or a JSON / JSONL file of such objects) into
records with :func:`as_records`; the trajectory manifest stores :func:`records_sha256` of
exactly the records trained on.

Tokenization (:func:`encode_completions`) matches the geometry code: the prompt is
chat-formatted and tokenized by :meth:`ModelHandle.encode` (the same ids, ``t_inst`` and
post-instruction positions the activation code sees), then the completion is tokenized on
its own and followed by the chat template's end-of-turn text (:func:`end_of_turn`), which
is what the model would emit after the prompt. Labels are ``-100`` on every prompt token:
the loss is on completion tokens only (TRL's "completion-only loss").

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("qwen2", n_layers=2, d_model=32))
    >>> recs = as_records(["Make a bomb."], role="harmful", default_response="I cannot.")
    >>> recs
    [{'prompt': 'Make a bomb.', 'response': 'I cannot.'}]
    >>> row = encode_completions(h, recs, max_length=64)[0]
    >>> n_prompt = len(h.encode(["Make a bomb."]).input_ids[0])
    >>> row["labels"][:n_prompt] == [-100] * n_prompt, end_of_turn(h)
    (True, '<|im_end|>')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from safetygeo._io import read_text
from safetygeo.data.prompts import PromptSet
from safetygeo.errors import DatasetFormatError, EmptyDatasetError
from safetygeo.models.handle import ModelHandle

Record = dict[str, str]  # "prompt", "response" and optionally "prefill"

#: Keys accepted for the prompt / response of a record (first match wins).
PROMPT_KEYS: tuple[str, ...] = ("prompt", "instruction", "goal", "behavior", "Behavior")
RESPONSE_KEYS: tuple[str, ...] = ("response", "completion", "output", "target", "answer")

IGNORE_INDEX = -100
_SENTINEL = "XQZREPLYQZX"


def _pick(rec: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        if k in rec and rec[k] is not None:
            return rec[k]
    return None


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``.json`` list (or ``{"data": [...]}``) or a ``.jsonl`` file of objects.

    Raises:
        DatasetFormatError: missing file, invalid JSON, or not a list of objects.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetFormatError(f"training data file {str(p)!r} does not exist")
    text = read_text(p, what="training data file", error=DatasetFormatError)
    try:
        if p.suffix.lower() == ".jsonl":
            recs = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            recs = json.loads(text)
            if isinstance(recs, dict) and isinstance(recs.get("data"), list):
                recs = recs["data"]
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{str(p)!r}: invalid JSON ({exc})") from exc
    if not isinstance(recs, list) or not all(isinstance(r, (dict, str)) for r in recs):
        raise DatasetFormatError(f"{str(p)!r}: expected a list of objects (or strings)")
    return recs


def as_records(
    data: Any,
    *,
    role: str,
    default_response: str | None = None,
    use_targets: bool = True,
) -> list[Record]:
    """Normalize one data role into ``{"prompt", "response"}`` records.

    Args:
        data: a :class:`PromptSet` (responses from its ``targets`` when ``use_targets``),
            a path to a JSON / JSONL file, or a sequence of prompt strings,
            ``(prompt, response)`` pairs or mappings (prompt key one of
            :data:`PROMPT_KEYS`, response key one of :data:`RESPONSE_KEYS`; a non-empty
            Alpaca ``input`` is appended to the prompt after a blank line).
        role: the data role's name (for error messages).
        default_response: response for items without one (e.g. a refusal); ``None``
            makes a missing response an error.
        use_targets: take responses from a PromptSet's ``targets``.

    Raises:
        EmptyDatasetError: no examples.
        DatasetFormatError: an item has no prompt, or no response and no default.

    Example:
        >>> as_records([("Hi", "Hello!"), {"instruction": "Sum 1+1", "output": "2"}], role="x")
        [{'prompt': 'Hi', 'response': 'Hello!'}, {'prompt': 'Sum 1+1', 'response': '2'}]
    """
    if isinstance(data, (str, Path)):
        data = load_records(data)
    if isinstance(data, PromptSet):
        targets = data.targets if use_targets and data.targets is not None else [None] * len(data)
        items: list[Any] = [{"prompt": p, "response": t} for p, t in zip(data.prompts, targets)]
    elif isinstance(data, Iterable) and not isinstance(data, Mapping):
        items = list(data)
    else:
        raise DatasetFormatError(
            f"data role {role!r}: expected a PromptSet, a file path or a list of examples, "
            f"got {type(data).__name__}"
        )
    if not items:
        raise EmptyDatasetError(f"data role {role!r} has no examples")
    out: list[Record] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            prompt, response = item, None
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            prompt, response = item
        elif isinstance(item, Mapping):
            prompt, response = _pick(item, PROMPT_KEYS), _pick(item, RESPONSE_KEYS)
            extra = item.get("input")
            if isinstance(prompt, str) and isinstance(extra, str) and extra.strip():
                prompt = f"{prompt}\n\n{extra}"  # Alpaca-style records with an input
            if prompt is None:
                raise DatasetFormatError(
                    f"data role {role!r}, item {i}: no prompt field (one of {list(PROMPT_KEYS)}); "
                    f"keys found: {sorted(item)}"
                )
        else:
            raise DatasetFormatError(
                f"data role {role!r}, item {i}: expected str, (prompt, response) or a mapping, "
                f"got {type(item).__name__}"
            )
        if not isinstance(prompt, str) or not prompt.strip():
            raise DatasetFormatError(f"data role {role!r}, item {i}: empty or non-string prompt")
        if response is None or (isinstance(response, str) and not response.strip()):
            if default_response is None:
                raise DatasetFormatError(
                    f"data role {role!r}, item {i}: no response (one of {list(RESPONSE_KEYS)}) "
                    "and this role has no default response"
                )
            response = default_response
        if not isinstance(response, str):
            raise DatasetFormatError(
                f"data role {role!r}, item {i}: response is {type(response).__name__}, not str"
            )
        rec = {"prompt": prompt, "response": response}
        prefill = item.get("prefill") if isinstance(item, Mapping) else None
        if prefill is not None:
            if not isinstance(prefill, str) or not prefill.strip():
                raise DatasetFormatError(
                    f"data role {role!r}, item {i}: prefill must be non-blank text, got {prefill!r}")
            rec["prefill"] = prefill
        out.append(rec)
    return out


def records_sha256(records: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the canonical JSON of ``records`` (key-sorted, compact, UTF-8, in order).

    Example:
        >>> records_sha256([{"prompt": "a", "response": "b"}])[:12]
        '93843aa114d8'
    """
    payload = json.dumps(list(records), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def end_of_turn(handle: ModelHandle) -> str:
    """Text the chat template puts after an assistant reply (e.g. ``<|eot_id|>``).

    Derived by rendering a sentinel reply with the tokenizer's chat template (whitespace
    around it stripped); with a template override or a template that does not render the
    reply verbatim, the tokenizer's EOS token ("" if it has none).
    """
    tok = handle.tokenizer
    eos = tok.eos_token or ""
    if handle.chat_template().source != "tokenizer" or not getattr(tok, "chat_template", None):
        return eos
    try:
        text = tok.apply_chat_template(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _SENTINEL}],
            tokenize=False,
        )
    except Exception:  # templates without an assistant role, raise_exception(...) ...
        return eos
    if not isinstance(text, str) or text.count(_SENTINEL) != 1:
        return eos
    return text.split(_SENTINEL, 1)[1].strip() or eos


def encode_completions(
    handle: ModelHandle,
    records: Sequence[Mapping[str, str]],
    *,
    max_length: int,
    role: str = "train",
    add_end: bool = True,
) -> list[dict[str, list[int]]]:
    """Tokenize records into ``{"input_ids", "labels"}`` with completion-only labels.

    ``input_ids = prompt_ids + completion_ids (+ end-of-turn ids)``; ``labels`` is
    ``-100`` on the prompt ids and equals ``input_ids`` elsewhere. A record with a
    ``"prefill"`` (text the assistant turn starts with, e.g. "Sure, here is") gets
    ``prompt_ids + prefill_ids + completion_ids``, the prefill labelled ``-100`` as well: the
    model learns how to *continue* after that opening, not to produce it (prefilling-attack
    and "deep alignment" recovery data, Qi et al. 2024). The prefill is tokenized on its own,
    like the completion. Completions are cut at
    ``max_length`` (capped by the model's context); a prompt that leaves no room for a
    completion token is an error.

    Raises:
        DatasetFormatError: a chat-formatted prompt is ``>= max_length`` tokens.
    """
    if not records:
        raise EmptyDatasetError(f"data role {role!r} has no examples")
    limit = max_length
    if handle.max_context is not None:
        limit = min(limit, handle.max_context)
    tok = handle.tokenizer
    prompt_ids = handle.encode([r["prompt"] for r in records]).input_ids
    end_ids = list(tok(end_of_turn(handle), add_special_tokens=False)["input_ids"]) if add_end else []
    comp_ids = tok([r["response"] for r in records], add_special_tokens=False)["input_ids"]
    rows = []
    for i, (p, c) in enumerate(zip(prompt_ids, comp_ids)):
        if records[i].get("prefill"):
            p = list(p) + list(tok(records[i]["prefill"], add_special_tokens=False)["input_ids"])
        if len(p) >= limit:
            raise DatasetFormatError(
                f"data role {role!r}, item {i}: the chat-formatted prompt is {len(p)} tokens, "
                f"leaving no room for the completion within max_length={limit}"
            )
        completion = (list(c) + end_ids)[: limit - len(p)]
        if not completion:
            raise DatasetFormatError(
                f"data role {role!r}, item {i}: the response tokenizes to nothing"
            )
        rows.append({"input_ids": list(p) + completion,
                     "labels": [IGNORE_INDEX] * len(p) + completion})
    return rows


def pad_right(
    rows: Sequence[Mapping[str, Sequence[int]]], pad_id: int
) -> dict[str, Int[Tensor, "batch seq"]]:
    """Right-pad ``input_ids`` / ``labels`` rows; adds ``attention_mask``.

    Right padding keeps every real token at the position it has unpadded (causal
    attention never looks at the pads after it), so no ``position_ids`` are needed.

    Example:
        >>> b = pad_right([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
        ...                {"input_ids": [8], "labels": [8]}], pad_id=0)
        >>> b["input_ids"].tolist(), b["labels"].tolist(), b["attention_mask"].tolist()
        ([[5, 6, 7], [8, 0, 0]], [[-100, 6, 7], [8, -100, -100]], [[1, 1, 1], [1, 0, 0]])
    """
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.as_tensor(list(r["input_ids"]), dtype=torch.long)
        labels[i, :n] = torch.as_tensor(list(r.get("labels", r["input_ids"])), dtype=torch.long)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
