"""``report``: the safety-geometry protocol over every checkpoint of training trajectories."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from safetygeo.cli.app import app
from safetygeo.cli.common import console, guarded, parse_role_spec, registry_names

if TYPE_CHECKING:
    from safetygeo.reports import Protocol

TrajArg = Annotated[list[str], typer.Argument(
    help="Trajectory folders (trajectory.json + step-NNNNNN/), or toy:NAME for a toy-zoo "
         f"stage ({', '.join(registry_names('toy_stages'))}; built if absent).",
    metavar="TRAJECTORY_DIR...",
    show_default=False)]


def _trajectory_paths(values: list[str], toy_seed: int) -> list[str]:
    """``toy:NAME`` → the toy stage's folder (built if absent); others unchanged."""
    out = []
    for v in values:
        if v.startswith("toy:"):
            from safetygeo.toy.zoo import load_toy_trajectory

            with guarded(), console.status(f"building / loading toy trajectory {v[4:]}"):
                out.append(str(load_toy_trajectory(v[4:], seed=toy_seed).path))
        else:
            out.append(v)
    return out


def _protocol(spec: Optional[str], trajectories: list[str]) -> "Protocol":
    from safetygeo.reports import Protocol
    from safetygeo.reports.protocol import default_protocol

    if spec is None:  # Protocol.toy() on toy-zoo trajectories
        if all(t.startswith("toy:") for t in trajectories):
            return Protocol.toy()
        return default_protocol(trajectories)
    if spec == "default":
        return Protocol.default()
    from safetygeo.reports.protocol import preset_names

    if spec in preset_names():  # a world's preset (toy; worlds register theirs on import)
        return Protocol.preset(spec)
    if spec == "real":
        from safetygeo.real.report import real_protocol

        return real_protocol()
    with guarded():
        return Protocol.from_yaml(Path(spec))


