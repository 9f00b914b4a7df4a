"""The report cache: one small folder per (checkpoint content, protocol step), content-keyed.

**Content key of a checkpoint** — what its weights are, not where they live:

* a trajectory checkpoint: SHA-256 over the SHA-256 of every file loading reads (weights,
  config, tokenizer; not optimizer / scheduler / RNG / trainer state), taken from its
  completeness marker (marker version 2) or, for version-1 markers (sizes only), hashed
  here once and remembered in ``hashes.json`` by path, size and mtime; a LoRA checkpoint
  adds its base's fingerprint;
* a base model (step 0): the fingerprint recorded in the trajectory manifest
  (:func:`safetygeo.models.fingerprint.model_fingerprint`) with its id and revision.

**Key of a step** = SHA-256 of its identity: the checkpoint's content key, the step's name
and settings, the digests of the prompt sets it reads, the keys of the steps it needs (and
of a report-level preparation), and the safetygeo version. So a rerun with nothing changed
finds every key; a new checkpoint adds only its own; a changed step setting changes the
keys of that step and of the steps that need it, nothing else.

**Layout**: ``CACHE/<step>/<key[:2]>/<key>/`` holds the step's files and ``result.json``
(rows, payload, the files' SHA-256, identity, seconds), written last and atomically: a
folder without it (a killed run) is simply recomputed.

Example:
    >>> import tempfile
    >>> from safetygeo.reports.registry import StepOutput
    >>> cache = ResultCache(tempfile.mkdtemp())
    >>> key = step_key({"checkpoint": "abc", "step": "rank"})
    >>> cache.load("rank", key) is None
    True
    >>> _ = cache.save("rank", key, StepOutput([{"metric": "erank", "value": 1.2}]),
    ...                identity={"step": "rank"}, seconds=0.5)
    >>> cache.load("rank", key).rows
    [{'metric': 'erank', 'value': 1.2}]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from safetygeo import __version__
from safetygeo._identity import jsonable, sha256_json
from safetygeo._io import atomic_write_bytes, atomic_write_json, file_sha256
from safetygeo.errors import ArtifactError
from safetygeo.reports.registry import StepOutput, StepResult

__all__ = ["ResultCache", "checkpoint_content_key", "step_key"]

FORMAT = "safetygeo.report_step"
#: Files of a checkpoint that loading it does not read (only resuming training does).
_NOT_LOADED = re.compile(r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|trainer_state\.json|"
                         r"rng_state(_\d+)?\.pth|method_state\.(json|safetensors)|"
                         r"checkpoint\.json|training_args\.bin)$")


def step_key(identity: dict[str, Any]) -> str:
    """The content key of an identity (adds the safetygeo version)."""
    return sha256_json({**identity, "safetygeo_version": __version__})


class HashMemo:
    """SHA-256 of files, remembered by (path, size, mtime_ns) in a JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                self.entries = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.entries = {}

    def sha256(self, file: Path) -> str:
        st = file.stat()
        key = str(file.resolve())
        e = self.entries.get(key)
        if e and e.get("size") == st.st_size and e.get("mtime_ns") == st.st_mtime_ns:
            return str(e["sha256"])
        digest = file_sha256(file)
        self.entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.path is not None and self.dirty:
            atomic_write_json(self.path, self.entries)
            self.dirty = False


def checkpoint_content_key(traj: Any, step: int, memo: HashMemo) -> tuple[str, dict[str, Any]]:
    """``(key, what it was computed from)`` for checkpoint ``step`` of trajectory ``traj``
    (a :class:`~safetygeo.training.Trajectory`; step 0 = its base).

    Raises:
        ArtifactError: the checkpoint's marker cannot be read or a file it lists is missing.
    """
    base = traj.manifest.get("base_model", {})
    base_id = {"fingerprint": base.get("fingerprint"), "model_id": base.get("model_id"),
               "revision": base.get("revision")}
    if step == 0:
        return sha256_json({"base": base_id}), {"kind": "base-fingerprint", **base_id}
    info = traj.checkpoint(step)
    marker_path = info.path / "checkpoint.json"
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        files = marker["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"cannot read the marker {str(marker_path)!r}: {exc}") from exc
    hashes: dict[str, str] = {}
    how = "marker-sha256"
    for name, rec in sorted(files.items()):
        if _NOT_LOADED.match(Path(name).name):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("sha256"), str):
            hashes[name] = rec["sha256"]
        else:
            how = "hashed"
            f = info.path / name
            if not f.is_file():
                raise ArtifactError(f"{str(f)!r} (listed in its checkpoint marker) is missing")
            hashes[name] = memo.sha256(f)
    ident: dict[str, Any] = {"files": hashes}
    if traj.is_lora:
        ident["base"] = base_id
    return sha256_json(ident), {"kind": how, "n_files": len(hashes)}


class ResultCache:
    """Step results under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def folder(self, step: str, key: str) -> Path:
        return self.root / step / key[:2] / key

    def has(self, step: str, key: str) -> bool:
        return (self.folder(step, key) / "result.json").is_file()

    def load(self, step: str, key: str, *, files: bool = False) -> StepResult | None:
        """The cached result (``None`` if absent or damaged — then it is recomputed).
        ``files=True`` also reads (and SHA-checks) its files."""
        folder = self.folder(step, key)
        path = folder / "result.json"
        if not path.is_file():
            return None
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            if rec.get("format") != FORMAT or rec.get("key") != key:
                raise ArtifactError("not a report step result for this key")
            res = StepResult(rows=list(rec["rows"]), data=dict(rec["data"]), key=key,
                             seconds=float(rec.get("seconds", 0.0)), cached=True)
            res.files = {}
            for name, digest in rec.get("files", {}).items():
                f = folder / name
                if not f.is_file():
                    raise ArtifactError(f"its file {name!r} is missing")
                if files:
                    blob = f.read_bytes()
                    if hashlib.sha256(blob).hexdigest() != digest:
                        raise ArtifactError(f"its file {name!r} does not match result.json")
                    res.files[name] = blob
            return res
        except (OSError, ValueError, KeyError, TypeError, ArtifactError) as exc:
            warnings.warn(f"ignoring a damaged cached result {str(folder)!r} ({exc}); it is "
                          "recomputed", stacklevel=2)
            return None

    def save(self, step: str, key: str, out: StepOutput, *, identity: dict[str, Any],
             seconds: float) -> StepResult:
        """Write the files, then ``result.json`` (atomically, last)."""
        folder = self.folder(step, key)
        digests = {}
        for name, blob in out.files.items():
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ArtifactError(f"step {step!r} returned a file name outside its folder: {name!r}")
            atomic_write_bytes(folder / name, blob)
            digests[name] = hashlib.sha256(blob).hexdigest()
        from datetime import datetime, timezone

        atomic_write_json(folder / "result.json", {
            "format": FORMAT, "format_version": 1, "key": key, "step": step,
            "identity": jsonable(identity), "rows": jsonable(out.rows), "data": jsonable(out.data),
            "files": digests, "seconds": seconds,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return StepResult(rows=out.rows, data=out.data, files=dict(out.files), key=key,
                          seconds=seconds, cached=False)
