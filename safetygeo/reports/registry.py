"""The registry of protocol steps: what a trajectory report can compute per checkpoint.

A **protocol step** is one named unit of the report protocol (``carriers``, ``rank``,
``drift``, ``coupling``, ``ablation``, ``behavior``, ``transfer``, ...): a frozen settings
dataclass (its defaults are the step's defaults) and a function
``run(ctx: CheckpointContext, settings) -> StepOutput`` that computes the step on one
checkpoint and returns tidy rows (plus, optionally, a JSON payload its dependents read and
binary artifacts kept in the cache). Adding a step is one call to :func:`register_step` —
usually one small module under :mod:`safetygeo.reports.steps` — and it then appears in
:class:`~safetygeo.reports.protocol.Protocol` (YAML key ``steps.<name>``), in the content
keys of the cache, in the table, and (with ``section=``) in the HTML report.

Optional hooks of a step:

* ``needs``: steps of the *same checkpoint* whose payload it reads (``ctx.result(name)``);
  their content keys enter its own, so changing a dependency recomputes it.
* ``prepare``: computed once per report on a *source* checkpoint (``settings.source``),
  cached under the source's content key, handed to every checkpoint as
  ``ctx.prepared(name)`` (transfer attacks: suffixes optimized once on one checkpoint);
  ``prepare_keys`` names the settings it depends on (default: all of them).
* ``finalize``: a cross-checkpoint comparison computed by the driver from two cached
  payloads (this checkpoint's and its reference's, ``settings.reference``), e.g. drift.
* ``section``: ``section(report, table, info)`` adds the step's part of the HTML report.
* ``order``: where the step sits in the protocol, the table and the report (built-ins:
  10, 20, ...; plug-ins default to 100, after them).

Row keys understood by the table (all optional but ``metric`` and ``value``): ``layer,
position, metric, method, set, value, ci_low, ci_high, p, n, null_q025, null_q975, note``.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class NormSettings:
    ...     layer: int = 0
    >>> def run_norm(ctx, s):
    ...     return StepOutput([{"metric": "weight_norm", "value": 1.0}])
    >>> register_step(ProtocolStep("example_norm", NormSettings, run_norm, default=False))
    >>> "example_norm" in step_names(), get_step("example_norm").settings().layer
    (True, 0)
    >>> unregister_step("example_norm")
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from safetygeo.errors import SafetyGeoError

__all__ = ["CheckpointContext", "ProtocolStep", "StepOutput", "StepResult", "estimate_row",
           "get_step", "null_row", "register_step", "step_names", "steps", "unregister_step"]

#: Columns a step's rows may set (anything else is dropped with an error at registration time
#: of the row: see :func:`clean_row`).
ROW_KEYS: tuple[str, ...] = ("layer", "position", "metric", "method", "set", "value", "ci_low",
                             "ci_high", "p", "n", "null_q025", "null_q975", "note", "p_tail")


@dataclass
class StepOutput:
    """What a step computed on one checkpoint.

    Attributes:
        rows: tidy rows (keys from :data:`ROW_KEYS`).
        data: small JSON-able payload for dependent steps / finalize (e.g. the chosen
            carrier and its vector).
        files: binary artifacts ``{relative name: bytes}`` kept next to the cached result
            (e.g. the full carrier selection, per-prompt activations for drift).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class StepResult(StepOutput):
    """A :class:`StepOutput` with where it came from: content ``key``, compute
    ``seconds`` and whether it was read from the cache."""

    key: str = ""
    seconds: float = 0.0
    cached: bool = False


@dataclass(frozen=True)
class ProtocolStep:
    """One registered protocol step (see the module docstring)."""

    name: str
    settings: type
    run: Callable[[CheckpointContext, Any], StepOutput]
    needs: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    prepare: Callable[[CheckpointContext, Any], StepOutput] | None = None
    prepare_keys: tuple[str, ...] = ()
    finalize: Callable[[StepResult, StepResult, Any], StepOutput] | None = None
    section: Callable[..., None] | None = None
    default: bool = True
    description: str = ""
    order: float = 100.0


_REGISTRY: dict[str, ProtocolStep] = {}


def register_step(step: ProtocolStep, *, replace: bool = False) -> None:
    """Add a step (its position in the registry is its order in reports).

    Raises:
        SafetyGeoError: the name is taken (unless ``replace``), a dependency is unknown, or
            the settings type is not a dataclass.
    """
    import dataclasses

    if step.name in _REGISTRY and not replace:
        raise SafetyGeoError(f"a protocol step named {step.name!r} is already registered")
    if not dataclasses.is_dataclass(step.settings):
        raise SafetyGeoError(f"step {step.name!r}: settings must be a dataclass type")
    missing = [n for n in step.needs if n not in _REGISTRY and n != step.name]
    if missing:
        raise SafetyGeoError(f"step {step.name!r} needs unregistered step(s) {missing}")
    _REGISTRY[step.name] = step


def unregister_step(name: str) -> None:
    """Remove a step (tests and plug-ins)."""
    _REGISTRY.pop(name, None)


