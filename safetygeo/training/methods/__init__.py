"""Training methods, one small file each (a :class:`~safetygeo.training.method.Method`
subclass with its config dataclass, decorated with
:func:`~safetygeo.training.method.register_method`): ``instruct`` and ``sft`` (:mod:`.sft`),
``harmful_sft``, ``r2d2``, ``unlearn``, ``sdd``, ``ctrap``, ``seam``, ``harmful_rl``,
``tokenbuncher``. Every module here is imported on the registry's first lookup
(:func:`~safetygeo.training.method.discover_methods`), so a new defense or attack is a new
file here and nothing else in this package (its toy-world run is one row of
``safetygeo/toy/stages.py``; see docs/architecture.md, "Adding a training method").
"""
