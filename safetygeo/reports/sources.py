"""Where a report's prompt sets and judges come from: spec strings and registered sources.

A set spec is anything ``--set`` takes (``[FORMAT=]PATH``, ``example:NAME``; see
:func:`safetygeo.data.load_prompt_set`) or ``SOURCE:ARG`` of a source registered with
:func:`register_set_source` (``safetygeo.toy`` registers ``toy:``). A judge spec is
``NAME`` or ``NAME=ARG`` of a judge registered with :func:`register_judge` (built in:
``llamaguard=MODEL``; ``safetygeo.toy`` registers ``toy``, the toy world's compliance check).

Example:
    >>> from safetygeo.reports.protocol import SetsConfig
    >>> sets = resolve_sets(SetsConfig(limit=3))
    >>> {s: len(p) for s, p in sets.harmful.items()}, sorted(sets.behavior)
    ({'train': 3, 'val': 3, 'test': 3}, ['benign', 'harmful'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from safetygeo._identity import sha256_json
from safetygeo.errors import SafetyGeoError

__all__ = ["ReportSets", "register_judge", "register_set_source", "resolve_judge",
           "resolve_sets"]


class SourceError(SafetyGeoError):
    """An unknown set source or judge, or a source that returned something unusable."""


_SET_SOURCES: dict[str, Callable[[str], Any]] = {}
_JUDGES: dict[str, Callable[[str | None], Any]] = {}


def register_set_source(name: str, fn: Callable[[str], Any]) -> None:
    """Register ``NAME:ARG`` specs: ``fn(ARG)`` returns a :class:`~safetygeo.data.PromptSet`
    or ``{"train", "val", "test"}`` splits of one."""
    _SET_SOURCES[name] = fn


def register_judge(name: str, factory: Callable[[str | None], Any]) -> None:
    """Register a judge spec ``NAME`` or ``NAME=ARG``: ``factory(ARG)`` returns a judge
    ``(prompt, completion) -> verdict`` (see :mod:`safetygeo.behavior.judges`)."""
    _JUDGES[name] = factory


def _llamaguard(arg: str | None) -> Any:
    from safetygeo.behavior.judges import LlamaGuardJudge
    from safetygeo.models import load_model

    if not arg:
        raise SourceError("the llamaguard judge needs a model: judge: llamaguard=MODEL")
    return LlamaGuardJudge(load_model(arg))


register_judge("llamaguard", _llamaguard)


def resolve_judge(spec: str | None) -> Any:
    """A judge from its spec (``None``: no judge).

    Raises:
        SourceError: an unknown judge name (the registered ones are listed).
    """
    if spec is None:
        return None
    name, _, arg = spec.partition("=")
    if name not in _JUDGES:
        hint = " (import safetygeo.toy to register the toy judge)" if name == "toy" else ""
        raise SourceError(f"unknown judge {name!r}{hint}; registered: {sorted(_JUDGES)}")
    return _JUDGES[name](arg or None)


SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class ReportSets:
    """The report's prompt sets, resolved (picklable; sent to every task).

    Attributes:
        harmful, harmless: ``{"train", "val", "test"}`` splits (PromptSets).
        behavior: ``{name: (role, PromptSet)}``.
    """

    harmful: Mapping[str, Any]
    harmless: Mapping[str, Any]
    behavior: Mapping[str, tuple[str, Any]]

    def split(self, cls: str, split: str) -> list[str]:
        return list(getattr(self, cls)[split].prompts)

    def splits(self, cls: str) -> dict[str, list[str]]:
        return {s: self.split(cls, s) for s in SPLIT_NAMES}

    def digest(self, part: str) -> str:
        """SHA-256 of the prompts of ``part`` (``harmful``, ``harmless``, ``behavior``)."""
        if part == "behavior":
            return sha256_json({n: [r, ps.sha256(), list(ps.targets or [])]
                                for n, (r, ps) in sorted(self.behavior.items())})
        return sha256_json({s: ps.sha256() for s, ps in getattr(self, part).items()})

    def describe(self) -> list[dict[str, Any]]:
        rows = []
        for cls in ("harmful", "harmless"):
            for s, ps in getattr(self, cls).items():
                rows.append({"set": cls, "split": s, "role": cls, "n": len(ps),
                             "source": ps.meta.get("source", ps.name), "sha256": ps.sha256()[:12],
                             "example": ps.prompts[0]})
        for n, (role, ps) in self.behavior.items():
            rows.append({"set": n, "split": "", "role": role, "n": len(ps),
                         "source": ps.meta.get("source", ps.name), "sha256": ps.sha256()[:12],
                         "example": ps.prompts[0]})
        return rows


def _load_spec(spec: str, label: str | None) -> Any:
    from safetygeo.data import load_prompt_set

    head, sep, arg = spec.partition(":")
    if sep and head in _SET_SOURCES:
        return _SET_SOURCES[head](arg)
    if sep and head == "toy":
        raise SourceError(f"set spec {spec!r}: the 'toy' source is registered by "
                            "safetygeo.toy; import safetygeo.toy first (the CLI does)")
    return load_prompt_set(spec, label=label)


def _limit(ps: Any, limit: int | None, seed: int) -> Any:
    return ps if limit is None or len(ps) <= limit else ps.sample(limit, seed=seed)


def resolve_sets(cfg: Any) -> ReportSets:
    """Load every set of ``cfg`` (splitting single sets, applying ``limit``).

    Raises:
        SafetyGeoError: a spec cannot be loaded (named), or a split is empty.
    """
    from safetygeo.data import PromptSet

    def splits(spec: str, label: str) -> dict[str, Any]:
        got = _load_spec(spec, label)
        if isinstance(got, Mapping):
            missing = [s for s in SPLIT_NAMES if s not in got]
            if missing:
                raise SourceError(f"set {spec!r} gives splits {sorted(got)}; missing {missing}")
            parts = {s: got[s] for s in SPLIT_NAMES}
        else:
            parts = got.split(dict(zip(SPLIT_NAMES, cfg.splits)), seed=cfg.seed)
        return {s: _limit(p if isinstance(p, PromptSet) else PromptSet(list(p), name=f"{label}-{s}",
                                                                        label=label), cfg.limit, cfg.seed)
                for s, p in parts.items()}

    behavior: dict[str, tuple[str, Any]] = {}
    for key, spec in cfg.behavior.items():
        role, _, name = str(key).partition(".")
        got = _load_spec(spec, {"benign": "harmless"}.get(role, role))
        if isinstance(got, Mapping):
            got = got["test"]
        behavior[name or role] = (role, _limit(got, cfg.limit, cfg.seed))
    return ReportSets(splits(cfg.harmful, "harmful"), splits(cfg.harmless, "harmless"), behavior)


def plugin_state() -> dict[str, Any]:
    """The registered judges, set sources and protocol steps (sent to remote workers, which
    install what their process lacks: plug-ins registered in the driver work there too)."""
    from safetygeo.reports.registry import steps

    return {"judges": dict(_JUDGES), "sources": dict(_SET_SOURCES),
            "steps": {s.name: s for s in steps()}}


def install_plugins(state: Mapping[str, Any]) -> None:
    """Register what :func:`plugin_state` captured and this process lacks."""
    from safetygeo.reports.registry import register_step, step_names

    for name, fn in state.get("judges", {}).items():
        _JUDGES.setdefault(name, fn)
    for name, fn in state.get("sources", {}).items():
        _SET_SOURCES.setdefault(name, fn)
    have = set(step_names())
    for name, step in state.get("steps", {}).items():
        if name not in have:
            register_step(step)
