"""Where independent units of work run: in this process, or as tasks of a Ray cluster.

An executor maps a picklable function over argument tuples and yields ``(index, Outcome)``
as each finishes (in completion order). The *driver* (the caller) keeps every write to
disk: tasks only return values, so a multi-node cluster needs no shared filesystem for
results (it does need the inputs — checkpoints, prompt files — where the tasks run).

* :class:`LocalExecutor` runs the calls one after the other in this process.
* :class:`RayExecutor` submits each call as a Ray task with ``num_gpus`` / ``num_cpus``
  resources. It connects to ``address`` (or ``$RAY_ADDRESS``), else starts a local Ray
  instance with ``workers`` CPUs, which it shuts down on :meth:`~RayExecutor.close`. Ray
  is an optional dependency (``pip install "safetygeo[ray]"``).

An exception inside a call is captured as a failed :class:`Outcome` (type, message,
traceback) rather than raised, so one bad unit never stops the others; a Ray worker that
dies (out of memory, killed) is reported the same way.

Example:
    >>> with make_executor("local") as ex:
    ...     sorted((i, o.value) for i, o in ex.map(divmod, [(7, 2), (9, 3)]))
    [(0, (3, 1)), (1, (3, 0))]
    >>> with make_executor("local") as ex:
    ...     [o.error for _, o in ex.map(divmod, [(1, 0)])]
    ['ZeroDivisionError: integer division or modulo by zero']
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetygeo.errors import SafetyGeoError

__all__ = ["EXECUTORS", "Executor", "ExecutorSettings", "LocalExecutor", "Outcome", "RayExecutor",
           "make_executor"]

EXECUTORS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class Outcome:
    """What one call gave: its ``value``, or ``error`` (``"Type: message"``) and ``trace``."""

    value: Any = None
    error: str | None = None
    trace: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Outcome:
    """Run ``fn(*args)``; an ``Exception`` becomes a failed outcome (``KeyboardInterrupt``
    and ``SystemExit`` propagate: a killed run stops)."""
    try:
        return Outcome(fn(*args))
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the others
        return Outcome(None, _describe(exc), traceback.format_exc())


class Executor:
    """Base class: ``map`` yields ``(index, Outcome)`` in completion order."""

    name = "base"

    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *,
            num_gpus: float = 0.0, num_cpus: float = 1.0) -> Iterator[tuple[int, Outcome]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name}

    def close(self) -> None:
        """Release what the executor started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LocalExecutor(Executor):
    """Calls run one after the other in this process (resources are ignored)."""

    name = "local"

    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *,
            num_gpus: float = 0.0, num_cpus: float = 1.0) -> Iterator[tuple[int, Outcome]]:
        for i, args in enumerate(items):
            yield i, _call(fn, args)


def _package_root() -> str:
    """The folder holding the imported ``safetygeo`` package (for local workers' path)."""
    import safetygeo

    return str(Path(safetygeo.__file__).resolve().parents[1])


class RayExecutor(Executor):
    """Each call is a Ray task with ``num_gpus`` / ``num_cpus``; results come back to the
    driver.

    Args:
        address: a running cluster (``"ray://head:10001"``, ``"auto"``, ``"HOST:6379"``);
            default ``$RAY_ADDRESS``; neither: start a local instance.
        workers: CPUs of a local instance (default: all), i.e. concurrent 1-CPU tasks.
        runtime_env: passed to ``ray.init`` (a local instance gets the path of this
            ``safetygeo`` and the caller's ``PYTHONPATH`` so its workers import the same code).

    Raises:
        SafetyGeoError: Ray is not installed.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None,
                 runtime_env: dict[str, Any] | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise SafetyGeoError("the ray executor needs Ray: pip install 'safetygeo[ray]' "
                                 "(or pip install ray)") from exc
        self._ray = ray
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.workers = workers
        self._started = False
        if not ray.is_initialized():
            if self.address is None:
                path = os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH"))
                                       if p)
                env = runtime_env or {"env_vars": {"PYTHONPATH": path}}
                ray.init(num_cpus=workers, include_dashboard=False, runtime_env=env,
                         log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=False,
                         configure_logging=False)
            self._started = True

    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *,
            num_gpus: float = 0.0, num_cpus: float = 1.0) -> Iterator[tuple[int, Outcome]]:
        ray = self._ray
        remote = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_retries=0)(_call)
        refs = {remote.remote(fn, args): i for i, args in enumerate(items)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a dead worker, an unpicklable result
                    outcome = Outcome(None, _describe(exc), traceback.format_exc())
                yield refs[ref], outcome

    def describe(self) -> dict[str, Any]:
        res = self._ray.cluster_resources()
        return {"executor": self.name, "address": self.address or "local",
                "cpus": res.get("CPU"), "gpus": res.get("GPU", 0.0),
                "nodes": len(self._ray.nodes())}

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


@dataclass(frozen=True)
class ExecutorSettings:
    """Where jobs run, as one object (never re-spread into keywords).

    Attributes:
        kind: ``"local"`` (in-process) or ``"ray"``.
        address: Ray cluster address (default ``$RAY_ADDRESS``; neither: a local instance).
        workers: CPUs of a local Ray instance.

    Example:
        >>> ExecutorSettings().make().describe()["executor"]
        'local'
    """

    kind: str = "local"
    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise SafetyGeoError(f"unknown executor {self.kind!r}; choose from {EXECUTORS}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise SafetyGeoError(f"workers must be a positive int, got {self.workers!r}")

    def make(self) -> Executor:
        """The executor these settings describe."""
        return make_executor(self.kind, address=self.address, workers=self.workers)


def make_executor(kind: str = "local", *, address: str | None = None,
                  workers: int | None = None) -> Executor:
    """An executor by name: ``"local"`` or ``"ray"`` (see :class:`RayExecutor`).

    Raises:
        SafetyGeoError: an unknown name, or Ray missing.
    """
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address, workers=workers)
    raise SafetyGeoError(f"unknown executor {kind!r}; choose from {EXECUTORS}")
