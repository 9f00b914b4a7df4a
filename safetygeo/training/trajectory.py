"""Trajectory folders: the ``trajectory.json`` manifest, callback records and reloading.

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

How checkpoints are committed, verified and quarantined: :mod:`safetygeo.training.checkpoints`.

Example:
    >>> identity_diff({"method": {"name": "sft"}}, {"method": {"name": "r2d2"}})
    ["method.name: 'sft' (trajectory) != 'r2d2' (this run)"]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from safetygeo._identity import identity_diff as _identity_diff
from safetygeo._identity import jsonable as _jsonable
from safetygeo._identity import sha256_json
from safetygeo._io import atomic_write_json, atomic_write_text, read_json
from safetygeo.models.chat import ChatTemplate
from safetygeo.models.fingerprint import model_fingerprint
from safetygeo.models.handle import ModelHandle, load_model
from safetygeo.training.checkpoints import (
    BASE_DIR,
    CALLBACKS_FILE,
    MANIFEST,
    MANIFEST_FORMAT,
    CheckpointInfo,
    DamagedCheckpoint,
    checkpoint_problem,
    damaged_error,
    load_method_state,
    now_iso,
    scan_trajectory,
    verify_checkpoint,
    warn_damaged,
)
from safetygeo.training.errors import (
    TrajectoryError,
    TrajectoryMismatchError,
)

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
    """Refresh the checkpoint lists (intact, damaged, quarantined) from the folders and
    write the manifest atomically."""
    manifest = dict(manifest)
    scan = scan_trajectory(out)
    manifest["checkpoints"] = [c.to_dict() for c in scan.checkpoints]
    manifest["damaged"] = [d.to_dict() for d in scan.damaged]
    manifest["quarantined"] = [d.to_dict() for d in scan.quarantined]
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
    """A trajectory folder: its manifest and its checkpoints.

    Attributes:
        path: the folder.
        manifest: the parsed ``trajectory.json``.
        checkpoints: intact checkpoints by step (from the markers on disk).
        damaged: step folders that were complete once and no longer match their marker
            (asking for one raises :class:`DamagedCheckpointError`; a rerun of training
            quarantines and re-creates them).
        quarantined: damaged folders already moved aside (``step-NNNNNN.damaged-<time>``).
    """

    path: Path
    manifest: dict[str, Any]
    checkpoints: list[CheckpointInfo]
    damaged: list[DamagedCheckpoint] = field(default_factory=list)
    quarantined: list[DamagedCheckpoint] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, warn: bool = True) -> Trajectory:
        """Open a trajectory folder (cheap: markers and file sizes; hashes are checked when a
        checkpoint is loaded).

        Warns:
            DamagedCheckpointWarning: (with ``warn``) some step folders are damaged.

        Raises:
            TrajectoryError: no (valid) manifest in ``path``.
        """
        p = Path(path)
        manifest = read_manifest(p)
        if manifest is None:
            raise TrajectoryError(f"{str(p)!r} is not a trajectory folder (no {MANIFEST})")
        scan = scan_trajectory(p)
        if warn:
            warn_damaged(p, scan.damaged)
        return cls(p, manifest, scan.checkpoints, scan.damaged, scan.quarantined)

    # -- facts ---------------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        """Steps of the intact checkpoints (the base model, step 0, is not listed; damaged
        steps are in :attr:`damaged`)."""
        return [c.step for c in self.checkpoints]

    @property
    def damaged_steps(self) -> list[int]:
        """Steps whose folder is damaged (still in place)."""
        return [d.step for d in self.damaged]

    @property
    def method(self) -> str:
        return str(self.manifest["method"]["name"])

    @property
    def is_lora(self) -> bool:
        return self.manifest["train_config"].get("lora") is not None

    def checkpoint(self, step: int | None = None) -> CheckpointInfo:
        """The checkpoint at ``step`` (``None``: the last one).

        Never falls back to an earlier step: if the last step folder is damaged, ``None``
        raises rather than returning the last intact one.

        Raises:
            DamagedCheckpointError: that step (or, for ``None``, the last step) is damaged.
            TrajectoryError: no such (complete) checkpoint; the message lists the steps.
        """
        last_ok = self.checkpoints[-1].step if self.checkpoints else None
        if step is None:
            later = [d for d in self.damaged if last_ok is None or d.step > last_ok]
            if later:
                hint = (f"; the last intact checkpoint is step {last_ok} (ask for it by step)"
                        if last_ok is not None else "; no intact checkpoint is left")
                raise damaged_error(later[-1], hint + " — rerun the training to quarantine "
                                    "and re-create it")
        else:
            for d in self.damaged:
                if d.step == step:
                    raise damaged_error(d, f"; intact steps: {self.steps}")
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
        info = read_json(state, what="trainer state", error=TrajectoryError)
        if not isinstance(info, dict):
            raise TrajectoryError(f"{str(state)!r} is not a trainer state (not a JSON object)")
        return list(info.get("log_history", []))

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

    def verify(self, steps: Iterable[int] | None = None) -> list[DamagedCheckpoint]:
        """Hash-check intact checkpoints ``steps`` (``None``: all) against their markers;
        return those that fail (also added to :attr:`damaged`). Nothing is moved."""
        wanted = None if steps is None else set(steps)
        bad = []
        for c in list(self.checkpoints):
            if wanted is not None and c.step not in wanted:
                continue
            problem = checkpoint_problem(c.path, step=c.step, hashes=True)
            if problem is not None:
                bad.append(DamagedCheckpoint(c.step, c.path, problem))
        if bad:
            gone = {d.step for d in bad}
            self.checkpoints = [c for c in self.checkpoints if c.step not in gone]
            self.damaged = sorted([*self.damaged, *bad], key=lambda d: d.step)
        return bad

    def load_checkpoint(self, step: int | None = None, *, dtype: str | torch.dtype | None = None,
                        device: str | torch.device | None = None,
                        verify: bool = True) -> ModelHandle:
        """Reload the model after ``step`` optimizer steps (``None``: the last; ``0``: the base).

        Full fine-tunes load the checkpoint's safetensors directly; LoRA checkpoints hold the
        adapter only, which is applied to :meth:`load_base` and merged (``merge_and_unload``)
        so the result is a plain model like any other checkpoint. The chat template of the
        run (including an override) is restored.

        Args:
            verify: first check the files it reads (weights, config, tokenizer; not the
                optimizer / trainer state) against the SHA-256 in the checkpoint's marker
                (reads them once more: ~0.5–1 s per GB on one core; ``benchmarks/RESULTS.md``).

        Raises:
            DamagedCheckpointError: the checkpoint is damaged (names the step and file).
        """
        if step == 0:
            return self.load_base(dtype=dtype, device=device)
        info = self.checkpoint(step)
        if verify:
            verify_checkpoint(info.path, for_loading=True)
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
