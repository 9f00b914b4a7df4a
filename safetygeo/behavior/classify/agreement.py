"""Agreement of labellers: accuracy against gold labels, pairwise agreement, confusion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from safetygeo.behavior.classify.labels import LABELS, to_binary
from safetygeo.errors import SafetyGeoError

__all__ = ["accuracy_table", "agreement_table", "confusion_table"]


def _kappa(a: Sequence[str], b: Sequence[str]) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(a) | set(b)) < 2:
        return float("nan")  # both raters constant and equal: kappa undefined
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(cohen_kappa_score(list(a), list(b)))


def agreement_table(raters: Mapping[str, Sequence[str]], *, binary: bool = True) -> pd.DataFrame:
    """Pairwise agreement of label sequences: raw agreement and Cohen's kappa.

    Args:
        raters: ``{name: labels}``, all the same length (e.g. ours, GCG, XSTest, a judge).
        binary: compare refusal vs compliance (:func:`to_binary`), the only distinction the
            string matchers make; ``False`` compares the labels as given.

    Returns:
        one row per pair: ``rater_a, rater_b, n, agreement, kappa`` (kappa via scikit-learn;
        NaN when both raters give one identical label throughout).

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
