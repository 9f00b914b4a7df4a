"""``evaluate``: behaviour (refusal, ASR, over-refusal, utility) with CIs, optionally under an
intervention."""

import contextlib
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from safetygeo.cli.app import app
from safetygeo.cli.common import (
    BATCH_SIZE,
    BatchSize,
    Limit,
    ModelArg,
    ModelOptions,
    OutDir,
    SetOpt,
    check_out,
    console,
    guarded,
    load_handle,
    load_sets,
    model_command,
)
from safetygeo.cli.sweep import carrier_directions, load_carriers

#: --set roles of `evaluate` (harmless = benign); xstest splits into safe and unsafe.
ROLES = ("harmful", "harmless", "benign", "safe", "unsafe", "xstest")
_LABELS = {"harmful": "harmful", "harmless": "harmless", "benign": "harmless"}
_KEY = ("asr", "over_refusal_rate", "refusal_rate", "strongreject", "strongreject_proxy",
        "exact_match", "contains_answer", "ref_logprob")


def _intervention(handle: Any, ablate_dir: Optional[Path], add_dir: Optional[Path],
                  alpha: float, layer: Optional[int], candidate: Optional[str],
                  sel: Any) -> Any:
    from safetygeo.interventions.hooks import ablate, add

    if sel is None:
        return contextlib.nullcontext(), None
    dirs = carrier_directions(sel, [candidate] if candidate else None)
    name, vec = list(dirs.items())[-1]
    if ablate_dir is not None:
        return ablate(handle, vec), f"ablate {name}"
    lyr = layer if layer is not None else int(name.split()[-1].split(":")[0])
    return add(handle, vec, lyr, alpha), f"add {alpha:g}·{name} at layer {lyr}"


