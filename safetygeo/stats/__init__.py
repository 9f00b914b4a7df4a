"""Statistics shared by every layer: bootstrap CIs, Monte Carlo p-values, z, BH q-values.

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
    null_centre,
    zscore,
    zscore_note,
)

__all__ = [
    "Alternative", "BootstrapResult", "benjamini_hochberg", "bootstrap_ci", "bootstrap_indices",
    "empirical_p", "exceedances", "null_centre", "zscore", "zscore_note",
]
