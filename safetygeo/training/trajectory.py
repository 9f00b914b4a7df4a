"""Trajectory folders: atomic checkpoints, the ``trajectory.json`` manifest, reloading.

Layout of a trajectory folder ``out/``::

    out/trajectory.json         manifest: method + hyper-parameters, TrainConfig, seed, base
                                model id / revision / fingerprint, data hashes, checkpoints
                                (step, metrics), library versions, timestamps
    out/step-000050/            one complete checkpoint per saved step: weights (safetensors;
                                LoRA runs: the adapter only), tokenizer, what the trainer needs
                                to resume (optimizer, scheduler, RNG, trainer_state.json),
                                method_state.{json,safetensors}, and checkpoint.json
    out/base/                   the base model, only when it cannot be reloaded by id/path
    out/callbacks.jsonl         records of geometry callbacks (one JSON object per line)

Atomicity: the trainer writes a checkpoint into ``out/.partial/``; safetygeo adds the method
state, fsyncs every file, writes the completeness marker ``checkpoint.json`` (the file list
with sizes) last, then renames the folder to ``step-NNNNNN`` and rewrites the manifest
atomically. A folder without a valid marker (or whose files do not match it) is never
listed or resumed from, and :func:`clean_partial` removes it. The markers, not the
manifest's list, are the source of truth: a run killed between the rename and the manifest
rewrite loses nothing.

Example:
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> step_dir_name(50)
    'step-000050'
    >>> (out / "step-000050").mkdir()  # half-written: no marker
    >>> scan_checkpoints(out), [p.name for p in clean_partial(out)]
    ([], ['step-000050'])
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from safetygeo._identity import identity_diff as _identity_diff
from safetygeo._identity import jsonable as _jsonable
from safetygeo._identity import sha256_json
from safetygeo._io import atomic_write_json, atomic_write_text
from safetygeo.models.chat import ChatTemplate
from safetygeo.models.fingerprint import model_fingerprint
from safetygeo.models.handle import ModelHandle, load_model
from safetygeo.training.errors import TrajectoryError, TrajectoryMismatchError

MANIFEST = "trajectory.json"
MARKER = "checkpoint.json"
STAGING = ".partial"
BASE_DIR = "base"
CALLBACKS_FILE = "callbacks.jsonl"
METHOD_STATE_JSON = "method_state.json"
METHOD_STATE_TENSORS = "method_state.safetensors"
MANIFEST_FORMAT = "safetygeo.trajectory"
MARKER_FORMAT = "safetygeo.checkpoint"
_STEP_RE = re.compile(r"^step-(\d{6,})$")
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


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The completeness marker of ``folder`` if it is valid and every listed file matches
    its recorded size; otherwise ``None``."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return None
    files = marker.get("files")
    if not isinstance(files, dict) or not isinstance(marker.get("step"), int):
        return None
    for name, size in files.items():
        f = folder / name
        if not f.is_file() or f.stat().st_size != size:
            return None
    return marker


def scan_checkpoints(out: str | os.PathLike[str]) -> list[CheckpointInfo]:
    """Complete checkpoints under ``out`` (valid marker whose step matches the name), by step."""
    out = Path(out)
    found = []
    if not out.is_dir():
        return found
    for d in out.iterdir():
        m = _STEP_RE.match(d.name)
        if not m or not d.is_dir():
            continue
        marker = read_marker(d)
        if marker is None or marker["step"] != int(m.group(1)):
            continue
        found.append(CheckpointInfo(marker["step"], d, dict(marker.get("metrics") or {}),
                                    marker.get("time")))
    return sorted(found, key=lambda c: c.step)


def clean_partial(out: str | os.PathLike[str]) -> list[Path]:
    """Remove the staging folder and every ``step-*`` folder that is not complete.

    Returns the removed paths.
    """
    out = Path(out)
    removed: list[Path] = []
    if not out.is_dir():
        return removed
    complete = {c.path.name for c in scan_checkpoints(out)}
    for d in sorted(out.iterdir()):
        partial_step = bool(_STEP_RE.match(d.name)) and d.name not in complete
        hidden_tmp = d.name == STAGING or (d.name.startswith(".") and d.name.endswith(".tmp"))
        if (partial_step or hidden_tmp) and d.is_dir():
            shutil.rmtree(d)
            removed.append(d)
    return removed


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


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

    Adds the method state, drops pickled trainer arguments, fsyncs every file, writes the
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
    files = {}
    for f in sorted(staged.rglob("*")):
        if f.is_file():
            _fsync_file(f)
            files[f.relative_to(staged).as_posix()] = f.stat().st_size
    info = CheckpointInfo(step, dest, _jsonable(dict(metrics)), now_iso())
    atomic_write_json(staged / MARKER, {"format": MARKER_FORMAT, "version": 1, "step": step,
                                        "metrics": info.metrics, "time": info.time, "files": files})
    _fsync_dir(staged)
    os.replace(staged, dest)
    _fsync_dir(out)
    return info


# ----------------------------------------------------------------------------- identity


def _sha(obj: Any) -> str:
    return sha256_json(obj)


def identity_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Differences between a trajectory's identity and this run's (dotted keys).

    Example:
        >>> identity_diff({"method": {"name": "sft"}}, {"method": {"name": "r2d2"}})
        ["method.name: 'sft' (trajectory) != 'r2d2' (this run)"]
    """
    return _identity_diff(old, new, labels=("trajectory", "this run"))


