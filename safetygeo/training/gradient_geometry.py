"""Gradient geometry along a trajectory: a training callback and the same measurement post hoc.

* :class:`GradientGeometryCallback` measures a :class:`~safetygeo.gradients.GradientProbe`
  (per-layer gradient cosines of two losses, G-effects of unlearning objectives) every
  ``every`` steps and/or at each checkpoint, and appends the tables to the trajectory's
  ``callbacks.jsonl`` (through :class:`~safetygeo.training.callbacks.GeometryCallback`: RNG
  saved and restored, eval mode during the measurement, model state untouched).
  :func:`read_gradient_geometry` reads them back.
* :func:`gradient_geometry_along` reloads every saved checkpoint (and the base, step 0)
  and measures the same probe.

Under LoRA only the adapters are trainable, so the callback's gradients are the adapters';
the post-hoc pass reloads merged checkpoints, whose weights are all trainable — there the two
measure different parameters (full fine-tunes: the same ones).

For the same checkpoint both give the same numbers (the callback measures the weights the
checkpoint then saves; tested). NPO / TNPO's reference is, by default, the model the
trajectory starts from (``reference="base"``): the callback takes its log-probs when it is
bound to the run (before the first step), the post-hoc function from
:meth:`Trajectory.load_base`. ``reference="self"`` makes each checkpoint its own reference
(the G-effect at the start of an unlearning run from that checkpoint).

Example:
    >>> from safetygeo.gradients import GradientProbe, LossSpec
    >>> spec = LossSpec.from_data([("A?", "a")])
    >>> cb = GradientGeometryCallback(GradientProbe(loss_a=spec, loss_b=spec), every=5)
    >>> cb.name, cb.every
    ('gradient_geometry', 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from safetygeo.errors import SafetyGeoError
from safetygeo.gradients.losses import ReferenceLogprobs, reference_logprobs
from safetygeo.gradients.probe import GradientGeometry, GradientGeometrySeries, GradientProbe
from safetygeo.models.handle import ModelHandle
from safetygeo.training.callbacks import GeometryCallback
from safetygeo.training.trajectory import Trajectory

ReferenceMode = Literal["base", "self"]

__all__ = ["GradientGeometryCallback", "gradient_geometry_along", "read_gradient_geometry"]


def _check_reference(reference: str) -> None:
    if reference not in ("base", "self"):
        raise SafetyGeoError(f"reference must be 'base' or 'self', got {reference!r}")


class GradientGeometryCallback(GeometryCallback):
    """Log a :class:`GradientProbe`'s tables into the trajectory while training.

    Args:
        probe: what to measure.
        every: step interval (``None``: only at checkpoints, with ``on_save=True``).
        on_save: also measure right after each checkpoint is written.
        name: the records' name in ``callbacks.jsonl``.
        reference: NPO / TNPO reference: ``"base"`` (the model the run starts from) or
            ``"self"`` (the current model).
    """

    def __init__(self, probe: GradientProbe, *, every: int | None = None, on_save: bool = False,
                 name: str = "gradient_geometry", reference: ReferenceMode = "base") -> None:
        if not isinstance(probe, GradientProbe):
            raise SafetyGeoError(f"probe must be a GradientProbe, got {type(probe).__name__}")
        _check_reference(reference)
        self.probe = probe
        self.reference_mode = reference
        self._reference: ReferenceLogprobs | None = None
        super().__init__(self._measure, every=every, on_save=on_save, name=name)

    def bind(self, handle: ModelHandle, out: Path, *, is_writer: bool = True) -> None:
        super().bind(handle, out, is_writer=is_writer)
        if self.probe.needs_reference and self.reference_mode == "base":
            # bound before the first step: the weights are the ones the run starts from
            self._reference = reference_logprobs(handle, self.probe.forget,  # type: ignore[arg-type]
                                                 source="step-0")

    def _measure(self, handle: ModelHandle, step: int) -> dict[str, Any]:
        return self.probe.measure(handle, step=step, reference=self._reference).to_record()


def read_gradient_geometry(trajectory: Trajectory | str | Path, *, name: str = "gradient_geometry",
                           ema: float | None = None) -> GradientGeometrySeries:
    """The tables a :class:`GradientGeometryCallback` logged into ``trajectory``.

    Raises:
        SafetyGeoError: no records of that name.
    """
    traj = trajectory if isinstance(trajectory, Trajectory) else Trajectory.load(trajectory)
    recs = [r["values"] for r in traj.callback_records() if r.get("name") == name]
    if not recs:
        names = sorted({str(r.get("name")) for r in traj.callback_records()})
        raise SafetyGeoError(f"trajectory {str(traj.path)!r} has no callback records named "
                             f"{name!r} (found: {names or 'none'})")
    return GradientGeometrySeries.from_records(recs, ema=ema)


def gradient_geometry_along(
    trajectory: Trajectory | str | Path,
    probe: GradientProbe,
    *,
    steps: Sequence[int] | None = None,
    include_base: bool = True,
    reference: ReferenceMode = "base",
    ema: float | None = None,
    dtype: str | None = None,
    device: str | None = None,
    progress: bool = False,
) -> GradientGeometrySeries:
    """Measure ``probe`` at every saved checkpoint of ``trajectory`` (post hoc).

    Args:
        steps: checkpoints to measure (default: all complete ones).
        include_base: also measure the base model as step 0.
        reference: NPO / TNPO reference (see the module docstring).
        ema: EMA weight for the G-effect series (``None``: none).
        dtype, device: how checkpoints are loaded (default: as saved, on the CPU).
        progress: print one line per checkpoint.
    """
    _check_reference(reference)
    traj = trajectory if isinstance(trajectory, Trajectory) else Trajectory.load(trajectory)
    todo = list(traj.steps if steps is None else steps)
    for s in todo:
        traj.checkpoint(s)  # unknown steps fail before any work
    if include_base and 0 not in todo:
        todo = [0, *todo]
    ref: ReferenceLogprobs | None = None
    if probe.needs_reference and reference == "base":
        base = traj.load_base(dtype=dtype, device=device)
        ref = reference_logprobs(base, probe.forget, source="step-0")  # type: ignore[arg-type]
        del base
    results: list[GradientGeometry] = []
    for s in todo:
        handle = traj.load_checkpoint(s, dtype=dtype, device=device)
        results.append(probe.measure(handle, step=s, reference=ref))
        if progress:
            print(f"step {s}: measured", flush=True)
        del handle
    return GradientGeometrySeries.from_results(results, ema=ema)
