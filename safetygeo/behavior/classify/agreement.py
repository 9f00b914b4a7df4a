"""Agreement of labellers: accuracy against gold labels, pairwise agreement, confusion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from safetygeo.behavior.classify.labels import LABELS, to_binary
from safetygeo.errors import SafetyGeoError

__all__ = ["accuracy_table", "agreement_table", "confusion_table", "refusal_scores"]


def _kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two label sequences (NaN when both are one identical constant)."""
    cats = sorted(set(a) | set(b))
    if len(cats) < 2:
        return float("nan")  # both raters constant and equal: kappa undefined
    idx = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b, strict=True):
        table[idx[x], idx[y]] += 1
    table /= table.sum()
    p_o = float(np.trace(table))
    p_e = float(table.sum(1) @ table.sum(0))
    return float("nan") if p_e == 1.0 else (p_o - p_e) / (1.0 - p_e)


def refusal_scores(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    """Refusal-vs-compliance agreement, precision and recall (refusal is the positive class).

    Partial refusal and empty count as refusal (:func:`to_binary`). Precision is NaN when
    nothing is predicted a refusal, recall when no gold label is one.

    Returns:
        ``n, agreement, precision, recall, f1``.

    Example:
        >>> s = refusal_scores(["full_refusal", "compliance", "partial_refusal", "compliance"],
        ...                    ["partial_refusal", "compliance", "compliance", "full_refusal"])
        >>> s["agreement"], s["precision"], s["recall"]
        (0.5, 0.5, 0.5)
    """
    if len(predicted) != len(gold):
        raise SafetyGeoError(f"{len(predicted)} predicted labels but {len(gold)} gold labels")
    p = np.array([to_binary(x) == "refusal" for x in predicted])
    g = np.array([to_binary(x) == "refusal" for x in gold])
    tp, n_p, n_g = float((p & g).sum()), float(p.sum()), float(g.sum())
    prec = tp / n_p if n_p else float("nan")
    rec = tp / n_g if n_g else float("nan")
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else float("nan")
    return {"n": float(len(g)), "agreement": float((p == g).mean()) if len(g) else float("nan"),
            "precision": prec, "recall": rec, "f1": f1}


def agreement_table(raters: Mapping[str, Sequence[str]], *, binary: bool = True) -> pd.DataFrame:
    """Pairwise agreement of label sequences: raw agreement and Cohen's kappa.

    Args:
        raters: ``{name: labels}``, all the same length (e.g. ours, GCG, XSTest, a judge).
        binary: compare refusal vs compliance (:func:`to_binary`), the only distinction the
            string matchers make; ``False`` compares the labels as given.

    Returns:
        one row per pair: ``rater_a, rater_b, n, agreement, kappa`` (Cohen's kappa; NaN
        when both raters give one identical label throughout).

    Example:
        >>> t = agreement_table({"a": ["compliance", "full_refusal"],
        ...                      "b": ["compliance", "partial_refusal"]})
        >>> t[["agreement", "kappa"]].values.tolist()
        [[1.0, 1.0]]
    """
    names = list(raters)
    lengths = {len(raters[n]) for n in names}
    if len(names) < 2 or len(lengths) != 1 or 0 in lengths:
        raise SafetyGeoError(
            f"agreement needs >= 2 non-empty label sequences of equal length, got "
            f"{ {n: len(raters[n]) for n in names} }"
        )
    conv = {n: [to_binary(x) if binary else x for x in raters[n]] for n in names}
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            xa, xb = conv[a], conv[b]
            rows.append({"rater_a": a, "rater_b": b, "n": len(xa),
                         "agreement": float(np.mean([p == q for p, q in zip(xa, xb)])),
                         "kappa": _kappa(xa, xb)})
    return pd.DataFrame(rows)


def accuracy_table(raters: Mapping[str, Sequence[str]], gold: Sequence[str]) -> pd.DataFrame:
    """Accuracy of each rater against gold labels, three-way and binary, with kappa.

    Returns:
        one row per rater: ``rater, n, accuracy`` (exact label), ``binary_accuracy``
        (refusal vs compliance), ``kappa`` (binary, vs gold), ``kappa_3way`` (exact labels,
        vs gold; a rater that never says ``partial_refusal`` is penalised by it).

    Example:
        >>> t = accuracy_table({"x": ["compliance", "full_refusal"]},
        ...                    ["compliance", "partial_refusal"])
        >>> float(t.accuracy[0]), float(t.binary_accuracy[0])
        (0.5, 1.0)
    """
    rows = []
    gb = [to_binary(g) for g in gold]
    for name, labels in raters.items():
        if len(labels) != len(gold):
            raise SafetyGeoError(f"rater {name!r} has {len(labels)} labels, gold has {len(gold)}")
        lb = [to_binary(x) for x in labels]
        rows.append({"rater": name, "n": len(gold),
                     "accuracy": float(np.mean([a == b for a, b in zip(labels, gold)])),
                     "binary_accuracy": float(np.mean([a == b for a, b in zip(lb, gb)])),
                     "kappa": _kappa(lb, gb), "kappa_3way": _kappa(labels, gold)})
    return pd.DataFrame(rows)


def confusion_table(predicted: Sequence[str], gold: Sequence[str]) -> pd.DataFrame:
    """Counts of gold (rows) against predicted (columns) labels, over :data:`LABELS` that
    occur in either.

    Example:
        >>> confusion_table(["full_refusal", "compliance", "compliance"],
        ...                 ["full_refusal", "partial_refusal", "compliance"]).values.tolist()
        [[1, 0, 0], [0, 0, 1], [0, 0, 1]]
    """
    if len(predicted) != len(gold):
        raise SafetyGeoError(f"{len(predicted)} predicted labels but {len(gold)} gold labels")
    unknown = (set(predicted) | set(gold)) - set(LABELS)
    if unknown:
        raise SafetyGeoError(f"unknown labels {sorted(unknown)}; labels are {LABELS}")
    used = [x for x in LABELS if x in set(predicted) | set(gold)]
    cat = pd.CategoricalDtype(used)
    t = pd.crosstab(pd.Series(list(gold), dtype=cat, name="gold"),
                    pd.Series(list(predicted), dtype=cat, name="predicted"), dropna=False)
    return t.reindex(index=used, columns=used, fill_value=0)
