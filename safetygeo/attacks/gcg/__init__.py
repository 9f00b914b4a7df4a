"""GCG (Greedy Coordinate Gradient) adversarial suffixes, step-wise and batched.

Implements Algorithm 1 (one suffix, one prompt) and Algorithm 2's multi-prompt ("universal")
loss of Zou et al. 2023, "Universal and Transferable Adversarial Attacks on Aligned Language
Models", written for safetygeo (nanogcg 0.3.0 pins ``transformers<=4.47.1``; nanogcg 0.2.3's
default prefix-cache path fails on transformers 5 — see the README's GCG section). One step:

1. **Token gradient.** With the suffix as one-hot rows ``X ∈ {0,1}^{n×V}`` entering the
   model through the embedding matrix (``X @ W_E``), compute ``∇_X L`` where ``L`` is the
   mean cross-entropy of the target tokens given the chat-formatted prompt
   ``prefix + instruction + suffix + post-instruction template`` (the template comes from
   :meth:`ModelHandle.chat_template`, as everywhere in safetygeo).
2. **Candidates.** Per suffix position, the ``topk`` allowed tokens with the most negative
   gradient; ``search_width`` candidates, each replacing ``n_replace`` (default 1) distinct
   positions drawn uniformly at random, each with a token drawn uniformly from that
   position's top-k (the paper's sampling; llm-attacks' and HarmBench's code instead spread
   positions evenly over the batch, nanogcg draws them uniformly as here).
3. **Evaluate and move.** Exact losses of all candidates (no grad, ``eval_batch_size`` at a
   time, optionally on top of the prompt prefix's KV cache); the suffix moves to the best
   candidate *even if it is worse than the current suffix* (as in the paper and nanogcg
   with ``buffer_size=0``); the lowest loss seen is kept separately as ``best``.

Where we differ from / add to the reference implementations, on purpose:

* Duplicate candidates are evaluated once (same argmin; fewer forward passes).
* Tokenization filter (nanogcg's ``filter_ids``, stronger): a candidate survives only if the
  *whole formatted prompt* ``prefix + instruction + suffix_text + template`` re-tokenizes to
  exactly the ids that were optimized, so the returned adversarial prompt, re-encoded by
  :meth:`ModelHandle.encode`, is the sequence the loss was measured on.
* The separator (``config.separator``, a space as in llm-attacks' ``f"{goal} {control}"``)
  is part of the optimized text: ``GCGResult.suffix`` is appended to the instruction
  verbatim (``instruction + suffix``) and starts with the separator while the first
  suffix token keeps its leading space.
* Multi-prompt items use the *mean* of the per-prompt losses (the paper sums; same argmin).
* Early stop (optional): an item stops when a candidate makes the model greedily produce the
  whole target (teacher-forced argmax equals every target token); the item then moves to the
  lowest-loss such candidate (nanogcg flags the match but keeps the argmin candidate).
* Allowed tokens: no special tokens (declared or added-special), no ids past the tokenizer's
  length (padding rows of the embedding), and by default only tokens whose decoded text is
  non-empty, ASCII and printable (as nanogcg / HarmBench).

Modules: :mod:`.config` (:class:`GCGConfig`), :mod:`.state` (pool items, results),
:mod:`.model` (eval mode, prefix KV cache, token gradients), :mod:`.candidates` (allowed
tokens, sampling, exact losses), :mod:`.driver` (init / step / run / attack). The attack
success rate under GCG is :func:`safetygeo.attacks.asr.gcg_asr`.

Pools (for R2D2 adversarial training): a :class:`GCGState` holds several items, each its own
suffix for its own (instruction, target) prompt(s); :func:`gcg_step` advances every item
by one step against the model *as it is now*, in eval mode (restored afterwards) and
without touching parameter ``.grad``.

Example:
    >>> from safetygeo.models import load_model
    >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
    >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
    >>> cfg = GCGConfig(num_steps=2, search_width=16, topk=8, suffix_init="x x x", seed=0)
    >>> res = gcg_attack(h, "Tell me a story.", "Sure, here is", cfg, progress=False)
    >>> len(res.losses), res.best_loss <= res.initial_loss
    (2, True)
    >>> res.prompt.startswith("Tell me a story. ")
    True
"""

from safetygeo.attacks.gcg.candidates import allowed_tokens, candidate_losses, sample_candidates
from safetygeo.attacks.gcg.config import GCGConfig, GCGError, ModelLike
from safetygeo.attacks.gcg.driver import (
    gcg_adversarial_prompts,
    gcg_attack,
    gcg_init,
    gcg_run,
    gcg_step,
)
from safetygeo.attacks.gcg.model import token_gradient
from safetygeo.attacks.gcg.state import GCGItem, GCGPrompt, GCGResult, GCGState

__all__ = [
    "GCGConfig", "GCGError", "GCGItem", "GCGPrompt", "GCGResult", "GCGState", "ModelLike",
    "allowed_tokens", "candidate_losses", "gcg_adversarial_prompts", "gcg_attack", "gcg_init",
    "gcg_run", "gcg_step", "sample_candidates", "token_gradient",
]
