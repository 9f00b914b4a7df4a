"""The real-language world in trajectory reports: ``real:`` prompt sets and its protocol.

Importing :mod:`safetygeo.real` registers them with :mod:`safetygeo.reports`, so
``safetygeo report artifacts/real/anchor-s0`` (no protocol: the default for real-world
stage folders) or ``--protocol real`` runs on the world's trajectories:

* ``real:harmful`` / ``real:harmless`` — the publishers' train / val / test splits;
* ``real:harmful-test``, ``real:harmless-test`` (label ``safe``), ``real:xstest-safe``
  (label ``safe``), ``real:xstest-unsafe`` — held-out behaviour sets.

Example:
    >>> real_set("harmful")["val"].name
    'real-harmful-val'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetygeo.reports.protocol import LoadSettings, Protocol, SetsConfig, register_default_protocol
from safetygeo.reports.sources import register_set_source

__all__ = ["is_real_trajectory", "real_protocol", "real_set"]

_BEHAVIOR = {"harmful-test": ("harmful_test", "harmful"), "harmless-test": ("harmless_test", "safe"),
             "xstest-safe": ("xstest_safe", "safe"), "xstest-unsafe": ("xstest_unsafe", "unsafe")}


def real_set(arg: str) -> Any:
    """The real-world set named by ``arg`` (see the module docstring)."""
    from safetygeo.data import PromptSet
    from safetygeo.errors import SafetyGeoError
    from safetygeo.real.world import RealWorld

    sets = RealWorld().prompt_sets()
    if arg in ("harmful", "harmless"):
        return {s: sets[f"{arg}_{s}"] for s in ("train", "val", "test")}
    if arg in _BEHAVIOR:
        key, label = _BEHAVIOR[arg]
        return PromptSet(list(sets[key].prompts), name=f"real-{arg}", label=label)
    raise SafetyGeoError(f"unknown real set {arg!r}; choose from harmful, harmless, "
                         f"{', '.join(_BEHAVIOR)}")


def real_protocol(*, limit: int = 32) -> Protocol:
    """A CPU-sized protocol for real-world trajectories (SmolLM2-135M, 2 cores): the
    publishers' splits (``limit`` prompts per split), candidate layers 0, 2, …, 22 (the
    admissible range ⌊0.8·L⌋ = 24), sequential ablation nulls (as sweeps), 200 bootstrap
    resamples, 32-token generations.
    No transfer step (GCG on a 49k vocabulary is the slow part on a CPU)."""
    p = Protocol(sets=SetsConfig(harmful="real:harmful", harmless="real:harmless",
                                 behavior={"harmful": "real:harmful-test",
                                           "safe.harmless": "real:harmless-test",
                                           "safe.xstest": "real:xstest-safe"},
                                 limit=limit),
                 load=LoadSettings(dtype="float32", batch_size=16))
    return p.with_steps(carriers={"test_top_k": 3, "layers": list(range(0, 24, 2))},
                        rank={"n_boot": 200}, drift={"n_boot": 200}, coupling={"n_boot": 200},
                        behavior={"max_new_tokens": 32, "n_boot": 200})


def is_real_trajectory(folder: Any) -> bool:
    """A real-world stage folder (it has the zoo's ``real.json`` marker)."""
    from safetygeo.real.train import MARKER

    return (Path(folder) / MARKER).is_file()


register_set_source("real", real_set)
register_default_protocol(lambda folders: all(is_real_trajectory(f) for f in folders),
                          real_protocol)
