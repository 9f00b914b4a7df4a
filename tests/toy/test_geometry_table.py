"""The zoo geometry table: carrier fallback and skipping stages that are not built."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from safetygeo.toy.geometry import GEOMETRY_COLUMNS, carrier_or_best, stage_geometry, zoo_geometry


def test_carrier_fallback_takes_the_lowest_bypass_below_the_cutoff() -> None:
    cands = pd.DataFrame({"layer": [1, 2, 6, 3], "position": ["eoi-1"] * 4,
                          "bypass": [0.5, -1.0, -9.0, float("nan")]})
    sel = SimpleNamespace(chosen=None, candidates=cands, meta={"layer_cutoff": 6})
    assert carrier_or_best(sel) == (2, "eoi-1", False)
    assert carrier_or_best(SimpleNamespace(chosen=(4, "eoi-2"))) == (4, "eoi-2", True)


def test_stages_that_are_not_built_are_skipped(tmp_path: Path) -> None:
    table = zoo_geometry(("anchor", "r2d2"), cache_dir=tmp_path)
    assert list(table.columns) == list(GEOMETRY_COLUMNS) and len(table) == 0


def test_a_planted_checkpoint_gets_a_geometry_row() -> None:
    from safetygeo.behavior.generate import GenerationSettings
    from safetygeo.interventions.nulls import NullSpec
    from safetygeo.toy.planted import planted_two_dimensional_model

    pm = planted_two_dimensional_model(n_prompts=64)
    splits = {c: {"train": p[:24], "val": p[24:40], "test": p[40:]}
              for c, p in (("harmful", pm.harmful), ("harmless", pm.harmless))}
    row, dim = stage_geometry(pm.handle, splits, stage="planted-2d", k_max=3, n_boot=50,
                              nulls=NullSpec(k=19, max_variants=20),
                              settings=GenerationSettings(max_new_tokens=1))
    assert list(row) == list(GEOMETRY_COLUMNS)
    assert row["stage"] == "planted-2d" and 1 <= row["carrier_layer"] <= 4
    assert len(dim.points) >= 1 and row["erank"] >= 1.0
