"""Batch geometry reports across training trajectories: :func:`run_report`.

For every selected checkpoint of every trajectory (and its base), the protocol's steps
(:mod:`safetygeo.reports.steps`) are computed into one tidy table — ``trajectory, step,
layer, position, metric, value, ci_low, ci_high, p, q`` then ``protocol_step, set, method,
n, null_q025, null_q975, note, checkpoint, p_tail`` — written as Parquet and CSV next to a
self-contained interactive HTML report.

How a run proceeds (the *driver* is this process; it alone writes files):

1. **Targets.** Trajectory folders are opened (cheap: markers, sizes); the protocol's
   :class:`~safetygeo.reports.protocol.CheckpointSelection` picks steps. A damaged
   checkpoint (:attr:`Trajectory.damaged`), an unreadable trajectory, or a checkpoint that
   later fails to load is **reported** — a table row with ``metric = "error"``, a line in
   ``status.csv`` and a section of the HTML — and skipped; the others finish.
2. **Keys.** Each checkpoint gets a content key and each (checkpoint, step) a step key
   (:mod:`safetygeo.reports.cache`); cached results are read, the rest is computed.
   Checkpoints with identical content (a trajectory's base is often another run's last
   checkpoint) are computed once.
3. **Preparation** (report-level, e.g. the transfer step's GCG suffixes on its source),
   then **one job per checkpoint** with something to compute, mapped over the executor
   (in-process, or Ray tasks with ``num_gpus`` each). A job loads the model once and runs
   its missing steps in protocol order; one extraction of the held-out prompts serves
   rank, drift and coupling. In-process, each step's result is cached as soon as it is
   computed, so a killed report resumes where it stopped.
4. **Cross-checkpoint** results (drift against the reference) are computed by the driver
   from cached per-checkpoint vectors, and cached too.
5. q-values: Benjamini–Hochberg across the report, per metric, over the rows with a p
   (the tail estimate ``p_tail`` where it is below ``p``, as sweeps do).

Counting, not timing: :attr:`ReportResult.counts` says how many step results were
``computed``, read from the cache (``cached``) or ``failed``, and how many models were
loaded; ``status.csv`` has one line per (checkpoint, step) with its status and seconds.

Example:
    >>> import tempfile
    >>> r = run_report(["/nonexistent/run"], tempfile.mkdtemp(), html=False)
    >>> r.counts["failed"], r.table.metric.tolist(), r.failures.protocol_step.tolist()
    (1, ['error'], ['trajectory'])
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from safetygeo import __version__
from safetygeo._executor import Executor, ExecutorSettings, LocalExecutor
from safetygeo._io import atomic_path, atomic_write_json, atomic_write_text
from safetygeo.errors import SafetyGeoError
from safetygeo.reports.cache import HashMemo, ResultCache, checkpoint_content_key, step_key
from safetygeo.reports.jobs import CheckpointTarget, Job, StepRecord, run_job
from safetygeo.reports.protocol import Protocol, ProtocolError, settings_to_dict
from safetygeo.reports.registry import (
    StepResult,
    clean_row,
    get_step,
)
from safetygeo.reports.sources import ReportSets, plugin_state, resolve_sets

__all__ = ["TABLE_COLUMNS", "CheckpointTarget", "ReportResult", "read_report", "run_report"]

#: Columns of the report table, in order (the first ten are the issue's contract).
TABLE_COLUMNS: tuple[str, ...] = (
    "trajectory", "step", "layer", "position", "metric", "value", "ci_low", "ci_high", "p", "q",
    "protocol_step", "set", "method", "n", "null_q025", "null_q975", "note", "checkpoint",
    "p_tail")
STATUS_COLUMNS: tuple[str, ...] = ("trajectory", "step", "checkpoint", "protocol_step", "status",
                                   "seconds", "key", "error")


@dataclass
class ReportResult:
    """What :func:`run_report` produced.

    Attributes:
        table: the tidy table (:data:`TABLE_COLUMNS`).
        status: one row per (checkpoint, step): ``computed`` / ``cached`` / ``failed``.
        failures: the failed rows of ``status`` (trajectory, step, protocol_step, error).
        counts: ``computed``, ``cached``, ``failed`` step results and ``models_loaded``.
        out: the output folder; html: the HTML report (``None`` when not written).
        protocol: the protocol run; seconds: wall time; executor: what ran the jobs.
        figures: static images written (``export=``).
    """

    table: pd.DataFrame
    status: pd.DataFrame
    failures: pd.DataFrame
    counts: dict[str, int]
    out: Path
    html: Path | None
    protocol: Protocol
    seconds: float
    executor: dict[str, Any] = field(default_factory=dict)
    sets: ReportSets | None = None
    figures: list[Path] = field(default_factory=list)


def _parse_ref(spec: str, what: str) -> tuple[str, int]:
    name, sep, step = spec.rpartition("@")
    if not sep or not name:
        raise ProtocolError(f"{what} {spec!r} must be NAME@STEP")
    try:
        return name, int(step)
    except ValueError:
        raise ProtocolError(f"{what} {spec!r}: {step!r} is not a step number") from None


# ============================================================================ driver
class _Driver:
    def __init__(self, protocol: Protocol, out: Path, executor: Executor, progress: bool) -> None:
        self.protocol = protocol
        self.out = out
        self.executor = executor
        self.progress = progress
        self.cache = ResultCache(out / "cache")
        self.memo = HashMemo(out / "cache" / "hashes.json")
        self.counts = {"computed": 0, "cached": 0, "failed": 0, "models_loaded": 0}
        self.status: list[dict[str, Any]] = []
        self.trajs: dict[str, Any] = {}
        self.paths: list[Path] = []
        self.targets: list[CheckpointTarget] = []
        self.extra: list[CheckpointTarget] = []
        self.ckey: dict[CheckpointTarget, str] = {}
        self.keys: dict[CheckpointTarget, dict[str, str]] = {}
        self.results: dict[tuple[str, str], StepResult] = {}   # (ckey, step) -> result
        self.errors: dict[tuple[str, str], str] = {}           # (ckey, step) -> error
        self.prep: dict[str, StepResult] = {}
        self.prep_error: dict[str, str] = {}
        self.prep_key: dict[str, str] = {}
        self.prep_source: dict[str, CheckpointTarget] = {}
        self.final: dict[tuple[CheckpointTarget, str], StepResult] = {}
        self.final_error: dict[tuple[CheckpointTarget, str], str] = {}
        self.refs: dict[tuple[CheckpointTarget, str], CheckpointTarget | None] = {}
        self.failed_targets: dict[CheckpointTarget, tuple[str, str]] = {}
        self.sets: ReportSets | None = None
        self.digests: dict[str, str] = {}

    # -- bookkeeping ---------------------------------------------------------------
    def log(self, target: CheckpointTarget | None, traj: str, step: Any, pstep: str, status: str,
            seconds: float = 0.0, key: str = "", error: str | None = None) -> None:
        self.status.append({"trajectory": traj, "step": step,
                            "checkpoint": target.label if target else None,
                            "protocol_step": pstep, "status": status, "seconds": seconds,
                            "key": key, "error": error})
        if status in self.counts:
            self.counts[status] += 1

    # -- 1. targets ----------------------------------------------------------------
    def open_trajectories(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        from safetygeo.training import Trajectory

        names: set[str] = set()
        for p in paths:
            path = Path(p)
            name = path.name or str(path)
            k = 2
            while name in names:
                name, k = f"{path.name}-{k}", k + 1
            names.add(name)
            try:
                traj = Trajectory.load(path, warn=False)
            except Exception as exc:  # noqa: BLE001 - reported, the other trajectories go on
                self.log(None, name, None, "trajectory", "failed",
                         error=f"{type(exc).__name__}: {exc}")
                continue
            self.trajs[name] = traj
            self.paths.append(path)
            damaged = {d.step: d.reason for d in traj.damaged}
            pool = sorted(set(traj.steps) | set(damaged))
            for s in self.protocol.checkpoints.select(pool):
                t = CheckpointTarget(name, str(path), s)
                self.targets.append(t)
                if s in damaged:
                    self.failed_targets[t] = ("checkpoint", f"damaged checkpoint: {damaged[s]}")

    def resolve(self, spec: str, what: str) -> CheckpointTarget:
        """``NAME@STEP`` → a target (a report trajectory, a folder, or a sibling folder)."""
        from safetygeo.training import Trajectory

        name, step = _parse_ref(spec, what)
        if name in self.trajs:
            traj, path = self.trajs[name], str(self.trajs[name].path)
        else:
            cands = [Path(name)] + [p.parent / name for p in self.paths]
            found = next((c for c in cands if (c / "trajectory.json").is_file()), None)
            if found is None:
                raise ProtocolError(f"{what} {spec!r}: no trajectory {name!r} among the report's "
                                    f"({sorted(self.trajs)}) nor a folder of that name")
            traj, path = Trajectory.load(found, warn=False), str(found)
            name = found.name
            self.trajs.setdefault(name, traj)
        if step != 0 and step not in traj.steps:
            raise ProtocolError(f"{what} {spec!r}: trajectory {name!r} has no intact step "
                                f"{step}; steps: {traj.steps}")
        for t in self.targets + self.extra:
            if t.trajectory == name and t.step == step:
                return t
        t = CheckpointTarget(name, path, step)
        self.extra.append(t)
        return t

    # -- 2. keys -------------------------------------------------------------------
    def content_keys(self) -> None:
        for t in self.targets + self.extra:
            if t in self.failed_targets:
                continue
            try:
                self.ckey[t] = checkpoint_content_key(self.trajs[t.trajectory], t.step, self.memo)[0]
            except Exception as exc:  # noqa: BLE001
                self.failed_targets[t] = ("checkpoint", f"{type(exc).__name__}: {exc}")
        self.memo.save()

    def step_identity(self, t: CheckpointTarget, name: str, settings: Any) -> dict[str, Any]:
        step = get_step(name)
        return {"checkpoint": self.ckey[t], "step": name, "settings": settings_to_dict(settings),
                "sets": {p: self.digests[p] for p in step.sets},
                "needs": {d: self.keys[t][d] for d in step.needs},
                "prepared": self.prep_key.get(name)}

    def step_keys(self) -> None:
        for t, ck in self.ckey.items():
            self.keys[t] = {}
            for name, settings in self.protocol.steps:
                self.keys[t][name] = step_key(self.step_identity(t, name, settings))

    # -- 3. preparation --------------------------------------------------------------
    def prepare(self) -> None:
        jobs, meta = [], []
        for name, settings in self.protocol.steps:
            step = get_step(name)
            if step.prepare is None:
                continue
            source = getattr(settings, "source", "")
            if not source:
                raise ProtocolError(f"steps.{name}.source is required (NAME@STEP of the checkpoint "
                                    "to prepare on)")
            src = self.resolve(source, f"steps.{name}.source")
            self.prep_source[name] = src
            if src not in self.ckey:
                self.content_keys()
            if src not in self.ckey:
                self.prep_error[name] = (f"source {src.label} failed: "
                                         f"{self.failed_targets.get(src, ('', '?'))[1]}")
                continue
            full = settings_to_dict(settings)
            used = {k: full[k] for k in (step.prepare_keys or tuple(full))}
            ident = {"checkpoint": self.ckey[src], "step": f"{name}:prepare", "settings": used,
                     "sets": {p: self.digests[p] for p in step.sets}}
            key = step_key(ident)
            self.prep_key[name] = key
            cached = self.cache.load(f"{name}-prepare", key)
            if cached is not None:
                self.prep[name] = cached
                self.log(src, src.trajectory, src.step, f"{name}:prepare", "cached", key=key)
                continue
            jobs.append(Job(src, ((name, settings, key),), {}, {}, self.sets_, self.protocol.load,
                             plugin_state(), prepare=True))
            meta.append((name, ident))
        for i, outcome in self._map(jobs):
            name, ident = meta[i]
            src = self.prep_source[name]
            recs = outcome.value["done"] if outcome.ok else []
            if not outcome.ok or not recs or recs[0].error:
                err = (recs[0].error if recs and recs[0].error else outcome.error) or "failed"
                self.prep_error[name] = f"preparation on {src.label} failed: {err}"
                self.log(src, src.trajectory, src.step, f"{name}:prepare", "failed",
                         key=self.prep_key[name], error=err)
                continue
            if outcome.value["loaded"]:
                self.counts["models_loaded"] += 1
            rec = recs[0]
            assert rec.output is not None
            self.prep[name] = self.cache.save(f"{name}-prepare", rec.key, rec.output,
                                              identity=ident, seconds=rec.seconds)
            self.log(src, src.trajectory, src.step, f"{name}:prepare", "computed", rec.seconds,
                     rec.key)

    # -- 4. per-checkpoint jobs ------------------------------------------------------
    def _map(self, jobs: list[Job]) -> Any:
        if not jobs:
            return iter(())
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="checkpoints", disable=not self.progress, leave=False)
        if isinstance(self.executor, LocalExecutor):
            return self._map_local(jobs, bar)
        gpus = self.protocol.load.gpus()
        it = self.executor.map(run_job, [(j,) for j in jobs], num_gpus=gpus,
                               num_cpus=self.protocol.load.num_cpus)

        def gen() -> Any:
            for i, o in it:
                bar.update()
                yield i, o
            bar.close()
        return gen()

    def _map_local(self, jobs: list[Job], bar: Any) -> Any:
        from safetygeo._executor import Outcome

        for i, job in enumerate(jobs):
            sink: list[StepRecord] = []
            cb = self._sink(job) if not job.prepare else sink.append
            try:
                value = run_job(job, cb)
            except Exception as exc:  # noqa: BLE001 - run_job reports step errors itself
                yield i, Outcome(None, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                continue
            if job.prepare:
                value["done"] = sink
            bar.update()
            yield i, Outcome(value)
        bar.close()

    def _sink(self, job: Job) -> Callable[[StepRecord], None]:
        def write(rec: StepRecord) -> None:
            self.record(job, rec)
        return write

    def record(self, job: Job, rec: StepRecord) -> None:
        ck = self.ckey[job.target]
        t = job.target
        if rec.error is None and rec.output is not None:
            settings = dict(self.protocol.steps)[rec.name]
            ident = self.step_identity(t, rec.name, settings)
            self.results[(ck, rec.name)] = self.cache.save(rec.name, rec.key, rec.output,
                                                           identity=ident, seconds=rec.seconds)
            self.log(t, t.trajectory, t.step, rec.name, "computed", rec.seconds, rec.key)
        else:
            self.errors[(ck, rec.name)] = rec.error or "failed"
            self.log(t, t.trajectory, t.step, rec.name, "failed", rec.seconds, rec.key, rec.error)

    def checkpoints(self) -> None:
        jobs: list[Job] = []
        seen: dict[str, CheckpointTarget] = {}
        for t in self.targets + self.extra:
            if t not in self.ckey:
                continue
            ck = self.ckey[t]
            if ck in seen:  # same content as an earlier target: computed once
                continue
            seen[ck] = t
            todo, have = [], {}
            for name, settings in self.protocol.steps:
                if t in self.extra and name != "drift":
                    continue  # a reference outside the report: only what drift needs
                key = self.keys[t][name]
                if name in self.prep_error:
                    self.errors[(ck, name)] = self.prep_error[name]
                    self.log(t, t.trajectory, t.step, name, "failed", key=key,
                             error=self.prep_error[name])
                    continue
                res = self.cache.load(name, key)
                if res is not None:
                    self.results[(ck, name)] = res
                    self.log(t, t.trajectory, t.step, name, "cached", res.seconds, key)
                    have[name] = res
                else:
                    todo.append((name, settings, key))
            if todo:
                # dependencies' payloads only (their files stay in the cache)
                deps = {d: StepResult(r.rows, r.data, {}, r.key, r.seconds, True)
                        for d, r in have.items()}
                prepared = {n: self.prep[n] for n, _, _ in todo if n in self.prep}
                jobs.append(Job(t, tuple(todo), deps, prepared, self.sets_, self.protocol.load,
                                 plugin_state()))
        for i, outcome in self._map(jobs):
            job = jobs[i]
            if not outcome.ok:
                for name, _, key in job.todo:
                    self.record(job, StepRecord(name, key, None, 0.0, outcome.error))
                continue
            if outcome.value["loaded"]:
                self.counts["models_loaded"] += 1
                t = job.target
                self.log(t, t.trajectory, t.step, "load", "loaded", outcome.value["load_seconds"])
            for rec in outcome.value["done"]:
                self.record(job, rec)

    # -- 5. cross-checkpoint -----------------------------------------------------------
    def finalize(self) -> None:
        for name, settings in self.protocol.steps:
            step = get_step(name)
            if step.finalize is None:
                continue
            ref_spec = getattr(settings, "reference", "first")
            fixed = None if ref_spec == "first" else self.resolve(ref_spec, f"steps.{name}.reference")
            if fixed is not None and fixed not in self.ckey:
                self.content_keys()
            firsts: dict[str, CheckpointTarget] = {}
            for t in self.targets:
                firsts.setdefault(t.trajectory, t)
            for t in self.targets:
                ref = fixed or firsts[t.trajectory]
                self.refs[(t, name)] = ref
                if t not in self.ckey:
                    continue
                cur_err = self.errors.get((self.ckey[t], name))
                ref_err = (self.failed_targets.get(ref, (None, None))[1] if ref not in self.ckey
                           else self.errors.get((self.ckey[ref], name)))
                if cur_err or ref_err or (self.ckey[t], name) not in self.results \
                        or (self.ckey.get(ref), name) not in self.results:
                    if not cur_err:  # the checkpoint's own failure is reported already
                        err = f"reference {ref.label} failed: {ref_err or 'not computed'}"
                        self.final_error[(t, name)] = err
                        self.log(t, t.trajectory, t.step, f"{name}:final", "failed", error=err)
                    continue
                rk, ck = self.keys[ref][name], self.keys[t][name]
                ident = {"step": f"{name}:final", "reference": rk, "checkpoint": ck,
                         "settings": settings_to_dict(settings)}
                key = step_key(ident)
                res = self.cache.load(f"{name}-final", key)
                if res is not None:
                    self.final[(t, name)] = res
                    self.log(t, t.trajectory, t.step, f"{name}:final", "cached", res.seconds, key)
                    continue
                t0 = time.perf_counter()
                try:
                    a = self.cache.load(name, rk, files=True)
                    b = self.cache.load(name, ck, files=True)
                    if a is None or b is None:
                        raise SafetyGeoError("the cached per-checkpoint result is unreadable")
                    out = step.finalize(a, b, settings)
                    out.rows = [clean_row(r, name) for r in out.rows]
                except Exception as exc:  # noqa: BLE001
                    err = f"{type(exc).__name__}: {exc}"
                    self.final_error[(t, name)] = err
                    self.log(t, t.trajectory, t.step, f"{name}:final", "failed", error=err)
                    continue
                secs = time.perf_counter() - t0
                self.final[(t, name)] = self.cache.save(f"{name}-final", key, out, identity=ident,
                                                        seconds=secs)
                self.log(t, t.trajectory, t.step, f"{name}:final", "computed", secs, key)

    # -- 6. the table ------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []

        def add(t: CheckpointTarget | None, traj: str, step: Any, pstep: str,
                recs: list[dict[str, Any]]) -> None:
            for r in recs:
                rows.append({"trajectory": traj, "step": step, "protocol_step": pstep,
                             "checkpoint": t.label if t else None, **r})

        def error(t: CheckpointTarget | None, traj: str, step: Any, pstep: str, msg: str) -> None:
            add(t, traj, step, pstep, [{"metric": "error", "value": float("nan"), "note": msg}])

        for s in self.status:
            if s["protocol_step"] == "trajectory" and s["status"] == "failed":
                error(None, s["trajectory"], None, "trajectory", s["error"])
        for t in self.targets:
            if t in self.failed_targets:
                pstep, msg = self.failed_targets[t]
                error(t, t.trajectory, t.step, pstep, msg)
                continue
            ck = self.ckey[t]
            for name, _ in self.protocol.steps:
                if (ck, name) in self.errors:
                    error(t, t.trajectory, t.step, name, self.errors[(ck, name)])
                    continue
                res = self.results.get((ck, name))
                if res is not None:
                    add(t, t.trajectory, t.step, name, res.rows)
                if (t, name) in self.final:
                    add(t, t.trajectory, t.step, name, self.final[(t, name)].rows)
                elif (t, name) in self.final_error:
                    error(t, t.trajectory, t.step, name, self.final_error[(t, name)])
            for name, src in self.prep_source.items():
                if src == t and name in self.prep:
                    add(t, t.trajectory, t.step, name, self.prep[name].rows)
        table = pd.DataFrame(rows)
        for col in TABLE_COLUMNS:
            if col not in table:
                table[col] = np.nan if col not in ("trajectory", "metric", "protocol_step", "set",
                                                   "method", "note", "position", "checkpoint") else None
        table = table[list(TABLE_COLUMNS)]
        table["q"] = np.nan
        from safetygeo.stats.pvalues import benjamini_hochberg

        p_tail = pd.to_numeric(table.p_tail, errors="coerce").astype(float)
        p_bh = np.fmin(table.p.astype(float), p_tail)  # a tail estimate below p refines it
        for _, grp in table[table.p.notna()].groupby("metric"):
            table.loc[grp.index, "q"] = benjamini_hochberg(p_bh[grp.index].to_numpy(dtype=float))
        for col in ("layer", "step", "n"):
            table[col] = pd.array(pd.to_numeric(table[col], errors="coerce"), dtype="Int64")
        for col in ("value", "ci_low", "ci_high", "p", "q", "null_q025", "null_q975", "p_tail"):
            table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
        for col in ("trajectory", "position", "metric", "protocol_step", "set", "method", "note",
                    "checkpoint"):
            table[col] = table[col].astype(object).where(table[col].notna(), None)
        return table.reset_index(drop=True)

    @property
    def sets_(self) -> ReportSets:
        assert self.sets is not None
        return self.sets


# ============================================================================ entry point
def run_report(
    trajectories: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    protocol: Protocol | None = None,
    *,
    executor: str | ExecutorSettings | Executor = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    title: str | None = None,
    html: bool = True,
    export: Sequence[str] = (),
    progress: bool = False,
) -> ReportResult:
    """Run ``protocol`` over every selected checkpoint of ``trajectories`` into ``out``.

    Args:
        trajectories: trajectory folders (``trajectory.json`` + ``step-NNNNNN/``).
        out: output folder: ``table.parquet``, ``table.csv``, ``status.csv``,
            ``protocol.yaml``, ``report.json``, ``report.html`` and ``cache/``.
        protocol: the :class:`~safetygeo.reports.protocol.Protocol` (default:
            :func:`~safetygeo.reports.protocol.default_protocol` — ``Protocol.toy()`` for the
            toy zoo's trajectories, else every default step with default settings).
        executor: where the checkpoint jobs run: an
            :class:`~safetygeo._executor.ExecutorSettings` (kind ``local`` / ``ray``, Ray
            address, workers), a running :class:`~safetygeo._executor.Executor` (not closed
            here), or a kind name.
        ray_address, workers: with a kind name only (the older form of
            ``ExecutorSettings(kind, address, workers)``).
        title: HTML title.
        html: also write the HTML report.
        export: also write every figure as static images in these formats (``"png"``,
            ``"svg"``, ``"pdf"``) under ``out/figures/`` — needs kaleido (``safetygeo[static]``)
            and a Chromium; silently nothing without them.
        progress: a progress bar over checkpoints.

    Raises:
        ProtocolError: an invalid protocol (e.g. a transfer source that does not exist).
        SafetyGeoError: a prompt set cannot be loaded.
    """
    t_start = time.perf_counter()
    if protocol is None:
        from safetygeo.reports.protocol import default_protocol

        protocol = default_protocol(trajectories)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SafetyGeoError(f"{str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(executor, str):
        executor = ExecutorSettings(executor, ray_address, workers)
    elif ray_address is not None or workers is not None:
        raise SafetyGeoError("ray_address / workers go into ExecutorSettings(kind, address, "
                             "workers), not beside an executor object")
    own = isinstance(executor, ExecutorSettings)
    ex = executor.make() if isinstance(executor, ExecutorSettings) else executor
    try:
        d = _Driver(protocol, out, ex, progress)
        d.sets = resolve_sets(protocol.sets)
        d.digests = {p: d.sets.digest(p) for p in ("harmful", "harmless", "behavior")}
        d.open_trajectories(trajectories)
        for name, settings in protocol.steps:  # resolve references early (clear errors)
            ref = getattr(settings, "reference", "first")
            if get_step(name).finalize is not None and ref != "first":
                d.resolve(ref, f"steps.{name}.reference")
        d.content_keys()
        d.prepare()
        d.step_keys()
        d.checkpoints()
        d.finalize()
        info = ex.describe()
    finally:
        if own:
            ex.close()
    for t, (pstep, msg) in d.failed_targets.items():
        if t in d.targets:
            d.log(t, t.trajectory, t.step, pstep, "failed", error=msg)
    table = d.table()
    status = pd.DataFrame(d.status, columns=list(STATUS_COLUMNS))
    failures = status[status.status == "failed"][["trajectory", "step", "checkpoint",
                                                  "protocol_step", "error"]].reset_index(drop=True)
    seconds = time.perf_counter() - t_start
    result = ReportResult(table, status, failures, dict(d.counts), out, None, protocol, seconds,
                          info, d.sets)
    _write(result, d)
    if html or export:
        from safetygeo.reports.trajectory_figures import export_figures
        from safetygeo.reports.trajectory_html import ReportInfo, build_report

        page_info = ReportInfo(result, d.refs, d.prep, d.cache)
        page = build_report(result, title=title, info=page_info)
        if html:
            path = out / "report.html"
            page.save(path)
            result.html = path
        if export:
            result.figures = export_figures(page_info.figures, out / "figures",
                                            formats=tuple(export))
    return result


def _write(result: ReportResult, d: _Driver) -> None:
    out = result.out
    with atomic_path(out / "table.parquet") as tmp:
        result.table.to_parquet(tmp, index=False)
    # what the caller gets is exactly what is on disk (dtypes included)
    result.table = pd.read_parquet(out / "table.parquet")
    atomic_write_text(out / "table.csv", result.table.to_csv(index=False))
    atomic_write_text(out / "status.csv", result.status.to_csv(index=False))
    atomic_write_text(out / "protocol.yaml", result.protocol.to_yaml())
    atomic_write_json(out / "report.json", {
        "format": "safetygeo.trajectory_report", "format_version": 1,
        "safetygeo_version": __version__, "counts": result.counts, "seconds": result.seconds,
        "executor": result.executor, "protocol_sha256": result.protocol.sha256(),
        "trajectories": {n: str(t.path) for n, t in d.trajs.items()},
        "checkpoints": [t.label for t in d.targets], "n_failed": len(result.failures)})


def read_report(out: str | os.PathLike[str]) -> pd.DataFrame:
    """The table of a report folder (``table.parquet``).

    Raises:
        SafetyGeoError: no report table in ``out``.
    """
    path = Path(out) / "table.parquet"
    if not path.is_file():
        raise SafetyGeoError(f"no report table in {str(out)!r} (table.parquet is missing)")
    return pd.read_parquet(path)
