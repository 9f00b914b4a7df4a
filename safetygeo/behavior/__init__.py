"""Behaviour diagnostics: generation, refusal classification, judges, metrics, reports.

* :mod:`~safetygeo.behavior.generate` — batched, left-padded generation (greedy or seeded
  sampling), also under interventions and as batched variants;
* :mod:`~safetygeo.behavior.classify` — GCG / XSTest string matchers and our
  preamble-aware classifier (full / partial refusal, compliance, empty), agreement tables;
* :mod:`~safetygeo.behavior.judges` — the pluggable judge protocol and HF adapters;
* :mod:`~safetygeo.behavior.metrics` — ASR, over-refusal, refusal rate, StrongREJECT,
  utility, all with bootstrap CIs;
* :mod:`~safetygeo.behavior.entropy` — per-token output entropy of generations (the
  "collapsed or not" read-out);
* :mod:`~safetygeo.behavior.utility` — teacher-forced reference log-probs;
* :mod:`~safetygeo.behavior.report` — :class:`BehaviorReport` and :func:`evaluate_behavior`;

The logit refusal score lives in :mod:`safetygeo.activations.refusal`; refusal-rate effects
of interventions on generations in :mod:`safetygeo.causal.generation`.
"""

from safetygeo.behavior.classify import (
    GCG_TEST_PREFIXES,
    LABELS,
    REFUSAL_LABELS,
    XSTEST_REFUSAL_PREFIXES,
    EmptyCompletionError,
    accuracy_table,
    agreement_table,
    analyze_refusal,
    classify_completions,
    classify_refusal,
    confusion_table,
    gcg_label,
    is_refusal,
    xstest_label,
)
from safetygeo.behavior.entropy import generation_entropies, output_entropy, token_entropies
from safetygeo.behavior.generate import Generations, GenerationSettings, generate, generate_variants
from safetygeo.behavior.judges import (
    CausalLMJudge,
    JudgeError,
    Judgement,
    JudgeOutputError,
    LlamaGuardJudge,
    SequenceClassifierJudge,
    as_judgement,
    run_judge,
)
from safetygeo.behavior.metrics import (
    attack_success_rate,
    contains_answer,
    exact_match,
    label_rates,
    over_refusal_rate,
    refusal_rate,
    strongreject_proxy,
    strongreject_score,
)
from safetygeo.behavior.report import (
    BehaviorReport,
    behavior_sets,
    evaluate_behavior,
    generate_completions,
    score_completions,
)
from safetygeo.behavior.utility import reference_logprobs

__all__ = [
    "GCG_TEST_PREFIXES", "LABELS", "REFUSAL_LABELS", "XSTEST_REFUSAL_PREFIXES",
    "BehaviorReport", "CausalLMJudge", "EmptyCompletionError",
    "GenerationSettings", "Generations", "JudgeError", "JudgeOutputError", "Judgement",
    "LlamaGuardJudge", "SequenceClassifierJudge", "accuracy_table",
    "agreement_table", "analyze_refusal", "as_judgement", "attack_success_rate", "behavior_sets",
    "classify_completions", "classify_refusal", "confusion_table", "contains_answer", "evaluate_behavior",
    "exact_match", "gcg_label", "generation_entropies", "output_entropy", "token_entropies", "is_refusal", "generate", "generate_completions", "generate_variants",
    "label_rates", "over_refusal_rate", "reference_logprobs",
    "refusal_rate",
    "run_judge", "score_completions", "strongreject_proxy", "strongreject_score",
    "xstest_label",
]
