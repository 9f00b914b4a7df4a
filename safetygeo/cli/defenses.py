"""``evaluate-defenses``: every defended checkpoint against every attack at fixed budgets."""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from safetygeo.cli.app import app
from safetygeo.cli.common import (
    ModelOptions,
    OutDir,
    SetOpt,
    check_out,
    console,
    guarded,
    load_handle,
    load_sets,
    model_command,
    registry_names,
)

_ROLES = ("harmful", "harmful_test", "harmless")


def _budgets(items: Optional[list[str]], attacks: list[str]) -> dict[str, int]:
    out = {"sft": 10, "rl": 30, "gcg": 20}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in out or not value.strip().isdigit() or int(value) < 1:
            raise typer.BadParameter(f"{item!r} is not ATTACK=STEPS with ATTACK one of sft, rl, "
                                     "gcg and STEPS a positive int", param_hint="--budget")
        out[key.strip()] = int(value)
    return {a: out[a] for a in attacks}


@app.command("evaluate-defenses")
@model_command
def evaluate_defenses_cmd(
    models: Annotated[list[str], typer.Argument(
        help="Defended checkpoints (hub ids / folders), toy:STAGE for a toy-world stage "
             f"({', '.join(registry_names('toy_defenses'))}) or real:STAGE for a real-world "
             f"stage ({', '.join(registry_names('real_defenses'))}); stages are built if absent.",
        metavar="MODEL", show_default=False)],
    model_opts: ModelOptions,
    sets: SetOpt = [],  # noqa: B006 - typer needs a list default
    attack: Annotated[Optional[list[str]], typer.Option(
        "--attack", "-a", help="sft, rl or gcg (repeat; default: all three).",
        show_default=False)] = None,
    budget: Annotated[Optional[list[str]], typer.Option(
        "--budget", help="ATTACK=STEPS (repeat): optimizer steps for sft / rl, GCG steps per "
        "prompt for gcg (default sft=10, rl=30, gcg=20: where each attack breaks the toy "
        "anchor; set them for real models).", show_default=False)] = None,
    seeds: Annotated[str, typer.Option(
        help="Seeds, comma-separated: toy stages are built per seed; for checkpoints the "
             "attack runs are repeated per seed.")] = "0",
    reward: Annotated[Optional[str], typer.Option(
        help="RL reward: not_refused, module:function, or a reward-model id/path (default: "
             "the toy world's oracle for toy stages, else not_refused).",
        show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Stage cache of toy:/real: models (default $SAFETYGEO_TOY_DIR or artifacts/toy; "
             "$SAFETYGEO_REAL_DIR or artifacts/real).",
        show_default=False)] = None,
    remeasure: Annotated[bool, typer.Option(
        help="Measure the behaviour of the cells already in OUT again (from their saved "
             "attack runs and adversarial prompts) instead of skipping them.")] = False,
    out: OutDir = Path("artifacts/defenses"),
) -> None:
    """Attack every MODEL with each attack at a fixed budget; write OUT/defenses.parquet and
    OUT/defenses.html (means over seeds with seeds-then-prompts bootstrap CIs).

    Checkpoints need --set harmful=SPEC (the attacker's prompts with harmful targets),
    --set harmful_test=SPEC (held-out prompts with GCG targets) and --set harmless=SPEC
    (over-refusal). Toy stages bring the toy world's data. A rerun into the same OUT computes
    only the missing cells; a changed plan is refused.
    """
    import functools

    from safetygeo.reports.defenses import (
        AttackData,
        DefenseCase,
        evaluate_defenses,
        prompt_set_measure,
    )

    check_out(out)
    attacks = list(dict.fromkeys(attack or ["sft", "rl", "gcg"]))
    bad = [a for a in attacks if a not in ("sft", "rl", "gcg")]
    if bad:
        raise typer.BadParameter(f"unknown attack(s) {bad}; choose from sft, rl, gcg",
                                 param_hint="--attack")
    budgets = _budgets(budget, attacks)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"{seeds!r} is not a comma-separated list of ints",
                                 param_hint="--seeds") from None
    if not seed_list:
        raise typer.BadParameter("give at least one seed", param_hint="--seeds")
    worlds = {m.split(":", 1)[0] for m in models if m.startswith(("toy:", "real:"))}
    world = worlds.pop() if len(worlds) == 1 else None
    if worlds or (world and any(not m.startswith(f"{world}:") for m in models)):
        raise typer.BadParameter("toy:STAGE, real:STAGE and checkpoints cannot be mixed in one "
                                 "evaluation (their behaviour read-outs differ)", param_hint="MODEL")
    data: Any
    with guarded():
        if world is not None:
            stages = [m.split(":", 1)[1] for m in models]
            world_cases: Any
            if world == "real":
                from safetygeo.real import robustness as real
                from safetygeo.real.stages import REAL_STAGES as STAGES

                world_cases, what = real.real_defense_cases, "real-world"
                plan = real.real_attack_plan(budgets, attacks=attacks)
            else:
                from safetygeo.toy import robustness as toy
                from safetygeo.toy.stages import TOY_STAGES as STAGES

                world_cases, what = toy.toy_defense_cases, "toy"
                plan = toy.toy_attack_plan(budgets, attacks=attacks)
            unknown = [s for s in stages if s not in STAGES]
            if unknown:
                raise typer.BadParameter(f"unknown {what} stage(s) {unknown}; choose from "
                                         f"{sorted(STAGES)}", param_hint="MODEL")
            if sets:
                raise typer.BadParameter(f"{world} stages bring their own data; drop --set",
                                         param_hint="--set")
            data = (real.real_defense_data(cache_dir=cache_dir, progress=True) if world == "real"
                    else toy.toy_defense_data(seed_list[0]))
            cases = world_cases(stages, seed_list, cache_dir=cache_dir)
            if reward is not None:
                import dataclasses

                data = dataclasses.replace(data, reward=reward)
        else:
            ps = load_sets(sets, _ROLES, required=_ROLES,
                           labels={"harmful": "harmful", "harmful_test": "harmful",
                                   "harmless": "harmless"})
            for role in ("harmful", "harmful_test"):
                if ps[role].targets is None:
                    raise typer.BadParameter(f"{role} needs targets (e.g. an AdvBench / "
                                             "HarmBench file with target strings)",
                                             param_hint="--set")
            from safetygeo.reports.defenses import AttackPlan

            plan = AttackPlan(attacks=tuple(attacks), budgets=budgets)
            data = AttackData(
                sft_pairs=list(zip(ps["harmful"].prompts, ps["harmful"].targets)),
                rl_prompts=list(zip(ps["harmful"].prompts, ps["harmful"].targets)),
                gcg_prompts=list(ps["harmful_test"].prompts),
                gcg_targets=list(ps["harmful_test"].targets),
                measure=prompt_set_measure(list(ps["harmful_test"].prompts),
                                           list(ps["harmless"].prompts)),
                reward=reward or "not_refused",
                direction_prompts=(list(ps["harmful_test"].prompts), list(ps["harmless"].prompts)))
            cases = [DefenseCase(m, s, functools.partial(load_handle, m, model_opts))
                     for m in models for s in seed_list]
        table = evaluate_defenses(cases, data, plan, out, progress=True, remeasure=remeasure)
    titles = {"asr": "ASR after each attack (content delivered; mean over seeds, 95% CI)",
              "refusal_harmful": "Refusal rate on harmful prompts (mean over seeds, 95% CI)",
              "harm_score": "Harm after each attack (toy: the world's oracle; real: similarity "
                            "to the unaligned model's answer; mean over seeds, 95% CI)"}
    for metric, title in titles.items():
        part = table[table.metric == metric]
        if part.empty:
            continue
        t = Table(title=title)
        for col in ("defense", *["none", *attacks]):
            t.add_column(col)
        for d in part.defense.unique():
            row = [d]
            for a in ["none", *attacks]:
                r = part[(part.defense == d) & (part.attack == a)]
                row.append("" if r.empty else f"{r.value.iloc[0]:.2f} [{r.ci_low.iloc[0]:.2f}, "
                                              f"{r.ci_high.iloc[0]:.2f}]")
            t.add_row(*row)
        console.print(t)
    console.print(f"wrote {out / 'defenses.parquet'} and {out / 'defenses.html'}")
