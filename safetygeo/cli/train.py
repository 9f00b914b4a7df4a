"""``train``: a defense or attack method into a resumable checkpoint trajectory."""

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from safetygeo.cli import common
from safetygeo.cli.app import app
from safetygeo.cli.common import (
    ModelArg,
    ModelOptions,
    check_out,
    console,
    guarded,
    load_handle,
    model_command,
    parse_role_spec,
)


def method_options(items: Optional[list[str]]) -> dict[str, Any]:
    """``--method-opt KEY=VALUE`` (VALUE parsed as JSON when it parses)."""
    opts: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--method-opt")
        try:
            opts[key.strip()] = json.loads(value)
        except ValueError:
            opts[key.strip()] = value
    return opts


@app.command()
@model_command
def train(
    model: ModelArg,
    model_opts: ModelOptions,
    method: Annotated[Optional[str], typer.Option(
        "--method", "-m", help="sft, instruct, harmful_sft, r2d2, ... (or from --config).",
        show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Trajectory folder.",
                                      show_default=False)] = Path("artifacts/trajectory"),
    sets: Annotated[Optional[list[str]], typer.Option(
        "--set", "-s", help="Training data ROLE=SPEC (repeat): a JSON/JSONL file of "
        "prompt/response objects or a prompt-set spec.", show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="JSON/YAML run file (TrainConfig keys, method, method_config, "
        "data); flags override it.", show_default=False)] = None,
    method_opt: Annotated[Optional[list[str]], typer.Option(
        "--method-opt", help="Method hyper-parameter KEY=VALUE (repeat; JSON values).",
        show_default=False)] = None,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Optimizer steps.")] = None,
    epochs: Annotated[Optional[float], typer.Option(min=0, help="Epochs (without --max-steps).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Micro-batch size.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option(min=1, help="Gradient accumulation.")] = None,
    save_every: Annotated[Optional[int], typer.Option(min=1, help="Checkpoint every N steps.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed (data order, dropout, LoRA init).")] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(min=0, help="Linear warm-up steps.")] = None,
    max_length: Annotated[Optional[int], typer.Option(min=1, help="Longest prompt+completion.")] = None,
    lora_r: Annotated[Optional[int], typer.Option(min=1, help="Train a LoRA adapter of this rank.")] = None,
    lora_alpha: Annotated[Optional[float], typer.Option(help="LoRA alpha.")] = None,
    lora_dropout: Annotated[Optional[float], typer.Option(help="LoRA dropout.")] = None,
    lora_targets: Annotated[Optional[str], typer.Option(help="all-linear or q_proj,v_proj,...")] = None,
    bf16: Annotated[Optional[bool], typer.Option("--bf16/--no-bf16", help="bf16 mixed precision.")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option(
        "--gradient-checkpointing/--no-gradient-checkpointing")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume",
                                         help="Continue from the last complete checkpoint.")] = True,
    overwrite: Annotated[bool, typer.Option(help="With --no-resume, replace a trajectory.")] = False,
    on_damaged: Annotated[str, typer.Option(
        "--on-damaged", help="Checkpoints that were complete once and are damaged now: "
        "'quarantine' renames them step-NNNNNN.damaged-<time> (never deleted) and continues "
        "from the last intact one; 'stop' exits with an error and changes nothing.")
    ] = "quarantine",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train MODEL with a safety method (defense or attack) into a resumable trajectory.

    Writes OUT/step-NNNNNN/ checkpoints (safetensors; LoRA: adapters) and
    OUT/trajectory.json. Rerun the same command to resume a killed run. Damaged
    checkpoints are never deleted: see --on-damaged.
    """
    from safetygeo.errors import SafetyGeoError
    from safetygeo.training import TrainConfig, get_method_class
    from safetygeo.training import train as train_fn
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
    opts = method_options(method_opt)
    if on_damaged not in ("quarantine", "stop"):
        raise typer.BadParameter(f"{on_damaged!r}; use quarantine or stop", param_hint="--on-damaged")
    check_out(out)
    cli_specs = [parse_role_spec(s) for s in sets or []]
    with guarded():
        run = load_run_file(config) if config is not None else {
            "train": {}, "method": None, "method_config": {}, "data": {}}
        name = method or run["method"]
        if name is None:
            raise typer.BadParameter("pass --method (or method: in --config)", param_hint="--method")
        if run["method"] is not None and run["method"] != name:
            raise SafetyGeoError(f"--config is for method {run['method']!r}, not {name!r}")
        meth = get_method_class(name)({**run["method_config"], **opts})
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
        unknown = [r for r, _ in cli_specs if r not in meth.roles]
        if unknown:
            raise typer.BadParameter(f"unknown data role(s) {unknown} for {name!r}; its roles: "
                                     f"{', '.join(meth.roles)}", param_hint="--set")
        cli_roles = {r for r, _ in cli_specs}
        specs = [f"{r}={s}" for r, s in run["data"].items() if r not in cli_roles]
        specs += [f"{r}={s}" for r, s in cli_specs]
        if not specs:
            raise typer.BadParameter(f"no training data: pass --set ROLE=SPEC (roles of "
                                     f"{name!r}: {', '.join(meth.roles)})", param_hint="--set")
        parts = parse_data_specs(specs, meth.roles)
        h = load_handle(model, model_opts)
        traj = train_fn(h, meth, parts, out=out, config=cfg, resume=resume, overwrite=overwrite,
                        progress=("verbose" if common.VERBOSE else True) if progress else False,
                        on_damaged=on_damaged)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun / accelerate: report once
        return
    table = Table(title=f"{name} trajectory of {h.model_id}")
    for col in ("step", "loss", "checkpoint"):
        table.add_column(col)
    for c in traj.checkpoints:
        loss = c.metrics.get("loss")
        table.add_row(str(c.step), "" if loss is None else f"{loss:.4f}", str(c.path))
    console.print(table)
    for d in traj.quarantined:
        console.print(f"quarantined damaged checkpoint step {d.step} ({d.reason}): {d.path}")
    console.print(f"wrote {out / 'trajectory.json'}")
