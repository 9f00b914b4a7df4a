"""Prompt sets and their loaders.

:class:`PromptSet` is the immutable container every other module consumes (harmful /
harmless / XSTest sets, splits, samples); ``load_*`` read the public benchmarks from a
local file or the Hugging Face hub; :func:`load_prompt_set` dispatches CLI specs.

Example:
    >>> from safetygeo.data import PromptSet
    >>> ps = PromptSet(["Explain photosynthesis.", "Name a prime."], name="toy",
    ...                label="harmless")
    >>> ps.sample(1, seed=0).label
    'harmless'
"""

from __future__ import annotations

from safetygeo.data.benchmarks import (
    ADVBENCH_HUB_ID,
    ALPACA_HUB_ID,
    HARMBENCH_HUB_ID,
    JAILBREAKBENCH_HUB_ID,
    STRONGREJECT_URL,
    XSTEST_HUB_ID,
    load_advbench,
    load_alpaca,
    load_harmbench,
    load_jailbreakbench,
    load_strongreject,
    load_xstest,
    load_xstest_pair,
)
from safetygeo.data.formats import load_csv_column, load_instructions_json, load_jsonl, load_lines
from safetygeo.data.prompts import (
    PER_PROMPT_META_KEYS,
    PROMPTSET_JSON_FORMAT,
    PromptFileNotFoundError,
    PromptIndexError,
    PromptSet,
)
from safetygeo.data.specs import SPEC_KINDS, load_example, load_prompt_set

__all__ = [
    "ADVBENCH_HUB_ID",
    "ALPACA_HUB_ID",
    "HARMBENCH_HUB_ID",
    "JAILBREAKBENCH_HUB_ID",
    "PER_PROMPT_META_KEYS",
    "PROMPTSET_JSON_FORMAT",
    "SPEC_KINDS",
    "STRONGREJECT_URL",
    "XSTEST_HUB_ID",
    "PromptFileNotFoundError",
    "PromptIndexError",
    "PromptSet",
    "load_advbench",
    "load_alpaca",
    "load_csv_column",
    "load_example",
    "load_harmbench",
    "load_instructions_json",
    "load_jailbreakbench",
    "load_jsonl",
    "load_lines",
    "load_prompt_set",
    "load_strongreject",
    "load_xstest",
    "load_xstest_pair",
]
