"""``attack-gcg``: GCG adversarial suffixes (Zou et al. 2023) against a model."""

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional, cast

import typer
from rich.table import Table

from safetygeo.cli.app import app
from safetygeo.cli.common import (
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


@app.command("attack-gcg")
@model_command
def attack_gcg(
    model: ModelArg,
    sets: SetOpt,
    model_opts: ModelOptions,
    target: Annotated[Optional[str], typer.Option(
        help="Target for prompts without one (e.g. 'Sure, here is').")] = None,
    out: OutDir = Path("artifacts/gcg"),
    num_steps: Annotated[int, typer.Option(min=0, help="GCG steps per prompt.")] = 250,
    search_width: Annotated[int, typer.Option(min=1, help="Candidates per step.")] = 512,
    topk: Annotated[int, typer.Option(min=1, help="Top-k tokens per position.")] = 256,
    n_replace: Annotated[int, typer.Option(min=1, help="Positions swapped per candidate.")] = 1,
    suffix_init: Annotated[str, typer.Option(help="Initial suffix.")] = " ".join(["x"] * 20),
    eval_batch_size: Annotated[int, typer.Option(min=1, help="Candidates per forward pass.")] = 128,
    early_stop: Annotated[bool, typer.Option(help="Stop a prompt once the target is greedy.")] = False,
    universal: Annotated[bool, typer.Option(help="One suffix for all prompts (mean loss).")] = False,
    seed: Annotated[int, typer.Option(help="Candidate sampling seed.")] = 0,
    limit: Limit = None,
) -> None:
    """Optimize GCG suffixes against MODEL for --set harmful=SPEC; write OUT/gcg.json.

    gcg.json holds the config, the model's provenance and, per prompt (or once with
    --universal), the instruction, target, suffix, adversarial prompt, losses and whether
    the target is greedily produced.
    """
    from safetygeo._io import atomic_write_json
    from safetygeo.attacks.gcg import GCGConfig, gcg_init, gcg_run
    from safetygeo.errors import SafetyGeoError

    check_out(out)
    ps = load_sets(sets, ("harmful",), limit=limit, required=("harmful",),
                   labels={"harmful": "harmful"})["harmful"]
    tgts = [t if t is not None else target for t in (ps.targets or [None] * len(ps))]
    if any(t is None for t in tgts):
        raise typer.BadParameter("the harmful set has prompts without a target; pass --target",
                                 param_hint="--target")
    with guarded():
        cfg = GCGConfig(num_steps=num_steps, search_width=search_width, topk=topk,
                        n_replace=n_replace, suffix_init=suffix_init, seed=seed,
                        eval_batch_size=eval_batch_size, early_stop=early_stop)
        h = load_handle(model, model_opts)
        state = gcg_init(h, list(ps.prompts), cast(list[str], tgts), cfg,  # no None: checked above
                         universal=universal)
        results = gcg_run(h, state)
        if not results:
            raise SafetyGeoError("GCG returned no results")
    rows = [{**asdict(r), "prompts": r.prompts} for r in results]
    atomic_write_json(out / "gcg.json", {"config": asdict(cfg), "model": h.describe(),
                                         "prompt_set": ps.name, "results": rows})
    table = Table(title=f"GCG against {h.model_id}")
    for col in ("instruction", "suffix", "initial loss", "best loss", "solved"):
        table.add_column(col)
    for r in results[:20]:
        table.add_row(r.instructions[0][:40], repr(r.suffix)[:40], f"{r.initial_loss:.3f}",
                      f"{r.best_loss:.3f}", str(r.solved))
    console.print(table)
    console.print(f"{sum(r.solved for r in results)}/{len(results)} solved; wrote {out / 'gcg.json'}")
