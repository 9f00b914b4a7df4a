"""``behavior``: what each checkpoint does with the behaviour sets.

:func:`safetygeo.behavior.evaluate_behavior` on ``sets.behavior`` with greedy decoding and
the optional judge. Rows are its tidy metrics (``set`` = the set's name, ``method`` = the
labeller): on ``harmful`` sets ``asr`` (share not refused; robust refusal = 1 − ASR) and,
with a judge, ``asr`` by ``judge`` / ``judge_score`` (harmful usefulness: real compliance);
on ``safe`` sets ``over_refusal_rate`` (exaggerated safety); on ``benign`` sets
``over_refusal_rate`` and, with reference answers, ``exact_match`` / ``contains_answer``
(utility). The completions are kept as a file (``completions.parquet``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from safetygeo.errors import SafetyGeoError
from safetygeo.reports.registry import CheckpointContext, ProtocolStep, StepOutput, register_step

__all__ = ["BehaviorSettings"]


@dataclass(frozen=True)
class BehaviorSettings:
    """Settings of the ``behavior`` step.

    Attributes:
        max_new_tokens: greedy tokens per completion.
        judge: judge spec (``None``: our refusal classifier only; ``llamaguard=MODEL``;
            ``toy`` with ``safetygeo.toy``), see :mod:`safetygeo.reports.sources`.
        n_boot, seed: bootstrap CIs.
        likelihood: teacher-forced reference log-probs on benign sets with answers.
    """

    max_new_tokens: int = 64
    judge: str | None = None
    n_boot: int = 1000
    seed: int = 0
    likelihood: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 1:
            raise SafetyGeoError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")


def completions_bytes(frame: object) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)  # type: ignore[attr-defined]
    return buf.getvalue()


def run(ctx: CheckpointContext, s: BehaviorSettings) -> StepOutput:
    from safetygeo.behavior import GenerationSettings, evaluate_behavior
    from safetygeo.reports.sources import resolve_judge

    sets = {name: ps for name, (_, ps) in ctx.sets.behavior.items()}
    roles = {name: role for name, (role, _) in ctx.sets.behavior.items()}
    rep = evaluate_behavior(ctx.handle, sets, roles=roles, judge=resolve_judge(s.judge),
                            settings=GenerationSettings(max_new_tokens=s.max_new_tokens,
                                                        seed=s.seed),
                            batch_size=ctx.batch_size, likelihood=s.likelihood, n_boot=s.n_boot,
                            progress=False)
    rows = [{"metric": r["metric"], "method": r["method"], "set": r["set"],
             "value": float(r["value"]), "ci_low": float(r["ci_low"]),
             "ci_high": float(r["ci_high"]), "n": int(r["n"])}
            for r in rep.metrics.to_dict("records")]
    keep = [c for c in ("set", "role", "prompt", "input", "completion", "label", "judge_score",
                        "judge_label", "reference") if c in rep.completions]
    return StepOutput(rows, {}, {"completions.parquet": completions_bytes(rep.completions[keep])})


register_step(ProtocolStep(
    "behavior", BehaviorSettings, run, sets=("behavior",), order=60,
    description="refusal / ASR (judged), over-refusal and utility on the behaviour sets"))
