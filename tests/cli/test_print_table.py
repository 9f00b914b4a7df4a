"""``print_table``: the few columns that matter, readable at 80 columns, nothing cut."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from rich.console import Console

from safetygeo.cli.carriers import CARRIER_COLUMNS
from safetygeo.cli.common import print_table
from safetygeo.cli.demo import BEHAVIOR_COLUMNS
from safetygeo.errors import SafetyGeoError
from safetygeo.real.demo import REAL_HEADLINES
from safetygeo.toy.demo import BEHAVIOR_HEADLINES


def render(monkeypatch, *args, **kw) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    buf = io.StringIO()
    print_table(*args, out=Console(file=buf), **kw)  # the width comes from COLUMNS
    return buf.getvalue()


def test_a_wide_table_prints_its_key_columns_within_80_columns(monkeypatch) -> None:
    """A carrier-candidate table with 20 columns: only the chosen ones, every value whole."""
    row = {"layer": 11, "position": "post_instruction-1", "bypass": 0.8123456,
           "induce": 0.6, "kl": 0.0123456, "test_bypass": 0.75, "test_induce": None,
           **{f"extra_{i}": 1.0 for i in range(13)}}
    text = render(monkeypatch, pd.DataFrame([row]), CARRIER_COLUMNS, title="carrier",
                  note="every candidate: out/candidates.parquet")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert "…" not in text and "extra_" not in text
    for value in ("11", "post_instruction-1", "0.812", "0.0123", "0.75", "–", "induce",
                  "every candidate: out/candidates.parquet"):
        assert value in text, (value, text)


@pytest.mark.parametrize("world, headlines", [("toy", BEHAVIOR_HEADLINES),
                                              ("real", REAL_HEADLINES)])
def test_demo_behaviour_table_is_readable_at_80_columns(monkeypatch, world, headlines) -> None:
    """The demo's rows (every headline the summary has) under short headers, per world."""
    keys = [f"{s.removeprefix(world + '-')} {m}" for s, m in headlines]
    assert set(BEHAVIOR_COLUMNS[world]) == {"condition", *keys}  # no headline missing or stale
    rows = [{"condition": c, **{k: v for k, v in zip(keys, (0.95, 0.05, 0.125, None, 0.5))}}
            for c in ("anchor", "base", "anchor, carrier ablated")]
    text = render(monkeypatch, rows, BEHAVIOR_COLUMNS[world], fmt=".2f")
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text and "full_refu" not in text
    for value in ("anchor", "base", "carrier", "ablated", "0.95", "0.05", "0.12", "–"):
        assert value in text, (value, text)


def test_unknown_columns_are_named(monkeypatch) -> None:
    with pytest.raises(SafetyGeoError, match=r"no column\(s\) \['kl'\]"):
        render(monkeypatch, [{"layer": 1}], ["layer", "kl"])
