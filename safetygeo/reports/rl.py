"""RL diagnostics along a trajectory: the mechanism TokenBuncher acts on.

* :func:`training_curves` — what the trainer logged at every step (reward, its std over the
  group, rollout entropy, loss, KL ...) as a table: the harmful-RL attack's reward curve,
  TokenBuncher's entropy reward, any method's metrics.
* :func:`entropy_along` — per-token output entropy of greedy completions on harmful and
  benign prompts at every checkpoint (the project's one definition,
  :func:`~safetygeo.behavior.entropy.token_entropies`): the mean per completion with a
  bootstrap CI over prompts, and the profile over generated-token positions (where in the
  answer the model is uncertain; a refusal decision sits in the first tokens).
* :func:`curves_figure` — both as plotly figures.

Example:
    >>> import pandas as pd
    >>> fig = curves_figure(pd.DataFrame({"step": [1, 2], "reward": [0.1, 0.5]}), ["reward"])
    >>> [t.name for t in fig.data]
    ['reward']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["curves_figure", "entropy_along", "training_curves"]


def training_curves(trajectory: Any, step: int | None = None) -> pd.DataFrame:
    """One row per logged training step up to checkpoint ``step`` (default: the last), the
    numeric logged values as columns (``reward``, ``reward_std``, ``entropy``, ``loss``, ...)."""
    rows = [{k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for r in trajectory.log_history(step) if "loss" in r or "reward" in r]
    frame = pd.DataFrame(rows)
    if "step" in frame:
        frame["step"] = frame["step"].astype(int)
    return frame


def entropy_along(trajectory: Any, sets: Mapping[str, Sequence[str]], *,
                  steps: Sequence[int] | None = None, max_new_tokens: int = 24,
                  n_positions: int = 8, n_boot: int = 1000, include_base: bool = True,
                  batch_size: int = 32) -> pd.DataFrame:
    """Output entropy of greedy completions per prompt set at each checkpoint.

    Args:
        trajectory: a :class:`~safetygeo.training.Trajectory`.
        sets: ``{name: prompts}``, e.g. ``{"harmful": [...], "benign": [...]}``.
        steps: checkpoints (default: all; step 0 = the start when ``include_base``).
        n_positions: generated-token positions of the profile (``entropy_at_token``).

    Returns:
        Rows ``step, set, metric, position, value, ci_low, ci_high, n``: metric
        ``output_entropy`` (mean over tokens, then prompts; CI over prompts) and
        ``entropy_at_token`` (mean over the completions that reach token ``position``).
    """
    from safetygeo.behavior.entropy import output_entropy, token_entropies
    from safetygeo.behavior.generate import GenerationSettings, eos_token_ids, generate

    todo = list(steps) if steps is not None else ([0] if include_base else []) + list(trajectory.steps)
    rows: list[dict[str, Any]] = []
    for step in todo:
        handle = trajectory.load_checkpoint(step)
        for name, prompts in sets.items():
            gens = generate(handle, list(prompts), GenerationSettings(max_new_tokens=max_new_tokens),
                            batch_size=batch_size, progress=False)
            e = output_entropy(handle, gens, n_boot=n_boot, batch_size=batch_size)
            rows.append({"step": step, "set": name, "metric": "output_entropy", "position": None,
                         "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n})
            ended = [r == "eos" for r in gens.stop_reasons] if eos_token_ids(handle) else None
            per = token_entropies(handle, gens.prompts, gens.token_ids, ended=ended,
                                  batch_size=batch_size)
            for k in range(n_positions):
                vals = np.array([p[k] for p in per if len(p) > k])
                if vals.size:
                    rows.append({"step": step, "set": name, "metric": "entropy_at_token",
                                 "position": k, "value": float(vals.mean()), "ci_low": np.nan,
                                 "ci_high": np.nan, "n": int(vals.size)})
    return pd.DataFrame(rows)


def curves_figure(frame: pd.DataFrame, metrics: Sequence[str], *, x: str = "step",
                  title: str | None = None) -> Any:
    """Line plot of ``metrics`` (columns of ``frame``) against ``x``."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for m in metrics:
        if m in frame:
            fig.add_scatter(x=list(frame[x]), y=list(frame[m]), mode="lines+markers", name=m)
    fig.update_layout(title=title or ", ".join(metrics), xaxis_title=x, height=350)
    return fig
