"""The demo pipeline, for any world that offers a base and an aligned anchor.

A world (the toy world, :mod:`safetygeo.toy.demo`; the real-language world,
:mod:`safetygeo.real.demo`) hands :func:`run_pipeline` a :class:`DemoWorld`: its loaded
models, its train / val / test splits and its behaviour sets. Steps (each timed, each
artifact written atomically under ``out``):

1. load the world's models (base → aligned anchor: the world's own job);
2. refusal-carrier candidates on the world's *train* split, Arditi et al.'s admissible
   selection on *val*, re-scored on held-out *test* prompts (``carriers/``);
3. ablation of the chosen carrier next to ``K`` matched random directions (logit refusal
   score, KL) and an addition sweep over layers with its null band (``sweep.parquet``);
4. the same causal test at the level of generations (refusal rate of greedy completions);
5. behaviour of base, anchor and anchor-with-carrier-ablated: refusal / over-refusal /
   task accuracy with bootstrap CIs (``behavior/``);
6. harmfulness-vs-refusal geometry: per-layer cosine with CIs, effective rank;
7. ``report.html`` (interactive, offline) and ``summary.json``.

Example:
    >>> DemoSettings.quick().n_null
    16
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from safetygeo._io import atomic_write_json
from safetygeo.models.handle import ModelHandle


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo's statistics.

    Attributes:
        n_null: matched random directions for the ablation test.
        sweep_null: nulls per layer of the addition sweep; ``sweep_alphas``: strengths.
        gen_null: nulls for the generation-level test (each costs a round of generation).
        max_new_tokens: tokens per generated completion.
        n_boot: bootstrap resamples for every CI.
        behavior_n: prompts per behaviour set (``None``: the whole held-out split).
    """

    n_null: int = 64
    sweep_null: int = 32
    sweep_alphas: tuple[float, ...] = (1.0,)
    gen_null: int = 64
    max_new_tokens: int = 24
    n_boot: int = 1000
    behavior_n: int | None = None

    @classmethod
    def quick(cls) -> DemoSettings:
        """Small settings for tests and smoke runs."""
        return cls(n_null=16, sweep_null=8, gen_null=8, n_boot=200, behavior_n=12)


@dataclass
class DemoWorld:
    """What a world gives the demo pipeline.

    Attributes:
        name: short name (``"toy"``, ``"real"``); set names in ``headlines`` are the world's.
        title, intro: the report's title and opening paragraph.
        base, anchor: the pre-alignment model and the aligned anchor.
        infos: per-stage build facts (behaviour, seconds) recorded in the summary.
        splits: ``{"harmful": {"train", "val", "test"}, "harmless": {...}}``.
        behavior_sets: ``n -> {set name: PromptSet}`` (labels ``harmful`` / ``safe`` /
            ``benign``) for :func:`~safetygeo.behavior.evaluate_behavior`; ``n`` prompts each
            (``None``: all).
        headlines: ``(set name, metric)`` pairs shown in the summary and the terminal.
        seed: the world's seed (recorded).
        load_seconds: how long loading / building the models took.
    """

    name: str
    title: str
    intro: str
    base: ModelHandle
    anchor: ModelHandle
    infos: dict[str, Any]
    splits: dict[str, dict[str, list[str]]]
    behavior_sets: Callable[[int | None], dict[str, Any]]
    headlines: tuple[tuple[str, str], ...]
    seed: int = 0
    load_seconds: float = 0.0


@contextmanager
def _timed(timings: dict[str, float], name: str, say: Callable[[str], None]) -> Iterator[None]:
    say(f"{name} ...")
    t0 = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t0, 2)


