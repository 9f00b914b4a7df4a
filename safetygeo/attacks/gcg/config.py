"""GCG configuration and its errors."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from safetygeo.errors import SafetyGeoError
from safetygeo.models.handle import ModelHandle

ModelLike = ModelHandle | tuple[PreTrainedModel, PreTrainedTokenizerBase]


class GCGError(SafetyGeoError):
    """Bad GCG input: a config value, an empty target, an unusable suffix or vocabulary."""


@dataclass(frozen=True)
class GCGConfig:
    """Hyper-parameters of GCG (defaults: Zou et al. 2023 / nanogcg).

    Attributes:
        num_steps: steps run by :func:`gcg_attack` / :func:`gcg_run` (nanogcg's default 250;
            the paper runs 500).
        search_width: candidates sampled per step (paper: batch size B = 512).
        topk: tokens kept per position from the gradient (paper: k = 256).
        n_replace: positions swapped per candidate (paper: 1).
        suffix_init: initial suffix text (20 tokens in the paper, ``"! ! ! …"``; nanogcg
            uses ``"x x x …"``).
        separator: text between the instruction and the suffix (part of the optimized
            span; dropped when the instruction is empty).
        allow_non_ascii: also allow tokens whose text is non-ASCII / non-printable / empty.
        forbidden_token_ids: further token ids never to place in the suffix.
        filter_tokenization: drop candidates whose formatted prompt does not re-tokenize to
            the optimized ids (see module notes). Turning it off optimizes token sequences
            that the returned text may not reproduce.
        seed: seed of the candidate sampler (``None``: nondeterministic).
        eval_batch_size: candidates per forward pass when computing candidate losses.
        early_stop: stop an item once a candidate makes the model greedily emit the target.
        use_prefix_cache: evaluate candidates on top of the KV cache of the tokens before
            the suffix (exact; falls back to full sequences for non-``DynamicCache`` models).
    """

    num_steps: int = 250
    search_width: int = 512
    topk: int = 256
    n_replace: int = 1
    suffix_init: str = "x x x x x x x x x x x x x x x x x x x x"
    separator: str = " "
    allow_non_ascii: bool = False
    forbidden_token_ids: tuple[int, ...] = ()
    filter_tokenization: bool = True
    seed: int | None = 0
    eval_batch_size: int = 128
    early_stop: bool = False
    use_prefix_cache: bool = True

    def __post_init__(self) -> None:
        for name in ("search_width", "topk", "n_replace", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise GCGError(f"GCGConfig.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.num_steps, int) or self.num_steps < 0:
            raise GCGError(f"GCGConfig.num_steps must be an int >= 0, got {self.num_steps!r}")
        if not isinstance(self.suffix_init, str) or not self.suffix_init.strip():
            raise GCGError(
                f"GCGConfig.suffix_init must be non-blank text, got {self.suffix_init!r}"
            )
        object.__setattr__(self, "forbidden_token_ids", tuple(int(i) for i in self.forbidden_token_ids))
