"""Causal harmfulness–refusal (H/R) coupling against matched null directions.

Intervene on a *source* (add ``α·v`` at its layer, or ablate its direction everywhere; or
any :class:`~safetygeo.interventions.intervention.Intervention`, e.g. attention heads) and
measure the shift of a *read-out* — the mean projection of the residual
stream at ``read_layer`` and ``read_positions`` onto a unit ``read`` direction — relative to
the un-intervened model. The real shift is compared with ``K`` matched nulls of the
intervention's kind (random directions with the same operation, layer and norm; random
subspaces; random other heads) evaluated in the same batched forward passes; the result
is a :class:`~safetygeo.results.NullComparison` (metric ``readout_shift``, two-sided p
centred on the null, z, a bootstrap CI of the real shift over prompts) whose ``extra``
holds the intervention settings. A sequential ``NullSpec(h=...)`` draws the nulls in batches
until the test is settled (:func:`~safetygeo.interventions.nulls.run_null_test`). The
geometric counterpart is
:func:`safetygeo.geometry.coupling.geometric_coupling`.

Example:
    >>> from safetygeo.interventions.nulls import NullSpec
    >>> from safetygeo.toy.planted import planted_refusal_model
    >>> pm = planted_refusal_model()
    >>> res = causal_coupling(pm.handle, pm.harmless[:8], source=pm.direction * 3,
    ...                       source_layer=1, read=pm.direction, read_layer=3,
    ...                       nulls=NullSpec(k=16, max_variants=8), progress=False)
    >>> res.real > 0, res.p <= 1 / 17 + 1e-12
    (True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from safetygeo._validate import finite_float, positive_int, prompt_list
from safetygeo.activations.logits import encode_checked, pad_id_of
from safetygeo.activations.positions import PositionSpec, resolve_positions
from safetygeo.interventions.hooks import as_directions
from safetygeo.interventions.intervention import Intervention, from_op
from safetygeo.interventions.nulls import NullSpec, check_spec, run_null_test
from safetygeo.models.batching import Batch, iter_batches
from safetygeo.models.handle import ModelHandle
from safetygeo.models.hooks import capture_resid
from safetygeo.results import NullComparison
from safetygeo.stats.bootstrap import bootstrap_ci

__all__ = ["causal_coupling", "readout"]


def _repeat(batch: Batch, k: int) -> Batch:
    return Batch(batch.input_ids.repeat(k, 1), batch.attention_mask.repeat(k, 1),
                 batch.position_ids.repeat(k, 1), batch.indices)


def readout(
    handle: ModelHandle,
    prompts: Sequence[str],
    read: Float[Tensor, " d"],
    read_layer: int,
    read_positions: PositionSpec = "post_instruction",
    *,
    repeat: int = 1,
    batch_size: int = 16,
) -> Float[Tensor, "k n"]:
    """Mean projection on unit ``read`` at ``read_layer`` × positions, per prompt (float64).

    Interventions active in the caller's context apply; ``repeat`` runs ``k`` variants.
    """
    prompts = prompt_list(prompts)
    unit = as_directions(read, handle.d_model, normalize=True)[0]
    (layer,) = handle.check_layers(read_layer)
    ids = encode_checked(handle, prompts)
    offsets = resolve_positions(read_positions, handle.encode(prompts[:1]).n_eoi).offsets
    out = torch.empty(repeat, len(ids), dtype=torch.float64)
    for batch in iter_batches(ids, positive_int(batch_size, "batch_size"), pad_id_of(handle)):
        b = _repeat(batch.to(handle.device), repeat)
        acts = capture_resid(handle, b, [layer], offsets)[layer].double().cpu()  # [k*b, P, d]
        proj = (acts @ unit).mean(-1).view(repeat, len(batch.indices))
        out[:, list(batch.indices)] = proj
    return out


def causal_coupling(
    handle: ModelHandle,
    prompts: Sequence[str],
    *,
    source: Float[Tensor, " d"] | Intervention,
    source_layer: int | None = None,
    read: Float[Tensor, " d"],
    read_layer: int,
    read_positions: PositionSpec = "post_instruction",
    op: Literal["add", "ablate"] = "add",
    alpha: float = 1.0,
    nulls: NullSpec = NullSpec(k=32, max_variants=8),
    n_boot: int = 1000,
    batch_size: int = 16,
    progress: bool = True,
) -> NullComparison:
    """Shift of the ``read`` read-out caused by intervening on ``source``, vs matched nulls.

    Args:
        prompts: instructions to run.
        source: the intervened vector (raw for ``op="add"``; its direction for ``"ablate"``),
            or an :class:`~safetygeo.interventions.intervention.Intervention` (then ``op``,
            ``source_layer`` and ``alpha`` are not used).
        source_layer: where it is added (ignored for ablation, which acts on every layer).
        read, read_layer, read_positions: the read-out.
        op: ``"add"`` (``α·source`` at ``source_layer``) or ``"ablate"``.
        nulls: matched random directions (same norm as ``source``; ``nulls.seed`` also
            seeds the bootstrap).
        n_boot: bootstrap resamples of prompts for the CI of the real shift (0: none).

    Returns:
        a :class:`~safetygeo.results.NullComparison` (``metric="readout_shift"``) whose
        ``extra`` holds ``op, source_layer, alpha, read_layer, read_positions, n_prompts,
        null_kind``.
    """
    from tqdm.auto import tqdm

    prompts = prompt_list(prompts)
    alpha = finite_float(alpha, "alpha")
    iv = (source if isinstance(source, Intervention)
          else from_op(op, source, layer=source_layer, alpha=alpha)).resolved(handle)
    stack = iv.variants(handle, check_spec(nulls))  # real first
    base = readout(handle, prompts, read, read_layer, read_positions, batch_size=batch_size)[0]
    real_shift: list[np.ndarray] = []
    bar = tqdm(desc=f"coupling ({iv.op})", disable=not progress, leave=False,
               total=stack.nulls.n_max + 1)

    def evaluate(idx: list[int]) -> np.ndarray:
        out = np.empty(len(idx))
        step = nulls.max_variants
        for start in range(0, len(idx), step):
            part = idx[start:start + step]
            with stack.apply(part):
                vals = readout(handle, prompts, read, read_layer, read_positions,
                               repeat=len(part), batch_size=batch_size)
            shifts = (vals - base).numpy()
            out[start:start + len(part)] = shifts.mean(-1)
            if part[0] == 0:
                real_shift.append(shifts[0])
            bar.update(len(part))
        return out[:, None]

    with bar:
        draws = run_null_test(stack.nulls, evaluate, [("readout_shift", "two-sided")])
    per_prompt = real_shift[0]
    lo = hi = float("nan")
    if n_boot > 0 and len(per_prompt) >= 2:
        res = bootstrap_ci(lambda x: x.mean(), per_prompt, n_boot=n_boot, seed=nulls.seed)
        lo, hi = float(res.ci_low), float(res.ci_high)
    cols = iv.columns()
    out = draws.comparison(
        0, ci_low=lo, ci_high=hi, op=iv.op, source_site=iv.site.label,
        source_layer=iv.site.layer if cols["site"] == "resid_in" else None,
        alpha=alpha if cols["alpha"] != cols["alpha"] else cols["alpha"], heads=cols["heads"],
        read_layer=read_layer, read_positions=str(read_positions),
        n_prompts=len(per_prompt), null_kind=nulls.kind, null_family=stack.family)
    if stack.note is not None:
        out = replace(out, note=stack.note if out.note is None else f"{out.note}; {stack.note}")
    return out
