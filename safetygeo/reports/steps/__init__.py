"""The built-in protocol steps, one module each, registered in report order on import.

=============  =====================================================================
step           per checkpoint
=============  =====================================================================
``carriers``   refusal-carrier candidates (layer × post-instruction position) and the
               admissible carrier, with held-out (test) scores
``rank``       effective rank / participation ratio of the carrier subspace, bootstrap CI
``drift``      principal angles of the carrier subspace against a reference checkpoint
``coupling``   per-layer cos(harmfulness, refusal direction), bootstrap CI
``ablation``   ablating the admissible carrier vs matched random directions (p)
``refusal_dimension``  smallest subspace dimension whose ablation bypasses refusal, vs
               random subspaces (off by default)
``behavior``   refusal / ASR (judged), over-refusal, utility on the behaviour sets
``entropy``    mean output entropy of greedy completions per behaviour set (off by default)
``transfer``   ASR of GCG suffixes optimized once on a source checkpoint (off by default)
``gradients``  per-layer cosine of harmful-compliance vs benign gradients (off by default)
=============  =====================================================================

A new step is one module here (a settings dataclass, a ``run`` function, one
:func:`~safetygeo.reports.registry.register_step` call whose ``order`` places it among
these: 10, 20, ... in the table above): every module of this package is imported (and so
registered) when the package is; see :mod:`safetygeo.reports.registry`.
"""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
