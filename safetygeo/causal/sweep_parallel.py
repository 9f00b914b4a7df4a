"""Sweep cells on an executor (e.g. Ray tasks): :func:`run_sweep_parallel`.

The same sweep as :func:`~safetygeo.causal.sweep.run_sweep` — same cells, same matched
nulls (the null directions depend only on ``NullSpec.seed``, not on which cells run where),
same table, same identity header and resume rules — with the cells grouped into chunks
(one per direction for ablation, one per direction × layer for addition) that run as
independent tasks. Each task loads the model with ``loader()`` (once per worker process,
remembered under ``loader_key``), runs :func:`run_sweep` on its chunk and returns the rows;
the driver alone writes ``out`` (after every chunk, so a killed sweep resumes) and computes
the Benjamini–Hochberg q-values across the whole sweep.

Example:
    >>> import tempfile, pathlib
    >>> from safetygeo._executor import LocalExecutor
    >>> from safetygeo.interventions.nulls import NullSpec
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> kw = dict(harmful=pm.harmful[:2], harmless=pm.harmless[:2], ops=("ablate", "add"),
    ...           layers=[1, 2], nulls=NullSpec(k=2), progress=False)
    >>> par = run_sweep_parallel(pm.handle, {"r": pm.direction}, loader=lambda: pm.handle,
    ...                          executor=LocalExecutor(), **kw)
    >>> ser = run_sweep(pm.handle, {"r": pm.direction}, **kw)
    >>> pd.testing.assert_frame_equal(par, ser)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import Float
from torch import Tensor

from safetygeo import __version__
from safetygeo._executor import Executor
from safetygeo._validate import prompt_list
from safetygeo.activations.refusal import RefusalScoring
from safetygeo.behavior.generate import GenerationSettings
from safetygeo.causal.effects import Op
from safetygeo.causal.sweep import (
    Cell,
    _key,
    _resume,
    _write,
    cell_vectors,
    row_key,
    run_sweep,
    sweep_cells,
    sweep_identity,
)
from safetygeo.errors import SafetyGeoError
from safetygeo.interventions.hooks import as_directions
from safetygeo.interventions.intervention import Intervention
from safetygeo.interventions.nulls import NullSpec
from safetygeo.models.handle import ModelHandle
from safetygeo.results import p_for_bh
from safetygeo.stats.pvalues import benjamini_hochberg

__all__ = ["run_sweep_parallel"]

_HANDLES: dict[str, ModelHandle] = {}


def _handle(loader: Callable[[], ModelHandle], key: str) -> ModelHandle:
    """The model of this worker process (loaded once per ``key``)."""
    if key not in _HANDLES:
        _HANDLES.clear()  # one model per worker at a time
        _HANDLES[key] = loader()
    return _HANDLES[key]


def _chunk(loader: Callable[[], ModelHandle], key: str, cells: list[Cell],
           kw: dict[str, Any]) -> pd.DataFrame:
    handle = _handle(loader, key)
    t = run_sweep(handle, {}, interventions=cells, out=None, progress=False, **kw)
    return t.drop(columns=["q"], errors="ignore")


def run_sweep_parallel(
    handle: ModelHandle,
    directions: Mapping[str, Float[Tensor, " d"]],
    *,
    loader: Callable[[], ModelHandle],
    executor: Executor,
    loader_key: str | None = None,
    harmful: Sequence[str],
    harmless: Sequence[str],
    ops: Sequence[Op] = ("ablate", "add"),
    layers: Sequence[int] | str = "all",
    alphas: Sequence[float] = (1.0,),
    interventions: Mapping[str, Intervention] | Sequence[Intervention | Cell] = (),
    nulls: NullSpec = NullSpec(),
    scoring: RefusalScoring = RefusalScoring(),
    generations: GenerationSettings | None = None,
    gen_nulls: NullSpec = NullSpec(k=16, max_variants=8),
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    num_gpus: float = 0.0,
    num_cpus: float = 1.0,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`~safetygeo.causal.sweep.run_sweep` with its cells mapped over ``executor``.

    Args:
        handle: the model in the driver (for validation and the identity header only).
        loader: picklable ``() -> ModelHandle`` that loads the same model in a worker.
        executor: where chunks run (:func:`safetygeo._executor.make_executor`).
        loader_key: names the model for the per-worker cache (default: ``handle.model_id``).
        num_gpus, num_cpus: resources of each task.
        Everything else: as :func:`~safetygeo.causal.sweep.run_sweep`.

    Raises:
        SettingsError: ``out`` holds a sweep with other settings.
        SafetyGeoError: a chunk failed (the message names it; finished chunks are kept in
            ``out``, a rerun resumes).
    """
    from tqdm.auto import tqdm

    if not directions and not interventions:
        raise SafetyGeoError("no directions or interventions to sweep")
    harmful, harmless = prompt_list(harmful, "harmful"), prompt_list(harmless, "harmless")
    vecs = {n: as_directions(v, handle.d_model, normalize=False)[0] for n, v in directions.items()}
    layer_sel = handle.check_layers(layers)
    alphas = [float(a) for a in alphas]
    cells = [(n, iv.resolved(handle))
             for n, iv in sweep_cells(vecs, ops, layer_sel, alphas, interventions)]
    ids = scoring.ids(handle.tokenizer)
    ident = sweep_identity(handle, harmful, harmless, nulls=nulls, token_ids=ids,
                           generations=generations, gen_nulls=gen_nulls if generations else None,
                           directions={**cell_vectors(cells), **vecs})
    ident["safetygeo_version"] = __version__
    path = Path(out) if out is not None else None
    done = _resume(path, ident, overwrite) if path is not None else pd.DataFrame()
    have = {row_key(r) for r in done.itertuples()} if len(done) else set()
    todo = [(n, iv) for n, iv in cells if _key(n, **iv.columns()) not in have]
    groups: dict[tuple[str, str, str, float], list[Cell]] = {}
    for name, iv in todo:
        c = iv.columns()
        groups.setdefault((name, c["op"], c["site"], c["layer"]), []).append((name, iv))
    kw = dict(harmful=harmful, harmless=harmless, nulls=nulls,
              scoring=RefusalScoring(token_ids=tuple(ids)), generations=generations,
              gen_nulls=gen_nulls, batch_size=batch_size)
    key = loader_key or handle.model_id
    chunks = list(groups.items())
    items = [(loader, key, group, kw) for _, group in chunks]
    rows = [done] if len(done) else []
    failed = []
    with tqdm(total=len(items), desc="sweep", disable=not progress) as bar:
        for i, outcome in executor.map(_chunk, items, num_gpus=num_gpus, num_cpus=num_cpus):
            bar.update()
            if not outcome.ok:
                name, op, site, lyr = chunks[i][0]
                failed.append(f"{name} {op}{'' if lyr != lyr else f' {site}@{int(lyr)}'}: "
                              f"{outcome.error}")
                continue
            rows.append(outcome.value)
            if path is not None:
                _write(path, pd.concat(rows, ignore_index=True), ident)
    if failed:
        raise SafetyGeoError(f"{len(failed)} sweep chunk(s) failed (finished ones are kept; "
                             "rerun to resume): " + "; ".join(failed[:5]))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    order = {_key(n, **iv.columns()): i for i, (n, iv) in enumerate(cells)}
    if len(table):  # the serial sweep's row order
        rank = [order.get(row_key(r), len(order)) for r in table.itertuples()]
        table = table.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)
    table["q"] = np.nan
    for _, grp in table.groupby("metric"):
        table.loc[grp.index, "q"] = benjamini_hochberg(p_for_bh(grp))
    if path is not None:
        _write(path, table, ident)
    return table
