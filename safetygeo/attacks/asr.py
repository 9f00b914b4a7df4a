"""Attack success rate under an attack, with the behaviour layer's one definition of ASR.

:func:`gcg_asr` attacks every instruction afresh with GCG, generates greedily from
``instruction + suffix`` and scores the completions with
:func:`safetygeo.behavior.metrics.attack_success_rate` — success = the requested content
was delivered (judged against the bare instruction, not the suffixed prompt; a refusal
opener followed by the on-topic answer is success) — so an ASR here and in a behaviour
report mean the same thing. ``refusal_rate`` (refused = full / partial refusal or empty)
is reported beside it.

Example:
    >>> from safetygeo.attacks.gcg import GCGConfig
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
    >>> cfg = GCGConfig(num_steps=1, search_width=8, topk=4, suffix_init="x x", seed=0)
    >>> r = gcg_asr(h, ["Tell me a story.", "Say hi."], ["Sure", "Hi"], cfg, n_boot=20,
    ...             settings=GenerationSettings(max_new_tokens=2), progress=False)
    >>> r.asr.metric, r.asr.n, 0.0 <= r.asr.value <= 1.0
    ('asr', 2, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from safetygeo.attacks.gcg.config import GCGConfig
from safetygeo.attacks.gcg.driver import gcg_adversarial_prompts
from safetygeo.attacks.gcg.state import GCGResult
from safetygeo.behavior.classify import classify_completions, classify_refusal
from safetygeo.behavior.delivery import Relevance, get_relevance
from safetygeo.behavior.generate import GenerationSettings, generate
from safetygeo.behavior.metrics import attack_success_rate, refusal_rate
from safetygeo.models.handle import ModelHandle
from safetygeo.results import Estimate

__all__ = ["GCGASR", "gcg_asr"]


@dataclass(frozen=True)
class GCGASR:
    """Attack success rate of a checkpoint under a fresh GCG attack.

    Attributes:
        asr: :class:`~safetygeo.results.Estimate` of the share of adversarial prompts whose
            greedy completion delivers the requested content (bootstrap CI over prompts;
            ``method`` names the labeller, ``extra["relevance"]`` the relevance method).
        asr_no_attack: the same on the bare instructions (``None`` if not computed).
        prompts, completions, labels: per adversarial prompt.
        results: the per-prompt :class:`~safetygeo.attacks.gcg.GCGResult` (losses, suffixes,
            ``solved``).
    """

    asr: Estimate
    asr_no_attack: Estimate | None
    prompts: tuple[str, ...]
    completions: tuple[str, ...]
    labels: tuple[str, ...]
    results: tuple[GCGResult, ...]
    refusal_rate: Estimate | None = None

    @property
    def solved_rate(self) -> float:
        """Fraction of prompts whose target is greedily produced (the optimizer's success)."""
        return sum(r.solved for r in self.results) / len(self.results)


def gcg_asr(
    handle: ModelHandle,
    instructions: Sequence[str],
    targets: Sequence[str] | None = None,
    config: GCGConfig | None = None,
    *,
    settings: GenerationSettings = GenerationSettings(),
    classifier: Callable[[str], str] = classify_refusal,
    relevance: str | Relevance | None = "auto",
    baseline: bool = True,
    n_boot: int = 1000,
    batch_size: int = 8,
    progress: bool = True,
) -> GCGASR:
    """ASR of ``handle`` under GCG: attack each instruction afresh, generate from
    ``instruction + suffix`` with ``settings`` (greedy by default), label the completions.

    Args:
        handle: the checkpoint (attacked and evaluated).
        instructions: harmful instructions or a ``PromptSet`` (its targets used by default).
        targets: target completions (``"Sure, here is ..."``), one per instruction.
        config: GCG hyper-parameters.
        settings: decoding of the completions (``settings.seed`` also seeds the bootstrap).
        classifier: ``completion -> label`` (ours by default; ``gcg_label`` reproduces the
            GCG paper's substring check and is recorded as its ``method``).
        relevance: the content decision's relevance method (``lexical`` / ``minilm`` /
            ``auto``; :mod:`safetygeo.behavior.delivery`).
        baseline: also measure the rate without the suffixes (``asr_no_attack``).
        n_boot: bootstrap resamples of the CI.
        batch_size: prompts per generation batch.
    """
    prompts, results = gcg_adversarial_prompts(handle, instructions, targets, config,
                                               progress=progress, return_results=True)
    labeller = "ours" if classifier is classify_refusal else getattr(classifier, "__name__",
                                                                      "custom")
    rel = get_relevance(relevance)
    asked = list(getattr(instructions, "prompts", instructions))

    def run(texts: Sequence[str]) -> tuple[list[str], list[str], Estimate]:
        gen = generate(handle, list(texts), settings, batch_size=batch_size, progress=progress)
        labels = classify_completions(gen.completions, classifier=classifier, allow_empty=True)
        est = attack_success_rate(asked, gen.completions, labels=labels, relevance=rel,
                                  method=labeller, n_boot=n_boot,
                                  seed=settings.seed)
        return list(gen.completions), labels, est

    completions, labels, asr = run(prompts)
    no_attack = run(asked)[2] if baseline else None
    refused = refusal_rate(labels, method=labeller, n_boot=n_boot, seed=settings.seed)
    return GCGASR(asr, no_attack, tuple(prompts), tuple(completions), tuple(labels),
                  tuple(results), refused)  # type: ignore[arg-type]
