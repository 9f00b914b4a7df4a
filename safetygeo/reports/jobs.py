"""One checkpoint's work in a trajectory report: the checkpoint (:class:`CheckpointTarget`),
what a worker computes on it (:class:`Job`, picklable for Ray) and :func:`run_job`, which
runs the steps in-process or in a worker and turns every failure into a
:class:`StepRecord` instead of raising.
"""

from __future__ import annotations

import gc
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from safetygeo.reports.protocol import LoadSettings
from safetygeo.reports.registry import (
    CheckpointContext,
    StepOutput,
    StepResult,
    clean_row,
    get_step,
)
from safetygeo.reports.sources import ReportSets, install_plugins

__all__ = ["CheckpointTarget", "Job", "StepRecord", "run_job"]


@dataclass(frozen=True)
class CheckpointTarget:
    """One checkpoint of one trajectory (step 0: the trajectory's base model)."""

    trajectory: str
    path: str
    step: int

    @property
    def label(self) -> str:
        return f"{self.trajectory}@{self.step}"

    def load(self, load: LoadSettings) -> Any:
        """Load the checkpoint with the protocol's dtype / device."""
        from safetygeo.training import Trajectory

        traj = Trajectory.load(self.path, warn=False)
        dtype = None if load.dtype in (None, "auto") else load.dtype
        handle = traj.load_checkpoint(self.step, dtype=dtype, device=load.device)
        handle.model_id = self.label
        return handle


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to compute steps on one checkpoint (picklable)."""

    target: CheckpointTarget
    todo: tuple[tuple[str, Any, str], ...]
    have: Mapping[str, StepResult]
    prepared: Mapping[str, StepResult]
    sets: ReportSets
    load: LoadSettings
    plugins: Mapping[str, Any]
    prepare: bool = False


@dataclass
class StepRecord:
    name: str
    key: str
    output: StepOutput | None
    seconds: float
    error: str | None = None
    trace: str | None = None


def run_job(job: Job, sink: Callable[[StepRecord], None] | None = None) -> dict[str, Any]:
    """Compute ``job.todo`` on one checkpoint (in a worker or in-process); never raises for
    a failing step: it becomes an error record, and steps needing it fail too."""
    install_plugins(job.plugins)
    ctx = CheckpointContext(job.target, job.sets, job.load, results=job.have,
                            prepared=job.prepared)
    done: list[StepRecord] = []
    failed: dict[str, str] = {}
    load_error: str | None = None
    for name, settings, key in job.todo:
        step = get_step(name)
        bad = [d for d in step.needs if d in failed]
        if load_error is not None:
            rec = StepRecord(name, key, None, 0.0, load_error)
        elif bad:
            rec = StepRecord(name, key, None, 0.0, f"needs step {bad[0]!r}, which failed")
        else:
            try:
                ctx.handle  # noqa: B018 - load once, timed separately
            except Exception as exc:  # noqa: BLE001 - reported, the other checkpoints go on
                load_error = f"cannot load {job.target.label}: {type(exc).__name__}: {exc}"
                rec = StepRecord(name, key, None, 0.0, load_error, traceback.format_exc())
            else:
                t0 = time.perf_counter()
                try:
                    fn = step.prepare if job.prepare else step.run
                    assert fn is not None
                    out = fn(ctx, settings)
                    out.rows = [clean_row(r, name) for r in out.rows]
                    secs = time.perf_counter() - t0
                    rec = StepRecord(name, key, out, secs)
                    ctx.add_result(name, StepResult(out.rows, out.data, out.files, key, secs))
                except Exception as exc:  # noqa: BLE001
                    rec = StepRecord(name, key, None, time.perf_counter() - t0,
                                f"{type(exc).__name__}: {exc}", traceback.format_exc())
        if rec.error is not None:
            failed[name] = rec.error
        done.append(rec)
        if sink is not None:
            sink(rec)
    loaded = ctx.loaded
    load_seconds = ctx.timings.get("load", 0.0)
    del ctx
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
    return {"done": [] if sink is not None else done, "loaded": loaded,
            "load_seconds": load_seconds, "pid": os.getpid()}
