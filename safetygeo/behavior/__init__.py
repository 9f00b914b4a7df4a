"""Behaviour diagnostics: refusal scores (logit form here; string classifiers later)."""

from safetygeo.behavior.refusal import (
    DEFAULT_REFUSAL_PHRASES,
    refusal_score,
    refusal_score_from_logprobs,
    refusal_token_ids,
)

__all__ = [
    "DEFAULT_REFUSAL_PHRASES", "refusal_score", "refusal_score_from_logprobs", "refusal_token_ids",
]