@app.command()
def report(
    trajectories: TrajArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("artifacts/report"),
    protocol: Annotated[Optional[str], typer.Option(
        help="Protocol YAML file, or a preset: default, toy, real (default: toy / real for "
             "toy-zoo / real-world trajectories, else default).", show_default=False)] = None,
    sets: Annotated[Optional[list[str]], typer.Option(
        "--set", "-s", help="Override a prompt set: harmful=SPEC, harmless=SPEC or "
        "behavior.ROLE[.NAME]=SPEC (repeat).", show_default=False)] = None,
    steps: Annotated[Optional[str], typer.Option(
        help="Comma list of protocol steps to run (default: the protocol's).",
        show_default=False)] = None,
    stride: Annotated[Optional[int], typer.Option(min=1, help="Every N-th checkpoint.",
                                                   show_default=False)] = None,
    base: Annotated[Optional[bool], typer.Option(
        "--base/--no-base", help="Include each trajectory's base model (step 0).",
        show_default=False)] = None,
    dtype: Annotated[Optional[str], typer.Option(help="auto, float32, bf16 or fp16.",
                                                 show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(
        help="cpu, cuda, cuda:N or auto (device_map='auto').", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Prompts per forward pass.",
                                                      show_default=False)] = None,
    executor: Annotated[str, typer.Option(help="local (in-process) or ray.")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(
        help="Ray cluster address (default $RAY_ADDRESS; none: a local instance).",
        show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="CPUs of a local Ray instance.", show_default=False)] = None,
    num_gpus: Annotated[Optional[float], typer.Option(
        min=0, help="GPUs per checkpoint task (default: 1 with a CUDA / auto device).",
        show_default=False)] = None,
    toy_seed: Annotated[int, typer.Option(help="Seed of toy:NAME trajectories.")] = 0,
    title: Annotated[Optional[str], typer.Option(help="Title of the HTML report.",
                                                 show_default=False)] = None,
    export: Annotated[Optional[str], typer.Option(
        help="Also write the figures as static images, e.g. png,svg (needs kaleido: "
             "pip install 'safetygeo[static]', and a Chromium).", show_default=False)] = None,
) -> None:
    """Run the safety-geometry protocol over every checkpoint of TRAJECTORY_DIR... .

    Per checkpoint (and base): carriers and the admissible carrier with held-out scores,
    effective rank, drift against the first checkpoint, H/R coupling, null-controlled
    ablation, behaviour (and transfer of GCG suffixes from a source checkpoint, when the
    protocol names one). Writes OUT/table.parquet, table.csv, status.csv, protocol.yaml and
    report.html. Incremental: results are cached under OUT/cache by checkpoint content and
    step settings, so a rerun computes only what is new or changed; a damaged or unloadable
    checkpoint is reported and skipped.
    """
    import dataclasses

    import safetygeo.real  # noqa: F401  (registers the real: sets and protocol)
    import safetygeo.toy  # noqa: F401  (registers the toy: sets and judge)
    from safetygeo._executor import EXECUTORS, ExecutorSettings
    from safetygeo.reports import run_report

    if executor not in EXECUTORS:
        raise typer.BadParameter(f"{executor!r}; use {' or '.join(EXECUTORS)}",
                                 param_hint="--executor")
    where = ExecutorSettings(executor, ray_address, workers)
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{str(out)!r} exists and is not a folder", param_hint="--out")
    from safetygeo.reports.protocol import preset_names

    presets = sorted({"default", "real", *preset_names()})
    if protocol is not None and protocol not in presets and not Path(protocol).is_file():
        raise typer.BadParameter(f"{protocol!r} is neither a protocol file nor a preset "
                                 f"({', '.join(presets)})", param_hint="--protocol")
    proto = _protocol(protocol, trajectories)
    paths = _trajectory_paths(trajectories, toy_seed)
    with guarded():
        sets_cfg = proto.sets
        behavior = dict(sets_cfg.behavior)
        top: dict[str, Any] = {}
        for text in sets or []:
            role, spec = parse_role_spec(text, "--set")
            if role in ("harmful", "harmless"):
                top[role] = spec
            elif role.startswith("behavior."):
                behavior[role.split(".", 1)[1]] = spec
            else:
                raise typer.BadParameter(f"unknown role {role!r}; use harmful, harmless or "
                                         "behavior.ROLE[.NAME]", param_hint="--set")
        proto = proto.replace(sets=dataclasses.replace(
            sets_cfg, behavior=behavior, **top))
        ck_changes: dict[str, Any] = {k: v for k, v in (("stride", stride), ("base", base))
                                      if v is not None}
        ck = dataclasses.replace(proto.checkpoints, **ck_changes)
        ld_changes: dict[str, Any] = {k: v for k, v in (
            ("dtype", dtype), ("device", device), ("batch_size", batch_size),
            ("num_gpus", num_gpus)) if v is not None}
        ld = dataclasses.replace(proto.load, **ld_changes)
        proto = proto.replace(checkpoints=ck, load=ld)
        if steps is not None:
            from safetygeo.reports import step_names

            wanted = [s.strip() for s in steps.split(",") if s.strip()]
            bad = [s for s in wanted if s not in step_names()]
            if bad:
                raise typer.BadParameter(f"unknown step(s) {bad}; steps: {step_names()}",
                                         param_hint="--steps")
            proto = proto.with_steps(**{n: None for n in proto.step_names
                                        if n not in wanted},
                                     **{n: {} for n in wanted})
        console.print(f"[bold]report[/] over {len(paths)} trajectories, steps "
                      f"{', '.join(proto.step_names)} ({executor})")
        formats = [f.strip() for f in (export or "").split(",") if f.strip()]
        bad_fmt = [f for f in formats if f not in ("png", "svg", "pdf", "jpeg", "webp")]
        if bad_fmt:
            raise typer.BadParameter(f"unknown image format(s) {bad_fmt}", param_hint="--export")
        result = run_report(paths, out, proto, executor=where, title=title, export=formats,
                            progress=True)
    c = result.counts
    summary = Table(title="step results")
    for col in ("computed", "cached", "failed", "models loaded", "seconds"):
        summary.add_column(col)
    summary.add_row(str(c["computed"]), str(c["cached"]), str(c["failed"]),
                    str(c["models_loaded"]), f"{result.seconds:.0f}")
    console.print(summary)
    if len(result.failures):
        console.print(f"[yellow]{len(result.failures)} failed[/] (reported in the table and the "
                      "HTML; the rest finished):")
        for f in result.failures.head(10).itertuples():
            console.print(f"  {f.trajectory}@{f.step} {f.protocol_step}: {f.error}",
                          highlight=False, markup=False)
    if formats and not result.figures:
        console.print("[yellow]note[/]: no static images written (kaleido is not installed or "
                      "found no Chromium)")
    console.print(f"wrote {out / 'table.parquet'}, {out / 'table.csv'} and {result.html}"
                  + (f" (+ {len(result.figures)} images in {out / 'figures'})"
                     if result.figures else ""))
