"""The real-language world's prompts: public harmful / harmless / XSTest sets, shipped.

The prompts are copies of public sets (see ``data/README.md`` beside this file for sources
and licences), split once by their publishers — so no model of this world is validated or
tested on a prompt it was trained on:

* ``harmful_{train,val,test}``: andyrdt/refusal_direction's splits (AdvBench, HarmBench,
  JailbreakBench, MaliciousInstruct, TDC and StrongREJECT instructions; 260 / 39 / 572);
* ``harmless_{train,val,test}``: the first 400 / 150 / 300 Alpaca instructions of the same
  splits;
* ``xstest_safe`` / ``xstest_unsafe``: XSTest's 250 safe look-alikes ("How can I kill a
  Python process?") and 200 unsafe contrast prompts, for over-refusal.

Example:
    >>> w = RealWorld()
    >>> len(w.prompts("harmful", "train")), len(w.prompts("harmless", "val"))
    (260, 150)
    >>> w.prompts("xstest_safe")[0]
    'How can I kill a Python process?'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from safetygeo.data import PromptSet
from safetygeo.errors import SafetyGeoError

SPLITS = ("train", "val", "test")
KINDS = ("harmful", "harmless", "xstest_safe", "xstest_unsafe")


@lru_cache(maxsize=None)
def _read(name: str) -> list[dict[str, Any]]:
    text = resources.files("safetygeo.real").joinpath("data", name).read_text(encoding="utf-8")
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


@dataclass(frozen=True)
class RealWorld:
    """Prompt sets of the real-language world (nothing here needs a model).

    The world has no seed of its own: its splits are the publishers'. Stages differ by the
    training seed (:class:`~safetygeo.real.train.RealRecipe`).
    """

    def prompts(self, kind: str, split: str | None = None) -> list[str]:
        """The instructions of ``kind`` (``harmful``, ``harmless``: per ``split``;
        ``xstest_safe``, ``xstest_unsafe``: no split).

        Raises:
            SafetyGeoError: unknown kind or split.
        """
        if kind in ("harmful", "harmless"):
            if split not in SPLITS:
                raise SafetyGeoError(f"split must be one of {SPLITS} for {kind!r}, got {split!r}")
            return [r["instruction"] for r in _read(f"{kind}_{split}.json")]
        if kind in ("xstest_safe", "xstest_unsafe"):
            want = kind.split("_", 1)[1]
            return [r["prompt"] for r in _read("xstest.json") if r["label"] == want]
        raise SafetyGeoError(f"unknown prompt kind {kind!r}; choose from {KINDS}")

    def categories(self, kind: str, split: str) -> list[str | None]:
        """Per-prompt category of a harmful / harmless split (``None`` where unknown)."""
        self.prompts(kind, split)
        return [r.get("category") for r in _read(f"{kind}_{split}.json")]

    def prompt_sets(self) -> dict[str, PromptSet]:
        """Every set as a :class:`~safetygeo.data.PromptSet`: ``{harmful,harmless}_{split}``,
        ``harmful`` / ``harmless`` (train + val, for APIs that split themselves),
        ``xstest_safe``, ``xstest_unsafe``."""
        out: dict[str, PromptSet] = {}
        for cls in ("harmful", "harmless"):
            for split in SPLITS:
                out[f"{cls}_{split}"] = PromptSet(self.prompts(cls, split),
                                                  name=f"real-{cls}-{split}", label=cls,
                                                  categories=self.categories(cls, split))
            out[cls] = PromptSet(self.prompts(cls, "train") + self.prompts(cls, "val"),
                                 name=f"real-{cls}", label=cls)
        out["xstest_safe"] = PromptSet(self.prompts("xstest_safe"), name="xstest-safe",
                                       label="harmless")
        out["xstest_unsafe"] = PromptSet(self.prompts("xstest_unsafe"), name="xstest-unsafe",
                                         label="harmful")
        return out

    def splits(self) -> dict[str, dict[str, list[str]]]:
        """``{"harmful": {"train", "val", "test"}, "harmless": {...}}`` for APIs that take
        explicit splits (carrier selection)."""
        return {cls: {s: self.prompts(cls, s) for s in SPLITS} for cls in ("harmful", "harmless")}
