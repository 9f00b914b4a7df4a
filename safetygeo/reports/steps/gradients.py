"""``gradients``: per-layer cosine between the harmful-compliance and benign gradients (off by
default; SEAM's diagnostic, :func:`safetygeo.gradients.layer_gradient_cosines`).

Losses on the *train* split: completion CE of the harmful prompts' targets (compliant
answers, e.g. AdvBench's "Sure, here is …" or the toy world's how-tos) and of the harmless
prompts' targets (helpful answers). Rows: ``grad_cos`` per parameter group (``layer`` = the
block index; embedding / head / all under ``position``), a group the losses do not reach
reported with a note instead of a number. Needs prompt sets that carry targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from safetygeo._validate import positive_int
from safetygeo.reports.registry import CheckpointContext, ProtocolStep, StepOutput, register_step

__all__ = ["GradientSettings"]


@dataclass(frozen=True)
class GradientSettings:
    """Settings of the ``gradients`` step.

    Attributes:
        n_examples: training examples per loss (the first of the train split).
        max_length: longest prompt + completion in tokens.
    """

    n_examples: int = 32
    max_length: int = 256

    def __post_init__(self) -> None:
        for name in ("n_examples", "max_length"):
            positive_int(getattr(self, name), name)


def _pairs(ps: object, n: int) -> list[tuple[str, str]]:
    targets = getattr(ps, "targets", None)
    prompts = list(getattr(ps, "prompts", []))
    if not targets:
        return []
    return [(p, t) for p, t in zip(prompts, targets) if isinstance(t, str) and t.strip()][:n]


def run(ctx: CheckpointContext, s: GradientSettings) -> StepOutput:
    from safetygeo.gradients import LossSpec, layer_gradient_cosines

    harm = _pairs(ctx.sets.harmful["train"], s.n_examples)
    benign = _pairs(ctx.sets.harmless["train"], s.n_examples)
    if not harm or not benign:
        return StepOutput([{"metric": "grad_cos", "value": math.nan, "method": "autograd",
                            "note": "the harmful and harmless train sets need targets "
                                    "(responses) for the gradient losses"}])
    res = layer_gradient_cosines(
        ctx.handle, LossSpec.from_data(harm, "harmful_ce", max_length=s.max_length),
        LossSpec.from_data(benign, "ce", max_length=s.max_length))
    rows = []
    for r in res.to_frame().itertuples():
        group = str(r.group)
        layer = int(group.split(".")[1]) if group.startswith("block.") else None
        defined = bool(getattr(r, "defined", True))
        rows.append({"metric": "grad_cos", "layer": layer,
                     "position": None if layer is not None else group, "method": "autograd",
                     "value": float(r.cosine) if defined else math.nan,
                     "note": "" if defined else str(getattr(r, "reason", "undefined"))})
    return StepOutput(rows)


register_step(ProtocolStep(
    "gradients", GradientSettings, run, sets=("harmful", "harmless"), default=False, order=80,
    description="per-layer cosine of harmful-compliance vs benign gradients"))
