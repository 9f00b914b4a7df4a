"""Resumable sweeps of null-controlled interventions: directions × ops × layers × strengths,
plus any :class:`~safetygeo.interventions.intervention.Intervention` values (e.g. attention
heads ablated against random other heads of their layer).

:func:`run_sweep` maps :func:`~safetygeo.causal.effects.intervention_effect` (and, with
``generations=``, :func:`~safetygeo.causal.generation.generation_refusal_effect`) over every
cell, appends each finished cell to a Parquet file (atomically) and skips cells already
there, so a killed sweep resumes where it stopped. Benjamini–Hochberg q-values are computed
across the sweep, per metric.

**Cost follows evidence.** By default every cell runs a sequential null test
(``NullSpec.sequential()``: Besag–Clifford with ``h = 4``, at most 64 nulls, a pilot of 16
then 8 per step; :mod:`safetygeo.stats.sequential`): a cell whose metrics are all clearly
null stops after the pilot (17 directions instead of 65) or one step more, a strong cell
uses all 64 nulls and gets a tail estimate of p below the Monte Carlo floor 1/65
(:mod:`safetygeo.stats.tail`). Each
row says how many nulls its p used (``n_null_used``), why it stopped (``stop_reason``),
and which p BH used (``p_used``: ``"tail"`` where the tail estimate is below the exact p,
else ``"exact"``; the exact ``p`` is always kept). ``nulls=NullSpec(k=64)`` gives the
fixed-K sweep of before.

**Identity header.** The Parquet file carries the sweep's identity in its metadata: the
model's fingerprint, hashes of the harmful and harmless prompts, the null specification
(K, kind, seed, covariance hash; for sequential tests h, k_max and batch; tail estimates on
or off), the refusal token ids, the generation settings and a hash
of every direction (and of every intervention's vector / basis). Rerunning into the same file with any of these changed is refused with
the differing fields named (``overwrite=True`` starts afresh); adding directions, layers,
strengths or operations only adds cells.

Example:
    >>> import tempfile, pathlib
    >>> from safetygeo.interventions.nulls import NullSpec
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "sweep.parquet"
    >>> kw = dict(harmful=pm.harmful[:4], harmless=pm.harmless[:4], ops=("add",), layers=[2],
    ...           alphas=[4.0], out=out, progress=False)
    >>> t = run_sweep(pm.handle, {"r": pm.direction}, nulls=NullSpec(k=8), **kw)
    >>> sorted(t.metric), float(t[t.metric == "d_refusal_harmless"].p.iloc[0]) <= 1 / 9
    (['d_refusal_harmful', 'd_refusal_harmless', 'kl_harmless'], True)
    >>> run_sweep(pm.handle, {"r": pm.direction}, nulls=NullSpec(k=4), **kw)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    safetygeo.errors.SettingsError: ... nulls.k: 8 (saved) != 4 (this run)...

Head ablation is a cell like any other (``site = attn_heads``, ``heads``, nulls = the other
heads of the layer; the planted model's copying head is head 0 of layer 0):

    >>> from safetygeo.interventions.intervention import HeadAblation
    >>> t = run_sweep(pm.handle, {}, interventions=[HeadAblation(0, (0,))], nulls=NullSpec(k=8),
    ...               **{**kw, "out": None})
    >>> r = t[t.metric == "d_refusal_harmful"].iloc[0]
    >>> r.direction, r.op, r.site, int(r.layer), r.heads, int(r.k), float(r.p)
    ('heads 0:0', 'head_ablate', 'attn_heads', 0, '0', 3, 0.25)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo import __version__
from safetygeo._identity import identity_diff, sha256_json, sha256_texts
from safetygeo._io import atomic_path
from safetygeo._validate import finite_float, positive_int, prompt_list
from safetygeo.activations.refusal import RefusalScoring
from safetygeo.behavior.generate import GenerationSettings
from safetygeo.causal.effects import Op, intervention_effect, refusal_baseline
from safetygeo.errors import ArtifactError, SafetyGeoError, SettingsError
from safetygeo.interventions.hooks import as_directions
from safetygeo.interventions.intervention import OPS, HeadAblation, Intervention, from_op
from safetygeo.interventions.nulls import NullSpec
from safetygeo.models.fingerprint import model_fingerprint
from safetygeo.models.handle import ModelHandle
from safetygeo.results import p_for_bh
from safetygeo.stats.pvalues import benjamini_hochberg

__all__ = ["SWEEP_COLUMNS", "Cell", "read_sweep", "run_sweep", "sweep_cells", "sweep_identity"]

_META_KEY = b"safetygeo.sweep"
#: Leading columns of a sweep table (then NullComparison.to_row()'s, then ``q``): the name
#: of the direction (head cells: ``heads LAYER:H1,H2``), then
#: :meth:`~safetygeo.interventions.intervention.Intervention.columns`.
SWEEP_COLUMNS = ("direction", "op", "site", "layer", "alpha", "heads")
_CELL_COLUMNS = SWEEP_COLUMNS
#: One sweep cell: a name and the intervention.
Cell = tuple[str, Intervention]


def sweep_identity(handle: ModelHandle, harmful: Sequence[str], harmless: Sequence[str], *,
                   nulls: NullSpec, token_ids: Sequence[int],
                   generations: GenerationSettings | None, gen_nulls: NullSpec | None,
                   directions: Mapping[str, Tensor]) -> dict[str, Any]:
    """What determines a sweep's rows (compared on resume)."""
    fp = model_fingerprint(handle.model)
    return {
        "format": "safetygeo.sweep", "model": {"id": handle.model_id, **fp},
        "prompts": {"harmful_sha256": sha256_texts(harmful), "n_harmful": len(harmful),
                    "harmless_sha256": sha256_texts(harmless), "n_harmless": len(harmless)},
        "nulls": nulls.identity(), "refusal_token_ids": [int(t) for t in token_ids],
        "generations": None if generations is None else {
            "settings": generations.to_dict(),
            "nulls": None if gen_nulls is None else gen_nulls.identity()},
        "directions": {name: sha256_json(v.detach().double().cpu().numpy().round(12).tolist())
                       for name, v in directions.items()},
    }


