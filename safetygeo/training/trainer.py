"""The trainer classes of the core: what :func:`safetygeo.training.train` runs.

* :class:`TrajectoryTrainerMixin` — what every trainer of the core adds to a
  ``transformers.Trainer`` (subclass): the method's metrics in the log, resume errors that
  name the unreadable file (:class:`~safetygeo.training.errors.DamagedCheckpointError`), and
  our checkpoint commit after the trainer wrote a checkpoint;
* :class:`MethodTrainer` — ``transformers.Trainer`` running a
  :class:`~safetygeo.training.method.Method`'s loss (and its ``before_step`` hook, under
  :func:`no_param_grads`);
* RL methods bring their own trainer with the same mixin
  (:class:`safetygeo.training.grpo.TrajectoryGRPOTrainer`).

Example:
    >>> MethodTrainer.__mro__[1].__name__
    'TrajectoryTrainerMixin'
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from safetygeo.errors import CheckpointError
from safetygeo.models.handle import ModelHandle
from safetygeo.training.checkpoints import commit_checkpoint
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import DamagedCheckpointError, TrajectoryError
from safetygeo.training.method import Method, StepContext
from safetygeo.training.trajectory import write_manifest

__all__ = ["MethodTrainer", "TrajectoryTrainerMixin", "no_param_grads"]


@contextlib.contextmanager
def no_param_grads(model: nn.Module) -> Iterator[None]:
    """Turn ``requires_grad`` off for every trainable parameter and eval mode on; restore
    both afterwards. A ``backward()`` inside cannot touch the parameters' ``.grad``.

    Example:
        >>> lin = torch.nn.Linear(2, 1)
        >>> x = torch.ones(1, 2, requires_grad=True)
        >>> with no_param_grads(lin):
        ...     lin(x).sum().backward()
        >>> lin.weight.grad is None, x.grad is not None, lin.weight.requires_grad
        (True, True, True)
    """
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    for p in params:
        p.requires_grad_(False)
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)


class TrajectoryTrainerMixin:
    """What every trainer of the core adds to a ``transformers.Trainer`` (subclass): the
    method's metrics in the log, resume errors naming the unreadable file, and our
    checkpoint commit after the trainer wrote a checkpoint. Mixed into
    :class:`MethodTrainer` and into trainers a method brings itself (e.g. TRL's
    ``GRPOTrainer`` in :mod:`safetygeo.training.grpo`); every override calls the
    trainer's own implementation.
    """

    # set by the host Trainer
    state: Any
    args: Any
    accelerator: Any

    def __init__(self, *args: Any, method: Method, handle: ModelHandle, train_config: TrainConfig,
                 trajectory_dir: Path, manifest: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.method = method
        self.handle = handle
        self.train_config = train_config
        self.trajectory_dir = trajectory_dir
        self.manifest = manifest
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def _accumulate(self, logs: Mapping[str, Any] | None) -> None:
        for k, v in (logs or {}).items():
            self._sums[k] += float(v)
            self._counts[k] += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._counts:
            for k in sorted(self._sums):
                logs[k] = self._sums[k] / self._counts[k]
            self._sums.clear()
            self._counts.clear()
        super().log(logs, start_time)  # type: ignore[misc]

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        with _reading(resume_from_checkpoint, "the model weights", _WEIGHT_FILES):
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        with _reading(checkpoint, "the optimizer / scheduler state", ("optimizer.pt", "scheduler.pt")):
            super()._load_optimizer_and_scheduler(checkpoint)  # type: ignore[misc]

    def _load_scaler(self, checkpoint: str | None) -> None:
        with _reading(checkpoint, "the gradient scaler state", ("scaler.pt",)):
            super()._load_scaler(checkpoint)  # type: ignore[misc]

    def _load_rng_state(self, checkpoint: str | None) -> None:
        rng = f"rng_state_{self.args.process_index}.pth" if self.args.world_size > 1 else "rng_state.pth"
        with _reading(checkpoint, "the RNG state", (rng,)):
            super()._load_rng_state(checkpoint)  # type: ignore[misc]

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        super()._save_checkpoint(model, trial)  # type: ignore[misc]
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state
        if not self.args.should_save:
            return
        step = self.state.global_step
        metrics = next((dict(r) for r in reversed(self.state.log_history)
                        if r.get("step") == step and "loss" in r), {})
        metrics.pop("step", None)
        assert self.args.output_dir is not None  # always set by TrainConfig.training_arguments
        staged = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}"
        commit_checkpoint(staged, self.trajectory_dir, step, metrics=metrics,
                          method_state=self.method.state_dict())
        self.manifest = write_manifest(self.trajectory_dir, self.manifest)


class MethodTrainer(TrajectoryTrainerMixin, Trainer):
    """``transformers.Trainer`` running a :class:`Method`'s loss, with our checkpoint layout.

    Besides :class:`TrajectoryTrainerMixin`'s overrides, only ``compute_loss`` and
    ``training_step`` (to call ``before_step`` first) are overridden; each calls the
    trainer's own implementation.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_is_scaled_for_ga = False  # method losses are micro-batch means
        self._micro = 0
        self._seen_step = -1
        self._has_before_step = type(self.method).before_step is not Method.before_step

    def training_step(self, model: nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: Any = None) -> torch.Tensor:
        step = self.state.global_step
        self._micro = self._micro + 1 if step == self._seen_step else 0
        self._seen_step = step
        if self._has_before_step:
            ctx = StepContext(self.handle, model, step, self._micro, self.train_config)
            with no_param_grads(model):
                self._accumulate(self.method.before_step(ctx, inputs))
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        loss, logs = self.method.loss(model, inputs)
        self._accumulate(logs)
        return (loss, None) if return_outputs else loss


# ----------------------------------------------------------------------------- resume errors
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
                 "pytorch_model.bin", "adapter_model.bin")


def _unreadable(folder: Path, names: Sequence[str]) -> str | None:
    """The first of ``names`` in ``folder`` that cannot be read back (only called after a
    load failed, to name the file)."""
    for name in names:
        f = folder / name
        if not f.is_file():
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                load_file(str(f))
            elif name.endswith(".json"):
                json.loads(f.read_text(encoding="utf-8"))
            else:
                torch.load(f, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any failure means this file is the culprit
            return name
    return None


@contextlib.contextmanager
def _reading(checkpoint: str | os.PathLike[str] | None, what: str, names: Sequence[str]) -> Iterator[None]:
    """Turn a failure to load ``what`` from ``checkpoint`` into a CheckpointError naming the
    file and the step: :class:`DamagedCheckpointError` when a file cannot be read at all
    (e.g. ``UnpicklingError`` of a corrupt ``optimizer.pt``), else :class:`TrajectoryError`."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as exc:
        if checkpoint is None:
            raise
        folder = Path(checkpoint)
        step = folder.name.split("-", 1)[-1]
        step_no = int(step) if step.isdigit() else None
        culprit = _unreadable(folder, names)
        first = (str(exc).split(". ")[0].splitlines() or [""])[0][:200]  # not torch's advice
        cause = f"{type(exc).__name__}: {first}"
        if culprit is not None:
            reason = f"{culprit} cannot be read ({cause})"
            raise DamagedCheckpointError(
                f"cannot resume from checkpoint step {step_no} in {str(folder)!r}: {reason}",
                step=step_no, path=folder, reason=reason) from exc
        present = [n for n in names if (folder / n).is_file()]
        raise TrajectoryError(
            f"cannot resume from checkpoint step {step_no} in {str(folder)!r}: {what} "
            f"({', '.join(present) or ', '.join(names)}) could not be restored ({cause})"
        ) from exc
