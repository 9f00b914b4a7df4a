"""Sweep cells on an executor give the serial sweep: same rows, same identity header (a
serial rerun resumes a parallel sweep), failures named; Ray with 2 local workers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from safetygeo._executor import LocalExecutor
from safetygeo.causal import run_sweep
from safetygeo.causal.sweep_parallel import run_sweep_parallel
from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.nulls import NullSpec
from safetygeo.toy.planted import planted_refusal_model


def _planted():
    return planted_refusal_model().handle


def _kw(pm) -> dict:
    return dict(harmful=pm.harmful[:3], harmless=pm.harmless[:3], ops=("ablate", "add"),
                layers=[1, 2, 3], alphas=[1.0, 4.0], nulls=NullSpec(k=4, seed=1), progress=False)


def test_failed_chunk_is_named_and_finished_ones_kept(tmp_path: Path) -> None:
    pm = planted_refusal_model()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("GPU fell off the bus")
        return pm.handle

    from safetygeo.causal import sweep_parallel

    sweep_parallel._HANDLES.clear()
    out = tmp_path / "s.parquet"
    with pytest.raises(SafetyGeoError, match="chunk\\(s\\) failed.*GPU fell off the bus"):
        # two model keys: the second chunk's worker must load again and fails
        run_sweep_parallel(pm.handle, {"r": pm.direction, "s": -pm.direction}, loader=flaky,
                           loader_key=None, executor=_Reloading(), out=out, **_kw(pm))
    done = pd.read_parquet(out)
    assert len(done) and set(done.direction) == {"r"}
    sweep_parallel._HANDLES.clear()
    table = run_sweep_parallel(pm.handle, {"r": pm.direction, "s": -pm.direction},
                               loader=lambda: pm.handle, executor=LocalExecutor(), out=out,
                               **_kw(pm))
    assert set(table.direction) == {"r", "s"}


class _Reloading(LocalExecutor):
    """Local executor whose workers forget their model between directions."""

    def map(self, fn, items, **kw):
        from safetygeo.causal import sweep_parallel

        last = None
        for i, args in enumerate(items):
            if last is not None and args[2] != last:
                sweep_parallel._HANDLES.clear()
            last = args[2]
            yield from ((i, o) for _, o in super().map(fn, [args], **kw))


@pytest.mark.slow
def test_ray_sweep_equals_serial_and_resumes_serially(ray_executor, tmp_path: Path) -> None:
    pm = planted_refusal_model()
    out = tmp_path / "par.parquet"
    par = run_sweep_parallel(pm.handle, {"r": pm.direction}, loader=_planted,
                             loader_key="planted", executor=ray_executor, out=out, **_kw(pm))
    ser = run_sweep(pm.handle, {"r": pm.direction}, **_kw(pm))
    pd.testing.assert_frame_equal(par, ser, check_exact=False, rtol=1e-9)
    # the serial sweep accepts the parallel file's identity: nothing left to compute
    again = run_sweep(pm.handle, {"r": pm.direction}, out=out, **_kw(pm))
    pd.testing.assert_frame_equal(again.sort_values(["op", "layer", "alpha", "metric"])
                                  .reset_index(drop=True),
                                  par.sort_values(["op", "layer", "alpha", "metric"])
                                  .reset_index(drop=True), check_exact=False, rtol=1e-9)