def run_pipeline(
    world: DemoWorld,
    out: str | os.PathLike[str] = "artifacts/demo",
    *,
    settings: DemoSettings = DemoSettings(),
    progress: bool = True,
    say: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Run the demo on ``world`` (see the module docstring); returns the summary written to
    ``out/summary.json``."""
    from safetygeo.activations import extract_activations
    from safetygeo.behavior import GenerationSettings, evaluate_behavior
    from safetygeo.causal import (
        generation_refusal_effect,
        intervention_effect,
        run_sweep,
        select_refusal_carrier,
    )
    from safetygeo.geometry import carrier_rank, geometric_coupling
    from safetygeo.interventions import NullSpec, ablate
    from safetygeo.reports.figures import sweep_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {f"{world.name} models": round(world.load_seconds, 2)}
    anchor, base, seed = world.anchor, world.base, world.seed
    splits = world.splits
    harmful_test, harmless_test = splits["harmful"]["test"], splits["harmless"]["test"]

    with _timed(timings, "carrier selection", say):
        sel = select_refusal_carrier(anchor, splits["harmful"], splits["harmless"], seed=seed,
                                     progress=progress)
        sel.save(out / "carriers")
    gen_settings = GenerationSettings(max_new_tokens=settings.max_new_tokens, seed=seed)
    effect: dict[str, Any] | None = None
    sweep: pd.DataFrame | None = None
    gen_effect: Any = None
    if sel.chosen is not None:
        with _timed(timings, "ablation vs nulls", say):
            effect = intervention_effect(anchor, sel.vector, "ablate", harmful=harmful_test,
                                         harmless=harmless_test, scoring=sel.scoring,
                                         nulls=NullSpec(k=settings.n_null, seed=seed))
        with _timed(timings, "addition sweep", say):
            sweep = run_sweep(anchor, {"carrier": sel.vector}, harmful=harmful_test,
                              harmless=harmless_test, ops=("add",), alphas=settings.sweep_alphas,
                              nulls=NullSpec(k=settings.sweep_null, seed=seed),
                              scoring=sel.scoring, out=out / "sweep.parquet", overwrite=True,
                              progress=progress)
        with _timed(timings, "generation-level ablation vs nulls", say):
            gen_effect = generation_refusal_effect(
                anchor, sel.vector, "ablate", harmful_test,
                nulls=NullSpec(k=settings.gen_null, seed=seed, max_variants=8),
                settings=gen_settings, n_boot=settings.n_boot, progress=progress)

    with _timed(timings, "behaviour", say):
        sets = world.behavior_sets(settings.behavior_n)
        kw: dict[str, Any] = dict(settings=gen_settings, n_boot=settings.n_boot, batch_size=32,
                  progress=progress)
        tables = []
        conditions: list[tuple[str, Any, Any]] = [("base", base, None), ("anchor", anchor, None)]
        if sel.chosen is not None:
            conditions.append(("anchor, carrier ablated", anchor, sel.direction))
        for name, handle, ablated in conditions:
            folder = out / "behavior" / name.replace(", ", "-").replace(" ", "-")
            if ablated is None:
                rep = evaluate_behavior(handle, sets, out=folder, **kw)
            else:
                with ablate(handle, ablated):
                    rep = evaluate_behavior(handle, sets, out=folder, **kw)
            tables.append(rep.metrics.assign(checkpoint=name))
        behavior = pd.concat(tables, ignore_index=True)

    with _timed(timings, "geometry", say):
        pos: dict[str, Any] = dict(positions="t_inst+post_instruction", keep_vectors=True,
                                   progress=False)
        acts_h = extract_activations(anchor, harmful_test, **pos)
        acts_l = extract_activations(anchor, harmless_test, **pos)
        coupling = geometric_coupling(acts_h, acts_l, n_boot=settings.n_boot, seed=seed)
        rank = None
        if sel.chosen is not None:
            post = [p for p in acts_h.positions.labels if p != "t_inst"]
            rank = carrier_rank(acts_h, acts_l, layer=sel.layer, positions=post,
                                n_boot=settings.n_boot, seed=seed)
    summary = _summary(world, sel, effect, gen_effect, behavior, coupling, rank, settings, timings)
    with _timed(timings, "report", say):
        _report(world, out / "report.html", summary, sel, effect, sweep, gen_effect, behavior,
                coupling, sweep_figure)
    summary = _json_safe(summary)
    atomic_write_json(out / "summary.json", summary)
    return summary


def _json_safe(obj: Any) -> Any:
    """Strict JSON: non-finite floats become ``None`` (a z-score against a zero-variance
    null is infinite; JavaScript's JSON.parse rejects ``Infinity``)."""
    import math

    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _metric(behavior: pd.DataFrame, checkpoint: str, set_name: str, metric: str) -> float | None:
    hit = behavior[(behavior.checkpoint == checkpoint) & (behavior["set"] == set_name)
                   & (behavior.metric == metric) & (behavior.method == "ours")]
    return float(hit.value.iloc[0]) if len(hit) else None


def _summary(world: DemoWorld, sel: Any, effect: Any, gen_effect: Any,
             behavior: pd.DataFrame, coupling: pd.DataFrame, rank: Any, settings: DemoSettings,
             timings: dict[str, float]) -> dict[str, Any]:
    chosen = sel.summary()["chosen"]
    out: dict[str, Any] = {
        "format": "safetygeo.demo", "world": world.name, "seed": world.seed,
        "model": world.anchor.describe(),
        world.name: {k: {"behavior": v.get("behavior"), "train_seconds": v.get("train_seconds")}
                     for k, v in world.infos.items()},
        "carrier": {"chosen": chosen, "weak": sel.weak, "notes": sel.notes,
                    "baseline": sel.baseline, "split_sizes": sel.split_sizes,
                    "n_admissible": int(sel.candidates.admissible.sum()),
                    "n_candidates": len(sel.candidates)},
        "settings": asdict(settings), "timings_s": timings,
    }
    if effect is not None:
        out["ablation"] = {k: v.to_row() for k, v in effect.items()}
    if gen_effect is not None:
        out["generation_ablation"] = gen_effect.to_row()
    out["behavior"] = {
        cond: {f"{s.removeprefix(world.name + '-')} {metric}": _metric(behavior, cond, s, metric)
               for s, metric in world.headlines}
        for cond in behavior.checkpoint.unique()}
    out["coupling"] = coupling[["layer", "cos"]].to_dict(orient="list")
    if rank is not None:
        out["carrier_rank"] = {k: v.to_row() for k, v in rank.items()}
    return out


def _report(world: DemoWorld, path: Path, summary: dict[str, Any], sel: Any, effect: Any,
            sweep: Any,
            gen_effect: Any, behavior: pd.DataFrame, coupling: pd.DataFrame,
            sweep_figure: Callable[..., Any]) -> None:
    from safetygeo.behavior import classify_refusal
    from safetygeo.reports import (
        HtmlReport,
        behavior_figure,
        carrier_scores_figure,
        coupling_figure,
        null_figure,
    )

    r = HtmlReport(world.title)
    m = summary["model"]
    r.text(world.intro)
    r.key_values({"model": m["model_id"], "layers": m["n_layers"], "d_model": m["d_model"],
                  "seed": summary["seed"]})
    r.heading("Behaviour")
    beh = pd.DataFrame(summary["behavior"]).T.rename_axis("condition").reset_index()
    r.table(beh, caption=f"held-out {world.name} prompts: "
                         + ", ".join(f"{s} {m}" for s, m in world.headlines))
    r.figure(behavior_figure(behavior, metrics=["full_refusal_rate", "asr", "over_refusal_rate",
                                                 "exact_match"]))

    r.heading("Refusal carrier (Arditi et al. admissible selection)")
    c = summary["carrier"]
    if c["chosen"] is None:
        r.text("No admissible carrier: " + "; ".join(c["notes"]), note=True)
    else:
        ch = c["chosen"]
        r.key_values({"chosen": f"layer {ch['layer']}, {ch['position']}",
                      "admissible": f"{c['n_admissible']} of {c['n_candidates']} candidates",
                      "bypass (val → test)": f"{ch['bypass']:.3f} → {ch['test_bypass']:.3f}",
                      "induce (val → test)": f"{ch['induce']:.3f} → {ch['test_induce']:.3f}",
                      "KL (val → test)": f"{ch['kl']:.4f} → {ch['test_kl']:.4f}",
                      "harmful baseline score (val / test)":
                          f"{c['baseline']['harmful_val']:.3f} / {c['baseline']['harmful_test']:.3f}",
                      "split sizes": c["split_sizes"]})
        for note in c["notes"]:
            r.text(note, note=True)
    r.figure(carrier_scores_figure(sel.candidates, sel.chosen))
    r.table(sel.candidates.drop(columns=["admissible"], errors="ignore"),
            caption="every candidate: selection scores (val) and held-out re-scores (test)")

    if effect is not None:
        r.heading("Is it causal? Ablation vs matched random directions")
        e = effect["d_refusal_harmful"]
        r.text(f"Ablating the carrier changes the harmful refusal score by {e.real:.3f}; "
               f"{e.k} random directions of the same norm give "
               f"[{e.null_quantile(0.025):.3f}, {e.null_quantile(0.975):.3f}] (95%), "
               f"p = {e.p:.3g}, z = {e.z:.1f}.")
        r.figure(null_figure(e, "Δ refusal score on harmful prompts (ablation)"))
        r.table(pd.DataFrame([v.to_row() for v in effect.values()]))
    if sweep is not None:
        r.heading("Addition of the carrier at each layer, with the null band")
        r.figure(sweep_figure(sweep, "d_refusal_harmless"))
        r.table(sweep)
    if gen_effect is not None:
        r.heading("The same test on generations")
        g = gen_effect
        r.text(f"Greedy completions of held-out harmful prompts refused: {g.base_rate:.0%} "
               f"without intervention, {g.real_rate:.0%} with the carrier ablated (effect "
               f"{g.real:+.2f}, CI [{g.ci_low:+.2f}, {g.ci_high:+.2f}]); "
               f"{g.k} null directions: mean effect {g.null_mean:+.2f}, p = {g.p:.3g}.")
        assert g.real_generations is not None
        sample = g.real_generations.to_frame().head(8)
        keep = [c for c in ("prompt", "completion", "stop_reason") if c in sample]
        sample = sample[keep].assign(label=[classify_refusal(t) for t in sample.completion])
        r.table(sample, caption="completions with the carrier ablated (first 8), with our labels")
    r.heading("Harmfulness vs refusal directions")
    r.figure(coupling_figure(coupling))
    if "carrier_rank" in summary:
        er, pr = summary["carrier_rank"]["erank"], summary["carrier_rank"]["pr"]
        r.text(f"Effective rank (Roy–Vetterli) of the post-instruction carrier directions at "
               f"layer {er['layer']}: {er['value']:.3f} (95% CI [{er['ci_low']:.3f}, "
               f"{er['ci_high']:.3f}]); participation ratio {pr['value']:.3f}.")
    r.heading("Timings (seconds)")
    r.key_values({**summary["timings_s"], "total (before the report)":
                  round(sum(summary["timings_s"].values()), 2)})
    r.save(path)
