"""``rank``, ``drift`` and ``coupling``: the geometry of the carrier along a trajectory.

All three read one extraction of the held-out (test) harmful and harmless prompts per
checkpoint (every layer; positions ``t_inst`` + post-instruction; per-prompt vectors, so
bootstrap CIs resample prompts) — see :meth:`CheckpointContext.test_activations`.

* ``rank``: :func:`safetygeo.geometry.carrier_rank` at the checkpoint's admissible carrier
  layer (``erank``, ``pr`` with bootstrap CIs; the subspace is the stack of refusal
  directions across the post-instruction positions).
* ``drift``: per checkpoint, the per-prompt vectors at ``layers`` × post-instruction
  positions are cached; the driver then compares every checkpoint with its reference
  (``first`` checkpoint of its trajectory, or ``NAME@STEP``) through
  :func:`safetygeo.geometry.carrier_drift`: ``drift_angle_deg`` (largest principal angle
  between the two carrier subspaces, degrees, paired bootstrap CI) and
  ``drift_min_angle_deg`` (smallest) per layer.
* ``coupling``: :func:`safetygeo.geometry.geometric_coupling`, per layer ``hr_cos`` =
  cos(harmfulness direction at ``t_inst``, refusal direction at ``refusal_position``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from safetygeo.errors import SafetyGeoError
from safetygeo.reports.registry import (
    CheckpointContext,
    ProtocolStep,
    StepOutput,
    StepResult,
    estimate_row,
    register_step,
)

__all__ = ["CouplingSettings", "DriftSettings", "RankSettings"]


def _positive(value: Any, name: str, *, zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        raise SafetyGeoError(f"{name} must be an int >= {0 if zero else 1}, got {value!r}")


def _post_instruction(labels: tuple[str, ...]) -> list[str]:
    return [p for p in labels if p != "t_inst"]


# ----------------------------------------------------------------------------- rank
@dataclass(frozen=True)
class RankSettings:
    """Settings of the ``rank`` step.

    Attributes:
        layer: ``"carrier"`` (the checkpoint's admissible carrier layer), ``"all"`` (every
            layer) or a layer index.
        positions: rows of the subspace (default: every post-instruction position).
        n_boot, seed: bootstrap resamples of prompts and their seed.
    """

    layer: str | int = "carrier"
    positions: tuple[str, ...] | None = None
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.layer in ("carrier", "all") or (isinstance(self.layer, int)
                                                     and not isinstance(self.layer, bool))):
            raise SafetyGeoError(f"layer must be 'carrier', 'all' or an int, got {self.layer!r}")
        _positive(self.n_boot, "n_boot")


def run_rank(ctx: CheckpointContext, s: RankSettings) -> StepOutput:
    from safetygeo.geometry import carrier_rank

    harmful, harmless = ctx.test_activations()
    positions = list(s.positions) if s.positions else _post_instruction(harmful.positions.labels)
    chosen = ctx.result("carriers").data.get("chosen")
    if s.layer == "carrier":
        if not chosen:
            return StepOutput([{"metric": m, "value": float("nan"), "method": "diff-in-means",
                                "note": "no admissible carrier"} for m in ("erank", "pr")])
        layers = [int(chosen[0])]
    elif s.layer == "all":
        layers = list(harmful.layers)
    else:
        layers = [int(s.layer)]
    rows = []
    for layer in layers:
        try:
            est = carrier_rank(harmful, harmless, layer=layer, positions=positions,
                               n_boot=s.n_boot, seed=s.seed)
        except SafetyGeoError as err:
            if s.layer != "all":  # a layer the user named: its error is the answer
                raise
            # e.g. layer 0 at template tokens: every prompt has the same embedding there, so
            # diff-in-means is exactly zero and its rank is undefined; the other layers stand
            rows += [{"metric": m, "value": float("nan"), "method": "diff-in-means",
                      "layer": layer, "position": "+".join(positions), "note": str(err)}
                     for m in ("erank", "pr")]
            continue
        for e in est.values():
            rows.append(estimate_row(e, layer=layer, position="+".join(positions)))
    return StepOutput(rows)


# ----------------------------------------------------------------------------- drift
@dataclass(frozen=True)
class DriftSettings:
    """Settings of the ``drift`` step.

    Attributes:
        reference: ``"first"`` (the first checkpoint of each trajectory in the report — its
            base when ``checkpoints.base``) or ``"NAME@STEP"`` (a trajectory of the report,
            or a folder next to them, by name; step 0 = its base).
        layers: layers whose subspaces are compared (``"all"`` or a list). Per-prompt
            vectors at these layers are cached for every checkpoint (≈ prompts × layers ×
            post-instruction positions × d_model × 4 bytes); choose a few on large models.
        n_boot, seed: paired bootstrap over prompts (both checkpoints saw the same prompts).
    """

    reference: str = "first"
    layers: str | tuple[int, ...] = "all"
    n_boot: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.reference, str) or not (self.reference == "first"
                                                       or "@" in self.reference):
            raise SafetyGeoError(f"reference must be 'first' or 'NAME@STEP', got {self.reference!r}")
        if not (self.layers == "all" or (isinstance(self.layers, tuple)
                                         and all(isinstance(x, int) for x in self.layers))):
            raise SafetyGeoError(f"layers must be 'all' or a list of ints, got {self.layers!r}")
        _positive(self.n_boot, "n_boot")


def run_drift(ctx: CheckpointContext, s: DriftSettings) -> StepOutput:
    """Cache the per-prompt vectors the cross-checkpoint comparison needs (no rows)."""
    from safetensors.torch import save

    harmful, harmless = ctx.test_activations()
    layers = list(harmful.layers) if s.layers == "all" else list(s.layers)
    missing = [x for x in layers if x not in harmful.layers]
    if missing:
        raise SafetyGeoError(f"drift layers {missing} do not exist (layers 0..{harmful.layers[-1]})")
    pos = _post_instruction(harmful.positions.labels)
    pi = [harmful.positions.labels.index(p) for p in pos]
    li = [harmful.slot(x) for x in layers]
    tensors, meta = {}, {}
    for name, st in (("harmful", harmful), ("harmless", harmless)):
        assert st.vectors is not None
        tensors[name] = st.vectors[:, li][:, :, pi].float().contiguous()
        meta[name] = st.meta.get("prompt_set", {}).get("sha256", "")
    info = {"layers": layers, "positions": pos,
            "offsets": [harmful.positions.offsets[i] for i in pi], "n_eoi": harmful.n_eoi,
            "prompt_sha256": meta}
    blob = save(tensors, metadata={"safetygeo": json.dumps(info)})
    return StepOutput([], info, {"vectors.safetensors": blob})


def _stats(blob: bytes, info: dict[str, Any]) -> tuple[Any, Any]:
    from safetensors.torch import load

    from safetygeo.activations.extract import ActivationStats
    from safetygeo.activations.positions import PositionSelection

    t = load(blob)
    pos = PositionSelection(tuple(info["offsets"]), tuple(info["positions"]))
    out = []
    for name in ("harmful", "harmless"):
        v = t[name]
        out.append(ActivationStats(mean=v.double().mean(0), count=int(v.shape[0]),
                                   layers=tuple(info["layers"]), positions=pos,
                                   n_eoi=int(info["n_eoi"]), vectors=v,
                                   meta={"prompt_set": {"sha256": info["prompt_sha256"][name]}}))
    return out[0], out[1]


def finalize_drift(ref: StepResult, cur: StepResult, s: DriftSettings) -> StepOutput:
    """Principal angles of ``cur``'s carrier subspaces against ``ref``'s, per layer."""
    from safetygeo.geometry import carrier_drift

    a = _stats(ref.files["vectors.safetensors"], ref.data)
    b = _stats(cur.files["vectors.safetensors"], cur.data)
    layers = [x for x in b[0].layers if x in a[0].layers]
    rows = []
    pos = "+".join(a[0].positions.labels)
    n = int(a[0].count + a[1].count)
    for layer in layers:
        try:
            t = carrier_drift(a, {"cur": b}, layer=layer, n_boot=s.n_boot, seed=s.seed)
        except SafetyGeoError as exc:  # e.g. layer 0: template tokens are the same for all prompts
            rows.append({"layer": layer, "position": pos, "metric": "drift_angle_deg",
                         "method": "principal-angle", "value": float("nan"), "n": n,
                         "note": f"undefined: {exc}"})
            continue
        big, small = t.loc[t.angle_deg.idxmax()], t.loc[t.angle_deg.idxmin()]
        rows.append({"layer": layer, "position": pos, "metric": "drift_angle_deg",
                     "method": "principal-angle", "value": float(big.angle_deg),
                     "ci_low": float(big.ci_low_deg), "ci_high": float(big.ci_high_deg),
                     "n": n})
        if len(t) > 1:
            rows.append({"layer": layer, "position": pos, "metric": "drift_min_angle_deg",
                         "method": "principal-angle", "value": float(small.angle_deg),
                         "ci_low": float(small.ci_low_deg), "ci_high": float(small.ci_high_deg),
                         "n": n})
    return StepOutput(rows)


# ----------------------------------------------------------------------------- coupling
@dataclass(frozen=True)
class CouplingSettings:
    """Settings of the ``coupling`` step.

    Attributes:
        refusal_position: post-instruction position of the refusal direction.
        n_boot, seed: bootstrap resamples of prompts.
    """

    refusal_position: str = "eoi-1"
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(self.n_boot, "n_boot")


def run_coupling(ctx: CheckpointContext, s: CouplingSettings) -> StepOutput:
    from safetygeo.geometry import geometric_coupling

    harmful, harmless = ctx.test_activations()
    t = geometric_coupling(harmful, harmless, refusal_position=s.refusal_position,
                           n_boot=s.n_boot, seed=s.seed)
    rows = []
    for r in t.to_dict("records"):
        rows.append({"layer": int(r["layer"]), "position": s.refusal_position, "metric": "hr_cos",
                     "method": "diff-in-means", "value": float(r["cos"]),
                     "ci_low": float(r.get("ci_low", float("nan"))),
                     "ci_high": float(r.get("ci_high", float("nan"))),
                     "n": int(harmful.count + harmless.count), "note": r["note"] or None})
    return StepOutput(rows)


register_step(ProtocolStep(
    "rank", RankSettings, run_rank, needs=("carriers",), sets=("harmful", "harmless"), order=20,
    description="effective rank and participation ratio of the carrier subspace"))
register_step(ProtocolStep(
    "drift", DriftSettings, run_drift, sets=("harmful", "harmless"), finalize=finalize_drift,
    order=30, description="principal angles of the carrier subspace against a reference"))
register_step(ProtocolStep(
    "coupling", CouplingSettings, run_coupling, sets=("harmful", "harmless"), order=40,
    description="per-layer cos(harmfulness, refusal direction)"))
