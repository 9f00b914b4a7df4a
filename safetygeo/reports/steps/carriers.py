"""``carriers``: refusal-carrier candidates and the admissible carrier, with held-out scores.

Runs :func:`safetygeo.causal.select_refusal_carrier` on the report's harmful / harmless
train (directions), val (selection) and test (re-scoring) splits. Rows: per candidate
(``layer``, ``position``) its ``bypass``, ``induce``, ``kl`` (val), ``test_bypass``,
``test_induce``, ``test_kl`` (held-out, for the chosen and the ``test_top_k`` best
admissible candidates) and ``admissible`` (1/0, ``note`` = why filtered); per checkpoint
``carrier_layer`` (value = the admissible carrier's layer, ``position`` its position,
``note`` the selection's notes), ``carrier_weak`` (1/0) and ``refusal_score_harmful`` /
``refusal_score_harmless`` (mean logit refusal score on the test prompts, no intervention).
The payload (``ctx.result("carriers").data``) holds the chosen carrier, its raw vector and
the refusal scoring every later step reuses; the full selection is kept as files
(``CarrierSelection.load`` reads them).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetygeo.reports.registry import CheckpointContext, ProtocolStep, StepOutput, register_step

__all__ = ["CarriersSettings"]


@dataclass(frozen=True)
class CarriersSettings:
    """Settings of the ``carriers`` step (see :func:`safetygeo.causal.select_refusal_carrier`).

    Attributes:
        layers: candidate layers, ``"all"`` or a list.
        max_layer_frac, max_kl, min_induce, min_effect, kl_null_quantile, kl_null_k: the
            admissibility filters (:class:`~safetygeo.causal.CarrierThresholds`;
            ``kl_null_quantile`` makes the KL filter null-relative).
        refusal_phrases, refusal_tokens: the refusal definition (default: the GCG / XSTest
            openings); reused by every later step.
        test_top_k: re-score this many best admissible candidates on the test split (0: the
            chosen one only; ``None``: every scored candidate).
        max_variants: candidate directions per forward pass.
    """

    layers: str | tuple[int, ...] = "all"
    max_layer_frac: float = 0.8
    max_kl: float = 0.1
    min_induce: float = 0.0
    min_effect: float = 1.0
    kl_null_quantile: float | None = None
    kl_null_k: int = 16
    refusal_phrases: tuple[str, ...] | None = None
    refusal_tokens: tuple[int, ...] | None = None
    test_top_k: int | None = 5
    max_variants: int = 16

    def __post_init__(self) -> None:
        from safetygeo.errors import SafetyGeoError

        if not (self.layers == "all" or (isinstance(self.layers, tuple)
                                         and all(isinstance(x, int) for x in self.layers))):
            raise SafetyGeoError(f"layers must be 'all' or a list of ints, got {self.layers!r}")
        if self.test_top_k is not None and (not isinstance(self.test_top_k, int)
                                            or isinstance(self.test_top_k, bool)
                                            or self.test_top_k < 0):
            raise SafetyGeoError(f"test_top_k must be an int >= 0 or null, got {self.test_top_k!r}")

    def scoring(self) -> Any:
        from safetygeo.activations.refusal import RefusalScoring

        return RefusalScoring.from_options(self.refusal_phrases, self.refusal_tokens)

    def thresholds(self) -> Any:
        """The admissibility filters as a :class:`~safetygeo.causal.CarrierThresholds`.

        Example:
            >>> CarriersSettings(max_kl=0.2).thresholds().max_kl
            0.2
        """
        from safetygeo.causal import CarrierThresholds

        return CarrierThresholds(self.max_layer_frac, self.max_kl, self.min_induce,
                                 self.min_effect, self.kl_null_quantile, self.kl_null_k)

    def select(self, handle: Any, harmful: Any, harmless: Any, *, batch_size: int = 16,
               progress: bool = False, **split: Any) -> Any:
        """:func:`~safetygeo.causal.select_refusal_carrier` with these settings (the one
        place they are turned into its arguments; ``split``: its ``splits`` / ``seed``)."""
        from safetygeo.causal import select_refusal_carrier

        return select_refusal_carrier(
            handle, harmful, harmless, thresholds=self.thresholds(), scoring=self.scoring(),
            layers="all" if isinstance(self.layers, str) else list(self.layers),
            batch_size=batch_size, max_variants=self.max_variants, test_top_k=self.test_top_k,
            progress=progress, **split)


def _f(x: Any) -> float:
    return float("nan") if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def run(ctx: CheckpointContext, s: CarriersSettings) -> StepOutput:
    sel = s.select(ctx.handle, ctx.sets.splits("harmful"), ctx.sets.splits("harmless"),
                   batch_size=ctx.batch_size)
    rows: list[dict[str, Any]] = []
    for c in sel.candidates.itertuples():
        where = {"layer": int(c.layer), "position": str(c.position)}
        for m in ("bypass", "induce", "kl"):
            rows.append({**where, "metric": m, "method": "val", "value": _f(getattr(c, m))})
        for m in ("test_bypass", "test_induce", "test_kl"):
            v = _f(getattr(c, m))
            if not math.isnan(v):
                rows.append({**where, "metric": m, "method": "test", "value": v})
        rows.append({**where, "metric": "admissible", "method": "val",
                     "value": float(bool(c.admissible)), "note": str(c.reason) or None})
    notes = "; ".join(sel.notes) or None
    chosen = sel.chosen
    rows.append({"layer": chosen[0] if chosen else None, "position": chosen[1] if chosen else None,
                 "metric": "carrier_layer", "method": "admissible",
                 "value": float(chosen[0]) if chosen else float("nan"),
                 "note": notes if chosen else (notes or "no admissible carrier")})
    rows.append({"metric": "carrier_weak", "method": "admissible", "value": float(sel.weak),
                 "note": notes})
    for cls in ("harmful", "harmless"):
        rows.append({"metric": f"refusal_score_{cls}", "method": "logit", "set": f"{cls}-test",
                     "value": float(sel.baseline[f"{cls}_test"]),
                     "n": int(sel.split_sizes["test"][cls])})
    data = {"chosen": list(chosen) if chosen else None, "weak": bool(sel.weak),
            "notes": list(sel.notes), "n_layers": int(ctx.handle.n_layers),
            "scoring": {**sel.scoring.to_dict(), "token_ids": list(sel.meta["refusal_token_ids"])},
            "vector": [float(v) for v in sel.vector.tolist()] if chosen else None}
    with tempfile.TemporaryDirectory() as tmp:
        folder = sel.save(Path(tmp) / "carriers")
        files = {f"carriers/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())
                 if p.is_file() and not p.name.startswith(".")}
    return StepOutput(rows, data, files)


def carrier_of(ctx: CheckpointContext) -> tuple[int, str, Any, Any] | None:
    """``(layer, position, raw vector, RefusalScoring)`` of the checkpoint's admissible
    carrier from the ``carriers`` payload, or ``None`` if there is none."""
    import torch

    from safetygeo.activations.refusal import RefusalScoring

    d = ctx.result("carriers").data
    if not d.get("chosen"):
        return None
    layer, pos = d["chosen"]
    return (int(layer), str(pos), torch.tensor(d["vector"], dtype=torch.float64),
            RefusalScoring.from_dict(d["scoring"]))


register_step(ProtocolStep(
    "carriers", CarriersSettings, run, sets=("harmful", "harmless"), order=10,
    description="refusal-carrier candidates and the admissible carrier (held-out scores)"))
