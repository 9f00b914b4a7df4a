"""Checkpoints of a trajectory: the atomic commit protocol, completeness markers with SHA-256,
scanning, verification, damage reports and quarantine.

Atomicity: the trainer writes a checkpoint into ``out/.partial/``; safetygeo adds the method
state, fsyncs and hashes every file, writes the completeness marker ``checkpoint.json``
(every file's size and SHA-256) last, then renames the folder to ``step-NNNNNN`` and
rewrites the manifest atomically. The markers, not the manifest's list, are the source of
truth: a run killed between the rename and the manifest rewrite loses nothing.

Damage: a ``step-NNNNNN`` folder only ever appears by that rename, so every one was
complete once. One whose marker is missing or torn, or whose files no longer match it
(missing, other size, or — checked when it is loaded or resumed from — other SHA-256) is
*damaged*: it is listed in :attr:`~safetygeo.training.trajectory.Trajectory.damaged` with a
:class:`~safetygeo.errors.DamagedCheckpointWarning`, asking for it raises
:class:`~safetygeo.training.errors.DamagedCheckpointError`, and it is never deleted;
a rerun of training moves it aside (:func:`quarantine_checkpoint`: ``step-NNNNNN.damaged-
<UTC time>``). Only the staging folder and hidden ``.*.tmp`` folders are crash debris that
:func:`clean_partial` removes.

Example:
    >>> import tempfile, warnings
    >>> out = Path(tempfile.mkdtemp())
    >>> step_dir_name(50)
    'step-000050'
    >>> (out / ".partial").mkdir()  # crash debris: removed
    >>> (out / "step-000050").mkdir()  # was complete once, lost its marker: kept, reported
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     scan_checkpoints(out), [p.name for p in clean_partial(out)]
    ([], ['.partial'])
    >>> str(w[0].message)  # doctest: +ELLIPSIS
    "...damaged checkpoint(s): step 50 (checkpoint.json is missing)..."
    >>> [d.step for d in scan_trajectory(out).damaged]
    [50]
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from safetygeo._identity import jsonable as _jsonable
from safetygeo._io import atomic_write_json, file_sha256
from safetygeo.errors import DamagedCheckpointWarning
from safetygeo.training.errors import (
    DamagedCheckpointError,
    TrajectoryError,
)

MANIFEST = "trajectory.json"
MARKER = "checkpoint.json"
STAGING = ".partial"
BASE_DIR = "base"
CALLBACKS_FILE = "callbacks.jsonl"
METHOD_STATE_JSON = "method_state.json"
METHOD_STATE_TENSORS = "method_state.safetensors"
MANIFEST_FORMAT = "safetygeo.trajectory"
MARKER_FORMAT = "safetygeo.checkpoint"
#: Marker version 2 records ``{"size", "sha256"}`` per file; version 1 (sizes only) is still read.
MARKER_VERSION = 2
QUARANTINE_NOTE = "quarantine.json"
_STEP_RE = re.compile(r"^step-(\d{6,})$")
_QUARANTINED_RE = re.compile(r"^step-(\d{6,})\.damaged-(\d{8}T\d{6})(?:-\d+)?$")
_HASH_CHUNK = 4 << 20
#: Files only resuming reads (not :meth:`Trajectory.load_checkpoint`): hash-checked on resume.
_RESUME_ONLY = re.compile(r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|trainer_state\.json|"
                          r"rng_state(_\d+)?\.pth)$")
#: Pickled files the trainer writes that nothing reads back; removed from checkpoints.
_DROP_FILES = ("training_args.bin",)


def step_dir_name(step: int) -> str:
    """Folder name of the checkpoint after ``step`` optimizer steps (6-digit zero pad)."""
    return f"step-{step:06d}"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- checkpoints
@dataclass(frozen=True)
class CheckpointInfo:
    """One complete checkpoint: its step, folder and the metrics logged at that step."""

    step: int
    path: Path
    metrics: dict[str, Any]
    time: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "path": self.path.name, "metrics": self.metrics, "time": self.time}


@dataclass(frozen=True)
class DamagedCheckpoint:
    """A checkpoint folder that was once complete and no longer is.

    Attributes:
        step: its step (from the folder name).
        path: the folder (``step-NNNNNN``, or ``step-NNNNNN.damaged-<time>`` once quarantined).
        reason: what is wrong, naming the file (e.g. ``"model.safetensors is 100 bytes,
            checkpoint.json recorded 1234"``).
        quarantined: when it was moved aside (UTC, ISO 8601); ``None`` while still in place.
    """

    step: int
    path: Path
    reason: str
    quarantined: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "path": self.path.name, "reason": self.reason,
                "quarantined": self.quarantined}


@dataclass(frozen=True)
class TrajectoryScan:
    """What :func:`scan_trajectory` found: intact checkpoints, damaged step folders still in
    place, and quarantined folders (each by step)."""

    checkpoints: list[CheckpointInfo]
    damaged: list[DamagedCheckpoint]
    quarantined: list[DamagedCheckpoint]


def _load_marker(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(marker with files normalized to {name: {"size", ["sha256"]}}, None)`` or
    ``(None, what is wrong)``."""
    path = folder / MARKER
    if not path.is_file():
        return None, f"{MARKER} is missing"
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{MARKER} is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return None, f"{MARKER} is not a safetygeo checkpoint marker"
    files = marker.get("files")
    if not isinstance(files, dict) or not isinstance(marker.get("step"), int):
        return None, f"{MARKER} has no file list or step"
    norm: dict[str, dict[str, Any]] = {}
    for name, rec in files.items():
        if isinstance(rec, int) and not isinstance(rec, bool):  # version 1: sizes only
            rec = {"size": rec}
        if not isinstance(rec, dict) or not isinstance(rec.get("size"), int):
            return None, f"{MARKER} records no size for {name}"
        norm[name] = rec
    return {**marker, "files": norm}, None


def _each_file(fn: Callable[[Path], Any], paths: list[Path]) -> list[Any]:
    """``[fn(p) for p in paths]``, on a few threads (hashlib and fsync release the GIL)."""
    workers = min(len(paths), os.cpu_count() or 1, 8)
    if workers <= 1:
        return [fn(p) for p in paths]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, paths))


