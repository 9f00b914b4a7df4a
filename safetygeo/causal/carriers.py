"""Admissible refusal-carrier selection (Arditi et al. 2024 filters) with a held-out test.

Protocol, on disjoint splits of the harmful and harmless prompt sets:

1. **train** — candidate directions ``r[l, p]`` = diff-in-means at every layer × post-
   instruction position (:mod:`~safetygeo.geometry.directions`).
2. **val** — for every candidate:

   * ``bypass`` = mean refusal score on harmful prompts with ``r̂`` ablated everywhere;
   * ``induce`` = mean refusal score on harmless prompts with raw ``r`` added at layer ``l``;
   * ``kl`` = mean KL(base ‖ ablated) of the last-position next-token distribution on
     harmless prompts.

   Discard candidates with a NaN score (e.g. zero-norm), ``l ≥ ⌊0.8·L⌋``, ``kl > 0.1`` or
   ``induce < 0`` (all thresholds are parameters). The admissible carrier is the survivor
   with the lowest ``bypass``.
3. **test** — the chosen carrier and the ``test_top_k`` best admissible candidates are
   re-scored on held-out prompts and reported beside their selection scores, so the choice
   is not validated on the data that made it (the circularity critique).

Candidates are scored in batches of *variants*, the way null directions are: ``k``
directions ride along the batch dimension of one forward pass (see
:mod:`safetygeo.interventions.hooks`), the ablation pass carries the harmful and harmless
prompts together, the addition pass fans out at the candidate's layer (the layers before it
run once), and each split's un-intervened log-probs are computed once and shared by its
baseline scores and the KL. ``benchmarks/nulls.py carriers`` times the scoring against the
same forward passes without any hook or scoring (the limit of this work).

Example:
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> sel = select_refusal_carrier(pm.handle, pm.harmful, pm.harmless, progress=False)
    >>> sel.chosen[0] in range(*pm.layer_band), round(float(sel.direction @ pm.direction), 2)
    (True, 1.0)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._io import atomic_path, atomic_write_json
from safetygeo._validate import positive_int
from safetygeo.activations.logits import last_logprobs
from safetygeo.activations.losses import kl_from_logprobs
from safetygeo.activations.positions import PositionSelection
from safetygeo.activations.refusal import RefusalScoring, refusal_score_from_logprobs
from safetygeo.causal.candidates import refusal_directions
from safetygeo.errors import ArtifactError, EmptyPromptSetError, SafetyGeoError
from safetygeo.geometry.directions import CandidateDirections
from safetygeo.interventions.hooks import ablate, add
from safetygeo.models.handle import ModelHandle

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CarrierThresholds:
    """Filters of the admissible-carrier rule.

    Attributes:
        max_layer_frac: discard layers ``l ≥ ⌊max_layer_frac · L⌋``.
        max_kl: discard ``kl > max_kl``.
        min_induce: discard ``induce < min_induce``.
        min_effect: flag the chosen carrier as *weak* when ablating it lowers the harmful
            refusal score by less than this (log-odds units), or when the model does not
            refuse harmful prompts to begin with (base score < 0).
        kl_null_quantile: if set (e.g. 0.95), the KL filter is *null-relative*: a candidate
            passes when its KL is at most ``max(max_kl, q)``, where ``q`` is this quantile of
            KL(base ‖ ablated) over ``kl_null_k`` random unit directions ablated the same way
            on the same validation prompts (directional ablation does not depend on the
            direction's norm or layer, so one null set serves every candidate). Arditi et
            al.'s absolute 0.1 was calibrated on 1.8–72B models; on small models ablating a
            *random* direction can already cost more (0.47 nats on SmolLM2-135M).
        kl_null_k: random directions of the null-relative KL filter.
    """

    max_layer_frac: float = 0.8
    max_kl: float = 0.1
    min_induce: float = 0.0
    min_effect: float = 1.0
    kl_null_quantile: float | None = None
    kl_null_k: int = 16

    def __post_init__(self) -> None:
        q = self.kl_null_quantile
        if q is not None and (isinstance(q, bool) or not isinstance(q, (int, float))
                              or not 0.0 < q <= 1.0):
            raise SafetyGeoError(f"kl_null_quantile must be in (0, 1] or None, got {q!r}")
        positive_int(self.kl_null_k, "kl_null_k")


def _as_splits(prompts: Any, fractions: Sequence[float], seed: int, what: str) -> dict[str, list[str]]:
    if isinstance(prompts, Mapping):
        missing = [s for s in SPLITS if s not in prompts]
        if missing:
            raise SafetyGeoError(f"{what} splits must have keys {SPLITS}; missing {missing}")
        out = {s: list(cast(Iterable[str], getattr(prompts[s], "prompts", prompts[s])))
               for s in SPLITS}
    else:
        from safetygeo.data import PromptSet

        fr = list(fractions) if not isinstance(fractions, (str, bytes)) else []
        if len(fr) != 3 or any(isinstance(f, bool) or not isinstance(f, (int, float)) or
                               not math.isfinite(f) or f <= 0 for f in fr) or sum(fr) > 1 + 1e-9:
            raise SafetyGeoError(f"splits must be three positive fractions (train, val, test) "
                                 f"summing to at most 1, got {fractions!r}")
        ps = prompts if isinstance(prompts, PromptSet) else PromptSet(list(prompts), name=what)
        parts = ps.split(dict(zip(SPLITS, fractions)), seed=seed)
        out = {s: list(parts[s].prompts) for s in SPLITS}
    for s, texts in out.items():
        if not texts:
            raise EmptyPromptSetError(f"the {s} split of the {what} prompts is empty")
    return out


def null_ablation_kl(handle: ModelHandle, harmless: Sequence[str], *, k: int = 16, seed: int = 0,
                     batch_size: int = 16, max_variants: int = 16,
                     base_logprobs: Tensor | None = None) -> Float[Tensor, " k"]:
    """Mean KL(base ‖ ablated) on ``harmless`` of ``k`` random unit directions (uniform on
    the sphere), each ablated at every layer and position: what ablating *a* direction
    costs this model, the reference of the null-relative KL filter.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32))
        >>> null_ablation_kl(h, ["Say hi.", "Name a colour."], k=3).shape
        torch.Size([3])
    """
    from safetygeo.interventions.nulls import random_directions

    k = positive_int(k, "k")
    base_lp = (base_logprobs if base_logprobs is not None
               else last_logprobs(handle, list(harmless), batch_size=batch_size, progress=False))
    dirs = random_directions(k, handle.d_model, seed=seed)
    out = torch.empty(k, dtype=torch.float64)
    for chunk in _chunks(k, max_variants):
        with ablate(handle, dirs[chunk]):
            lp = last_logprobs(handle, list(harmless), batch_size=batch_size, repeat=len(chunk),
                               progress=False)
        lp = lp.reshape(len(chunk), len(harmless), -1)
        out[chunk] = kl_from_logprobs(base_lp.double(), lp.double()).mean(-1)
    return out


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def score_candidates(
    handle: ModelHandle,
    vectors: Float[Tensor, "k d"],
    layers: Sequence[int],
    harmful: Sequence[str],
    harmless: Sequence[str],
    refusal_ids: Sequence[int],
    *,
    batch_size: int = 16,
    max_variants: int = 16,
    progress: bool = True,
    base_logprobs: Tensor | None = None,
) -> pd.DataFrame:
    """Bypass / induce / KL of raw candidate ``vectors`` (added at their ``layers``).

    Rows with a zero-norm or non-finite vector get NaN scores. Each forward pass carries
    ``batch_size × max_variants`` rows. ``base_logprobs``: the un-intervened next-token
    log-probs of ``harmless`` if the caller has them (else computed here).
    """
    from tqdm.auto import tqdm

    batch_size = positive_int(batch_size, "batch_size")
    max_variants = positive_int(max_variants, "max_variants")
    k = vectors.shape[0]
    norms = vectors.norm(dim=-1)
    ok = [i for i in range(k) if bool(torch.isfinite(vectors[i]).all()) and norms[i] > 1e-12]
    bypass = torch.full((k,), math.nan, dtype=torch.float64)
    induce, kl = bypass.clone(), bypass.clone()
    base_lp = (base_logprobs if base_logprobs is not None
               else last_logprobs(handle, harmless, batch_size=batch_size, progress=False))
    base_lp = base_lp.double()
    by_layer: dict[int, list[int]] = {}
    for i in ok:
        by_layer.setdefault(int(layers[i]), []).append(i)
    n_steps = len(_chunks(len(ok), max_variants)) + sum(
        len(_chunks(len(v), max_variants)) for v in by_layer.values())
    with tqdm(total=n_steps, desc="score carriers", disable=not progress, leave=False) as bar:
        for chunk in _chunks(len(ok), max_variants):
            idx = [ok[j] for j in chunk]
            with ablate(handle, vectors[idx]):
                lp = last_logprobs(handle, [*harmful, *harmless], batch_size=batch_size,
                                   repeat=len(idx), progress=False)
            lp = lp.reshape(len(idx), len(harmful) + len(harmless), -1)
            lp_h, lp_l = lp[:, :len(harmful)], lp[:, len(harmful):]
            bypass[idx] = refusal_score_from_logprobs(lp_h, refusal_ids).mean(-1)
            kl[idx] = kl_from_logprobs(base_lp, lp_l.double()).mean(-1)
            bar.update()
        for layer, members in by_layer.items():
            for chunk in _chunks(len(members), max_variants):
                idx = [members[j] for j in chunk]
                with add(handle, vectors[idx], layer):
                    lp = last_logprobs(handle, harmless, batch_size=batch_size, repeat=len(idx),
                                       fan_out_layer=layer, progress=False)
                lp = lp.reshape(len(idx), len(harmless), -1)
                induce[idx] = refusal_score_from_logprobs(lp, refusal_ids).mean(-1)
                bar.update()
    return pd.DataFrame({"bypass": bypass.numpy(), "induce": induce.numpy(), "kl": kl.numpy()})


@dataclass
class CarrierSelection:
    """Every candidate's scores, the chosen admissible carrier, and how it was chosen.

    Attributes:
        candidates: one row per (layer, position): ``layer, position, offset, norm, bypass,
            induce, kl, reason`` (why it was filtered, ``""`` if admissible),
            ``admissible``, and ``test_bypass, test_induce, test_kl`` (NaN unless re-scored).
        directions: the train-split candidate directions.
        chosen: ``(layer, position label)`` of the admissible carrier, or ``None``.
        baseline: mean refusal scores without intervention per split and class.
        split_sizes: prompts per split and class.
        thresholds: the filters used.
        weak: ``True`` if no carrier was admissible or the chosen one is weak (see notes).
        notes: human-readable flags.
        meta: provenance (model, template, refusal tokens, seed...).
    """

    candidates: pd.DataFrame
    directions: CandidateDirections
    chosen: tuple[int, str] | None
    baseline: dict[str, float]
    split_sizes: dict[str, dict[str, int]]
    thresholds: CarrierThresholds
    weak: bool
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def _need(self) -> tuple[int, str]:
        if self.chosen is None:
            raise SafetyGeoError("no admissible carrier was found: " + "; ".join(self.notes))
        return self.chosen

    @property
    def vector(self) -> Float[Tensor, " d"]:
        """Raw diff-in-means vector of the chosen carrier (float64)."""
        layer, pos = self._need()
        return self.directions.vector(layer, pos)

    @property
    def direction(self) -> Float[Tensor, " d"]:
        """Unit direction of the chosen carrier (float64)."""
        layer, pos = self._need()
        return self.directions.unit(layer, pos)

    @property
    def layer(self) -> int:
        return self._need()[0]

    @property
    def scoring(self) -> RefusalScoring:
        """The refusal scoring this selection used (reuse it in every later step)."""
        sc = self.meta.get("scoring")
        if isinstance(sc, dict):
            return RefusalScoring.from_dict({**sc, "token_ids": self.meta["refusal_token_ids"]})
        return RefusalScoring(token_ids=tuple(self.meta["refusal_token_ids"]))

    def summary(self) -> dict[str, Any]:
        row = None
        if self.chosen is not None:
            c = self.candidates
            row = c[(c.layer == self.chosen[0]) & (c.position == self.chosen[1])].iloc[0]
            row = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in row.to_dict().items()}
        return {"chosen": row, "baseline": self.baseline, "split_sizes": self.split_sizes,
                "weak": self.weak, "notes": self.notes,
                "n_candidates": len(self.candidates),
                "n_admissible": int(self.candidates.admissible.sum())}

    # -- persistence -------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``directions.safetensors``, ``candidates.parquet`` and ``carriers.json``
        (written last, with the directions' SHA-256, so a half-written folder is detected)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "directions.safetensors") as tmp:
            save_file({"vectors": self.directions.vectors.contiguous()}, str(tmp))
        digest = hashlib.sha256((folder / "directions.safetensors").read_bytes()).hexdigest()
        with atomic_path(folder / "candidates.parquet") as tmp:
            self.candidates.to_parquet(tmp, index=False)
        d = self.directions
        atomic_write_json(folder / "carriers.json", {
            "format": "safetygeo.carrier_selection", "format_version": 1,
            "chosen": list(self.chosen) if self.chosen else None,
            "summary": self.summary(),
            "baseline": self.baseline, "split_sizes": self.split_sizes,
            "thresholds": asdict(self.thresholds), "weak": self.weak, "notes": self.notes,
            "directions": {"layers": list(d.layers), "offsets": list(d.positions.offsets),
                           "labels": list(d.positions.labels), "kind": d.kind,
                           "n_harmful": d.n_harmful, "n_harmless": d.n_harmless,
                           "sha256": digest},
            "candidates": json.loads(self.candidates.to_json(orient="records")),
            "meta": self.meta,
        })
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> CarrierSelection:
        """Read a folder written by :meth:`save`, checking it is complete."""
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path, vec_path = folder / "carriers.json", folder / "directions.safetensors"
        if not meta_path.is_file() or not vec_path.is_file():
            raise ArtifactError(f"{str(folder)!r} is not a complete carrier-selection folder")
        try:
            info = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ArtifactError(f"{str(meta_path)!r} is not valid JSON ({exc})") from exc
        if not isinstance(info, dict) or info.get("format") != "safetygeo.carrier_selection":
            raise ArtifactError(f"{str(meta_path)!r} is not a carrier selection")
        try:
            dd = info["directions"]
            if hashlib.sha256(vec_path.read_bytes()).hexdigest() != dd["sha256"]:
                raise ArtifactError(
                    f"{str(vec_path)!r} does not match carriers.json (corrupt or replaced)")
            try:
                vectors = load_file(str(vec_path))["vectors"]
            except Exception as exc:  # safetensors raises its own error types
                raise ArtifactError(f"{str(vec_path)!r} cannot be read ({exc})") from exc
            directions = CandidateDirections(
                vectors=vectors, layers=tuple(dd["layers"]),
                positions=PositionSelection(tuple(dd["offsets"]), tuple(dd["labels"])),
                kind=dd["kind"], n_harmful=dd["n_harmful"], n_harmless=dd["n_harmless"],
            )
            sel = cls(
                candidates=pd.DataFrame.from_records(info["candidates"]),
                directions=directions,
                chosen=tuple(info["chosen"]) if info["chosen"] else None,
                baseline=info["baseline"], split_sizes=info["split_sizes"],
                thresholds=CarrierThresholds(**info["thresholds"]), weak=info["weak"],
                notes=info["notes"], meta=info["meta"],
            )
            sel.meta["refusal_token_ids"]  # noqa: B018 - required for .scoring
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{str(meta_path)!r} is incomplete or damaged (bad or missing "
                                f"field {exc})") from exc
        return sel


def select_refusal_carrier(
    handle: ModelHandle,
    harmful: Any,
    harmless: Any,
    *,
    splits: Sequence[float] = (0.5, 0.25, 0.25),
    seed: int = 0,
    thresholds: CarrierThresholds = CarrierThresholds(),
    scoring: RefusalScoring = RefusalScoring(),
    layers: str | Sequence[int] = "all",
    batch_size: int = 16,
    max_variants: int = 16,
    test_top_k: int | None = 5,
    progress: bool = True,
) -> CarrierSelection:
    """Find the admissible refusal carrier of ``handle`` (see the module docstring).

    Args:
        handle: the model.
        harmful, harmless: prompt sets (``PromptSet`` or lists, split here with ``splits``
            and ``seed``) or mappings with ``"train"``, ``"val"`` and ``"test"`` splits.
        splits: train / val / test fractions.
        seed: split seed.
        thresholds: the filters.
        scoring: the refusal definition (phrases or token ids); saved with the selection
            and returned by :attr:`CarrierSelection.scoring` for every later step.
        layers: candidate layers (default all ``0..L``).
        batch_size: prompts per forward pass; ``max_variants``: directions per pass.
        test_top_k: re-score this many best admissible candidates on the test split
            (``None`` = every scored candidate).
        progress: progress bars.
    """
    batch_size = positive_int(batch_size, "batch_size")
    max_variants = positive_int(max_variants, "max_variants")
    if test_top_k is not None:
        test_top_k = positive_int(test_top_k, "test_top_k", minimum=0)
    hs = _as_splits(harmful, splits, seed, "harmful")
    ls = _as_splits(harmless, splits, seed, "harmless")
    ids = scoring.ids(handle.tokenizer)
    dirs = refusal_directions(handle, hs["train"], ls["train"], layers=layers,
                              batch_size=batch_size, progress=progress)
    n_l, n_p, d = dirs.vectors.shape
    flat = dirs.vectors.reshape(n_l * n_p, d)
    layer_of = [dirs.layers[i // n_p] for i in range(n_l * n_p)]
    pos_of = [dirs.positions.labels[i % n_p] for i in range(n_l * n_p)]
    off_of = [dirs.positions.offsets[i % n_p] for i in range(n_l * n_p)]

    base_lp: dict[str, Tensor] = {}  # un-intervened log-probs, one pass per split and class
    baseline: dict[str, float] = {}
    for s in ("val", "test"):
        for cls, p in (("harmful", hs), ("harmless", ls)):
            base_lp[f"{cls}_{s}"] = last_logprobs(handle, p[s], batch_size=batch_size,
                                                  progress=False)
            baseline[f"{cls}_{s}"] = float(
                refusal_score_from_logprobs(base_lp[f"{cls}_{s}"], ids).mean())
    baseline = {k: baseline[k] for k in ("harmful_val", "harmful_test", "harmless_val",
                                         "harmless_test")}
    val = score_candidates(handle, flat, layer_of, hs["val"], ls["val"], ids,
                           batch_size=batch_size, max_variants=max_variants, progress=progress,
                           base_logprobs=base_lp["harmless_val"])
    table = pd.DataFrame({"layer": layer_of, "position": pos_of, "offset": off_of,
                          "norm": flat.norm(dim=-1).numpy()})
    table = pd.concat([table, val], axis=1)
    cutoff = math.floor(thresholds.max_layer_frac * handle.n_layers)
    max_kl = thresholds.max_kl
    kl_null: dict[str, Any] | None = None
    if thresholds.kl_null_quantile is not None:
        null_kl = null_ablation_kl(handle, ls["val"], k=thresholds.kl_null_k, seed=seed,
                                   batch_size=batch_size, max_variants=max_variants,
                                   base_logprobs=base_lp["harmless_val"])
        q = float(torch.quantile(null_kl, thresholds.kl_null_quantile))
        max_kl = max(max_kl, q)
        kl_null = {"quantile": thresholds.kl_null_quantile, "k": thresholds.kl_null_k,
                   "value": q, "max": float(null_kl.max()), "median": float(null_kl.median())}
    reasons = []
    for row in table.itertuples():
        r = []
        if any(math.isnan(v) for v in (row.bypass, row.induce, row.kl)):
            r.append("nan")
        if row.layer >= cutoff:
            r.append(f"layer>={cutoff}")
        if row.kl > max_kl:
            r.append(f"kl>{max_kl:.3g}")
        if row.induce < thresholds.min_induce:
            r.append(f"induce<{thresholds.min_induce:g}")
        reasons.append(",".join(r))
    table["reason"] = reasons
    table["admissible"] = table["reason"] == ""
    for col in ("test_bypass", "test_induce", "test_kl"):
        table[col] = math.nan
    admissible = table[table.admissible].sort_values("bypass", kind="stable")
    chosen = None
    if len(admissible):
        best = admissible.iloc[0]
        chosen = (int(best.layer), str(best.position))
    # held-out re-scoring
    if test_top_k is None:
        to_test = list(table.index[~table[["bypass", "induce", "kl"]].isna().any(axis=1)])
    else:
        to_test = list(admissible.index[:test_top_k])
    if to_test:
        test = score_candidates(handle, flat[to_test], [layer_of[i] for i in to_test],
                                hs["test"], ls["test"], ids, batch_size=batch_size,
                                max_variants=max_variants, progress=progress,
                                base_logprobs=base_lp["harmless_test"])
        table.loc[to_test, ["test_bypass", "test_induce", "test_kl"]] = test.to_numpy()
    notes: list[str] = []
    weak = chosen is None
    if chosen is None:
        counts = table.reason.str.split(",").explode().value_counts().to_dict()
        notes.append(f"no admissible carrier among {len(table)} candidates (filter counts: {counts})")
    else:
        row = table.loc[admissible.index[0]]
        effect = baseline["harmful_val"] - row.bypass
        test_effect = baseline["harmful_test"] - row.test_bypass
        if baseline["harmful_val"] < 0:
            weak = True
            notes.append(f"the model does not refuse harmful prompts (base refusal score "
                         f"{baseline['harmful_val']:.2f} < 0)")
        if effect < thresholds.min_effect:
            weak = True
            notes.append(f"weak carrier: ablation lowers the harmful refusal score by only "
                         f"{effect:.2f} (< {thresholds.min_effect:g})")
        if not math.isnan(test_effect) and test_effect < thresholds.min_effect / 2:
            weak = True
            notes.append(f"weak on held-out prompts: test effect {test_effect:.2f}")
    tmpl = handle.chat_template()
    meta = {
        **handle.describe(), "seed": seed, "splits": list(splits),
        "refusal_token_ids": ids, "scoring": scoring.to_dict(),
        "refusal_tokens": handle.tokenizer.convert_ids_to_tokens(ids),
        "template": {"prefix": tmpl.prefix, "suffix": tmpl.suffix, "source": tmpl.source},
        "layer_cutoff": cutoff, "kl_limit": max_kl, "kl_null": kl_null,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    sizes = {s: {"harmful": len(hs[s]), "harmless": len(ls[s])} for s in SPLITS}
    return CarrierSelection(table, dirs, chosen, baseline, sizes, thresholds, weak, notes, meta)
