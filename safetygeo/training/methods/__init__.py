"""Training methods, one small file each (a :class:`~safetygeo.training.method.Method`
subclass with its config): ``instruct`` and ``sft`` (:mod:`.sft`), ``harmful_sft``
(:mod:`.harmful_sft`), ``r2d2`` (:mod:`.r2d2`). They are looked up by name through
:func:`safetygeo.training.method.get_method`; a new defense or attack is a new file here
plus one line in the registry's built-in table (or ``@register_method``).
"""
