"""The report protocol: which prompt sets, which checkpoints, how models load, which steps.

A :class:`Protocol` is a frozen dataclass tree; :meth:`Protocol.from_dict` /
:meth:`Protocol.from_yaml` reject unknown keys (naming them and the known ones), so a typo
in ``protocol.yaml`` is an error, never a silently ignored setting. The steps are the
registered protocol steps (:mod:`safetygeo.reports.registry`); each has its own settings
dataclass whose defaults are the step's defaults. The same object drives the CLI
(``safetygeo report ... --protocol protocol.yaml``) and Python
(:func:`~safetygeo.reports.trajectory_report.run_report`).

YAML layout (every key optional; ``steps`` given = exactly those steps, plus what they
need; absent = every default step)::

    sets:                       # prompt-set specs (as for --set), or a registered source
      harmful: advbench=data/advbench.csv      # split train / val / test with `splits`
      harmless: alpaca=data/alpaca.json
      behavior: {harmful: jailbreakbench=jbb.csv, safe.xstest: xstest-safe=xstest.csv,
                 benign: alpaca=data/alpaca_eval.json}   # ROLE[.NAME]: SPEC
      limit: 128                # first N prompts of every set / split
    checkpoints: {base: true, stride: 1, steps: null}
    load: {dtype: bf16, device: cuda, batch_size: 32, num_gpus: 1}
    steps:
      carriers: {test_top_k: 5}
      rank: {n_boot: 1000}
      drift: {reference: first}
      coupling: {n_boot: 1000}
      ablation: {nulls: {k: 64, h: 4, tail: true}}
      behavior: {max_new_tokens: 128}
      transfer: {source: "sft-run@1000", n_prompts: 50}

Example:
    >>> p = Protocol.from_dict({"steps": {"rank": {"n_boot": 50}}})
    >>> p.step_names, p.step("rank").n_boot     # rank needs carriers: added with defaults
    (['carriers', 'rank'], 50)
    >>> Protocol.from_dict({"steps": {"rank": {"nboot": 5}}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    safetygeo.reports.protocol.ProtocolError: unknown steps.rank key(s) ['nboot']; known: ['layer', 'n_boot', ...]
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetygeo._identity import sha256_json
from safetygeo.errors import SafetyGeoError
from safetygeo.reports import steps as _builtin_steps  # noqa: F401  (registers the built-in steps)
from safetygeo.reports.registry import get_step, step_names
from safetygeo.reports.registry import steps as registered_steps

__all__ = ["CheckpointSelection", "LoadSettings", "Protocol", "ProtocolError", "SetsConfig",
           "default_protocol", "register_default_protocol", "settings_from_dict",
           "settings_to_dict"]


class ProtocolError(SafetyGeoError):
    """A report protocol (file or object) is invalid; the message names the key."""


# ----------------------------------------------------------------------------- parsing
def _hint_args(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _coerce(value: Any, tp: Any, what: str) -> Any:
    """YAML values into the field's type: nested dataclasses, tuples, mappings."""
    if value is None:
        return None
    if _is_union(tp):
        for arg in _hint_args(tp):
            if arg is type(None):
                continue
            if isinstance(arg, type) and dataclasses.is_dataclass(arg) and isinstance(value, Mapping):
                return settings_from_dict(arg, value, what)
            origin = typing.get_origin(arg)
            if origin is tuple and isinstance(value, (list, tuple)):
                return tuple(value)
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        return settings_from_dict(tp, value, what)
    origin = typing.get_origin(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if origin in (dict, Mapping, typing.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ProtocolError(f"{what} must be a mapping, got {type(value).__name__}")
        return dict(value)
    return value


def settings_from_dict(cls: type, values: Mapping[str, Any] | None, what: str) -> Any:
    """Build settings dataclass ``cls`` from a mapping, rejecting unknown keys.

    Raises:
        ProtocolError: not a mapping, unknown keys (named), or a value the settings refuse.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ProtocolError(f"{what} must be a mapping, got {type(values).__name__} ({values!r})")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ProtocolError(f"unknown {what} key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k, Any), f"{what}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ProtocolError:
        raise
    except (SafetyGeoError, TypeError, ValueError) as exc:
        raise ProtocolError(f"{what}: {exc}") from exc


def settings_to_dict(obj: Any) -> Any:
    """A settings dataclass as plain JSON/YAML types (tuples → lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: settings_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.init}
    if isinstance(obj, Mapping):
        return {str(k): settings_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [settings_to_dict(v) for v in obj]
    return obj


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ProtocolError(msg)


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class SetsConfig:
    """Prompt sets of the report, as specs.

    A spec is anything ``--set`` takes (``[FORMAT=]PATH``, ``example:NAME``; see
    :func:`safetygeo.data.load_prompt_set`) or ``SOURCE:ARG`` of a registered set source
    (:func:`register_set_source`; ``safetygeo.toy`` registers ``toy:harmful``,
    ``toy:harmless`` — the toy world's own train / val / test splits — and
    ``toy:harmful-test``, ``toy:lookalike``, ``toy:tasks``).

    Attributes:
        harmful, harmless: carrier selection (train / val), geometry, ablation (test).
            A single set is split into train / val / test with ``splits`` and ``seed``.
        behavior: ``{ROLE[.NAME]: SPEC}`` for the behaviour step; roles ``harmful`` (refusal
            and ASR), ``safe`` (over-refusal, XSTest-style), ``unsafe``, ``benign`` (utility).
        limit: keep a seeded random sample (``seed``; original order) of ``limit`` prompts
            of every set and split (``None``: all).
        splits: train / val / test fractions; ``seed``: their permutation seed.
    """

    harmful: str = "example:harmful"
    harmless: str = "example:harmless"
    behavior: Mapping[str, str] = field(default_factory=lambda: {
        "harmful": "example:harmful", "benign": "example:harmless"})
    limit: int | None = None
    splits: tuple[float, float, float] = (0.5, 0.25, 0.25)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("harmful", "harmless"):
            v = getattr(self, name)
            _check(isinstance(v, str) and bool(v.strip()), f"sets.{name} must be a spec string")
        _check(isinstance(self.behavior, Mapping), "sets.behavior must be a mapping ROLE: SPEC")
        for k, v in self.behavior.items():
            role = str(k).split(".")[0]
            _check(role in ("harmful", "safe", "unsafe", "benign"),
                   f"sets.behavior key {k!r}: the role must be harmful, safe, unsafe or benign")
            _check(isinstance(v, str) and bool(v.strip()), f"sets.behavior.{k} must be a spec")
        _check(self.limit is None or (isinstance(self.limit, int) and self.limit >= 1),
               f"sets.limit must be a positive int or null, got {self.limit!r}")
        _check(len(self.splits) == 3 and all(isinstance(f, (int, float)) and f > 0
                                             for f in self.splits),
               f"sets.splits must be three positive fractions, got {self.splits!r}")


@dataclass(frozen=True)
class CheckpointSelection:
    """Which checkpoints of each trajectory.

    Attributes:
        base: include the base model (step 0) the trajectory started from (also when
            ``steps`` is given).
        steps: only these steps (``None``: all intact checkpoints; 0 = the base).
        stride: every ``stride``-th of those (the last one always included).
    """

    base: bool = True
    steps: tuple[int, ...] | None = None
    stride: int = 1

    def __post_init__(self) -> None:
        _check(isinstance(self.stride, int) and self.stride >= 1,
               f"checkpoints.stride must be an int >= 1, got {self.stride!r}")
        _check(self.steps is None or all(isinstance(s, int) and s >= 0 for s in self.steps),
               f"checkpoints.steps must be a list of steps >= 0, got {self.steps!r}")

    def select(self, steps: Sequence[int]) -> list[int]:
        """The chosen steps among ``steps`` (a trajectory's checkpoints, ascending).

        Example:
            >>> CheckpointSelection(stride=2).select([25, 50, 75, 100, 125])
            [0, 25, 75, 125]
            >>> CheckpointSelection(base=False, steps=(50, 100)).select([25, 50, 75, 100])
            [50, 100]
        """
        pool = [s for s in steps if s != 0 and (self.steps is None or s in self.steps)]
        chosen = pool[::self.stride]
        if pool and pool[-1] not in chosen:
            chosen.append(pool[-1])
        if self.base or (self.steps is not None and 0 in self.steps):
            chosen = [0, *chosen]
        return chosen


@dataclass(frozen=True)
class LoadSettings:
    """How each checkpoint is loaded, batched and scheduled.

    Attributes:
        dtype: ``None`` / ``"auto"`` (as saved), ``float32``, ``bf16``, ``fp16``.
        device: ``None`` (CPU), ``cuda``, ``cuda:N``, or ``auto`` (``device_map="auto"``:
            a model larger than one GPU is spread over the GPUs the task holds).
        batch_size: prompts per forward pass.
        num_gpus: GPUs each checkpoint's Ray task reserves (``None``: 1 when ``device`` is
            a CUDA device or ``auto`` and the cluster has GPUs, else 0).
        num_cpus: CPUs each Ray task reserves.
    """

    dtype: str | None = None
    device: str | None = None
    batch_size: int = 16
    num_gpus: float | None = None
    num_cpus: float = 1.0

    def __post_init__(self) -> None:
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1,
               f"load.batch_size must be an int >= 1, got {self.batch_size!r}")
        _check(self.dtype in (None, "auto", "float32", "fp32", "bf16", "bfloat16", "fp16",
                              "float16"), f"load.dtype {self.dtype!r} is not a dtype name")
        _check(self.device is None or isinstance(self.device, str),
               f"load.device must be a string, got {self.device!r}")
        _check(self.num_gpus is None or float(self.num_gpus) >= 0, "load.num_gpus must be >= 0")
        _check(float(self.num_cpus) > 0, "load.num_cpus must be > 0")

    def gpus(self) -> float:
        if self.num_gpus is not None:
            return float(self.num_gpus)
        return 1.0 if self.device and (self.device.startswith("cuda") or self.device == "auto") else 0.0


# ----------------------------------------------------------------------------- protocol
def _default_steps() -> tuple[tuple[str, Any], ...]:
    return tuple((s.name, s.settings()) for s in registered_steps() if s.default)


@dataclass(frozen=True)
class Protocol:
    """The whole report protocol (see the module docstring).

    Attributes:
        sets: :class:`SetsConfig`.
        checkpoints: :class:`CheckpointSelection`.
        load: :class:`LoadSettings`.
        steps: ``((name, settings), ...)`` in registry order.
    """

    sets: SetsConfig = field(default_factory=SetsConfig)
    checkpoints: CheckpointSelection = field(default_factory=CheckpointSelection)
    load: LoadSettings = field(default_factory=LoadSettings)
    steps: tuple[tuple[str, Any], ...] = field(default_factory=_default_steps)

    def __post_init__(self) -> None:
        given = dict(self.steps)
        _check(len(given) == len(self.steps), "a protocol step is listed twice")
        for name, settings in given.items():
            step = get_step(name)
            _check(isinstance(settings, step.settings),
                   f"steps.{name} must be a {step.settings.__name__}, got {type(settings).__name__}")
        # add what the steps need (with defaults), keep registry order
        todo = list(given)
        while todo:
            for dep in get_step(todo.pop()).needs:
                if dep not in given:
                    given[dep] = get_step(dep).settings()
                    todo.append(dep)
        order = {n: i for i, n in enumerate(step_names())}
        object.__setattr__(self, "steps", tuple(sorted(given.items(), key=lambda kv: order[kv[0]])))

    # -- access -------------------------------------------------------------------------
    @property
    def step_names(self) -> list[str]:
        return [n for n, _ in self.steps]

    def step(self, name: str) -> Any:
        """The settings of step ``name``, or ``None`` if the protocol does not run it."""
        return dict(self.steps).get(name)

    def with_steps(self, **changes: Mapping[str, Any] | Any | None) -> Protocol:
        """A copy with steps changed: ``name=dict(...)`` (updates of its settings),
        ``name=settings_object`` or ``name=None`` (remove it).

        Example:
            >>> p = Protocol().with_steps(ablation={"nulls": {"k": 8}}, behavior=None)
            >>> p.step("ablation").nulls.k, p.step("behavior")
            (8, None)
        """
        cur = dict(self.steps)
        for name, change in changes.items():
            step = get_step(name)
            if change is None:
                cur.pop(name, None)
            elif isinstance(change, step.settings):
                cur[name] = change
            else:
                base = settings_to_dict(cur.get(name, step.settings()))
                cur[name] = settings_from_dict(step.settings, {**base, **dict(change)},
                                               f"steps.{name}")
        return dataclasses.replace(self, steps=tuple(cur.items()))

    def replace(self, **changes: Any) -> Protocol:
        """A copy with top-level sections replaced (``sets=``, ``checkpoints=``, ``load=``)."""
        return dataclasses.replace(self, **changes)

    # -- (de)serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"sets": settings_to_dict(self.sets),
                "checkpoints": settings_to_dict(self.checkpoints),
                "load": settings_to_dict(self.load),
                "steps": {n: settings_to_dict(s) for n, s in self.steps}}

    def to_yaml(self) -> str:
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def sha256(self) -> str:
        return sha256_json(self.to_dict())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Protocol:
        """Build from a mapping (a parsed YAML file), rejecting unknown keys anywhere.

        Raises:
            ProtocolError: an unknown key or step, or a bad value (the key is named).
        """
        values = values or {}
        if not isinstance(values, Mapping):
            raise ProtocolError(f"a protocol must be a mapping, got {type(values).__name__}")
        known = {"sets", "checkpoints", "load", "steps"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ProtocolError(f"unknown protocol key(s) {unknown}; known: {sorted(known)}")
        kw: dict[str, Any] = {
            "sets": settings_from_dict(SetsConfig, values.get("sets"), "sets"),
            "checkpoints": settings_from_dict(CheckpointSelection, values.get("checkpoints"),
                                              "checkpoints"),
            "load": settings_from_dict(LoadSettings, values.get("load"), "load"),
        }
        if values.get("steps") is not None:
            st = values["steps"]
            if not isinstance(st, Mapping):
                raise ProtocolError("steps must be a mapping {step name: settings}")
            bad = sorted(set(st) - set(step_names()))
            if bad:
                raise ProtocolError(f"unknown protocol step(s) {bad}; known: {step_names()}")
            kw["steps"] = tuple((n, settings_from_dict(get_step(n).settings, v, f"steps.{n}"))
                                for n, v in st.items())
        return cls(**kw)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Protocol:
        """Read a YAML protocol file (``yaml.safe_load``).

        Raises:
            ProtocolError: unreadable file, invalid YAML, or an invalid protocol.
        """
        import yaml

        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProtocolError(f"cannot read protocol file {str(p)!r}: {exc}") from exc
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProtocolError(f"{str(p)!r} is not valid YAML: {exc}") from exc
        try:
            return cls.from_dict(values)
        except ProtocolError as exc:
            raise ProtocolError(f"{str(p)!r}: {exc}") from None

    # -- presets ----------------------------------------------------------------------
    @classmethod
    def default(cls) -> Protocol:
        """Every default step with its default settings (sets: the bundled examples)."""
        return cls()

    @classmethod
    def preset(cls, name: str, **options: Any) -> Protocol:
        """The protocol a world registered as ``name`` (:func:`register_protocol_preset`;
        ``safetygeo.toy`` registers ``toy``), built with ``options``.

        Raises:
            ProtocolError: no preset of that name (the message lists the registered ones).
        """
        if name not in _PRESETS:
            raise ProtocolError(f"unknown protocol preset {name!r}; registered: "
                                f"{sorted(_PRESETS) or 'none'} (import the world that "
                                "registers it, e.g. safetygeo.toy)")
        return _PRESETS[name](**options)

    @classmethod
    def toy(cls, **options: Any) -> Protocol:
        """The toy world's protocol: ``Protocol.preset("toy", **options)``, registered by
        ``import safetygeo.toy`` (:func:`safetygeo.toy.report.toy_protocol`)."""
        return cls.preset("toy", **options)


# ----------------------------------------------------------------------------- presets
_PRESETS: dict[str, Callable[..., Protocol]] = {}


def preset_names() -> tuple[str, ...]:
    """Names :meth:`Protocol.preset` accepts now (the worlds imported so far), sorted."""
    return tuple(sorted(_PRESETS))


def register_protocol_preset(name: str, factory: Callable[..., Protocol]) -> None:
    """Make ``Protocol.preset(name, **options)`` return ``factory(**options)`` (a world's
    CPU-cheap protocol: its own prompt sets, judge and settings).

    Example:
        >>> register_protocol_preset("example", lambda: Protocol())
        >>> Protocol.preset("example") == Protocol()
        True
        >>> del _PRESETS["example"]
    """
    _PRESETS[name] = factory


# ----------------------------------------------------------------------------- defaults
_DEFAULTS: list[tuple[Callable[[Sequence[Path]], bool], Callable[[], Protocol]]] = []


def register_default_protocol(applies: Callable[[Sequence[Path]], bool],
                              factory: Callable[[], Protocol]) -> None:
    """When no protocol is given, ``factory()`` is used for trajectories where
    ``applies(folders)`` holds (``safetygeo.toy`` registers its ``toy`` preset for the toy
    zoo's trajectories: the toy world's own prompt splits and judge)."""
    _DEFAULTS.append((applies, factory))


def default_protocol(trajectories: Sequence[str | os.PathLike[str]]) -> Protocol:
    """The protocol for ``trajectories`` when none is given: the first registered default
    that applies, else :meth:`Protocol.default`."""
    folders = [Path(t) for t in trajectories]
    for applies, factory in reversed(_DEFAULTS):
        try:
            if folders and applies(folders):
                return factory()
        except OSError:
            continue
    return Protocol.default()
