"""``safetygeo demo``: the whole product on the toy world, in a few minutes on a CPU.

The pipeline is :func:`safetygeo.reports.demo.run_pipeline` (carrier selection on held-out
splits, ablation / addition against matched random directions, the same test on
generations, behaviour, H/R geometry, ``report.html`` and ``summary.json``); this module
hands it the toy world: the cached base and aligned anchor (:mod:`safetygeo.toy.zoo`), the
world's hash splits and its behaviour sets.

Example:
    >>> DemoSettings.quick().n_null
    16
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from safetygeo.reports.demo import DemoSettings, DemoWorld, run_pipeline

__all__ = ["BEHAVIOR_HEADLINES", "DemoSettings", "run_demo", "toy_demo_world"]

#: (set, metric) pairs shown in the summary: harmful requests refused and attack success,
#: look-alikes and benign tasks refused (over-refusal), benign task accuracy
BEHAVIOR_HEADLINES = (("toy-harmful", "full_refusal_rate"), ("toy-harmful", "asr"),
                      ("toy-lookalike", "over_refusal_rate"), ("toy-tasks", "over_refusal_rate"),
                      ("toy-tasks", "exact_match"))


def toy_demo_world(seed: int = 0, cache_dir: str | os.PathLike[str] | None = None, *,
                   progress: bool = False) -> DemoWorld:
    """The toy world as the demo pipeline takes it (models built if absent)."""
    from safetygeo.toy.world import ToyWorld
    from safetygeo.toy.zoo import ensure_toy, load_toy, toy_behavior_sets, toy_splits

    t0 = time.perf_counter()
    infos = ensure_toy(("anchor",), seed=seed, cache_dir=cache_dir, progress=progress)
    anchor = load_toy("anchor", seed=seed, cache_dir=cache_dir)
    base = load_toy("base", seed=seed, cache_dir=cache_dir)
    world = ToyWorld(seed)
    return DemoWorld(
        name="toy", title="safetygeo demo: the geometry of refusal in the toy safety world",
        intro=("A tiny Llama trained on CPU through safetygeo's training wrapper: a helpful-only "
               "base, then refusal SFT into an aligned anchor. Everything below is measured on "
               "held-out prompts of the toy world; causal effects are shown next to matched "
               "random-direction nulls."),
        base=base, anchor=anchor, infos=infos, splits=toy_splits(seed),
        behavior_sets=lambda n: toy_behavior_sets(world, split="test", n=n, seed=seed),
        headlines=BEHAVIOR_HEADLINES, seed=seed, load_seconds=time.perf_counter() - t0)


def run_demo(
    out: str | os.PathLike[str] = "artifacts/demo",
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    settings: DemoSettings = DemoSettings(),
    progress: bool = True,
    say: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Run the demo on the toy world; returns the summary written to ``out/summary.json``."""
    say("toy models ...")
    world = toy_demo_world(seed, cache_dir, progress=progress)
    return run_pipeline(world, out, settings=settings, progress=progress, say=say)
