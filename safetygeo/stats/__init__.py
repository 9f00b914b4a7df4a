"""Statistics shared by every layer: bootstrap CIs, Monte Carlo p-values (fixed K and
sequential), tail p-value estimates, z, BH q-values.

Example:
    >>> from safetygeo.stats import empirical_p
    >>> empirical_p(2.0, [0.0, 1.0, 3.0])
    0.5
"""

from safetygeo.stats.bootstrap import BootstrapResult, bootstrap_ci, bootstrap_indices
from safetygeo.stats.pvalues import (
    Alternative,
    benjamini_hochberg,
    empirical_p,
    exceedances,
    two_sided_centre,
    zscore,
    zscore_note,
)
from safetygeo.stats.sequential import STOP_REASONS, SequentialP, besag_clifford_p, schedule
from safetygeo.stats.tail import TAIL_METHODS, TailP, tail_p

__all__ = [
    "STOP_REASONS", "TAIL_METHODS", "Alternative", "BootstrapResult", "SequentialP", "TailP",
    "benjamini_hochberg", "besag_clifford_p", "bootstrap_ci", "bootstrap_indices", "empirical_p",
    "exceedances", "schedule", "tail_p", "two_sided_centre", "zscore", "zscore_note",
]