# ----------------------------------------------------------------------------- manifest
def read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TrajectoryError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise TrajectoryError(f"{str(path)!r} is not a safetygeo trajectory manifest")
    return manifest


def write_manifest(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Refresh the checkpoint list from the markers and write the manifest atomically."""
    manifest = dict(manifest)
    manifest["checkpoints"] = [c.to_dict() for c in scan_checkpoints(out)]
    manifest["updated"] = now_iso()
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line and fsync (a torn last line is dropped by :func:`read_jsonl`)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_jsonable(dict(record)), sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of ``path`` (an unparsable line — a torn write — is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def prune_jsonl(path: Path, max_step: int) -> None:
    """Atomically drop records with ``step > max_step`` (work a killed run did after its
    last checkpoint, which the resumed run redoes)."""
    if not path.is_file():
        return
    keep = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= max_step]
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))


# ----------------------------------------------------------------------------- Trajectory
@dataclass
class Trajectory:
    """A trajectory folder: its manifest and its complete checkpoints.

    Attributes:
        path: the folder.
        manifest: the parsed ``trajectory.json``.
        checkpoints: complete checkpoints by step (from the markers on disk).
    """

    path: Path
    manifest: dict[str, Any]
    checkpoints: list[CheckpointInfo]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trajectory:
        """Open a trajectory folder.

        Raises:
            TrajectoryError: no (valid) manifest in ``path``.
        """
        p = Path(path)
        manifest = read_manifest(p)
        if manifest is None:
            raise TrajectoryError(f"{str(p)!r} is not a trajectory folder (no {MANIFEST})")
        return cls(p, manifest, scan_checkpoints(p))

    # -- facts ---------------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        """Steps of the complete checkpoints (the base model, step 0, is not listed)."""
        return [c.step for c in self.checkpoints]

    @property
    def method(self) -> str:
        return str(self.manifest["method"]["name"])

    @property
    def is_lora(self) -> bool:
        return self.manifest["train_config"].get("lora") is not None

    def checkpoint(self, step: int | None = None) -> CheckpointInfo:
        """The checkpoint at ``step`` (``None``: the last one).

        Raises:
            TrajectoryError: no such (complete) checkpoint; the message lists the steps.
        """
        if not self.checkpoints:
            raise TrajectoryError(f"trajectory {str(self.path)!r} has no complete checkpoint yet")
        if step is None:
            return self.checkpoints[-1]
        for c in self.checkpoints:
            if c.step == step:
                return c
        raise TrajectoryError(
            f"trajectory {str(self.path)!r} has no complete checkpoint at step {step}; "
            f"steps: {self.steps}"
        )

    def log_history(self, step: int | None = None) -> list[dict[str, Any]]:
        """The trainer's log history up to checkpoint ``step`` (``None``: the last)."""
        state = self.checkpoint(step).path / "trainer_state.json"
        return list(json.loads(state.read_text(encoding="utf-8")).get("log_history", []))

    def losses(self, step: int | None = None) -> dict[int, float]:
        """``{step: logged training loss}`` up to checkpoint ``step``."""
        return {int(r["step"]): float(r["loss"]) for r in self.log_history(step) if "loss" in r}

    def method_state(self, step: int | None = None) -> dict[str, Any]:
        """The method state saved with checkpoint ``step``."""
        return load_method_state(self.checkpoint(step).path)

    def callback_records(self) -> list[dict[str, Any]]:
        """Records written by geometry callbacks (``callbacks.jsonl``)."""
        return read_jsonl(self.path / CALLBACKS_FILE)

    # -- models ----------------------------------------------------------------------
    def _template(self) -> ChatTemplate | None:
        t = self.manifest.get("base_model", {}).get("template")
        return ChatTemplate(t["prefix"], t["suffix"], t.get("source", "override")) if t else None

    def load_base(self, *, dtype: str | torch.dtype | None = None,
                  device: str | torch.device | None = None) -> ModelHandle:
        """The base model the trajectory started from (step 0), checked against its fingerprint.

        Args:
            dtype: ``None`` loads it in the dtype it was trained from (and checks the weights
                sample too); another dtype checks only config and architecture.

        Raises:
            TrajectoryError: the base cannot be loaded; TrajectoryMismatchError: the model
            now found under the recorded id / path is not the one trained.
        """
        base = self.manifest["base_model"]
        want = base["fingerprint"]
        src = self.path / BASE_DIR if base.get("saved") else base.get("model_id")
        if not src or src == "in-memory":
            raise TrajectoryError(
                f"trajectory {str(self.path)!r} was trained from an in-memory model that was "
                "not saved; its base cannot be reloaded"
            )
        check_weights = dtype is None
        if dtype is None:
            dtype = want.get("dtype") if "," not in str(want.get("dtype")) else "auto"
        handle = load_model(str(src), revision=None if base.get("saved") else base.get("revision"),
                            dtype=dtype, device=device, template=self._template(),
                            model_id=str(base.get("model_id")))
        fp = model_fingerprint(handle.model)
        keys = ["config_sha256", "arch_sha256"] + (["weights_sha256"] if check_weights else [])
        diff = [k for k in keys if fp[k] != want[k]]
        if diff:
            raise TrajectoryMismatchError(
                f"the base model found at {str(src)!r} differs from the one this trajectory "
                f"was trained from ({', '.join(diff)} differ)"
            )
        return handle

    def load_checkpoint(self, step: int | None = None, *, dtype: str | torch.dtype | None = None,
                        device: str | torch.device | None = None) -> ModelHandle:
        """Reload the model after ``step`` optimizer steps (``None``: the last; ``0``: the base).

        Full fine-tunes load the checkpoint's safetensors directly; LoRA checkpoints hold the
        adapter only, which is applied to :meth:`load_base` and merged (``merge_and_unload``)
        so the result is a plain model like any other checkpoint. The chat template of the
        run (including an override) is restored.
        """
        if step == 0:
            return self.load_base(dtype=dtype, device=device)
        info = self.checkpoint(step)
        name = f"{self.manifest['base_model'].get('model_id')}@{info.path.name}"
        if not self.is_lora:
            return load_model(str(info.path), dtype=dtype or "auto", device=device,
                              template=self._template(), model_id=name)
        from peft import PeftModel
        from transformers import AutoTokenizer

        if dtype is None:  # the adapter was trained on the base cast to TrainConfig.dtype
            dtype = self.manifest["train_config"].get("dtype")
        base = self.load_base(dtype=dtype, device=device)
        try:
            peft_model = PeftModel.from_pretrained(base.model, str(info.path))
        except Exception as exc:  # missing / corrupt adapter files
            raise TrajectoryError(f"could not load the LoRA adapter in {str(info.path)!r}: {exc}") from exc
        merged = peft_model.merge_and_unload()
        tok = AutoTokenizer.from_pretrained(str(info.path))
        return load_model(merged, tok, template=self._template(), model_id=name)
