"""``demo``: the whole pipeline on the embedded toy safety world."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from safetygeo.cli.app import app
from safetygeo.cli.common import OutDir, check_out, console, guarded, print_table

#: The behaviour summary's columns (``toy.demo.BEHAVIOR_HEADLINES``) under short headers.
BEHAVIOR_COLUMNS = {"condition": "condition",
                    "harmful full_refusal_rate": "harmful refused",
                    "harmful asr": "harmful ASR",
                    "lookalike over_refusal_rate": "look-alike refused",
                    "tasks over_refusal_rate": "tasks refused",
                    "tasks exact_match": "tasks exact match"}


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
    rows = [{"condition": cond, **row} for cond, row in summary["behavior"].items()]
    print_table(rows, BEHAVIOR_COLUMNS, title="toy world: behaviour on held-out prompts",
                fmt=".2f", note=f"every metric with CIs: {out / 'report.html'}")
    c = summary["carrier"]["chosen"]
    if c is not None:
        e = summary["ablation"]["d_refusal_harmful"]
        console.print(f"carrier: layer {c['layer']} {c['position']}; ablation moves the harmful "
                      f"refusal score by {e['real']:.2f} (nulls 95%: [{e['null_q025']:.2f}, "
                      f"{e['null_q975']:.2f}], p={e['p']:.3g})")
    else:
        console.print("[yellow]no admissible carrier[/]: " + "; ".join(summary["carrier"]["notes"]))
    console.print(f"wrote {out / 'report.html'} ({sum(summary['timings_s'].values()):.0f} s)")
