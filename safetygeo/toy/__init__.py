"""The embedded default: a toy safety world with ground truth, its CPU-trained models, the
demo, and a hand-planted refusal model.

* :mod:`~safetygeo.toy.world` — the synthetic instruction world and its offline tokenizer;
* :mod:`~safetygeo.toy.train` — the recipe (base → anchor, r2d2, attacked, the collapse-trap
  defenses, tokenbuncher) through
  :func:`safetygeo.training.train`;
* :mod:`~safetygeo.toy.zoo` — cached models and trajectories, built from a seed when absent;
* :mod:`~safetygeo.toy.demo` — ``safetygeo demo``;
* :mod:`~safetygeo.toy.planted` — tiny Llamas with a hand-set one- or two-dimensional
  refusal mechanism;
* :mod:`~safetygeo.toy.geometry` — the zoo's geometry table (carrier, effective rank,
  minimal refusal dimension per stage);
* :mod:`~safetygeo.toy.report` — ``toy:`` prompt sets and the ``toy`` judge for
  trajectory reports (registered on import);
* :mod:`~safetygeo.toy.robustness` — defend, then attack: behaviour with CIs, the toy
  attackers (harmful SFT, harmful RL, GCG) and the ``evaluate-defenses`` data and plan;
* :mod:`~safetygeo.toy.rewards` — the world's harmfulness oracle as an RL reward.

Example:
    >>> from safetygeo.toy import ToyWorld
    >>> len(ToyWorld().prompts("harmful")) > 100
    True
"""

from safetygeo.toy import report as _report  # noqa: F401  (registers toy: sets and judge)
from safetygeo.toy.demo import DemoSettings, run_demo
from safetygeo.toy.geometry import zoo_geometry
from safetygeo.toy.planted import (
    PlantedModel,
    planted_refusal_model,
    planted_two_dimensional_model,
)
from safetygeo.toy.train import ToyRecipe
from safetygeo.toy.world import ToyPrompt, ToyWorld
from safetygeo.toy.zoo import (
    ensure_toy,
    load_anchor,
    load_toy,
    load_toy_trajectory,
    toy_behavior_sets,
    toy_prompt_sets,
    toy_splits,
    toy_task_set,
)

__all__ = [
    "DemoSettings", "PlantedModel", "ToyPrompt", "ToyRecipe", "ToyWorld", "ensure_toy",
    "load_anchor", "load_toy", "load_toy_trajectory", "planted_refusal_model",
    "planted_two_dimensional_model", "run_demo", "toy_behavior_sets", "toy_prompt_sets",
    "toy_splits", "toy_task_set", "zoo_geometry",
]
