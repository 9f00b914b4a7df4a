"""``entropy``: mean output entropy of greedy completions per behaviour set (off by default).

The collapse read-out of the defenses (:func:`safetygeo.behavior.entropy.output_entropy`,
the one definition): near 0 a model collapsed onto a fixed token (CTRAP's trap), near
``log(vocab)`` one that lost its language modelling, in between a working assistant. Rows:
``output_entropy`` per behaviour set (nats, percentile-bootstrap CI over prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

from safetygeo._validate import positive_int
from safetygeo.reports.registry import CheckpointContext, ProtocolStep, StepOutput, register_step

__all__ = ["EntropySettings"]


@dataclass(frozen=True)
class EntropySettings:
    """Settings of the ``entropy`` step.

    Attributes:
        max_new_tokens: greedy tokens per completion.
        n_boot: bootstrap resamples of the CI.
    """

    max_new_tokens: int = 32
    n_boot: int = 1000

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "n_boot"):
            positive_int(getattr(self, name), name)


def run(ctx: CheckpointContext, s: EntropySettings) -> StepOutput:
    from safetygeo.behavior.entropy import output_entropy
    from safetygeo.behavior.generate import GenerationSettings, generate

    rows = []
    for name, (_, ps) in ctx.sets.behavior.items():
        gens = generate(ctx.handle, list(ps.prompts),
                        GenerationSettings(max_new_tokens=s.max_new_tokens),
                        batch_size=ctx.batch_size, progress=False)
        e = output_entropy(ctx.handle, gens, n_boot=s.n_boot, batch_size=ctx.batch_size)
        rows.append({"metric": "output_entropy", "set": name, "method": "teacher-forced",
                     "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n})
    return StepOutput(rows)


register_step(ProtocolStep(
    "entropy", EntropySettings, run, sets=("behavior",), default=False, order=65,
    description="mean output entropy of greedy completions per behaviour set"))
