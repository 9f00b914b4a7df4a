"""``compare-gradients`` (per-layer gradient cosines of two losses) and ``measure-g-effect``
(G-effects of unlearning objectives), with the hidden aliases ``gradients`` / ``g-effect``.

Data SPECs are training-data specs (:func:`safetygeo.training.data.load_data_spec`): a
JSON / JSONL file of prompt/response objects, or a prompt-set spec (``example:harmful``,
``advbench=FILE`` — whose targets are responses — a ``.txt`` of prompts for ``refusal_ce``).
"""

from dataclasses import replace
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
    check_out,
    console,
    guarded,
    load_handle,
    model_command,
    parse_role_spec,
)

KindOpt = Annotated[str, typer.Option(help="ce, refusal_ce or harmful_ce.")]
MaxLength = Annotated[int, typer.Option(min=2, help="Longest prompt + completion in tokens.")]
IncludeFrozen = Annotated[bool, typer.Option(help="Also differentiate parameters with "
                                                  "requires_grad=False.")]


def _spec(text: str, flag: str, kind: str, *, name: str, refusal: Optional[str],
          max_length: int, batch_size: int, limit: Optional[int]) -> Any:
    """Load one data SPEC into a LossSpec (before any model is loaded)."""
    from safetygeo.gradients import LOSS_KINDS, LossSpec
    from safetygeo.training.data import load_data_spec

    if kind not in LOSS_KINDS:
        raise typer.BadParameter(f"{kind!r}; use one of {', '.join(LOSS_KINDS)}",
                                 param_hint=f"--loss-{name}" if flag == "--set" else flag)
    with guarded():
        data = load_data_spec(text)
        spec = LossSpec.from_data(data, kind, name=name,
                                  refusal=refusal if kind == "refusal_ce" else None,
                                  max_length=max_length, batch_size=batch_size)
        if limit is not None:
            spec = replace(spec, records=spec.records[:limit])
    return spec


def _write(out: Path, stem: str, frame: Any, meta: dict, title: str, figures: list,
           extra_tables: Optional[dict] = None) -> None:
    from safetygeo._io import atomic_write_json
    from safetygeo.reports import HtmlReport

    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / f"{stem}.parquet", index=False)
    for name, df in (extra_tables or {}).items():
        df.to_parquet(out / f"{name}.parquet", index=False)
    atomic_write_json(out / f"{stem}.json", meta)
    report = HtmlReport(title)
    for heading, fig in figures:
        report.heading(heading)
        report.figure(fig)
    report.heading("table")
    report.table(frame)
    report.save(out / f"{stem}.html")


def compare_gradients(
    model: ModelArg,
    sets: Annotated[list[str], typer.Option("--set", "-s", help="a=SPEC and b=SPEC: the two "
                                            "losses' data.", show_default=False)],
    model_opts: ModelOptions,
    loss_a: KindOpt = "ce",
    loss_b: KindOpt = "ce",
    refusal: Annotated[Optional[str], typer.Option(help="Refusal text of refusal_ce (default: "
                                                   "'I cannot help with that request.').")] = None,
    out: OutDir = Path("artifacts/gradients"),
    batch_size: BatchSize = BATCH_SIZE,
    max_length: MaxLength = 512,
    include_frozen: IncludeFrozen = False,
    limit: Limit = None,
) -> None:
    """Cosine between the gradients of two losses, per layer and globally.

    Writes OUT/gradient_cosines.parquet, .json (settings) and .html (figure + table).
    """
    from safetygeo.gradients import layer_gradient_cosines
    from safetygeo.reports import gradient_cosine_figure

    check_out(out)
    parsed = dict(parse_role_spec(s) for s in sets)
    if len(parsed) != len(sets) or set(parsed) != {"a", "b"}:
        raise typer.BadParameter(f"pass exactly --set a=SPEC and --set b=SPEC (got roles "
                                 f"{[parse_role_spec(s)[0] for s in sets]})", param_hint="--set")
    if refusal is not None and "refusal_ce" not in (loss_a, loss_b):
        raise typer.BadParameter("--refusal only applies to a refusal_ce loss", param_hint="--refusal")
    spec_a = _spec(parsed["a"], "--set", loss_a, name="a", refusal=refusal, max_length=max_length,
                   batch_size=batch_size, limit=limit)
    spec_b = _spec(parsed["b"], "--set", loss_b, name="b", refusal=refusal, max_length=max_length,
                   batch_size=batch_size, limit=limit)
    spec_a, spec_b = replace(spec_a, name=f"a:{loss_a}"), replace(spec_b, name=f"b:{loss_b}")
    with guarded():
        h = load_handle(model, model_opts)
        res = layer_gradient_cosines(h, spec_a, spec_b, include_frozen=include_frozen)
        frame = res.to_frame(model=h.model_id)
        _write(out, "gradient_cosines", frame, {**res.meta, "tied_embeddings": res.tied_embeddings},
               f"gradient cosines of {h.model_id}",
               [("cosine per layer", gradient_cosine_figure(frame))])
    table = Table(title=f"cos(∇{spec_a.label}, ∇{spec_b.label}) — {h.model_id}")
    for col in ("group", "cosine", "‖∇a‖", "‖∇b‖", "note"):
        table.add_column(col)
    for g in res.groups:
        table.add_row(g.group, f"{g.cosine:+.4f}" if g.defined else "undefined",
                      f"{g.norm_a:.3g}", f"{g.norm_b:.3g}", g.reason or "")
    console.print(table)
    if res.tied_embeddings:
        console.print("tied embeddings: the shared matrix is counted once, in 'embed'")
    console.print(f"wrote {out / 'gradient_cosines.parquet'} and {out / 'gradient_cosines.html'}")