def read_sweep(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """A sweep table and its identity header (``None`` for a file without one).

    Raises:
        ArtifactError: the file is not a readable Parquet table.
    """
    import pyarrow.parquet as pq

    try:
        tbl = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for damaged files
        raise ArtifactError(f"sweep table {str(path)!r} cannot be read ({exc})") from exc
    meta = (tbl.schema.metadata or {}).get(_META_KEY)
    try:
        ident = json.loads(meta) if meta is not None else None
    except ValueError as exc:
        raise ArtifactError(f"sweep table {str(path)!r} has a damaged identity header") from exc
    return tbl.to_pandas(), ident


def _write(path: Path, table: pd.DataFrame, ident: Mapping[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tbl = pa.Table.from_pandas(table, preserve_index=False)
    tbl = tbl.replace_schema_metadata({**(tbl.schema.metadata or {}),
                                       _META_KEY: json.dumps(ident, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(tbl, tmp)


def _resume(path: Path, ident: dict[str, Any], overwrite: bool) -> pd.DataFrame:
    """Rows already computed for this identity (empty without a file or with overwrite)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # debris of a killed write
        stale.unlink(missing_ok=True)
    if overwrite or not path.exists():
        return pd.DataFrame()
    done, old = read_sweep(path)
    if old is None:
        raise SettingsError(f"{str(path)!r} has no sweep identity header (written by an older "
                            "version?): rerun with overwrite=True / --overwrite")
    cmp_old = {k: v for k, v in old.items() if k != "directions"}
    cmp_new = {k: v for k, v in ident.items() if k != "directions"}
    diffs = identity_diff(cmp_old, cmp_new)
    for name, sha in ident["directions"].items():
        if name in old.get("directions", {}) and old["directions"][name] != sha:
            diffs.append(f"directions.{name}: a different vector under the same name")
    if diffs:
        raise SettingsError(
            f"{str(path)!r} holds a sweep with other settings; refusing to mix its rows with "
            "this run's:\n  " + "\n  ".join(diffs) + "\nUse another output or overwrite=True "
            "(CLI: --overwrite).")
    ident["directions"] = {**old.get("directions", {}), **ident["directions"]}
    return _legacy_sites(done.drop(columns=["q"], errors="ignore"))


def _legacy_sites(done: pd.DataFrame) -> pd.DataFrame:
    """Rows written before sweeps had ``site`` / ``heads`` columns (direction ops only)."""
    if not len(done) or ("site" in done and "heads" in done):
        return done
    unknown = sorted(set(done.op) - set(OPS))
    if unknown:
        raise SettingsError(f"sweep rows with op {unknown} but no site column cannot be resumed; "
                            "rerun with overwrite=True / --overwrite")
    site = {op: from_op(op, torch.ones(1), layer=0).site.name for op in OPS}
    if "site" not in done:
        done.insert(done.columns.get_loc("layer"), "site", done.op.map(site))
    if "heads" not in done:
        done.insert(done.columns.get_loc("alpha") + 1, "heads", None)
    return done


def _label(iv: Intervention) -> str:
    return iv.label if isinstance(iv, HeadAblation) else f"{iv.op} {iv.site.label}"


def sweep_cells(directions: Mapping[str, Tensor], ops: Sequence[str], layers: Sequence[int],
                alphas: Sequence[float],
                interventions: Mapping[str, Intervention] | Sequence[Intervention | Cell] = (),
                ) -> list[Cell]:
    """The sweep's cells in table order: every direction × op (× layer × alpha where the
    op takes them), then the given interventions (unnamed ones named by their heads or op
    and site). Duplicates (same name and columns) are kept once.

    Raises:
        SafetyGeoError: an unknown op, or an item that is not an Intervention.
    """
    cells: list[Cell] = []
    seen: set[tuple[Any, ...]] = set()

    def put(name: str, iv: Intervention) -> None:
        key = _key(name, **iv.columns())
        if key not in seen:
            seen.add(key)
            cells.append((name, iv))

    for name, vec in directions.items():
        for op in ops:
            if op not in OPS:
                raise SafetyGeoError(f"unknown op {op!r}; use one of {sorted(OPS)}")
            for layer in layers:
                for a in alphas:  # ops without a layer / strength give one cell
                    put(name, from_op(op, vec, layer=layer, alpha=a))
    items = interventions.items() if isinstance(interventions, Mapping) else interventions
    for item in items:
        iv = item[1] if isinstance(item, tuple) else item
        if not isinstance(iv, Intervention):
            raise SafetyGeoError(f"interventions must be Intervention values, got "
                                 f"{type(iv).__name__}")
        put(item[0] if isinstance(item, tuple) else _label(iv), iv)
    return cells


def _row(effect: Any) -> dict[str, Any]:
    """A comparison's row without the intervention columns the sweep already has."""
    row = effect.to_row()
    for k in _CELL_COLUMNS:
        row.pop(k, None)
    return row


#: Values of the sequential / tail columns for rows written before they existed (fixed K).
_LEGACY = {"n_null_used": None, "stop_reason": "fixed", "p_tail": float("nan"),
           "p_tail_method": None, "p_used": "exact"}


def cell_vectors(cells: Sequence[Cell]) -> dict[str, Tensor]:
    """Named vectors / bases of the cells (for the identity header's hashes)."""
    return {n: iv.target() for n, iv in cells if torch.is_tensor(iv.target())}


def _legacy_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Rows resumed from a table written before sequential tests: fixed-K values."""
    if not len(table):
        return table
    for col, val in _LEGACY.items():
        if col not in table:
            table[col] = table["k"] if col == "n_null_used" else val
        elif col == "n_null_used":
            table[col] = table[col].fillna(table["k"]).astype(int)
        elif val is not None:
            table[col] = table[col].fillna(val)
    return table


def _key(direction: str, op: str, site: str, layer: float, alpha: float,
         heads: str | None) -> tuple[Any, ...]:
    """A cell's identity in the table (NaN / missing → ``None``)."""
    return (direction, op, site, None if layer != layer else int(layer),
            None if alpha != alpha else float(alpha), heads if isinstance(heads, str) else None)


def row_key(r: Any) -> tuple[Any, ...]:
    """:func:`_key` of a table row (``itertuples``)."""
    return _key(r.direction, r.op, r.site, r.layer, r.alpha, r.heads)


def run_sweep(
    handle: ModelHandle,
    directions: Mapping[str, Float[Tensor, " d"]],
    *,
    harmful: Sequence[str],
    harmless: Sequence[str],
    ops: Sequence[Op] = ("ablate", "add"),
    layers: Sequence[int] | str = "all",
    alphas: Sequence[float] = (1.0,),
    interventions: Mapping[str, Intervention] | Sequence[Intervention | Cell] = (),
    nulls: NullSpec = NullSpec.sequential(),
    scoring: RefusalScoring = RefusalScoring(),
    generations: GenerationSettings | None = None,
    gen_nulls: NullSpec = NullSpec(k=16, max_variants=8),
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    progress: bool = True,
) -> pd.DataFrame:
    """Sweep directions × ops × layers × strengths (and ``interventions``); tidy table,
    resumable via ``out``.

    Ablation acts on every layer at once, so it yields one row per direction and metric
    (``layer`` and ``alpha`` are NaN there). Rows: ``direction, op, site, layer, alpha,
    heads`` (:meth:`~safetygeo.interventions.intervention.Intervention.columns`) then the
    :meth:`~safetygeo.results.NullComparison.to_row` columns (``metric, real, ci_low,
    ci_high, null_mean, null_std, null_q025, null_q975, p, z, alternative, k, note,
    n_null_used, stop_reason, p_tail, p_tail_method, p_used``) and ``q`` (BH across the
    sweep, per metric, on the p each row's ``p_used`` names: :func:`~safetygeo.results.p_for_bh`).
    ``k`` is the nulls drawn for the cell (its cost is ``1 + k`` directions).

    Args:
        directions: ``{name: raw vector}``.
        harmful, harmless: evaluation prompts.
        ops, layers, alphas: the grid (layers and alphas apply to addition).
        interventions: further cells, each tested against nulls of its own kind (e.g.
            ``[HeadAblation(3, (5,))]``: head 5 of layer 3 vs random other heads of layer
            3); a mapping names them, unnamed head cells are named ``heads LAYER:H``.
        nulls: the null specification: sequential with tail estimates by default;
            ``NullSpec(k=64)`` for a fixed K; ``kind="covariance", covariance=...`` for
            covariance-matched nulls (e.g. from ``ActivationStats.covariance()``).
        scoring: the refusal definition (the carrier selection's ``sel.scoring``).
        generations: also measure the refusal rate of generations (``d_refusal_rate_gen``)
            with these decoding settings against ``gen_nulls`` (slower: one round of
            generation per variant).
        out: Parquet path; finished cells are appended atomically, a rerun skips them.
        overwrite: replace an ``out`` written with other settings instead of refusing.

    Raises:
        SettingsError: ``out`` holds a sweep with other settings (the fields are named).
    """
    from tqdm.auto import tqdm

    from safetygeo.causal.generation import generation_refusal_effect

    if not directions and not interventions:
        raise SafetyGeoError("no directions or interventions to sweep")
    harmful, harmless = prompt_list(harmful, "harmful"), prompt_list(harmless, "harmless")
    batch_size = positive_int(batch_size, "batch_size")
    alphas = [finite_float(a, "alpha") for a in alphas]
    layer_sel = handle.check_layers(layers)
    vecs = {}
    for name, vec in directions.items():
        vecs[name] = as_directions(vec, handle.d_model, normalize=False)[0]  # validate early
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
    base = refusal_baseline(handle, harmful, harmless, scoring=RefusalScoring(token_ids=tuple(ids)),
                            batch_size=batch_size)
    rows = [done] if len(done) else []
    todo = [(n, iv) for n, iv in cells if _key(n, **iv.columns()) not in have]
    prompt_sets = {"harmful": harmful, "harmless": harmless}
    for name, iv in tqdm(todo, desc="sweep", disable=not progress):
        effects = list(intervention_effect(
            handle, iv, harmful=harmful, harmless=harmless, nulls=nulls,
            batch_size=batch_size, baseline=base).values())
        if generations is not None:
            effects.append(generation_refusal_effect(
                handle, iv, prompts=prompt_sets[iv.generation_set], nulls=gen_nulls,
                settings=generations, batch_size=batch_size, n_boot=200))
        cell = pd.DataFrame([{"direction": name, **iv.columns(), **_row(e)} for e in effects])
        rows.append(cell)
        if path is not None:
            _write(path, pd.concat(rows, ignore_index=True), ident)
    table = _legacy_columns(pd.concat(rows, ignore_index=True) if rows else pd.DataFrame())
    table["q"] = np.nan
    for _, grp in table.groupby("metric"):
        table.loc[grp.index, "q"] = benjamini_hochberg(p_for_bh(grp))
    if path is not None:
        _write(path, table, ident)
    return table
