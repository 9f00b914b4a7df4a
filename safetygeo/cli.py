"""The ``safetygeo`` command line.

Example (shell)::

    safetygeo tiny-model artifacts/tiny-llama
    safetygeo extract artifacts/tiny-llama --prompts example:harmful --prompts example:harmless \\
        --out artifacts/extract
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from safetygeo.errors import SafetyGeoError

app = typer.Typer(
    name="safetygeo",
    help="Measure the geometry of safety (refusal / harmfulness carriers) inside LLM checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ModelArg = Annotated[str, typer.Argument(help="Hub id or local checkpoint folder.")]
Revision = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag, commit).")]
Dtype = Annotated[str, typer.Option(help="auto, float32, bf16, fp16.")]
Device = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, ...")]
Template = Annotated[
    Optional[str],
    typer.Option(help="Chat-template override with one '{instruction}' field."),
]
System = Annotated[Optional[str], typer.Option(help="System prompt for the chat template.")]
TrustRemote = Annotated[bool, typer.Option(help="Allow custom modelling code from the hub.")]
AllowPickle = Annotated[bool, typer.Option(help="Accept pickle (*.bin) weights.")]
LayersPath = Annotated[Optional[str], typer.Option(help="Dotted path of the block list.")]
NormPath = Annotated[Optional[str], typer.Option(help="Dotted path of the final norm.")]


def parse_layers(text: str) -> str | list[int]:
    """Parse ``all``, ``3``, ``0,2,4``, ``0-3`` or ``-1`` into a layer selection.

    Example:
        >>> parse_layers("0-2,5"), parse_layers("all"), parse_layers("-1")
        ([0, 1, 2, 5], 'all', [-1])
    """
    text = text.strip()
    if text == "all":
        return "all"
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part[0] + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1]
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise typer.BadParameter(f"cannot parse layers {text!r}; use all, 3, 0,2,4 or 0-3") from None
    return out


def _load(model: str, revision, dtype, device, template, system, trust_remote_code,
          allow_pickle, layers_path, final_norm_path):
    from safetygeo.models import load_model

    with console.status(f"loading {model}"):
        handle = load_model(
            model, revision=revision, dtype=dtype, device=device,
            trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
            layers_path=layers_path, final_norm_path=final_norm_path,
        )
    if template is not None or system is not None:
        handle = handle.with_template(template, system=system)
    return handle


def _fail(exc: SafetyGeoError) -> None:
    console.print(f"[bold red]error[/]: {type(exc).__name__}: {exc}")
    raise typer.Exit(2)


@app.command()
def version() -> None:
    """Print the safetygeo version."""
    from safetygeo import __version__

    typer.echo(__version__)


@app.command("tiny-model")
def tiny_model_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
    arch: Annotated[str, typer.Option(help="llama, mistral, qwen2, gemma or gpt2.")] = "llama",
    n_layers: Annotated[int, typer.Option(help="Number of blocks.")] = 4,
    d_model: Annotated[int, typer.Option(help="Model width.")] = 64,
    seed: Annotated[int, typer.Option(help="Init seed.")] = 0,
) -> None:
    """Write a tiny random-init checkpoint with an offline tokenizer (no network needed)."""
    from safetygeo.models.tiny import tiny_model_and_tokenizer

    try:
        model, tok = tiny_model_and_tokenizer(arch, n_layers=n_layers, d_model=d_model, seed=seed)
    except SafetyGeoError as exc:
        _fail(exc)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    console.print(f"wrote tiny {arch} ({n_layers} layers, d={d_model}) to {out}")


@app.command()
def info(
    model: ModelArg,
    revision: Revision = None,
    dtype: Dtype = "auto",
    template: Template = None,
    system: System = None,
    trust_remote_code: TrustRemote = False,
    allow_pickle: AllowPickle = False,
    layers_path: LayersPath = None,
    final_norm_path: NormPath = None,
) -> None:
    """Show where the residual stream is and how prompts are formatted."""
    try:
        h = _load(model, revision, dtype, None, template, system, trust_remote_code,
                  allow_pickle, layers_path, final_norm_path)
        desc = h.describe()
        tmpl = h.chat_template()
        desc["template"] = {"prefix": tmpl.prefix, "suffix": tmpl.suffix, "source": tmpl.source,
                            "n_eoi": len(tmpl.suffix_ids(h.tokenizer))}
    except SafetyGeoError as exc:
        _fail(exc)
    typer.echo(json.dumps(desc, indent=2))


@app.command()
def extract(
    model: ModelArg,
    prompts: Annotated[
        list[str],
        typer.Option(
            "--prompts", "-p",
            help="Prompt set: PATH, FORMAT=PATH (advbench, harmbench, jailbreakbench, "
            "strongreject, xstest, xstest-safe, xstest-unsafe, alpaca, json, lines, csv) or "
            "example:harmful / example:harmless. Repeat for several sets.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("artifacts/extract"),
    layers: Annotated[str, typer.Option(help="all, 3, 0,2,4 or 0-3 (L = final-norm input).")] = "all",
    positions: Annotated[
        str, typer.Option(help="post_instruction, t_inst, last, t_inst+post_instruction, or -1,-2")
    ] = "post_instruction",
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    second_moment: Annotated[Optional[str], typer.Option(help="diag or full.")] = None,
    keep_vectors: Annotated[bool, typer.Option(help="Also save per-prompt vectors.")] = False,
    backend: Annotated[str, typer.Option(help="native, nnsight or transformer_lens.")] = "native",
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N prompts per set.")] = None,
    revision: Revision = None,
    dtype: Dtype = "auto",
    device: Device = None,
    template: Template = None,
    system: System = None,
    trust_remote_code: TrustRemote = False,
    allow_pickle: AllowPickle = False,
    layers_path: LayersPath = None,
    final_norm_path: NormPath = None,
) -> None:
    """Extract per-layer × per-position activation means (float64) for prompt sets.

    Writes OUT/<set>.safetensors (+ .json provenance) per prompt set.
    """
    from safetygeo.activations import extract_activations
    from safetygeo.data import load_prompt_set

    pos: str | list[int] = positions
    if positions.lstrip().startswith("-"):
        try:
            pos = [int(p) for p in positions.split(",")]
        except ValueError:
            raise typer.BadParameter(f"cannot parse positions {positions!r}") from None
    try:
        sets = [load_prompt_set(spec) for spec in prompts]
        if limit is not None:
            sets = [s.subset(range(min(limit, len(s)))) for s in sets]
        h = _load(model, revision, dtype, device, template, system, trust_remote_code,
                  allow_pickle, layers_path, final_norm_path)
        table = Table(title=f"activations of {h.model_id}")
        for col in ("set", "prompts", "layers", "positions", "file"):
            table.add_column(col)
        names: dict[str, int] = {}
        for ps in sets:
            stats = extract_activations(
                h, ps, layers=parse_layers(layers), positions=pos, batch_size=batch_size,
                second_moment=second_moment, keep_vectors=keep_vectors, backend=backend,
            )
            stem = ps.name or "prompts"
            names[stem] = names.get(stem, 0) + 1
            if names[stem] > 1:
                stem = f"{stem}-{names[stem]}"
            stats.save(str(out / f"{stem}.safetensors"))
            table.add_row(stem, str(stats.count), str(len(stats.layers)),
                          ",".join(stats.positions.labels), str(out / f"{stem}.safetensors"))
    except SafetyGeoError as exc:
        _fail(exc)
    console.print(table)


@app.command()
def carriers(
    model: ModelArg,
    harmful: Annotated[str, typer.Option(help="Harmful prompt set spec (see extract --prompts).")],
    harmless: Annotated[str, typer.Option(help="Harmless prompt set spec.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("artifacts/carriers"),
    splits: Annotated[str, typer.Option(help="train,val,test fractions.")] = "0.5,0.25,0.25",
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    max_layer_frac: Annotated[float, typer.Option(help="Discard layers >= floor(frac*L).")] = 0.8,
    max_kl: Annotated[float, typer.Option(help="Discard KL above this.")] = 0.1,
    min_induce: Annotated[float, typer.Option(help="Discard induce below this.")] = 0.0,
    refusal_phrase: Annotated[
        Optional[list[str]], typer.Option(help="Refusal phrases (repeat); default GCG/XSTest openings.")
    ] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N prompts per set.")] = None,
    test_top_k: Annotated[int, typer.Option(help="Re-score this many best candidates on test.")] = 5,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    max_variants: Annotated[int, typer.Option(min=1, help="Directions per forward pass.")] = 8,
    revision: Revision = None,
    dtype: Dtype = "auto",
    device: Device = None,
    template: Template = None,
    system: System = None,
    trust_remote_code: TrustRemote = False,
    allow_pickle: AllowPickle = False,
    layers_path: LayersPath = None,
    final_norm_path: NormPath = None,
) -> None:
    """Select the admissible refusal carrier; write every candidate's scores.

    Writes OUT/candidates.parquet, OUT/carriers.json (all candidates, the chosen carrier,
    baselines, split sizes, provenance) and OUT/directions.safetensors.
    """
    from safetygeo.behavior.refusal import DEFAULT_REFUSAL_PHRASES
    from safetygeo.data import load_prompt_set
    from safetygeo.geometry.carriers import CarrierThresholds, select_refusal_carrier

    try:
        fractions = [float(x) for x in splits.split(",")]
    except ValueError:
        raise typer.BadParameter(f"cannot parse splits {splits!r}") from None
    if len(fractions) != 3:
        raise typer.BadParameter("splits needs three fractions: train,val,test")
    try:
        sets = [load_prompt_set(harmful, label="harmful"), load_prompt_set(harmless, label="harmless")]
        if limit is not None:
            sets = [s.subset(range(min(limit, len(s)))) for s in sets]
        h = _load(model, revision, dtype, device, template, system, trust_remote_code,
                  allow_pickle, layers_path, final_norm_path)
        sel = select_refusal_carrier(
            h, sets[0], sets[1], splits=fractions, seed=seed,
            thresholds=CarrierThresholds(max_layer_frac, max_kl, min_induce),
            refusal_phrases=tuple(refusal_phrase or DEFAULT_REFUSAL_PHRASES),
            batch_size=batch_size, max_variants=max_variants, test_top_k=test_top_k,
        )
        sel.save(out)
    except SafetyGeoError as exc:
        _fail(exc)
    summary = sel.summary()
    table = Table(title=f"refusal carrier of {h.model_id}")
    for col in ("layer", "position", "bypass", "induce", "kl", "test_bypass", "test_induce"):
        table.add_column(col)
    c = summary["chosen"]
    if c is not None:
        table.add_row(*(str(c[k]) if not isinstance(c[k], float) else f"{c[k]:.3f}"
                        for k in ("layer", "position", "bypass", "induce", "kl", "test_bypass",
                                  "test_induce")))
        console.print(table)
    console.print(f"baseline: {summary['baseline']}")
    for note in summary["notes"]:
        console.print(f"[yellow]note[/]: {note}")
    console.print(f"{summary['n_admissible']}/{summary['n_candidates']} admissible; wrote {out}")


@app.command("sweep")
def sweep_cmd(
    carriers_dir: Annotated[Path, typer.Argument(help="Folder written by `safetygeo carriers`.")],
    model: ModelArg,
    harmful: Annotated[str, typer.Option(help="Harmful prompt set spec (evaluation prompts).")],
    harmless: Annotated[str, typer.Option(help="Harmless prompt set spec.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("artifacts/sweep"),
    candidate: Annotated[
        Optional[list[str]],
        typer.Option(help="Extra candidates LAYER:POSITION (e.g. 3:eoi-1); default: the chosen carrier."),
    ] = None,
    ops: Annotated[str, typer.Option(help="Comma list of ablate, add.")] = "ablate,add",
    layers: Annotated[str, typer.Option(help="Layers for addition: all, 0-3, 1,2.")] = "all",
    alphas: Annotated[str, typer.Option(help="Comma list of addition strengths.")] = "1.0",
    n_null: Annotated[int, typer.Option(help="Matched random directions per cell (K).")] = 64,
    seed: Annotated[int, typer.Option(help="Null seed.")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N prompts per set.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    max_variants: Annotated[int, typer.Option(min=1, help="Directions per forward pass.")] = 16,
    revision: Revision = None,
    dtype: Dtype = "auto",
    device: Device = None,
    template: Template = None,
    system: System = None,
    trust_remote_code: TrustRemote = False,
    allow_pickle: AllowPickle = False,
    layers_path: LayersPath = None,
    final_norm_path: NormPath = None,
) -> None:
    """Sweep ablation / addition of saved carriers against matched random-direction nulls.

    Writes OUT/sweep.parquet (resumable: rerun the same command to finish a killed sweep)
    and OUT/sweep.html (effect vs layer with the null band).
    """
    from safetygeo._io import atomic_write_text
    from safetygeo.data import load_prompt_set
    from safetygeo.geometry.carriers import CarrierSelection
    from safetygeo.interventions.sweep import run_sweep, sweep_figure

    if n_null < 1:
        raise typer.BadParameter(f"--n-null must be >= 1, got {n_null}")
    try:
        alpha_list = [float(a) for a in alphas.split(",")]
    except ValueError:
        raise typer.BadParameter(f"cannot parse alphas {alphas!r}") from None
    try:
        sel = CarrierSelection.load(carriers_dir)
        directions = {}
        if sel.chosen is not None:
            directions[f"carrier {sel.chosen[0]}:{sel.chosen[1]}"] = sel.vector
        for spec in candidate or []:
            layer_s, _, pos = spec.partition(":")
            try:
                directions[f"candidate {spec}"] = sel.directions.vector(int(layer_s), pos or "eoi-1")
            except ValueError:
                raise typer.BadParameter(f"cannot parse candidate {spec!r}; use LAYER:POSITION") from None
        if not directions:
            raise SafetyGeoError("the carrier selection has no chosen carrier; pass --candidate")
        sets = [load_prompt_set(harmful, label="harmful"), load_prompt_set(harmless, label="harmless")]
        if limit is not None:
            sets = [s.subset(range(min(limit, len(s)))) for s in sets]
        h = _load(model, revision, dtype, device, template, system, trust_remote_code,
                  allow_pickle, layers_path, final_norm_path)
        if h.d_model != sel.directions.vectors.shape[-1]:
            raise SafetyGeoError(
                f"carriers have d_model={sel.directions.vectors.shape[-1]} but {model} has "
                f"d_model={h.d_model}"
            )
        out.mkdir(parents=True, exist_ok=True)
        table = run_sweep(h, directions, harmful=list(sets[0].prompts), harmless=list(sets[1].prompts),
                      ops=tuple(o.strip() for o in ops.split(",")), layers=parse_layers(layers),
                      alphas=alpha_list, n_null=n_null, seed=seed, out=out / "sweep.parquet",
                      batch_size=batch_size, max_variants=max_variants)
    except SafetyGeoError as exc:
        _fail(exc)
    fig = sweep_figure(table)
    atomic_write_text(out / "sweep.html", fig.to_html(include_plotlyjs=True, full_html=True))
    summary = Table(title="strongest effects (|z|)")
    for col in ("direction", "op", "layer", "metric", "real", "null 95%", "p", "q"):
        summary.add_column(col)
    top = table.reindex(table.z.abs().sort_values(ascending=False).index).head(8)
    for r in top.itertuples():
        summary.add_row(r.direction, r.op, "all" if r.layer != r.layer else str(int(r.layer)),
                        r.metric, f"{r.real:.3f}", f"[{r.null_q025:.3f}, {r.null_q975:.3f}]",
                        f"{r.p_value:.3g}", f"{r.q_value:.3g}")
    console.print(summary)
    console.print(f"wrote {out / 'sweep.parquet'} and {out / 'sweep.html'}")


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
