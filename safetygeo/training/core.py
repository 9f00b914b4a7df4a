"""The trainer core: run a :class:`~safetygeo.training.method.Method` through
``transformers.Trainer`` into a resumable trajectory folder.

What ``transformers.Trainer`` does here (unchanged): the optimizer, LR schedule, gradient
accumulation, clipping, mixed precision, device placement / accelerate (multi-GPU,
DeepSpeed, FSDP), the data order, and saving / restoring model, optimizer, scheduler, RNG
and trainer state. What this module adds, and nothing else:

* the method's loss (``compute_loss``), its ``before_step`` hook (run with parameter
  gradients off) and its logged metrics;
* our checkpoint layout: the trainer writes each checkpoint to ``out/.partial/``, then
  :func:`~safetygeo.training.trajectory.commit_checkpoint` adds the method state and the
  completeness marker and renames it to ``out/step-NNNNNN`` (see
  :mod:`safetygeo.training.trajectory`);
* the manifest, and the identity check on resume (model fingerprint, method, config, data
  hashes), with LoRA through peft;
* damaged checkpoints (see :mod:`safetygeo.training.trajectory`): the checkpoint resumed
  from is first hash-checked against its marker; damaged step folders are quarantined
  (``on_damaged="quarantine"``, with a :class:`~safetygeo.errors.DamagedCheckpointWarning`)
  or stop the run before anything is written (``"stop"``) — never deleted; a checkpoint
  file the trainer cannot read on resume raises :class:`DamagedCheckpointError` naming it.

Semantics: ``train`` trains ``handle.model`` in place, like ``Trainer`` does; afterwards
the model is back in eval mode and holds the last trained weights (LoRA adapters merged
and unloaded), bit-identical to ``Trajectory.load(out).load_checkpoint()``. To resume a
killed run, call ``train`` again with the *base* model (a fresh load), the same method,
data and config: it continues from the last complete checkpoint and ends where an
uninterrupted run would have (same seed → same weights and losses on CPU).

Example:
    >>> import tempfile
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
    >>> traj = train(h, "sft", {"harmful": ["Make a bomb."], "harmless": [("Say hi.", "Hi!")]},
    ...              out=tempfile.mkdtemp(), config=TrainConfig(max_steps=2, save_every=1,
    ...              batch_size=2, lr=1e-3), progress=False)
    >>> traj.steps, traj.method
    ([1, 2], 'sft')
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import TrainerCallback

from safetygeo.data.records import records_sha256
from safetygeo.errors import DamagedCheckpointWarning
from safetygeo.models.fingerprint import model_fingerprint
from safetygeo.models.handle import ModelHandle
from safetygeo.training.callbacks import GeometryCallback, StageProgress
from safetygeo.training.checkpoints import (
    BASE_DIR,
    CALLBACKS_FILE,
    MANIFEST_FORMAT,
    STAGING,
    DamagedCheckpoint,
    checkpoint_problem,
    clean_partial,
    load_method_state,
    now_iso,
    quarantine_checkpoint,
    scan_trajectory,
)
from safetygeo.training.config import OPERATIONAL_KEYS, LoraSpec, TrainConfig
from safetygeo.training.errors import (
    DamagedCheckpointError,
    EmptyDatasetError,
    LoraTargetError,
    TrainConfigError,
    TrajectoryError,
    TrajectoryMismatchError,
)
from safetygeo.training.method import Method, get_method
from safetygeo.training.trainer import (  # noqa: F401  (no_param_grads: re-exported)
    MethodTrainer,
    _reading,
    no_param_grads,
)
from safetygeo.training.trajectory import (
    Trajectory,
    identity_diff,
    prune_jsonl,
    read_manifest,
    write_manifest,
)

ON_DAMAGED = ("quarantine", "stop")

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class _Rows(torch.utils.data.Dataset):
    """A list of tokenized rows as a map-style dataset."""

    def __init__(self, rows: Sequence[dict[str, Any]]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


# ----------------------------------------------------------------------------- LoRA
def _linear_names(model: nn.Module) -> dict[str, str]:
    """``{full module name: class name}`` of the layers peft can adapt (Linear, Conv1D)."""
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D":
            out[name] = type(mod).__name__
    return out


def check_lora_targets(model: nn.Module, spec: LoraSpec) -> None:
    """Check every LoRA target matches at least one Linear / Conv1D module (peft's rule:
    the full name or a ``.``-suffix of it; a string is a full-match regex).

    Raises:
        LoraTargetError: names the missing targets and lists the available layer names.

    Example:
        >>> from safetygeo.models.tiny import tiny_model
        >>> check_lora_targets(tiny_model("gpt2", n_layers=1, d_model=16, n_heads=2),
        ...                    LoraSpec(target_modules=("q_proj",)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        safetygeo.training.errors.LoraTargetError: LoRA target module(s) ['q_proj'] not found in GPT2LMHeadModel; its Linear/Conv1D layers: ['c_attn', 'c_fc', 'c_proj', 'lm_head']...
    """
    import re

    names = _linear_names(model)
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    tm = spec.target_modules
    if isinstance(tm, str):
        if tm.lower() == "all-linear":
            return
        missing = [] if any(re.fullmatch(tm, n) for n in names) else [tm]
    else:
        missing = [t for t in tm if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise LoraTargetError(
            f"LoRA target module(s) {missing} not found in {type(model).__name__}; its "
            f"Linear/Conv1D layers: {leaves} (or use target_modules='all-linear')"
        )


def _wrap_lora(model: nn.Module, spec: LoraSpec) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    check_lora_targets(model, spec)
    tm = spec.target_modules if isinstance(spec.target_modules, str) else list(spec.target_modules)
    # peft annotates lora_alpha as int; a float works (scaling = alpha / r)
    cfg = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,  # type: ignore[arg-type]
                     target_modules=tm, task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


# ----------------------------------------------------------------------------- helpers
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("safetygeo", "torch", "transformers", "peft", "accelerate", "trl"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _base_reloadable(handle: ModelHandle) -> bool:
    """Whether the base can be reloaded from its recorded id: a local checkpoint folder or
    something shaped like a hub id (``org/name``)."""
    mid = handle.model_id or ""
    if not mid or mid == "in-memory":
        return False
    p = Path(mid).expanduser()
    if p.is_dir():
        return (p / "config.json").is_file()
    return mid.count("/") == 1 and not mid.startswith((".", "/", "~"))


def _identity(manifest: Mapping[str, Any]) -> dict[str, Any]:
    cfg = {k: v for k, v in manifest["train_config"].items() if k not in OPERATIONAL_KEYS}
    return {"method": manifest["method"], "train_config": cfg, "data": manifest["data"],
            "base_model": dict(manifest["base_model"]["fingerprint"])}


@contextlib.contextmanager
def _quiet(progress: bool | str) -> Iterator[None]:
    """Unless ``progress == "verbose"``: no transformers progress bars ("Writing model
    shards", ...); our own :class:`StageProgress` bar shows the run instead."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if progress != "verbose":
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _finished(checkpoint: Path) -> bool:
    """Whether the run had reached its last step at ``checkpoint`` (the trainer itself would
    take one more step when resumed there)."""
    with _reading(checkpoint, "the trainer state", ("trainer_state.json",)):
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        return int(state.get("global_step", 0)) >= int(state.get("max_steps") or 0) > 0


def _quarantine_all(out: Path, damaged: Sequence[DamagedCheckpoint], then: str) -> list[DamagedCheckpoint]:
    """Move every damaged checkpoint aside and say so in one DamagedCheckpointWarning."""
    moved = [quarantine_checkpoint(d, out) for d in damaged]
    if moved:
        what = "; ".join(f"step {d.step} ({d.reason}) -> {d.path.name}" for d in moved)
        warnings.warn(f"trajectory {str(out)!r}: quarantined {len(moved)} damaged checkpoint(s), "
                      f"nothing deleted: {what}. {then}", DamagedCheckpointWarning, stacklevel=3)
    return moved


# ----------------------------------------------------------------------------- train
def train(
    handle: ModelHandle,
    method: str | Method,
    data: Any,
    *,
    out: str | os.PathLike[str],
    config: TrainConfig | Mapping[str, Any] | None = None,
    resume: bool = True,
    overwrite: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
    save_base: bool | None = None,
    progress: bool | Literal["verbose"] = True,
    on_damaged: str = "quarantine",
) -> Trajectory:
    """Train ``handle.model`` with ``method`` on ``data``, checkpointing into ``out``.

    Args:
        handle: the base model (trained in place; see the module docstring).
        method: a registered method name (``"sft"``, ``"harmful_sft"``, ...) or a
            :class:`Method` instance.
        data: ``{role: data}`` for the method's roles, or the first role's data alone
            (PromptSets, lists of pairs / dicts / prompts, or JSON / JSONL paths).
        out: the trajectory folder.
        config: a :class:`TrainConfig` or mapping (``None``: the method's defaults).
        resume: continue from the last complete checkpoint in ``out`` (after checking it
            belongs to the same model, method, config and data). With ``resume=False`` an
            ``out`` that already has checkpoints is an error unless ``overwrite``. A
            trajectory folder without any complete checkpoint is simply started afresh.
        overwrite: with ``resume=False``, delete the trajectory already in ``out``.
        callbacks: extra ``TrainerCallback`` s; :class:`GeometryCallback` s are bound to this
            run's handle and folder.
        save_base: save the base weights to ``out/base`` (default: only when the base cannot
            be reloaded by its id, i.e. an in-memory model). LoRA checkpoints and step 0 are
            reloaded from the base.
        progress: ``True``: one rich progress bar (step, loss); ``False``: silent;
            ``"verbose"``: the trainer's own tqdm bars, log lines and transformers' bars.
        on_damaged: what to do with checkpoints in ``out`` that were complete once and are
            damaged now (marker missing or torn, a file missing or of another size, or — for
            the checkpoint resumed from, which is hash-checked first — other bytes):
            ``"quarantine"`` (default) renames each to ``step-NNNNNN.damaged-<UTC time>``
            (nothing is deleted), warns (:class:`~safetygeo.errors.DamagedCheckpointWarning`)
            and continues from the last intact checkpoint, re-creating the later steps;
            ``"stop"`` raises :class:`DamagedCheckpointError` before anything is changed.
            A checkpoint file the trainer then still cannot read raises
            :class:`DamagedCheckpointError` naming it (after quarantining the folder under
            ``"quarantine"``, so a rerun continues from the step before).

    Returns:
        The :class:`Trajectory` in ``out``.

    Raises:
        UnknownMethodError, TrainConfigError, EmptyDatasetError, DatasetFormatError,
        LoraTargetError, TrajectoryError, TrajectoryMismatchError: bad input (the message
        says which). DamagedCheckpointError: damaged checkpoints with ``on_damaged="stop"``,
        or an unreadable file in the checkpoint resumed from.
    """
    method = get_method(method) if isinstance(method, str) else method
    if not isinstance(method, Method):
        raise TrainConfigError(f"method must be a name or a Method, got {type(method).__name__}")
    if config is None:
        config = method.default_train_config()
    elif isinstance(config, Mapping):
        config = TrainConfig.from_dict(config)
    elif not isinstance(config, TrainConfig):
        raise TrainConfigError(f"config must be a TrainConfig or a mapping, got {type(config).__name__}")
    if on_damaged not in ON_DAMAGED:
        raise TrainConfigError(f"on_damaged must be one of {list(ON_DAMAGED)}, got {on_damaged!r}")
    out = Path(out).expanduser()
    # the trainer's arguments set up the (possibly distributed) process state: only the main
    # process writes trajectory files; the others wait for it
    args = method.training_arguments(config, str(out / STAGING), progress=progress == "verbose")
    _ = args.device  # initializes args.distributed_state
    is_main = args.should_save
    state = args.distributed_state

    def _barrier() -> None:
        if state is not None:
            state.wait_for_everyone()

    records = method.records(method.split_data(data))
    for role, recs in records.items():
        if not recs:
            raise EmptyDatasetError(f"data role {role!r} of method {method.name!r} has no examples")
    fingerprint = model_fingerprint(handle.model)  # the base, before any cast or adapter
    from transformers import set_seed

    set_seed(config.seed)
    rows = method.setup(handle, records, config)  # tokenize before anything is written
    if not rows:
        raise EmptyDatasetError(f"method {method.name!r} produced no training rows")
    template = handle.chat_template()
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "method": method.describe(),
        "train_config": config.to_dict(),
        "seed": config.seed,
        "base_model": {
            "model_id": handle.model_id,
            "revision": handle.revision,
            "describe": handle.describe(),
            "fingerprint": fingerprint,
            "template": {"prefix": template.prefix, "suffix": template.suffix,
                         "source": template.source},
            "saved": None,
        },
        "data": {role: {"sha256": records_sha256(recs), "n": len(recs)}
                 for role, recs in sorted(records.items())},
        "versions": _versions(),
        "created": now_iso(),
    }

    # what is in `out` already: a run to continue, a run to refuse, or nothing to keep.
    # Every step-* folder was complete once (it only appears by rename after its marker):
    # damaged ones are quarantined or stop the run, never deleted.
    old = read_manifest(out) if out.is_dir() else None
    scan = scan_trajectory(out) if old is not None else None
    done = list(scan.checkpoints) if scan else []
    damaged = list(scan.damaged) if scan else []
    if (done or damaged) and resume:
        assert old is not None  # checkpoints are only scanned when a manifest was read
        diff = identity_diff(_identity(old), _identity(manifest))
        if diff:
            raise TrajectoryMismatchError(
                f"cannot resume into {str(out)!r}: it holds a different run "
                f"({old['base_model'].get('model_id')!r} / {old['method']['name']!r}); "
                + "; ".join(diff)
                + ". Use another folder, or resume=False with overwrite=True to replace it"
                + (" (weights_sha256 differs: pass the *base* model, freshly loaded, not "
                   "one already trained in place)" if any("weights_sha256" in d for d in diff) else "")
            )
        manifest["created"] = old.get("created", manifest["created"])
        manifest["base_model"]["saved"] = old["base_model"].get("saved")
    elif (done or damaged) and not overwrite:
        raise TrajectoryError(
            f"{str(out)!r} already holds a trajectory with checkpoints {[c.step for c in done]}"
            + (f" and damaged checkpoints {[d.step for d in damaged]}" if damaged else "")
            + "; pass resume=True to continue it or overwrite=True to replace it"
        )
    elif old is None and out.is_dir() and any(out.iterdir()) and not overwrite:
        stray = sorted(p.name for p in out.iterdir())[:5]
        raise TrajectoryError(f"{str(out)!r} is not empty and not a trajectory folder (holds {stray})")
    if resume:  # the checkpoint to resume from must match its marker byte for byte
        while done:
            problem = checkpoint_problem(done[-1].path, step=done[-1].step, hashes=True)
            if problem is None:
                break
            bad = done.pop()
            damaged.append(DamagedCheckpoint(bad.step, bad.path, problem))
        damaged.sort(key=lambda d: d.step)
    continuing = bool(done) and resume
    if damaged and on_damaged == "stop":
        raise DamagedCheckpointError(
            f"trajectory {str(out)!r} has {len(damaged)} damaged checkpoint(s): "
            + "; ".join(f"step {d.step} in {d.path.name!r}: {d.reason}" for d in damaged)
            + ". Nothing was changed. Move them aside and continue"
            + (f" from step {done[-1].step}" if continuing else "")
            + " with on_damaged='quarantine' (CLI: --on-damaged quarantine)",
            step=damaged[-1].step, path=damaged[-1].path, reason=damaged[-1].reason)
    _barrier()  # every rank has read the checkpoints before any folder is moved
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        gaps = [d.step for d in damaged if continuing and d.step < done[-1].step]
        _quarantine_all(out, damaged, (
            f"Training continues from step {done[-1].step} and re-creates the later steps"
            + (f"; step(s) {gaps} stay missing (a later checkpoint is intact)." if gaps else ".")
            if continuing else "No intact checkpoint is left to continue from: training starts "
            "from the base model." if resume else "Training starts afresh (overwrite)."))
        if old is not None and not continuing:  # nothing to keep: start the folder afresh
            for c in done:
                shutil.rmtree(c.path)
            for name in (BASE_DIR, CALLBACKS_FILE):
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        clean_partial(out)
    _barrier()
    resume_from = done[-1].path if continuing else None

    # base weights, saved once (atomically) when they cannot be reloaded by id
    want_base = save_base if save_base is not None else not _base_reloadable(handle)
    if want_base and manifest["base_model"]["saved"] is None and is_main:
        tmp = out / f".{BASE_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with _quiet(progress):
            handle.model.save_pretrained(tmp, safe_serialization=True)
        handle.tokenizer.save_pretrained(tmp)
        shutil.rmtree(out / BASE_DIR, ignore_errors=True)
        os.replace(tmp, out / BASE_DIR)
        manifest["base_model"]["saved"] = BASE_DIR
    if is_main:
        manifest = write_manifest(out, manifest)
    _barrier()

    # the model to train: dtype, then LoRA (its init draws from the seeded RNG)
    if config.dtype is not None:
        # transformers wraps .to with @wraps(nn.Module.to): its stub loses `self`
        handle.model.to(_DTYPES[config.dtype.lower()])  # type: ignore[arg-type]
    model = _wrap_lora(handle.model, config.lora) if config.lora is not None else handle.model
    if resume_from is not None:
        method.load_state_dict(load_method_state(resume_from))
        if is_main:
            prune_jsonl(out / CALLBACKS_FILE, int(resume_from.name.split("-")[1]))
    for cb in callbacks:
        if isinstance(cb, GeometryCallback):
            cb.bind(handle, out, is_writer=is_main)

    trainer_kwargs: dict[str, Any] = dict(
        model=model, args=args, train_dataset=_Rows(rows), data_collator=method.collate,
        processing_class=handle.tokenizer, callbacks=list(callbacks), method=method,
        handle=handle, train_config=config, trajectory_dir=out, manifest=manifest,
    )
    trainer = method.build_trainer(**trainer_kwargs) or MethodTrainer(**trainer_kwargs)
    if progress != "verbose":  # one rich bar (or none) instead of tqdm + raw log dicts
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        if progress:
            trainer.add_callback(StageProgress(f"{method.name} → {out.name}"))
    try:
        with _quiet(progress):
            if resume_from is not None and _finished(resume_from):
                trainer._load_from_checkpoint(str(resume_from))  # nothing left to train
            else:
                trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except DamagedCheckpointError as exc:  # a file of the resumed checkpoint is unreadable
        if resume_from is None or exc.path is None or Path(exc.path) != resume_from:
            raise
        if is_main and on_damaged == "quarantine" and resume_from.is_dir():
            before = [c.step for c in done[:-1]]
            step = exc.step if exc.step is not None else int(resume_from.name.split("-")[1])
            moved = _quarantine_all(out, [DamagedCheckpoint(step, resume_from, str(exc.reason))],
                                    "Rerun to continue from "
                                    + (f"step {before[-1]}." if before else "the base model."))
            write_manifest(out, trainer.manifest)
            raise DamagedCheckpointError(
                f"{exc}; moved it to {moved[0].path.name!r} (nothing deleted): rerun to continue "
                + (f"from step {before[-1]}" if before else "from the base model"),
                step=exc.step, path=moved[0].path, reason=exc.reason) from exc
        raise
    finally:
        if config.lora is not None:
            # nn.Module.__getattr__ stub types the PeftModel method as Tensor | Module
            handle.model = model.merge_and_unload()  # type: ignore[operator]
        handle.model.eval()
    if is_main:
        write_manifest(out, trainer.manifest)
        shutil.rmtree(out / STAGING, ignore_errors=True)
    _barrier()
    return Trajectory.load(out)
