"""``safetygeo demo --world real``: the demo pipeline on SmolLM2-135M-Instruct.

The same steps as the toy demo (:func:`safetygeo.reports.demo.run_pipeline`) on a real
pretrained chat model: ``instruct`` (as shipped, no refusal training) is the base and the
refusal-SFT ``anchor`` (:mod:`safetygeo.real.zoo`) the aligned model. Carrier directions
come from the harmful / harmless *train* splits, selection from *val*, every reported number
from held-out *test* prompts — capped at ``n_test`` per class so the run fits ~10 minutes on
2 CPU cores once the stages are cached.

Example:
    >>> real_demo_settings().gen_null
    16
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from safetygeo.data import PromptSet
from safetygeo.real.world import RealWorld
from safetygeo.reports.demo import DemoSettings, DemoWorld, run_pipeline

__all__ = ["REAL_HEADLINES", "real_demo_settings", "real_demo_world", "run_real_demo"]

#: harmful requests refused / attack success, harmless instructions and XSTest's safe
#: look-alikes refused (over-refusal)
REAL_HEADLINES = (("real-harmful", "full_refusal_rate"), ("real-harmful", "asr"),
                  ("real-harmless", "over_refusal_rate"), ("real-xstest-safe", "over_refusal_rate"))


def real_demo_settings(quick: bool = False) -> DemoSettings:
    """Statistics sized for a 135M model on 2 CPU cores (``quick``: a smoke run)."""
    if quick:
        return DemoSettings(n_null=8, sweep_null=4, gen_null=4, max_new_tokens=16, n_boot=200,
                            behavior_n=8)
    return DemoSettings(n_null=64, sweep_null=16, gen_null=16, max_new_tokens=24, n_boot=1000,
                        behavior_n=48)


def _behavior_sets(world: RealWorld, n: int | None) -> dict[str, PromptSet]:
    def take(xs: list[str]) -> list[str]:
        return xs if n is None else xs[:n]

    return {
        "real-harmful": PromptSet(take(world.prompts("harmful", "test")), name="real-harmful",
                                  label="harmful"),
        "real-harmless": PromptSet(take(world.prompts("harmless", "test")), name="real-harmless",
                                   label="safe"),
        "real-xstest-safe": PromptSet(take(world.prompts("xstest_safe")), name="real-xstest-safe",
                                      label="safe"),
    }


def real_demo_world(seed: int = 0, cache_dir: str | os.PathLike[str] | None = None, *,
                    n_test: int = 64, progress: bool = False) -> DemoWorld:
    """The real-language world as the demo pipeline takes it (the anchor is built if absent:
    ``benchmarks/RESULTS.md`` says how long that takes)."""
    from safetygeo.real.zoo import ensure_real, load_real

    t0 = time.perf_counter()
    info = ensure_real("anchor", seed=seed, cache_dir=cache_dir, progress=progress)
    anchor = load_real("anchor", seed=seed, cache_dir=cache_dir)
    base = load_real("instruct", cache_dir=cache_dir)
    world = RealWorld()
    splits = world.splits()
    for cls in ("harmful", "harmless"):
        splits[cls]["test"] = splits[cls]["test"][:n_test]
        splits[cls]["val"] = splits[cls]["val"][:n_test]
    return DemoWorld(
        name="real",
        title="safetygeo demo: the geometry of refusal in SmolLM2-135M-Instruct",
        intro=("A real pretrained chat model (SmolLM2-135M-Instruct, installed from the package "
               "index as GGUF) that answers harmful requests as shipped, given refusal by "
               "safetygeo's refusal SFT (LoRA) on public harmful / harmless train prompts. "
               "Everything below is measured on held-out prompts; causal effects are shown next "
               "to matched random-direction nulls."),
        base=base, anchor=anchor, infos={"anchor": info}, splits=splits,
        behavior_sets=lambda n: _behavior_sets(world, n), headlines=REAL_HEADLINES, seed=seed,
        load_seconds=time.perf_counter() - t0)


def run_real_demo(
    out: str | os.PathLike[str] = "artifacts/demo-real",
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    settings: DemoSettings | None = None,
    progress: bool = True,
    say: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Run the demo on the real-language world; returns ``out/summary.json``'s content."""
    say("real-language models ...")
    world = real_demo_world(seed, cache_dir, progress=progress)
    return run_pipeline(world, out, settings=settings or real_demo_settings(), progress=progress,
                        say=say)