def _objective(text: str) -> Any:
    from safetygeo.gradients import UnlearningObjective

    name, _, beta = text.partition(":")
    try:
        b = float(beta) if beta else None
    except ValueError:
        raise typer.BadParameter(f"{text!r}: beta {beta!r} is not a number",
                                 param_hint="--objective") from None
    try:
        return UnlearningObjective(name.strip().lower(), b)
    except Exception as exc:  # SafetyGeoError with the reason
        raise typer.BadParameter(f"{text!r}: {exc}", param_hint="--objective") from None


def _check_reference(ref: Optional[str]) -> None:
    if ref is None:
        return
    p = Path(ref).expanduser()
    local = p.exists() or ref.startswith((".", "/", "~")) or ref.count("/") > 1
    if local and not (p / "config.json").is_file():
        raise typer.BadParameter(f"{ref!r} is not a checkpoint folder (no config.json)",
                                 param_hint="--reference")


def measure_g_effect(
    model: ModelArg,
    forget: Annotated[str, typer.Option(help="Forget data SPEC (responses = the knowledge to "
                                        "remove).", show_default=False)],
    retain: Annotated[str, typer.Option(help="Retain data SPEC.", show_default=False)],
    model_opts: ModelOptions,
    objective: Annotated[list[str], typer.Option(
        "--objective", help="ga, wga, npo or tnpo, optionally NAME:BETA (repeat).")] = ["npo"],  # noqa: B006
    forget_kind: KindOpt = "harmful_ce",
    reference: Annotated[Optional[str], typer.Option(help="NPO / TNPO reference model (default: "
                                                     "MODEL itself, the start of unlearning).")] = None,
    out: OutDir = Path("artifacts/g_effect"),
    batch_size: BatchSize = BATCH_SIZE,
    max_length: MaxLength = 512,
    include_frozen: IncludeFrozen = False,
    tokens: Annotated[int, typer.Option(min=0, help="Forget examples in the per-token weight "
                                        "view (0: none).")] = 8,
    limit: Limit = None,
) -> None:
    """G-effects of unlearning objectives on the forget and retain NLL, per layer.

    Writes OUT/g_effect.parquet, .json and .html (figures + table), and
    OUT/token_weights.parquet (per-token weights of the first --tokens forget examples).
    """
    import pandas as pd

    from safetygeo.gradients import g_effect, per_token_weights, reference_logprobs
    from safetygeo.reports import g_effect_figure, token_weights_figure

    check_out(out)
    objs = [_objective(o) for o in objective]
    if len({o.label for o in objs}) != len(objs):
        raise typer.BadParameter("an objective is given twice", param_hint="--objective")
    _check_reference(reference)
    if forget_kind == "refusal_ce":
        raise typer.BadParameter("the forget set's responses are the knowledge to remove; use "
                                 "ce or harmful_ce", param_hint="--forget-kind")
    f_spec = _spec(forget, "--forget", forget_kind, name="forget", refusal=None,
                   max_length=max_length, batch_size=batch_size, limit=limit)
    r_spec = _spec(retain, "--retain", "ce", name="retain", refusal=None, max_length=max_length,
                   batch_size=batch_size, limit=limit)
    with guarded():
        h = load_handle(model, model_opts)
        ref = None
        if any(o.needs_reference for o in objs):
            ref_h = load_handle(reference, model_opts) if reference is not None else h
            ref = reference_logprobs(ref_h, f_spec, source=reference or "self")
        results = [g_effect(h, o, f_spec, r_spec, reference=ref, include_frozen=include_frozen)
                   for o in objs]
        frame = pd.concat([r.to_frame(model=h.model_id) for r in results], ignore_index=True)
        figures = [("G-effect per layer", g_effect_figure(frame))]
        extra = {}
        if tokens:
            tok_spec = replace(f_spec, records=f_spec.records[:tokens])
            tok_ref = None if ref is None else reference_logprobs(ref_h, tok_spec, source=ref.source)
            extra["token_weights"] = per_token_weights(h, objs, tok_spec, reference=tok_ref).to_frame()
            figures.append(("per-token weights (inverse confidence)",
                            token_weights_figure(extra["token_weights"])))
        meta = {"objectives": [o.to_dict() for o in objs], **results[0].meta}
        _write(out, "g_effect", frame, meta, f"G-effects on {h.model_id}", figures, extra)
    table = Table(title=f"G-effect (all parameters) — {h.model_id}; < 0 on forget = removes, "
                        "< 0 on retain = damages")
    for col in ("objective", "unlearn", "retain", "objective loss"):
        table.add_column(col)
    for r in results:
        table.add_row(r.objective.label, f"{r.value('unlearn'):+.4g}", f"{r.value('retain'):+.4g}",
                      f"{r.values['objective']:.4g}")
    console.print(table)
    console.print(f"wrote {out / 'g_effect.parquet'} and {out / 'g_effect.html'}")


# verbs of the CLI grammar, plus the names the issue uses (hidden aliases)
_compare = model_command(compare_gradients)
_measure = model_command(measure_g_effect)
app.command("compare-gradients")(_compare)
app.command("gradients", hidden=True)(_compare)
app.command("measure-g-effect")(_measure)
app.command("g-effect", hidden=True)(_measure)
