"""Refusal classifier vs the GCG and XSTest string matchers, against human labels.

Scores :func:`safetygeo.behavior.classify.classify_refusal` ("ours"), :func:`gcg_label` and
:func:`xstest_label` on

* the hand-written hard cases in ``tests/behavior/hard_cases.py`` (in the repo), grouped as
  development (``DEV_CASES`` + ``HELDOUT_V1`` + ``HELDOUT_V2``, used while writing the
  rules) and the held-out rounds ``HELDOUT_V3`` / ``HELDOUT_V4`` (each scored once);
* with ``--external DIR``: every ``*.csv`` in DIR with a ``completion`` column and a human
  label column (``final_label`` with XSTest's ``1_full_compliance`` / ``2_full_refusal`` /
  ``3_partial_refusal``, or ``label`` / ``gold`` with our label names). XSTest's own files
  (``paul-rottger/exaggerated-safety``, ``model_completions/xstest_v2_completions_*.csv``)
  work as downloaded. Nothing external is shipped with the project.

External rows are split once into a development half and a test half *by prompt*: a row
with an ``id`` column goes to ``dev`` iff the first byte of ``sha256(f"{SPLIT_SEED}:{id}")``
is even (the same prompt lands in the same half for every model's file); rows without an
id are split by row index the same way. ``--split dev|test|all`` picks the half.

For each set it prints n, 3-way accuracy, refusal-vs-compliance accuracy (partial refusal
and empty count as refusal, as in every rate of ``safetygeo.behavior.metrics``), Cohen's
kappa (binary and 3-way) and a 95% bootstrap CI (1000 resamples of rows, seed 0) of the
binary accuracy; ``--confusion`` adds confusion matrices and ``--agreement`` the pairwise
agreement of the three labellers (binary).

    python benchmarks/classifier.py                                  # hard cases only
    python benchmarks/classifier.py --external ~/xstest_completions --split test
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from safetygeo.behavior.classify import (
    LABELS,
    accuracy_table,
    agreement_table,
    classify_refusal,
    confusion_table,
    gcg_label,
    to_binary,
    xstest_label,
)
from safetygeo.stats.bootstrap import bootstrap_ci

#: Seed of the once-only dev / test split of external sets (recorded; never change it).
SPLIT_SEED = 20240917
XSTEST_LABELS = {"1_full_compliance": "compliance", "2_full_refusal": "full_refusal",
                 "3_partial_refusal": "partial_refusal"}
RATERS: dict[str, Callable[[str], str]] = {
    "ours": classify_refusal, "gcg_prefix": gcg_label, "xstest_strmatch": xstest_label}
HARD_CASES = Path(__file__).resolve().parents[1] / "tests" / "behavior" / "hard_cases.py"


def split_of(key: str, seed: int = SPLIT_SEED) -> str:
    """``"dev"`` or ``"test"`` for a row key (the prompt id), stable across runs and files.

    Example:
        >>> split_of("v2-1") in ("dev", "test")
        True
    """
    return "dev" if hashlib.sha256(f"{seed}:{key}".encode()).digest()[0] % 2 == 0 else "test"


def _label(x: object) -> str:
    s = str(x).strip()
    s = XSTEST_LABELS.get(s, s)
    if s not in LABELS:
        raise ValueError(
            f"unknown gold label {x!r} (expected XSTest's 1_/2_/3_ labels or {LABELS})")
    return s


def read_external(path: Path) -> pd.DataFrame:
    """One labelled CSV as ``id, completion, gold`` (empty completions are labelled
    ``empty`` by every rater, so they are dropped and counted in the printout)."""
    df = pd.read_csv(path, keep_default_na=False)
    gold_col = next((c for c in ("final_label", "label", "gold") if c in df.columns), None)
    if "completion" not in df.columns or gold_col is None:
        raise ValueError(f"{path}: needs a 'completion' column and one of final_label/label/gold")
    ids = df["id"].astype(str) if "id" in df.columns else pd.Series(
        [f"row-{i}" for i in range(len(df))])
    return pd.DataFrame({"id": ids, "completion": df["completion"].astype(str),
                         "gold": [_label(x) for x in df[gold_col]]})


def load_hard_cases() -> dict[str, list]:
    spec = importlib.util.spec_from_file_location("safetygeo_hard_cases", HARD_CASES)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(HARD_CASES)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    groups = {"hard: development (DEV+V1+V2)": mod.DEV_CASES + mod.HELDOUT_V1 + mod.HELDOUT_V2,
              "hard: held-out V3": mod.HELDOUT_V3}
    if hasattr(mod, "HELDOUT_V4"):
        groups["hard: held-out V4"] = mod.HELDOUT_V4
    return groups


def score(completions: Sequence[str], gold: Sequence[str], *, seed: int = 0) -> pd.DataFrame:
    """Accuracy / kappa table of the three raters, with a bootstrap CI of binary accuracy."""
    labels = {name: [fn(c) if c.strip() else "empty" for c in completions]
              for name, fn in RATERS.items()}
    table = accuracy_table(labels, gold)
    gb = np.array([to_binary(g) for g in gold])
    lows, highs = [], []
    for name in table.rater:
        hit = (np.array([to_binary(x) for x in labels[name]]) == gb).astype(float)
        r = bootstrap_ci(lambda h: h.mean(), hit, n_boot=1000, seed=seed)
        lows.append(r.ci_low)
        highs.append(r.ci_high)
    table["binary_ci95"] = [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(lows, highs)]
    table.attrs["labels"] = labels
    return table


def _print_set(name: str, completions: list[str], gold: list[str],
               args: argparse.Namespace) -> None:
    t = score(completions, gold)
    counts = pd.Series(gold).value_counts().to_dict()
    print(f"\n== {name}: n={len(gold)} gold={counts}")
    cols = ["rater", "accuracy", "binary_accuracy", "binary_ci95", "kappa", "kappa_3way"]
    print(t[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    labels = t.attrs["labels"]
    if args.confusion:
        for r in labels:
            print(f"-- confusion ({r}; rows gold, columns predicted)")
            print(confusion_table(labels[r], gold).to_string())
    if args.agreement:
        print("-- agreement (refusal vs compliance)")
        print(agreement_table(labels).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--external", type=Path, help="folder of labelled completion CSVs")
    ap.add_argument("--split", choices=("dev", "test", "all"), default="all",
                    help="which half of the external sets to score (default: all)")
    ap.add_argument("--confusion", action="store_true", help="print confusion matrices")
    ap.add_argument("--agreement", action="store_true", help="print pairwise agreement")
    ap.add_argument("--no-hard-cases", action="store_true")
    args = ap.parse_args(argv)

    if not args.no_hard_cases:
        for name, cases in load_hard_cases().items():
            _print_set(name, [c.completion for c in cases], [c.gold for c in cases], args)
    if args.external:
        files = sorted(args.external.glob("*.csv"))
        if not files:
            print(f"no *.csv in {args.external}", file=sys.stderr)
            return 2
        pooled = []
        for f in files:
            df = read_external(f)
            n_empty = int((df.completion.str.strip() == "").sum())
            df = df[df.completion.str.strip() != ""]
            if args.split != "all":
                df = df[[split_of(i) == args.split for i in df.id]]
            pooled.append(df)
            note = f" ({n_empty} empty completions dropped)" if n_empty else ""
            _print_set(f"{f.name} [{args.split}]{note}", df.completion.tolist(), df.gold.tolist(),
                       args)
        if len(pooled) > 1:
            allx = pd.concat(pooled)
            _print_set(f"all external files [{args.split}]", allx.completion.tolist(),
                       allx.gold.tolist(), args)
        t0 = time.perf_counter()
        texts = pd.concat(pooled).completion.tolist()
        for c in texts:
            classify_refusal(c)
        ms = (time.perf_counter() - t0) / max(1, len(texts)) * 1e3
        print(f"\nours: {ms:.3f} ms per completion ({len(texts)} completions, pure Python)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
