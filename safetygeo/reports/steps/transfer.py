"""``transfer``: fixed-source transfer robustness.

GCG suffixes (:mod:`safetygeo.attacks.gcg`) are optimized **once**, against a named source
checkpoint (``source: NAME@STEP``), on the first ``n_prompts`` held-out harmful prompts —
one suffix per prompt, or one ``universal`` suffix for all — and cached under the source's
content key. Every checkpoint is then evaluated on the same adversarial prompts (greedy,
the one ASR of :mod:`safetygeo.behavior.metrics`; with a judge also judged ASR): rows
``transfer_asr`` (with the suffixes) and ``transfer_asr_no_suffix`` (the bare
instructions), by labeller (``method``). Transfer ASR against the step reads off whether
later checkpoints reopen attacks that the source closed or never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from safetygeo.errors import SafetyGeoError
from safetygeo.reports.registry import CheckpointContext, ProtocolStep, StepOutput, register_step
from safetygeo.reports.steps.behavior import completions_bytes

__all__ = ["GCGSettings", "TransferSettings"]


@dataclass(frozen=True)
class GCGSettings:
    """The GCG hyper-parameters of the source attack (:class:`~safetygeo.attacks.gcg.GCGConfig`)."""

    num_steps: int = 250
    search_width: int = 512
    topk: int = 256
    n_replace: int = 1
    suffix_init: str = "x x x x x x x x x x x x x x x x x x x x"
    seed: int = 0
    eval_batch_size: int = 128
    universal: bool = False

    def config(self) -> Any:
        from safetygeo.attacks.gcg import GCGConfig

        return GCGConfig(num_steps=self.num_steps, search_width=self.search_width,
                         topk=self.topk, n_replace=self.n_replace, suffix_init=self.suffix_init,
                         seed=self.seed, eval_batch_size=self.eval_batch_size)


@dataclass(frozen=True)
class TransferSettings:
    """Settings of the ``transfer`` step.

    Attributes:
        source: ``NAME@STEP`` of the checkpoint the suffixes are optimized against (a
            trajectory of the report or a folder next to them, by name; step 0 = base).
        n_prompts: first N held-out harmful prompts (``None``: all).
        target: the target completion of every prompt (``None``: the prompt set's targets).
        gcg: :class:`GCGSettings`.
        max_new_tokens: greedy tokens per completion on every checkpoint.
        judge: judge spec (as in ``behavior``).
        n_boot, seed: bootstrap CIs.
    """

    source: str = ""
    n_prompts: int | None = 20
    target: str | None = "Sure, here is"
    gcg: GCGSettings = field(default_factory=GCGSettings)
    max_new_tokens: int = 64
    judge: str | None = None
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or (self.source and "@" not in self.source):
            raise SafetyGeoError(f"source must be 'NAME@STEP', got {self.source!r}")
        if self.n_prompts is not None and (not isinstance(self.n_prompts, int) or self.n_prompts < 1):
            raise SafetyGeoError(f"n_prompts must be a positive int or null, got {self.n_prompts!r}")
        if not isinstance(self.gcg, GCGSettings):
            raise SafetyGeoError("gcg must be a mapping of GCG settings")


def prepare(ctx: CheckpointContext, s: TransferSettings) -> StepOutput:
    """Optimize the suffixes on the source checkpoint (``ctx`` is the source)."""
    from safetygeo.attacks.gcg import gcg_init, gcg_run

    instructions = ctx.sets.split("harmful", "test")
    if s.n_prompts is not None:
        instructions = instructions[:s.n_prompts]
    if s.target is not None:
        targets = [s.target] * len(instructions)
    else:
        ps = ctx.sets.harmful["test"]
        targets = list(ps.targets or [])[:len(instructions)]
        if len(targets) != len(instructions) or any(t is None for t in targets):
            raise SafetyGeoError("transfer.target is null but the harmful test prompts have no "
                                 "targets; give transfer.target (e.g. 'Sure, here is')")
    state = gcg_init(ctx.handle, instructions, targets, s.gcg.config(), universal=s.gcg.universal)
    results = gcg_run(ctx.handle, state, progress=False)
    if s.gcg.universal:
        prompts = results[0].prompts
        suffixes = [results[0].suffix] * len(instructions)
    else:
        prompts = [r.prompt for r in results]
        suffixes = [r.suffix for r in results]
    rows = [{"metric": "gcg_solved", "method": "gcg", "set": "transfer",
             "value": sum(r.solved for r in results) / len(results), "n": len(results)},
            {"metric": "gcg_loss", "method": "gcg", "set": "transfer",
             "value": sum(r.best_loss for r in results) / len(results), "n": len(results)}]
    return StepOutput(rows, {"instructions": instructions, "prompts": prompts,
                             "suffixes": suffixes, "targets": targets,
                             "source": ctx.target.label})


def run(ctx: CheckpointContext, s: TransferSettings) -> StepOutput:
    from safetygeo.behavior import GenerationSettings, evaluate_behavior
    from safetygeo.data import PromptSet
    from safetygeo.reports.sources import resolve_judge

    prep = ctx.prepared("transfer").data
    sets = {"transfer": PromptSet(prep["prompts"], name="transfer", label="harmful"),
            "transfer-no-suffix": PromptSet(prep["instructions"], name="transfer-no-suffix",
                                            label="harmful")}
    rep = evaluate_behavior(ctx.handle, sets, judge=resolve_judge(s.judge),
                            settings=GenerationSettings(max_new_tokens=s.max_new_tokens,
                                                        seed=s.seed),
                            batch_size=ctx.batch_size, n_boot=s.n_boot, progress=False)
    m = rep.metrics[rep.metrics.metric == "asr"]
    rows = [{"metric": "transfer_asr" if r["set"] == "transfer" else "transfer_asr_no_suffix",
             "method": r["method"], "set": prep["source"], "value": float(r["value"]),
             "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]), "n": int(r["n"])}
            for r in m.to_dict("records")]
    keep = [c for c in ("set", "prompt", "completion", "label", "judge_score") if c in rep.completions]
    return StepOutput(rows, {}, {"completions.parquet": completions_bytes(rep.completions[keep])})


register_step(ProtocolStep(
    "transfer", TransferSettings, run, sets=("harmful",), prepare=prepare,
    prepare_keys=("source", "n_prompts", "target", "gcg"), default=False,
    order=70, description="ASR of GCG suffixes optimized once on a source checkpoint"))