def checkpoint_problem(folder: str | os.PathLike[str], *, step: int | None = None,
                       hashes: bool = False, for_loading: bool = False) -> str | None:
    """What is wrong with checkpoint ``folder``, or ``None`` if it is intact.

    Always checks the marker (present, valid, for ``step``) and every listed file's
    presence and size (cheap: ``stat`` only); with ``hashes`` also the SHA-256 of every
    file where the marker records one (markers written before version 2 record sizes only)
    — with ``for_loading``, of the files loading the model reads (not the optimizer,
    scheduler, scaler, RNG or trainer state, which only resuming reads).
    """
    folder = Path(folder)
    marker, problem = _load_marker(folder)
    if marker is None:
        return problem
    if step is not None and marker["step"] != step:
        return f"{MARKER} is for step {marker['step']}, not {step}"
    files = marker["files"]
    for name, rec in files.items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        size = f.stat().st_size
        if size != rec["size"]:
            return f"{name} is {size} bytes, {MARKER} recorded {rec['size']} (truncated or rewritten)"
    if hashes:
        names = [n for n, rec in files.items() if rec.get("sha256") is not None
                 and not (for_loading and _RESUME_ONLY.match(n))]
        got = _each_file(file_sha256, [folder / n for n in names])
        for name, digest in zip(names, got):
            if digest != files[name]["sha256"]:
                return (f"{name} does not match the SHA-256 recorded in {MARKER} (same size, "
                        "other bytes)")
    return None


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The completeness marker of ``folder`` if it is valid and every listed file matches
    its recorded size (files normalized to ``{name: {"size", "sha256"}}``); else ``None``."""
    marker, _ = _load_marker(folder)
    if marker is None or checkpoint_problem(folder) is not None:
        return None
    return marker


def _step_of(folder: Path) -> int | None:
    m = _STEP_RE.match(folder.name) or _QUARANTINED_RE.match(folder.name)
    return int(m.group(1)) if m else None


def damaged_error(d: DamagedCheckpoint, hint: str = "") -> DamagedCheckpointError:
    """The typed error for damaged checkpoint ``d`` (names the step, folder and file)."""
    return DamagedCheckpointError(
        f"checkpoint step {d.step} in {str(d.path)!r} is damaged: {d.reason}" + hint,
        step=d.step, path=d.path, reason=d.reason)


def verify_checkpoint(folder: str | os.PathLike[str], *, hashes: bool = True,
                      for_loading: bool = False) -> dict[str, Any]:
    """Check checkpoint ``folder`` against its marker (sizes and, with ``hashes``, the
    SHA-256 of every file — with ``for_loading``, of those loading the model reads) and
    return the marker.

    Raises:
        DamagedCheckpointError: names the step, the folder and the file that differs.
    """
    folder = Path(folder)
    step = _step_of(folder)
    problem = checkpoint_problem(folder, step=step, hashes=hashes, for_loading=for_loading)
    if problem is not None:
        raise damaged_error(DamagedCheckpoint(step if step is not None else -1, folder, problem))
    marker, _ = _load_marker(folder)
    assert marker is not None
    return marker


def _quarantined(d: Path, step: int, stamp: str) -> DamagedCheckpoint:
    reason, when = "reason not recorded", _dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(
        tzinfo=_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        note = json.loads((d / QUARANTINE_NOTE).read_text(encoding="utf-8"))
        reason, when = str(note.get("reason", reason)), str(note.get("time", when))
    except (OSError, ValueError, AttributeError):
        pass
    return DamagedCheckpoint(step, d, reason, when)


def scan_trajectory(out: str | os.PathLike[str]) -> TrajectoryScan:
    """Every checkpoint folder under ``out``, sorted by step: intact ones (valid marker for
    the folder's step, every file of its recorded size), damaged ones still in place, and
    quarantined ones. Cheap (reads markers and ``stat`` s, hashes nothing); warns nothing."""
    out = Path(out)
    found: list[CheckpointInfo] = []
    damaged: list[DamagedCheckpoint] = []
    quarantined: list[DamagedCheckpoint] = []
    if out.is_dir():
        for d in out.iterdir():
            if not d.is_dir():
                continue
            m = _STEP_RE.match(d.name)
            if m:
                step = int(m.group(1))
                problem = checkpoint_problem(d, step=step)
                if problem is not None:
                    damaged.append(DamagedCheckpoint(step, d, problem))
                    continue
                marker, _ = _load_marker(d)
                assert marker is not None
                found.append(CheckpointInfo(step, d, dict(marker.get("metrics") or {}),
                                            marker.get("time")))
            elif q := _QUARANTINED_RE.match(d.name):
                quarantined.append(_quarantined(d, int(q.group(1)), q.group(2)))
    return TrajectoryScan(sorted(found, key=lambda c: c.step),
                          sorted(damaged, key=lambda c: c.step),
                          sorted(quarantined, key=lambda c: (c.step, c.path.name)))


def _describe(damaged: Iterable[DamagedCheckpoint]) -> str:
    return "; ".join(f"step {d.step} ({d.reason})" for d in damaged)


def warn_damaged(out: Path, damaged: list[DamagedCheckpoint], stacklevel: int = 3) -> None:
    """One :class:`DamagedCheckpointWarning` listing ``damaged`` (nothing if empty)."""
    if damaged:
        warnings.warn(
            f"trajectory {str(out)!r} has {len(damaged)} damaged checkpoint(s): "
            f"{_describe(damaged)}. They are not listed or loaded; rerunning the training "
            "moves them aside (step-NNNNNN.damaged-<time>) and re-creates them",
            DamagedCheckpointWarning, stacklevel=stacklevel)


def scan_checkpoints(out: str | os.PathLike[str], *, warn: bool = True) -> list[CheckpointInfo]:
    """Intact checkpoints under ``out`` (valid marker whose step matches the name), by step.

    Damaged step folders are not returned; with ``warn`` they are reported in a
    :class:`~safetygeo.errors.DamagedCheckpointWarning` (:func:`scan_trajectory` lists them).
    """
    scan = scan_trajectory(out)
    if warn:
        warn_damaged(Path(out), scan.damaged)
    return scan.checkpoints


def quarantine_checkpoint(d: DamagedCheckpoint, out: str | os.PathLike[str] | None = None) -> DamagedCheckpoint:
    """Move damaged checkpoint ``d`` aside to ``step-NNNNNN.damaged-<UTC time>`` (never
    deleted) with a ``quarantine.json`` note of why; return it as quarantined."""
    src = Path(d.path)
    out = Path(out) if out is not None else src.parent
    now = _dt.datetime.now(_dt.timezone.utc)
    base = f"{src.name}.damaged-{now.strftime('%Y%m%dT%H%M%S')}"
    dest, i = out / base, 1
    while dest.exists():
        dest, i = out / f"{base}-{i}", i + 1
    os.replace(src, dest)
    _fsync_dir(out)
    when = now.isoformat(timespec="seconds")
    try:
        atomic_write_json(dest / QUARANTINE_NOTE, {"step": d.step, "from": src.name,
                                                   "reason": d.reason, "time": when})
    except OSError:  # pragma: no cover - read-only folder: the name still says it all
        pass
    return DamagedCheckpoint(d.step, dest, d.reason, when)


def clean_partial(out: str | os.PathLike[str]) -> list[Path]:
    """Remove crash debris: the staging folder ``.partial`` and hidden ``.*.tmp`` folders.

    ``step-*`` folders are never removed (each was complete once; see
    :func:`quarantine_checkpoint`). Returns the removed paths.
    """
    out = Path(out)
    removed: list[Path] = []
    if not out.is_dir():
        return removed
    for d in sorted(out.iterdir()):
        hidden_tmp = d.name == STAGING or (d.name.startswith(".") and d.name.endswith(".tmp"))
        if hidden_tmp and d.is_dir():
            shutil.rmtree(d)
            removed.append(d)
    return removed


def _fsync_and_hash(path: Path) -> dict[str, Any]:
    """fsync ``path`` and return ``{"size", "sha256"}`` of the bytes read back."""
    h = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
            size += n
        os.fsync(fh.fileno())
    return {"size": size, "sha256": h.hexdigest()}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save_method_state(folder: Path, state: Mapping[str, Any]) -> None:
    """Write a method's state: top-level tensors to safetensors, the rest to JSON."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    rest = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    try:
        text = json.dumps(_jsonable(rest), sort_keys=True)
    except TypeError as exc:
        raise TrajectoryError(
            f"method state must hold tensors and JSON-serializable values: {exc}"
        ) from exc
    (folder / METHOD_STATE_JSON).write_text(text, encoding="utf-8")
    if tensors:
        save_file(tensors, str(folder / METHOD_STATE_TENSORS))


def load_method_state(folder: Path) -> dict[str, Any]:
    """Read what :func:`save_method_state` wrote (``{}`` if nothing was saved)."""
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    if (folder / METHOD_STATE_JSON).is_file():
        state.update(json.loads((folder / METHOD_STATE_JSON).read_text(encoding="utf-8")))
    if (folder / METHOD_STATE_TENSORS).is_file():
        state.update(load_file(str(folder / METHOD_STATE_TENSORS)))
    return state


def commit_checkpoint(
    staged: Path,
    out: Path,
    step: int,
    *,
    metrics: Mapping[str, Any],
    method_state: Mapping[str, Any],
) -> CheckpointInfo:
    """Complete a trainer-written checkpoint folder and move it to ``out/step-NNNNNN``.

    Adds the method state, drops pickled trainer arguments, fsyncs every file and records
    its size and SHA-256 (one read, from the page cache the trainer just filled), writes the
    marker last, renames, and fsyncs ``out``.

    Raises:
        TrajectoryError: the staged folder is missing or the destination already exists.
    """
    if not staged.is_dir():
        raise TrajectoryError(f"trainer did not write the checkpoint folder {str(staged)!r}")
    dest = out / step_dir_name(step)
    if dest.exists():
        raise TrajectoryError(f"checkpoint {str(dest)!r} already exists")
    save_method_state(staged, method_state)
    for name in _DROP_FILES:
        (staged / name).unlink(missing_ok=True)
    paths = [f for f in sorted(staged.rglob("*")) if f.is_file()]
    files = {f.relative_to(staged).as_posix(): rec
             for f, rec in zip(paths, _each_file(_fsync_and_hash, paths))}
    info = CheckpointInfo(step, dest, _jsonable(dict(metrics)), now_iso())
    atomic_write_json(staged / MARKER, {"format": MARKER_FORMAT, "version": MARKER_VERSION,
                                        "step": step,
                                        "metrics": info.metrics, "time": info.time, "files": files})
    _fsync_dir(staged)
    os.replace(staged, dest)
    _fsync_dir(out)
    return info
