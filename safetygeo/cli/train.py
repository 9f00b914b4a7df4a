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
    registry_names,
)
from safetygeo.training.config import TrainConfig
from safetygeo.training.errors import TrainConfigError


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


#: TrainConfig fields without a flag of their own here: the model's --dtype loads the weights.
_NOT_FLAGS = ("dtype",)
#: Flags named unlike their field (kept from before the flags were generated).
_FLAG_NAMES = {"lora_target_modules": "--lora-targets"}
_TRAIN_FLAGS = common.dataclass_options(TrainConfig, exclude=_NOT_FLAGS, flags=_FLAG_NAMES)


def config_error_flag(message: str) -> str | None:
    """The generated flag a TrainConfig / LoraSpec error message names first, if any.

    Example:
        >>> config_error_flag("max_steps must be a positive int or None, got 0")
        '--max-steps'
        >>> config_error_flag("lora.r must be a positive int, got 0")
        '--lora-r'
    """
    import re

    hits = []
    for path, flag in _TRAIN_FLAGS.values():
        for key in {".".join(path), path[-1]} if len(path) == 1 else {".".join(path)}:
            m = re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message)
            if m:
                hits.append((m.start(), -len(key), flag))
    return min(hits)[2] if hits else None


@app.command()
@model_command
@common.config_command(TrainConfig, param="train_flags", exclude=_NOT_FLAGS, flags=_FLAG_NAMES,
                       panel="Training (TrainConfig)")
def train(
    model: ModelArg,
    model_opts: ModelOptions,
    train_flags: dict[str, Any],
    method: Annotated[Optional[str], typer.Option(
        "--method", "-m", help=f"One of {', '.join(registry_names('methods'))} (or from "
        "--config).", show_default=False)] = None,
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
    from safetygeo.training import get_method_class
    from safetygeo.training import train as train_fn
    from safetygeo.training.config import load_run_file
    from safetygeo.training.data import parse_data_specs

    flags = {k: v for k, v in train_flags.items() if k != "lora"}
    lora_flags = dict(train_flags.get("lora", {}))
    if "target_modules" in lora_flags and lora_flags["target_modules"] != "all-linear":
        lora_flags["target_modules"] = [t.strip() for t in lora_flags["target_modules"].split(",")
                                        if t.strip()]
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
        for layer in (run["train"], flags):
            values.update(layer)  # later layers win; a step budget replaces an epoch budget
            if "max_steps" in layer and "epochs" not in layer:
                values["epochs"] = None
            if "epochs" in layer and "max_steps" not in layer:
                values["max_steps"] = None
        if lora_flags:
            values["lora"] = {**(values.get("lora") or {}), **lora_flags}
        try:
            cfg = TrainConfig.from_dict(values)
        except TrainConfigError as exc:
            flag = config_error_flag(str(exc))
            if flag is None:
                raise
            raise typer.BadParameter(str(exc), param_hint=flag) from None
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
