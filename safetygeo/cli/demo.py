"""``demo``: the whole pipeline on the embedded toy safety world."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from safetygeo.cli.app import app
from safetygeo.cli.common import OutDir, check_out, console, guarded


@app.command()
def demo(
    out: OutDir = Path("artifacts/demo"),
    seed: Annotated[int, typer.Option(help="Toy-world seed (models are cached per seed).")] = 0,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Where toy models are cached (default $SAFETYGEO_TOY_DIR or artifacts/toy).")] = None,
    quick: Annotated[bool, typer.Option(help="Small statistics (smoke test).")] = False,
    rebuild: Annotated[bool, typer.Option(help="Retrain the toy models even if cached.")] = False,
) -> None:
    """Run the whole pipeline on the toy safety world (CPU, a few minutes).

    Builds (or loads) a tiny aligned Llama, selects its admissible refusal carrier, tests it
    against matched random directions, measures behaviour and writes OUT/report.html.
    """
    from safetygeo.toy.demo import DemoSettings, run_demo
    from safetygeo.toy.zoo import ensure_toy

    check_out(out)
    settings = DemoSettings.quick() if quick else DemoSettings()
    with guarded():
        if rebuild:
            console.print("[bold]retraining the toy models[/]")
            ensure_toy(("anchor",), seed=seed, cache_dir=cache_dir, rebuild=True)
        summary = run_demo(out, seed=seed, cache_dir=cache_dir, settings=settings,
                           progress=True, say=lambda msg: console.print(f"[bold]{msg}[/]"))
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
                      f"{e['null_q975']:.2f}], p={e['p']:.3g})")
    else:
        console.print("[yellow]no admissible carrier[/]: " + "; ".join(summary["carrier"]["notes"]))
    console.print(f"wrote {out / 'report.html'} ({sum(summary['timings_s'].values()):.0f} s)")
