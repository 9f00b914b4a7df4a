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


@app.command("gcg")
def gcg_cmd(
    model: ModelArg,
    prompts: Annotated[str, typer.Option(help="Prompt set spec (e.g. advbench=PATH; its targets are used).")],
    target: Annotated[
        Optional[str], typer.Option(help="Target for prompts without one (e.g. 'Sure, here is').")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("artifacts/gcg"),
    num_steps: Annotated[int, typer.Option(min=0, help="GCG steps per prompt.")] = 250,
    search_width: Annotated[int, typer.Option(min=1, help="Candidates per step.")] = 512,
    topk: Annotated[int, typer.Option(min=1, help="Top-k tokens per position.")] = 256,
    n_replace: Annotated[int, typer.Option(min=1, help="Positions swapped per candidate.")] = 1,
    suffix_init: Annotated[str, typer.Option(help="Initial suffix.")] = " ".join(["x"] * 20),
    eval_batch_size: Annotated[int, typer.Option(min=1, help="Candidates per forward pass.")] = 128,
    early_stop: Annotated[bool, typer.Option(help="Stop a prompt once the target is greedy.")] = False,
    universal: Annotated[bool, typer.Option(help="One suffix for all prompts (mean loss).")] = False,
    seed: Annotated[int, typer.Option(help="Candidate sampling seed.")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="Attack only the first N prompts.")] = None,
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
    """Optimize GCG suffixes (Zou et al. 2023) against MODEL; write OUT/gcg.json.

    gcg.json holds the config, the model's provenance and, per prompt (or once with
    --universal), the instruction, target, suffix, adversarial prompt, losses and whether
    the target is greedily produced. Feed the adversarial prompts to generation + refusal
    classification for ASR under GCG.
    """
    from dataclasses import asdict

    from safetygeo._io import atomic_write_json
    from safetygeo.data import load_prompt_set
    from safetygeo.training.gcg import GCGConfig, gcg_init, gcg_run

    try:
        ps = load_prompt_set(prompts)
        if limit is not None:
            ps = ps.subset(range(min(limit, len(ps))))
        tgts = list(ps.targets or [None] * len(ps))
        tgts = [t if t is not None else target for t in tgts]
        if any(t is None for t in tgts):
            raise SafetyGeoError(f"prompt set {prompts!r} has prompts without a target; pass --target")
        cfg = GCGConfig(num_steps=num_steps, search_width=search_width, topk=topk,
                        n_replace=n_replace, suffix_init=suffix_init, seed=seed,
                        eval_batch_size=eval_batch_size, early_stop=early_stop)
        h = _load(model, revision, dtype, device, template, system, trust_remote_code,
                  allow_pickle, layers_path, final_norm_path)
        state = gcg_init(h, list(ps.prompts), tgts, cfg, universal=universal)
        results = gcg_run(h, state)
    except SafetyGeoError as exc:
        _fail(exc)
    rows = [{**asdict(r), "prompts": r.prompts} for r in results]
    atomic_write_json(out / "gcg.json", {"config": asdict(cfg), "model": h.describe(),
                                         "prompt_set": prompts, "results": rows})
    table = Table(title=f"GCG against {h.model_id}")
    for col in ("instruction", "suffix", "initial loss", "best loss", "solved"):
        table.add_column(col)
    for r in results[:20]:
        table.add_row(r.instructions[0][:40], repr(r.suffix)[:40], f"{r.initial_loss:.3f}",
                      f"{r.best_loss:.3f}", str(r.solved))
    console.print(table)
    console.print(f"{sum(r.solved for r in results)}/{len(results)} solved; wrote {out / 'gcg.json'}")


@app.command("train")
def train_cmd(
    method: Annotated[str, typer.Argument(help="Training method: sft, harmful_sft, r2d2, ...")],
    model: Annotated[str, typer.Option("--model", "-m", help="Base model: hub id or local folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Trajectory folder (step-NNNNNN/ + trajectory.json).")],
    data: Annotated[
        Optional[list[str]],
        typer.Option("--data", "-d", help="[ROLE=]SPEC (repeat): a JSON/JSONL file of prompt/response "
                     "objects, or a prompt-set spec (example:harmful, advbench=FILE, alpaca=FILE, ...). "
                     "Without ROLE= the method's first role."),
    ] = None,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", help="JSON/YAML run config (TrainConfig keys, method, "
                     "method_config, data); explicit flags override it."),
    ] = None,
    method_opt: Annotated[
        Optional[list[str]], typer.Option("--method-opt", help="Method hyper-parameter KEY=VALUE (repeat; VALUE as JSON if it parses).")
    ] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Optimizer steps.")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Epochs (when no max steps).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Micro-batch size per device.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option(help="Gradient accumulation steps.")] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Checkpoint every N steps.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed (data order, dropout, LoRA init).")] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(help="Linear warm-up steps.")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Longest prompt+completion in tokens.")] = None,
    lora_r: Annotated[Optional[int], typer.Option(help="Train a LoRA adapter of this rank.")] = None,
    lora_alpha: Annotated[Optional[float], typer.Option(help="LoRA alpha.")] = None,
    lora_dropout: Annotated[Optional[float], typer.Option(help="LoRA dropout.")] = None,
    lora_targets: Annotated[Optional[str], typer.Option(help="LoRA target modules: all-linear or q_proj,v_proj,...")] = None,
    bf16: Annotated[Optional[bool], typer.Option("--bf16/--no-bf16", help="bf16 mixed precision.")] = None,
    gradient_checkpointing: Annotated[
        Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the last complete checkpoint.")] = True,
    overwrite: Annotated[bool, typer.Option(help="With --no-resume, replace an existing trajectory.")] = False,
    on_damaged: Annotated[str, typer.Option(
        "--on-damaged", help="Checkpoints that were complete once and are damaged now: 'quarantine' "
        "renames them step-NNNNNN.damaged-<time> (never deleted) and continues from the last "
        "intact one; 'stop' exits with an error and changes nothing.")] = "quarantine",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
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
    """Train a model with a safety method (defense or attack) into a resumable trajectory.

    Writes OUT/step-NNNNNN/ checkpoints (safetensors; LoRA: adapters) and OUT/trajectory.json.
    Rerun the same command to resume a killed run. Damaged checkpoints are never deleted:
    see --on-damaged.
    """
    from safetygeo.training import TrainConfig, get_method_class, train
    from safetygeo.training.config import load_run_file
    from safetygeo.training.data import parse_data_specs

    flags = {"max_steps": max_steps, "epochs": epochs, "lr": lr, "batch_size": batch_size,
             "grad_accum": grad_accum, "save_every": save_every, "seed": seed,
             "warmup_steps": warmup_steps, "max_length": max_length, "bf16": bf16,
             "gradient_checkpointing": gradient_checkpointing}
    lora_flags = {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout,
                  "target_modules": None if lora_targets is None else (
                      lora_targets if lora_targets == "all-linear"
                      else [t.strip() for t in lora_targets.split(",") if t.strip()])}
    opts: dict = {}
    for item in method_opt or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--method-opt needs KEY=VALUE, got {item!r}")
        try:
            opts[key.strip()] = json.loads(value)
        except ValueError:
            opts[key.strip()] = value
    try:
        run = load_run_file(config) if config is not None else {
            "train": {}, "method": None, "method_config": {}, "data": {}}
        if run["method"] is not None and run["method"] != method:
            raise SafetyGeoError(f"config file is for method {run['method']!r}, not {method!r}")
        meth = get_method_class(method)({**run["method_config"], **opts})
        values = meth.default_train_config().to_dict()
        for layer in (run["train"], {k: v for k, v in flags.items() if v is not None}):
            values.update(layer)  # later layers win; a step budget replaces an epoch budget
            if "max_steps" in layer and "epochs" not in layer:
                values["epochs"] = None
            if "epochs" in layer and "max_steps" not in layer:
                values["max_steps"] = None
        given_lora = {k: v for k, v in lora_flags.items() if v is not None}
        if given_lora:
            values["lora"] = {**(values.get("lora") or {}), **given_lora}
        cfg = TrainConfig.from_dict(values)
        specs = [f"{role}={spec}" for role, spec in run["data"].items()]
        cli_roles = {d.partition("=")[0] for d in data or []}
        specs = [s for s in specs if s.partition("=")[0] not in cli_roles] + list(data or [])
        if not specs:
            raise SafetyGeoError(f"no training data: pass --data ROLE=SPEC (roles of {method!r}: "
                                 f"{', '.join(meth.roles)})")
        parts = parse_data_specs(specs, meth.roles)
        h = _load(model, revision, dtype, device, template, system, trust_remote_code,
                  allow_pickle, layers_path, final_norm_path)
        traj = train(h, meth, parts, out=out, config=cfg, resume=resume, overwrite=overwrite,
                     progress=progress, on_damaged=on_damaged)
    except SafetyGeoError as exc:
        _fail(exc)
    import os

    if int(os.environ.get("RANK", "0")) != 0:  # torchrun / accelerate: report once
        return
    table = Table(title=f"{method} trajectory of {h.model_id}")
    for col in ("step", "loss", "checkpoint"):
        table.add_column(col)
    for c in traj.checkpoints:
        loss = c.metrics.get("loss")
        table.add_row(str(c.step), "" if loss is None else f"{loss:.4f}", str(c.path))
    console.print(table)
    for d in traj.quarantined:
        console.print(f"quarantined damaged checkpoint step {d.step} ({d.reason}): {d.path}")
    console.print(f"wrote {out / 'trajectory.json'}")


_BEHAVIOR_ROLES = {"harmful": "harmful", "harmless": "benign", "benign": "benign",
                   "safe": "safe", "unsafe": "unsafe"}
_BEHAVIOR_KEY = ("asr", "over_refusal_rate", "refusal_rate", "strongreject",
                 "strongreject_proxy", "exact_match", "contains_answer", "ref_logprob")


def _behavior_set(spec: str):
    """``ROLE=SPEC`` (role harmful / harmless / benign / safe / unsafe) or a plain spec."""
    from safetygeo.data import load_prompt_set

    head, sep, rest = spec.partition("=")
    role = _BEHAVIOR_ROLES.get(head.strip().lower()) if sep else None
    if role is None:
        return load_prompt_set(spec), None
    label = "harmless" if role == "benign" else role
    return load_prompt_set(rest.strip(), label=label), role


@app.command("behavior")
def behavior_cmd(
    model: ModelArg,
    sets: Annotated[
        list[str],
        typer.Option(
            "--set", "-s",
            help="Prompt set: a spec as for extract --prompts (xstest=PATH splits into safe and "
            "unsafe sets; advbench / harmbench / jailbreakbench / strongreject are harmful), or "
            "ROLE=SPEC with ROLE harmful, harmless, benign, safe or unsafe (e.g. "
            "harmless=alpaca.json). Repeat for several sets.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("artifacts/behavior"),
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens generated per prompt.")] = 64,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per forward pass.")] = 8,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N prompts per set.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling and bootstrap seed.")] = 0,
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample instead of greedy decoding.")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    attack: Annotated[
        Optional[str],
        typer.Option(help="Jailbreak applied to harmful prompts: a template with {prompt}, or a suffix."),
    ] = None,
    judge: Annotated[
        Optional[str],
        typer.Option(help="LLM judge: llamaguard=MODEL, or causal=MODEL with --judge-template "
                     "(yes/no answer, e.g. the HarmBench classifier)."),
    ] = None,
    judge_template: Annotated[
        Optional[Path], typer.Option(help="File with the causal judge's prompt ({prompt}, {completion}).")
    ] = None,
    n_boot: Annotated[int, typer.Option(min=1, help="Bootstrap resamples for CIs.")] = 1000,
    likelihood: Annotated[bool, typer.Option(help="Reference log-probs on benign sets with answers.")] = True,
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
    """Generate on prompt sets, classify refusals, and write the behaviour table with CIs.

    Writes OUT/behavior.parquet (tidy: set, role, metric, method, value, ci_low, ci_high, n),
    OUT/completions.parquet (every prompt, completion and label) and OUT/behavior.json
    (provenance). Completions are saved before judging, so a failing judge loses nothing.
    """
    from safetygeo.behavior.report import behavior_sets, evaluate_behavior

    try:
        loaded = [_behavior_set(s) for s in sets]
        roles = {ps.name: r for ps, r in loaded if r is not None}
        named = behavior_sets([ps for ps, _ in loaded], roles)
        if limit is not None:
            named = [(n, r, ps.subset(range(min(limit, len(ps))))) for n, r, ps in named]
        h = _load(model, revision, dtype, device, template, system, trust_remote_code,
                  allow_pickle, layers_path, final_norm_path)
        judge_fn = None
        if judge is not None:
            from safetygeo.behavior.judges import CausalLMJudge, LlamaGuardJudge
            from safetygeo.models import load_model

            kind, _, jmodel = judge.partition("=")
            if kind not in ("llamaguard", "causal") or not jmodel:
                raise typer.BadParameter(f"--judge must be llamaguard=MODEL or causal=MODEL, got {judge!r}")
            jh = load_model(jmodel, dtype=dtype, device=device, allow_pickle=allow_pickle)
            if kind == "llamaguard":
                judge_fn = LlamaGuardJudge(jh.model, jh.tokenizer)
            else:
                if judge_template is None:
                    raise typer.BadParameter("--judge causal=MODEL needs --judge-template FILE")
                judge_fn = CausalLMJudge(jh.model, jh.tokenizer, judge_template.read_text())
        report = evaluate_behavior(
            h, {n: ps for n, _, ps in named}, roles={n: r for n, r, _ in named}, judge=judge_fn,
            attack=attack, max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
            likelihood=likelihood, n_boot=n_boot, out=out,
        )
    except SafetyGeoError as exc:
        _fail(exc)
    m = report.metrics[report.metrics.metric.isin(_BEHAVIOR_KEY)]
    others = [x for x in ("judge", "judge_score", "gcg_prefix", "xstest_strmatch")
              if x in set(m.method)]
    table = Table(title=f"behaviour of {h.model_id} (ours with 95% bootstrap CI)")
    for col in ("set", "metric", "ours", *others, "n"):
        table.add_column(col.replace("_strmatch", "").replace("_prefix", ""))
    for (set_name, metric), grp in m.groupby(["set", "metric"], sort=False):
        by = {r.method: r for r in grp.itertuples()}
        o = by.get("ours")
        ours = "-" if o is None else f"{o.value:.3f} [{o.ci_low:.2f}, {o.ci_high:.2f}]"
        cells = [f"{by[x].value:.3f}" if x in by else "-" for x in others]
        table.add_row(str(set_name), str(metric), ours, *cells,
                      str(grp.n.iloc[0]))
    console.print(table)
    console.print(f"wrote {out / 'behavior.parquet'}, {out / 'completions.parquet'} and "
                  f"{out / 'behavior.json'}")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("artifacts/demo"),
    seed: Annotated[int, typer.Option(help="Toy-world seed (models are cached per seed).")] = 0,
    cache_dir: Annotated[
        Optional[Path],
        typer.Option(help="Where toy models are cached (default $SAFETYGEO_TOY_DIR or artifacts/toy)."),
    ] = None,
    quick: Annotated[bool, typer.Option(help="Small statistics (smoke test).")] = False,
    rebuild: Annotated[bool, typer.Option(help="Retrain the toy models even if cached.")] = False,
) -> None:
    """Run the whole pipeline on the embedded toy safety world (CPU, a few minutes).

    Builds (or loads) a tiny aligned Llama, selects its admissible refusal carrier, tests
    it against matched random directions, measures behaviour and writes OUT/report.html.
    """
    from safetygeo.toy.demo import DemoSettings, run_demo
    from safetygeo.toy.zoo import ensure_toy

    settings = DemoSettings.quick() if quick else DemoSettings()
    try:
        if rebuild:
            with console.status("retraining the toy models"):
                ensure_toy(("anchor",), seed=seed, cache_dir=cache_dir, rebuild=True)
        summary = run_demo(out, seed=seed, cache_dir=cache_dir, settings=settings,
                           progress=True, say=lambda msg: console.print(f"[bold]{msg}[/]"))
    except SafetyGeoError as exc:
        _fail(exc)
    table = Table(title="toy world: behaviour on held-out prompts")
    cols = list(next(iter(summary["behavior"].values())))
    table.add_column("condition")
    for col in cols:
        table.add_column(col)
    for cond, row in summary["behavior"].items():
        table.add_row(cond, *("–" if row[c] is None else f"{row[c]:.2f}" for c in cols))
    console.print(table)
    c = summary["carrier"]["chosen"]
    if c is not None:
        e = summary["ablation"]["d_refusal_harmful"]
        console.print(f"carrier: layer {c['layer']} {c['position']}; ablation moves the harmful "
                      f"refusal score by {e['real']:.2f} (nulls 95%: [{e['null_q025']:.2f}, "
                      f"{e['null_q975']:.2f}], p={e['p_value']:.3g})")
    else:
        console.print("[yellow]no admissible carrier[/]: " + "; ".join(summary["carrier"]["notes"]))
    console.print(f"wrote {out / 'report.html'} ({sum(summary['timings_s'].values()):.0f} s)")


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
