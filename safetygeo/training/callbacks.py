"""Training callbacks: geometry on the fly, the run's progress bar, per-step timing.

:class:`StepTimer` records the seconds of every optimizer step (what the cost benchmarks
compare).

:class:`GeometryCallback` is a ``transformers.TrainerCallback``. Every ``every`` optimizer
steps (and/or right after each checkpoint with ``on_save=True``) it puts the model in eval
mode, calls ``fn`` with the run's :class:`~safetygeo.models.ModelHandle` (whose model is the
one being trained; LoRA adapters included) and appends ``{"step", "name", "values"}`` to
``out/callbacks.jsonl`` (append + fsync). It saves and restores every RNG around ``fn`` and
restores train mode afterwards, so a callback never changes the training run it observes.
On resume, records after the resumed checkpoint (work of the killed run that is redone) are
dropped first.

Example:
    >>> seen = []
    >>> cb = GeometryCallback(lambda handle, step: seen.append(step) or {"n": step}, every=2)
    >>> cb.every, cb.name
    (2, '<lambda>')
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from safetygeo.models.handle import ModelHandle
from safetygeo.training.checkpoints import CALLBACKS_FILE
from safetygeo.training.errors import TrainingError
from safetygeo.training.trajectory import append_jsonl

GeometryFn = Callable[[ModelHandle, int], Mapping[str, Any]]


class GeometryCallback(TrainerCallback):
    """Run ``fn(handle, step)`` every ``every`` steps and/or after each save.

    Args:
        fn: returns a mapping of JSON-serializable values (tensors / numpy scalars are
            converted).
        every: step interval (``None``: only on save).
        on_save: also run after each checkpoint is written (at most once per step).
        name: recorded with each result (default: ``fn.__name__``).
    """

    def __init__(self, fn: GeometryFn, *, every: int | None = 1, on_save: bool = False,
                 name: str | None = None) -> None:
        if every is not None and (not isinstance(every, int) or every < 1):
            raise TrainingError(f"GeometryCallback every must be a positive int or None, got {every!r}")
        if every is None and not on_save:
            raise TrainingError("GeometryCallback needs every=N or on_save=True")
        self.fn = fn
        self.every = every
        self.on_save_enabled = on_save
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        self.handle: ModelHandle | None = None
        self.out: Path | None = None
        self.is_writer = True
        self._last_step = -1

    def bind(self, handle: ModelHandle, out: Path, *, is_writer: bool = True) -> None:
        """Attach the run's handle and trajectory folder (done by :func:`train`)."""
        self.handle, self.out, self.is_writer = handle, Path(out), is_writer

    def _run(self, step: int) -> None:
        if self.handle is None or self.out is None:
            raise TrainingError("GeometryCallback is not bound to a run; pass it to train(callbacks=...)")
        if step == self._last_step:
            return
        self._last_step = step
        model = self.handle.model
        was_training = model.training
        py_state, np_state = random.getstate(), np.random.get_state()
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            model.eval()
            try:
                values = self.fn(self.handle, step)
            finally:
                model.train(was_training)
                random.setstate(py_state)
                np.random.set_state(np_state)
        if not isinstance(values, Mapping):
            raise TrainingError(f"geometry callback {self.name!r} must return a mapping, got "
                                f"{type(values).__name__}")
        if self.is_writer:
            append_jsonl(self.out / CALLBACKS_FILE, {"step": step, "name": self.name, "values": dict(values)})

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.every is not None and state.global_step % self.every == 0:
            self._run(state.global_step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.on_save_enabled:
            self._run(state.global_step)


class StageProgress(TrainerCallback):
    """One rich progress bar for a training run (step / max steps, latest loss), instead of
    the trainer's tqdm bar and its raw ``{'loss': ...}`` prints.

    Example:
        >>> StageProgress("sft").description
        'sft'
    """

    def __init__(self, description: str = "training") -> None:
        self.description = description
        self._progress: Any = None
        self._task: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                                  TimeRemainingColumn(), transient=False)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=state.max_steps,
                                             completed=state.global_step, loss="")

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if self._progress is not None and logs and "loss" in logs:
            self._progress.update(self._task, loss=f"loss {float(logs['loss']):.4f}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)
            self._progress.stop()
            self._progress = None


class StepTimer(TrainerCallback):
    """Seconds per optimizer step, wall clock and process CPU, measured inside the trainer
    (from ``on_step_begin`` to ``on_step_end``: the step's forward / backward passes, any
    rollout generation and the optimizer update; checkpoint saving and logging fall
    outside). What the cost benchmarks use to compare methods on the same model and batch.

    Example:
        >>> t = StepTimer()
        >>> t.on_step_begin(None, None, None); t.on_step_end(None, None, None)
        >>> len(t.wall), t.median(skip=0) >= 0.0
        (1, True)
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._start = (0.0, 0.0)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import time

        self._start = (time.perf_counter(), time.process_time())

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import time

        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])

    def median(self, *, skip: int = 2, cpu: bool = False) -> float:
        """Median seconds per step after the first ``skip`` (warm-up) steps.

        Raises:
            TrainingError: no step left after ``skip``.
        """
        xs = (self.cpu if cpu else self.wall)[skip:]
        if not xs:
            raise TrainingError(f"StepTimer: {len(self.wall)} step(s) timed, none after skipping {skip}")
        return float(np.median(xs))