def get_step(name: str) -> ProtocolStep:
    """The registered step ``name``.

    Raises:
        SafetyGeoError: unknown name (the known ones are listed).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SafetyGeoError(f"unknown protocol step {name!r}; known: {step_names()}") from None


def _ordered() -> list[ProtocolStep]:
    return sorted(_REGISTRY.values(), key=lambda s: s.order)  # stable: ties keep registration order


def step_names() -> list[str]:
    """Registered step names, in report order (``ProtocolStep.order``)."""
    return [s.name for s in _ordered()]


def steps() -> Iterator[ProtocolStep]:
    """Registered steps, in report order."""
    return iter(_ordered())


# ----------------------------------------------------------------------------- rows
def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def estimate_row(est: Any, **extra: Any) -> dict[str, Any]:
    """A table row from an :class:`~safetygeo.results.Estimate`."""
    return {"metric": est.metric, "method": est.method, "value": _num(est.value),
            "ci_low": _num(est.ci_low), "ci_high": _num(est.ci_high), "n": int(est.n), **extra}


def null_row(nc: Any, **extra: Any) -> dict[str, Any]:
    """A table row from a :class:`~safetygeo.results.NullComparison` (value = the real
    effect, p from the matched nulls, its tail estimate ``p_tail`` (NaN if none), the
    null's 2.5–97.5 % band, n = the nulls drawn)."""
    return {"metric": nc.metric, "method": "null-controlled", "value": float(nc.real),
            "ci_low": float(nc.ci_low), "ci_high": float(nc.ci_high), "p": float(nc.p),
            "n": int(nc.k), "null_q025": nc.null_quantile(0.025),
            "null_q975": nc.null_quantile(0.975), "note": nc.note,
            "p_tail": float(nc.p_tail), **extra}


def clean_row(row: Mapping[str, Any], step: str) -> dict[str, Any]:
    """Validate one row of step ``step``: known keys, a metric name, a numeric value."""
    unknown = sorted(set(row) - set(ROW_KEYS))
    if unknown:
        raise SafetyGeoError(f"step {step!r} returned a row with unknown keys {unknown}; "
                             f"allowed: {list(ROW_KEYS)}")
    if not row.get("metric"):
        raise SafetyGeoError(f"step {step!r} returned a row without a metric: {dict(row)}")
    out = dict(row)
    v = out.get("value")
    out["value"] = float("nan") if v is None else float(v)
    for k in ("ci_low", "ci_high", "p", "null_q025", "null_q975", "p_tail"):
        if k in out and out[k] is not None and not isinstance(out[k], float):
            out[k] = float(out[k])
    if out.get("layer") is not None and not (isinstance(out["layer"], float)
                                             and math.isnan(out["layer"])):
        out["layer"] = int(out["layer"])
    return out


# ----------------------------------------------------------------------------- context
class CheckpointContext:
    """What a step sees of one checkpoint: the model (loaded on first use), the report's
    prompt sets, the protocol's load settings, payloads of the steps it needs and of
    prepared (report-level) steps, and a memo shared by the steps of this checkpoint (one
    activation extraction serves rank, coupling and drift).

    Attributes:
        target: the :class:`~safetygeo.reports.jobs.CheckpointTarget`.
        sets: the resolved :class:`~safetygeo.reports.protocol.ReportSets`.
        load: the protocol's :class:`~safetygeo.reports.protocol.LoadSettings`.
        timings: seconds spent loading the model (``"load"``).
    """

    def __init__(self, target: Any, sets: Any, load: Any, *,
                 results: Mapping[str, StepResult] | None = None,
                 prepared: Mapping[str, StepResult] | None = None,
                 loader: Callable[[], Any] | None = None) -> None:
        self.target = target
        self.sets = sets
        self.load = load
        self._results: dict[str, StepResult] = dict(results or {})
        self._prepared = dict(prepared or {})
        self._loader = loader
        self._handle: Any = None
        self.memo: dict[Any, Any] = {}
        self.timings: dict[str, float] = {}

    @property
    def batch_size(self) -> int:
        return int(self.load.batch_size)

    @property
    def handle(self) -> Any:
        """The checkpoint's :class:`~safetygeo.models.ModelHandle` (loaded once, lazily)."""
        if self._handle is None:
            t0 = time.perf_counter()
            self._handle = self._loader() if self._loader is not None else self.target.load(self.load)
            self.timings["load"] = time.perf_counter() - t0
        return self._handle

    @property
    def loaded(self) -> bool:
        return self._handle is not None

    def result(self, name: str) -> StepResult:
        """The result of step ``name`` on this checkpoint (a declared dependency).

        Raises:
            SafetyGeoError: the step was not computed (failed, or not declared in ``needs``).
        """
        if name not in self._results:
            raise SafetyGeoError(f"{self.target.label}: the result of step {name!r} is not "
                                 "available (it failed or is not part of the protocol)")
        return self._results[name]

    def add_result(self, name: str, result: StepResult) -> None:
        self._results[name] = result

    def prepared(self, name: str) -> StepResult:
        """The report-level preparation of step ``name`` (e.g. transfer suffixes)."""
        if name not in self._prepared:
            raise SafetyGeoError(f"the preparation of step {name!r} is not available (its "
                                 "source checkpoint failed)")
        return self._prepared[name]

    def test_activations(self) -> tuple[Any, Any]:
        """Per-prompt activations of the held-out (test) harmful and harmless prompts at
        every layer, positions ``t_inst`` + post-instruction (extracted once per checkpoint
        and shared by the steps that need them)."""
        key = ("test_activations",)
        if key not in self.memo:
            from safetygeo.activations import extract_activations

            self.memo[key] = tuple(
                extract_activations(self.handle, self.sets.split(cls, "test"), layers="all",
                                    positions="t_inst+post_instruction", keep_vectors=True,
                                    batch_size=self.batch_size, progress=False)
                for cls in ("harmful", "harmless"))
        return self.memo[key]


def check_needs(names: Sequence[str]) -> None:
    """Raise if a step in ``names`` needs one that is not in ``names``."""
    for n in names:
        missing = [d for d in get_step(n).needs if d not in names]
        if missing:
            raise SafetyGeoError(f"protocol step {n!r} needs {missing}; add them to steps")