@app.command()
@model_command
def evaluate(
    model: ModelArg,
    sets: SetOpt,
    model_opts: ModelOptions,
    out: OutDir = Path("artifacts/behavior"),
    ablate: Annotated[Optional[Path], typer.Option(
        "--ablate", help="Evaluate with this carrier ablated everywhere (a select-carrier folder).",
        show_default=False)] = None,
    add: Annotated[Optional[Path], typer.Option(
        "--add", help="Evaluate with this carrier added (a select-carrier folder).",
        show_default=False)] = None,
    alpha: Annotated[float, typer.Option(help="Strength for --add.")] = 1.0,
    layer: Annotated[Optional[int], typer.Option(help="Layer for --add (default: the carrier's).")] = None,
    candidate: Annotated[Optional[str], typer.Option(
        help="Use candidate LAYER:POSITION of the folder instead of its chosen carrier.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens generated per prompt.")] = 64,
    seed: Annotated[int, typer.Option(help="Sampling and bootstrap seed.")] = 0,
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample instead of greedy.")] = False,
    temperature: Annotated[float, typer.Option(min=1e-6, help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(min=1e-6, max=1.0, help="Nucleus mass.")] = 1.0,
    attack: Annotated[Optional[str], typer.Option(
        help="Jailbreak on harmful prompts: a template with {prompt}, or a suffix.")] = None,
    judge: Annotated[Optional[str], typer.Option(
        help="LLM judge: llamaguard=MODEL, or causal=MODEL with --judge-template.")] = None,
    judge_template: Annotated[Optional[Path], typer.Option(
        help="File with the causal judge's prompt ({prompt}, {completion}).")] = None,
    relevance: Annotated[str, typer.Option(
        help="ASR's relevance test (was the requested content delivered?): lexical "
             "(offline), minilm (embed extra) or auto.")] = "auto",
    n_boot: Annotated[int, typer.Option(min=1, help="Bootstrap resamples for CIs.")] = 1000,
    likelihood: Annotated[bool, typer.Option(help="Reference log-probs on benign sets.")] = True,
    limit: Limit = None,
    batch_size: BatchSize = BATCH_SIZE,
) -> None:
    """Generate on prompt sets, classify refusals, write the behaviour table with CIs.

    Roles: harmful (ASR = requested content delivered, and the refusal rate beside it),
    harmless / benign (over-refusal, utility), safe / unsafe
    (XSTest halves) and xstest (split into safe and unsafe). With --ablate DIR or
    --add DIR (a select-carrier folder) the whole evaluation runs under that intervention.
    Writes OUT/behavior.parquet, OUT/completions.parquet and OUT/behavior.json.
    """
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.behavior.report import behavior_sets, evaluate_behavior

    if relevance not in ("lexical", "minilm", "auto"):
        raise typer.BadParameter(f"{relevance!r}: use lexical, minilm or auto",
                                 param_hint="--relevance")
    if ablate is not None and add is not None:
        raise typer.BadParameter("give --ablate or --add, not both", param_hint="--ablate")
    if candidate is not None and ablate is None and add is None:
        raise typer.BadParameter("--candidate needs --ablate or --add", param_hint="--candidate")
    if judge is not None:
        kind, _, jmodel = judge.partition("=")
        if kind not in ("llamaguard", "causal") or not jmodel:
            raise typer.BadParameter(f"{judge!r}; use llamaguard=MODEL or causal=MODEL",
                                     param_hint="--judge")
        if kind == "causal" and judge_template is None:
            raise typer.BadParameter("--judge causal=MODEL needs --judge-template FILE",
                                     param_hint="--judge-template")
        if judge_template is not None and not judge_template.is_file():
            raise typer.BadParameter(f"{str(judge_template)!r} does not exist",
                                     param_hint="--judge-template")
    check_out(out)
    carriers_dir = ablate or add
    sel = load_carriers(carriers_dir) if carriers_dir is not None else None
    loaded = load_sets(sets, ROLES, labels=_LABELS)
    # the set is named by its role; an xstest set has no role and is split by its labels
    role_map = {r: ("benign" if r == "harmless" else r) for r in loaded if r != "xstest"}
    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=sample,
                                  temperature=temperature, top_p=top_p, seed=seed)
    with guarded():
        named = behavior_sets(loaded, role_map)
        if limit is not None:  # per evaluated set (after an xstest set is split in two)
            named = [(n, r, ps.subset(range(min(limit, len(ps))))) for n, r, ps in named]
        h = load_handle(model, model_opts)
        judge_fn = None
        if judge is not None:
            from safetygeo.behavior.judges import CausalLMJudge, LlamaGuardJudge
            from safetygeo.cli.common import ModelOptions as _MO

            kind, _, jmodel = judge.partition("=")
            jh = load_handle(jmodel, _MO(dtype=model_opts.dtype, device=model_opts.device,
                                          allow_pickle=model_opts.allow_pickle))
            judge_fn = LlamaGuardJudge(jh.model, jh.tokenizer) if kind == "llamaguard" else \
                CausalLMJudge(jh.model, jh.tokenizer, judge_template.read_text(encoding="utf-8"))  # type: ignore[union-attr]
        ctx, what = _intervention(h, ablate, add, alpha, layer, candidate, sel)
        if what:
            console.print(f"evaluating under intervention: {what}")
        with ctx:
            report = evaluate_behavior(
                h, {n: ps for n, _, ps in named}, roles={n: r for n, r, _ in named},
                judge=judge_fn, attack=attack, settings=settings, batch_size=batch_size,
                likelihood=likelihood, relevance=relevance, n_boot=n_boot, out=out,
                progress=True,
            )
    m = report.metrics[report.metrics.metric.isin(_KEY)]
    others = [x for x in ("judge", "judge_score", "gcg_prefix", "xstest_strmatch")
              if x in set(m.method)]
    title = f"behaviour of {h.model_id}" + (f" ({what})" if what else "") + " — ours, 95% CI"
    table = Table(title=title)
    for col in ("set", "metric", "ours", *others, "n"):
        table.add_column(col.replace("_strmatch", "").replace("_prefix", ""))
    for (set_name, metric), grp in m.groupby(["set", "metric"], sort=False):
        by = {r.method: r for r in grp.itertuples()}
        o = by.get("ours")
        ours = "-" if o is None else f"{o.value:.3f} [{o.ci_low:.2f}, {o.ci_high:.2f}]"
        table.add_row(str(set_name), str(metric), ours,
                      *[f"{by[x].value:.3f}" if x in by else "-" for x in others],
                      str(grp.n.iloc[0]))
    console.print(table)
    console.print(f"wrote {out / 'behavior.parquet'}, {out / 'completions.parquet'} and "
                  f"{out / 'behavior.json'}")
