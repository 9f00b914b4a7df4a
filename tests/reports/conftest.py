"""Shared fixtures of the trajectory-report tests: the toy zoo (refusal SFT, R2D2, harmful
SFT) and one report over it with a reduced protocol (few prompts, K = 4 nulls, 20
bootstrap resamples, a subset of steps), computed once per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import safetygeo.toy  # noqa: F401  (registers the toy: sets and judge)
from safetygeo.reports import CheckpointSelection, Protocol
from tests.training.conftest import toy  # noqa: F401  (the shared training fixture)

#: anchor: base + 300; attacked: base + 30; r2d2: base + 30 + 120 (7 checkpoints)
STEPS = (30, 120, 300)


def small_protocol(steps: tuple[int, ...] = STEPS, *, base: bool = True) -> Protocol:
    """Protocol.toy(), reduced to keep the tests fast."""
    p = Protocol.toy()
    p = p.replace(sets=dataclasses.replace(p.sets, limit=12),
                  checkpoints=CheckpointSelection(base=base, steps=steps))
    return p.with_steps(
        carriers={"test_top_k": 1, "layers": [3, 4, 5, 6]}, rank={"n_boot": 20},
        drift={"n_boot": 20, "layers": [4, 5]}, coupling={"n_boot": 20}, ablation={"nulls": {"k": 4}},
        behavior={"max_new_tokens": 12, "n_boot": 20},
        transfer={"n_prompts": 2, "max_new_tokens": 12, "n_boot": 20,
                  "gcg": {"num_steps": 2, "search_width": 8, "topk": 4}})


@pytest.fixture(scope="session")
def toy_zoo(toy_built: dict) -> dict[str, Path]:
    """Folders of the toy trajectories (the R2D2 one is built here if absent, ~4 min)."""
    from safetygeo.toy.zoo import ensure_toy, load_toy_trajectory

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ensure_toy(("r2d2",))
    finally:
        torch.set_num_threads(threads)
    return {n: Path(load_toy_trajectory(n).path) for n in ("anchor", "attacked", "r2d2")}


@pytest.fixture(scope="session")
def report(toy_zoo: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """One in-process report over the three trajectories (and, for the incremental tests,
    the counts of a first run over fewer checkpoints into the same folder)."""
    from safetygeo.reports import run_report

    out = tmp_path_factory.mktemp("report")
    paths = [toy_zoo["anchor"], toy_zoo["attacked"], toy_zoo["r2d2"]]
    first = run_report(paths, out, small_protocol((30, 300)), html=False)
    full = run_report(paths, out, small_protocol())
    full.first = first  # type: ignore[attr-defined]
    full.paths = paths  # type: ignore[attr-defined]
    return full

