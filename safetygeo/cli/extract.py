"""``extract``: per-layer × per-position activation means of prompt sets."""

from pathlib import Path
from typing import Annotated, Literal, Optional, cast

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
    parse_layers,
)


@app.command()
@model_command
def extract(
    model: ModelArg,
    sets: SetOpt,
    model_opts: ModelOptions,
    out: OutDir = Path("artifacts/extract"),
    layers: Annotated[str, typer.Option(help="all, 3, 0,2,4 or 0-3 (L = final-norm input).")] = "all",
    positions: Annotated[str, typer.Option(
        help="post_instruction, t_inst, last, t_inst+post_instruction, or offsets -1,-2.")
    ] = "post_instruction",
    batch_size: BatchSize = BATCH_SIZE,
    second_moment: Annotated[Optional[str], typer.Option(help="diag or full.")] = None,
    keep_vectors: Annotated[bool, typer.Option(help="Also save per-prompt vectors.")] = False,
    backend: Annotated[str, typer.Option(help="native, nnsight or transformer_lens.")] = "native",
    limit: Limit = None,
) -> None:
    """Extract activation means (float64) for each --set NAME=SPEC.

    Writes OUT/NAME.safetensors (+ NAME.json provenance) per set.
    """
    from safetygeo.activations import extract_activations

    if second_moment not in (None, "diag", "full"):
        raise typer.BadParameter(f"{second_moment!r}; use diag or full", param_hint="--second-moment")
    if backend not in ("native", "nnsight", "transformer_lens"):
        raise typer.BadParameter(f"{backend!r}; use native, nnsight or transformer_lens",
                                 param_hint="--backend")
    pos: str | list[int] = positions
    if positions.lstrip().startswith("-"):
        try:
            pos = [int(p) for p in positions.split(",")]
        except ValueError:
            raise typer.BadParameter(f"cannot parse {positions!r}", param_hint="--positions") from None
    layer_sel = parse_layers(layers)
    check_out(out)
    named = load_sets(sets, None, limit=limit)
    with guarded():
        h = load_handle(model, model_opts)
        table = Table(title=f"activations of {h.model_id}")
        for col in ("set", "prompts", "layers", "positions", "file"):
            table.add_column(col)
        for name, ps in named.items():
            stats = extract_activations(
                h, ps, layers=layer_sel, positions=pos, batch_size=batch_size,
                second_moment=cast(Optional[Literal["diag", "full"]], second_moment),
                keep_vectors=keep_vectors, backend=backend,
            )
            path = out / f"{name}.safetensors"
            stats.save(str(path))
            table.add_row(name, str(stats.count), str(len(stats.layers)),
                          ",".join(stats.positions.labels), str(path))
    console.print(table)
