"""The :class:`PromptSet` container: an immutable, validated list of prompts with metadata.

A prompt set carries the prompt strings plus optional per-prompt ``categories`` and
``targets`` (e.g. AdvBench's ``"Sure, here is ..."`` completions), a set-level ``label``
(``"harmful"``, ``"harmless"``, ``"safe"``, ``"unsafe"`` or ``None``) and a free-form
``meta`` dict (source path, file format, split name ...). Every operation returns a new
set; randomised operations are deterministic for a given ``seed``.

Example:
    >>> ps = PromptSet(["How do I bake bread?", "Name a prime.", "Say hi."], name="toy",
    ...                label="harmless")
    >>> len(ps), ps[0], ps.label
    (3, 'How do I bake bread?', 'harmless')
    >>> parts = ps.split({"train": 0.5, "test": 0.5}, seed=0)
    >>> sorted(parts), len(parts["train"]) + len(parts["test"])
    (['test', 'train'], 3)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from safetygeo._io import atomic_write_json
from safetygeo.errors import (
    EmptyPromptSetError,
    PromptFileNotFoundError,
    PromptIndexError,
    PromptSetFormatError,
    SafetyGeoError,
)

__all__ = [
    "PER_PROMPT_META_KEYS",
    "PROMPTSET_JSON_FORMAT",
    "PromptFileNotFoundError",
    "PromptIndexError",
    "PromptSet",
]

#: ``meta`` keys whose values are per-prompt lists (same length as ``prompts``). They are
#: validated on construction and re-indexed by ``subset`` / ``sample`` / ``split`` /
#: ``filter`` / slicing, so e.g. XSTest's per-prompt ``meta["labels"]`` follows its prompts.
PER_PROMPT_META_KEYS: tuple[str, ...] = ("labels", "ids")

#: Value of the ``"format"`` field written by :meth:`PromptSet.to_json`.
PROMPTSET_JSON_FORMAT = "safetygeo.PromptSet"
_JSON_VERSION = 1

_DEFAULT_SPLIT_NAMES: dict[int, tuple[str, ...]] = {
    2: ("train", "test"),
    3: ("train", "val", "test"),
}


def _as_optional_str_tuple(
    values: Iterable[str | None] | None, what: str, n: int, name: str
) -> tuple[str | None, ...] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise PromptSetFormatError(
            f"prompt set {name!r}: {what} must be a sequence of str|None, got a single str"
        )
    out = tuple(values)
    if len(out) != n:
        raise PromptSetFormatError(
            f"prompt set {name!r}: {what} has length {len(out)} but there are {n} prompts"
        )
    for i, v in enumerate(out):
        if v is not None and not isinstance(v, str):
            raise PromptSetFormatError(
                f"prompt set {name!r}: {what}[{i}] must be str or None, got {type(v).__name__}"
            )
    return out


@dataclass(frozen=True, repr=False)
class PromptSet:
    """An immutable set of prompts with an optional label, categories, targets and metadata.

    Lists are accepted for the sequence fields and converted to tuples. ``meta`` is copied
    on construction; entries listed in :data:`PER_PROMPT_META_KEYS` must be per-prompt
    sequences of matching length and are stored as lists.

    Attributes:
        prompts: The prompt strings (non-empty ``str`` each).
        name: A short name for the set (used in error messages and artifacts).
        label: Set-level label such as ``"harmful"`` / ``"harmless"`` / ``"safe"`` /
            ``"unsafe"``, or ``None`` (e.g. a mixed set).
        categories: Per-prompt category (``None`` where unknown), or ``None``.
        targets: Per-prompt target completion (``None`` where unknown), or ``None``.
        meta: Free-form JSON-serialisable metadata (``source``, ``format``, ``split`` ...).
            Compared by ``==`` but not hashed.

    Raises:
        EmptyPromptSetError: If there are no prompts.
        PromptSetFormatError: If a prompt is not a non-empty ``str`` or contains a NUL byte
            (the message names its index), or categories / targets / per-prompt meta have the wrong length.

    Example:
        >>> ps = PromptSet(["a?", "b?"], name="x", categories=["c1", None])
        >>> ps.prompts, ps.categories
        (('a?', 'b?'), ('c1', None))
    """

    prompts: Sequence[str]
    name: str = "prompts"
    label: str | None = None
    categories: Sequence[str | None] | None = None
    targets: Sequence[str | None] | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PromptSetFormatError(
                f"prompt set name must be a non-empty str, got {self.name!r}"
            )
        name = self.name
        if isinstance(self.prompts, str):
            raise PromptSetFormatError(
                f"prompt set {name!r}: prompts must be a sequence of str, got a single str"
            )
        prompts = tuple(self.prompts)
        if not prompts:
            raise EmptyPromptSetError(f"prompt set {name!r} is empty")
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise PromptSetFormatError(
                    f"prompt set {name!r}: prompt at index {i} is {type(p).__name__}, not str"
                )
            if not p.strip():
                raise PromptSetFormatError(f"prompt set {name!r}: prompt at index {i} is empty")
            if "\x00" in p:
                raise PromptSetFormatError(
                    f"prompt set {name!r}: prompt at index {i} contains a NUL byte at offset "
                    f"{p.index(chr(0))}")
        if self.label is not None and not isinstance(self.label, str):
            raise PromptSetFormatError(
                f"prompt set {name!r}: label must be str or None, got {type(self.label).__name__}"
            )
        n = len(prompts)
        categories = _as_optional_str_tuple(self.categories, "categories", n, name)
        targets = _as_optional_str_tuple(self.targets, "targets", n, name)
        if not isinstance(self.meta, Mapping):
            raise PromptSetFormatError(
                f"prompt set {name!r}: meta must be a mapping, got {type(self.meta).__name__}"
            )
        meta = dict(self.meta)
        for key in PER_PROMPT_META_KEYS:
            if key in meta and meta[key] is not None:
                value = meta[key]
                if isinstance(value, str) or not isinstance(value, Sequence):
                    raise PromptSetFormatError(
                        f"prompt set {name!r}: meta[{key!r}] must be a per-prompt list"
                    )
                if len(value) != n:
                    raise PromptSetFormatError(
                        f"prompt set {name!r}: meta[{key!r}] has length {len(value)} "
                        f"but there are {n} prompts"
                    )
                meta[key] = list(value)
        object.__setattr__(self, "prompts", prompts)
        object.__setattr__(self, "categories", categories)
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "meta", meta)

    # ------------------------------------------------------------------ sequence protocol
    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.prompts)

    @overload
    def __getitem__(self, key: int) -> str: ...

    @overload
    def __getitem__(self, key: slice) -> PromptSet: ...

    def __getitem__(self, key: int | slice) -> str | PromptSet:
        """Return one prompt (int index) or a new :class:`PromptSet` (slice).

        Example:
            >>> ps = PromptSet(["a", "b", "c"], name="x")
            >>> ps[-1], ps[:2].prompts
            ('c', ('a', 'b'))
        """
        if isinstance(key, slice):
            return self.subset(range(len(self))[key])
        try:
            i = operator.index(key)
        except TypeError:
            raise TypeError(
                f"PromptSet indices must be int or slice, not {type(key).__name__}"
            ) from None
        return self.prompts[self._check_index(i)]

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"label={self.label!r}", f"n={len(self)}"]
        if self.categories is not None:
            parts.append(f"n_categories={len({c for c in self.categories if c is not None})}")
        if self.targets is not None:
            parts.append("targets=True")
        return f"PromptSet({', '.join(parts)})"

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise PromptIndexError(
                f"prompt index {i} out of range for prompt set {self.name!r} of length {n}"
            )
        return i % n

    # ------------------------------------------------------------------ identity
    def sha256(self) -> str:
        """Stable SHA-256 hex digest of the prompts (in order) only.

        Exactly what is hashed: the UTF-8 bytes of
        ``json.dumps(list(self.prompts), ensure_ascii=False, separators=(",", ":"))``.
        The digest therefore depends on prompt text and order, and not on ``name``,
        ``label``, ``categories``, ``targets`` or ``meta``.

        Example:
            >>> a = PromptSet(["x", "y"], name="a", label="harmful")
            >>> a.sha256() == a.with_label("harmless").sha256()
            True
            >>> len(a.sha256())
            64
        """
        payload = json.dumps(list(self.prompts), ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ derived sets
    def with_label(self, label: str | None) -> PromptSet:
        """Return a copy with the set-level ``label`` replaced.

        Example:
            >>> PromptSet(["a"], name="x").with_label("harmful").label
            'harmful'
        """
        return dataclasses.replace(self, label=label)

    def subset(
        self, indices: Iterable[int], *, meta_update: Mapping[str, Any] | None = None
    ) -> PromptSet:
        """Return the prompts at ``indices`` (in the given order; repeats allowed).

        Categories, targets and per-prompt meta entries (:data:`PER_PROMPT_META_KEYS`)
        follow their prompts; other ``meta`` entries are copied, then ``meta_update``
        is applied.

        Raises:
            PromptIndexError: If an index is out of range.
            EmptyPromptSetError: If ``indices`` is empty.

        Example:
            >>> PromptSet(["a", "b", "c"], name="x").subset([2, 0]).prompts
            ('c', 'a')
        """
        if isinstance(indices, np.ndarray):
            indices = indices.tolist()
        idx: list[int] = []
        for raw in indices:
            try:
                i = operator.index(raw)
            except TypeError:
                raise PromptIndexError(
                    f"prompt set {self.name!r}: subset index {raw!r} is not an int"
                ) from None
            idx.append(self._check_index(i))
        if not idx:
            raise EmptyPromptSetError(f"prompt set {self.name!r}: subset with no indices is empty")
        meta = dict(self.meta)
        for key in PER_PROMPT_META_KEYS:
            if meta.get(key) is not None:
                meta[key] = [meta[key][i] for i in idx]
        if meta_update:
            meta.update(meta_update)
        return PromptSet(
            prompts=tuple(self.prompts[i] for i in idx),
            name=self.name,
            label=self.label,
            categories=None if self.categories is None else tuple(self.categories[i] for i in idx),
            targets=None if self.targets is None else tuple(self.targets[i] for i in idx),
            meta=meta,
        )

    def sample(self, n: int, seed: int = 0) -> PromptSet:
        """Return ``n`` distinct prompts drawn without replacement, deterministically.

        The chosen indices are ``sorted(numpy.random.default_rng(seed).permutation(len)[:n])``,
        so the sample keeps the original relative order. ``meta["sample"]`` records
        ``{"n": n, "seed": seed}``.

        Raises:
            SafetyGeoError: If ``n`` is not in ``[1, len(self)]``.

        Example:
            >>> ps = PromptSet([f"p{i}" for i in range(10)], name="x")
            >>> ps.sample(3, seed=1) == ps.sample(3, seed=1)
            True
        """
        n = operator.index(n)
        if not 1 <= n <= len(self):
            raise SafetyGeoError(
                f"prompt set {self.name!r}: cannot sample n={n} prompts from {len(self)} "
                "(need 1 <= n <= len)"
            )
        perm = np.random.default_rng(seed).permutation(len(self))
        return self.subset(
            sorted(perm[:n].tolist()), meta_update={"sample": {"n": n, "seed": seed}}
        )

    def filter(
        self, predicate_or_category: Callable[[str], bool] | str | Iterable[str]
    ) -> PromptSet:
        """Keep prompts matching a predicate or a category.

        Args:
            predicate_or_category: A callable ``prompt -> bool``; or a category name
                (keep prompts whose category equals it); or an iterable of category names
                (keep prompts whose category is among them).

        Raises:
            SafetyGeoError: If filtering by category on a set without categories.
            EmptyPromptSetError: If nothing matches (the message names the set and filter).

        Example:
            >>> ps = PromptSet(["a", "bb", "c"], name="x", categories=["k", "k", "m"])
            >>> ps.filter("k").prompts, ps.filter(lambda p: len(p) > 1).prompts
            (('a', 'bb'), ('bb',))
        """
        if callable(predicate_or_category):
            pred = predicate_or_category
            keep = [i for i, p in enumerate(self.prompts) if pred(p)]
            desc = getattr(pred, "__name__", repr(pred))
        else:
            wanted = (
                {predicate_or_category}
                if isinstance(predicate_or_category, str)
                else set(predicate_or_category)
            )
            if self.categories is None:
                raise SafetyGeoError(
                    f"prompt set {self.name!r} has no categories; cannot filter by {sorted(wanted)}"
                )
            keep = [i for i, c in enumerate(self.categories) if c in wanted]
            desc = f"categories {sorted(wanted)}"
        if not keep:
            raise EmptyPromptSetError(f"prompt set {self.name!r}: no prompt matches filter {desc}")
        return self.subset(keep)

    def split(
        self,
        fractions: Sequence[float] | Mapping[str, float] = (0.8, 0.1, 0.1),
        seed: int = 0,
    ) -> dict[str, PromptSet]:
        """Split into disjoint, covering parts, deterministically for a given ``seed``.

        Sizes: with ``n = len(self)`` and fractions ``f_1..f_k`` (in order), part ``i < k``
        gets ``floor(f_i * n)`` prompts (a 1e-9 tolerance absorbs float round-off, so
        ``0.3 * 10`` gives 3) and the last part gets the remainder. The prompts are
        assigned by ``numpy.random.default_rng(seed).permutation(n)``: the first ``size_1``
        permuted indices go to part 1, and so on; each part keeps the original relative
        order. Each part's ``meta["split"]`` is its name (``meta["split_seed"]`` the seed).

        Args:
            fractions: A mapping ``{name: fraction}`` (in order), or a sequence of 2
                (``train``, ``test``) or 3 (``train``, ``val``, ``test``) fractions.
            seed: Seed for the permutation.

        Raises:
            SafetyGeoError: If a fraction is not positive/finite, they do not sum to 1
                within 1e-9, or a sequence has other than 2 or 3 entries.
            EmptyPromptSetError: If any part would be empty.

        Example:
            >>> ps = PromptSet([f"p{i}" for i in range(10)], name="x")
            >>> {k: len(v) for k, v in ps.split((0.8, 0.1, 0.1), seed=0).items()}
            {'train': 8, 'val': 1, 'test': 1}
        """
        if isinstance(fractions, Mapping):
            names = tuple(fractions.keys())
            values = tuple(fractions.values())
            for k in names:
                if not isinstance(k, str) or not k:
                    raise SafetyGeoError(f"split names must be non-empty str, got {k!r}")
        else:
            values = tuple(fractions)
            if len(values) not in _DEFAULT_SPLIT_NAMES:
                raise SafetyGeoError(
                    f"split fractions {values!r}: give 2 (train, test) or 3 (train, val, test) "
                    "fractions, or a dict {name: fraction}"
                )
            names = _DEFAULT_SPLIT_NAMES[len(values)]
        if not values:
            raise SafetyGeoError("split fractions are empty")
        fracs: list[float] = []
        for k, v in zip(names, values, strict=True):
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise SafetyGeoError(f"split fraction for {k!r} is not a number: {v!r}") from None
            if not math.isfinite(fv) or fv <= 0:
                raise SafetyGeoError(f"split fraction for {k!r} must be positive, got {v!r}")
            fracs.append(fv)
        total = math.fsum(fracs)
        if abs(total - 1.0) > 1e-9:
            raise SafetyGeoError(
                f"split fractions {dict(zip(names, fracs, strict=True))} sum to {total!r}, not 1"
            )
        n = len(self)
        sizes = [math.floor(f * n + 1e-9) for f in fracs[:-1]]
        sizes.append(n - sum(sizes))
        empty = [k for k, s in zip(names, sizes, strict=True) if s <= 0]
        if empty:
            raise EmptyPromptSetError(
                f"prompt set {self.name!r} (n={n}): split {empty} would be empty "
                f"(sizes {dict(zip(names, sizes, strict=True))})"
            )
        perm = np.random.default_rng(seed).permutation(n).tolist()
        out: dict[str, PromptSet] = {}
        start = 0
        for k, s in zip(names, sizes, strict=True):
            part = sorted(perm[start : start + s])
            start += s
            out[k] = self.subset(part, meta_update={"split": k, "split_seed": seed})
        return out

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (the payload written by :meth:`to_json`).

        Example:
            >>> PromptSet(["a"], name="x").to_dict()["prompts"]
            ['a']
        """
        return {
            "format": PROMPTSET_JSON_FORMAT,
            "version": _JSON_VERSION,
            "name": self.name,
            "label": self.label,
            "prompts": list(self.prompts),
            "categories": None if self.categories is None else list(self.categories),
            "targets": None if self.targets is None else list(self.targets),
            "meta": self.meta,
            "sha256": self.sha256(),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, source: str = "<dict>") -> PromptSet:
        """Rebuild a set from :meth:`to_dict` output, checking format and ``sha256``.

        Raises:
            PromptSetFormatError: On a wrong ``format`` tag, missing fields or a hash mismatch.

        Example:
            >>> ps = PromptSet(["a"], name="x")
            >>> PromptSet.from_dict(ps.to_dict()) == ps
            True
        """
        if not isinstance(obj, Mapping) or obj.get("format") != PROMPTSET_JSON_FORMAT:
            raise PromptSetFormatError(
                f"{source}: not a saved PromptSet (expected 'format': {PROMPTSET_JSON_FORMAT!r})"
            )
        if "prompts" not in obj or "name" not in obj:
            raise PromptSetFormatError(f"{source}: saved PromptSet lacks 'prompts' or 'name'")
        ps = cls(
            prompts=obj["prompts"],
            name=obj["name"],
            label=obj.get("label"),
            categories=obj.get("categories"),
            targets=obj.get("targets"),
            meta=obj.get("meta") or {},
        )
        expected = obj.get("sha256")
        if expected is not None and expected != ps.sha256():
            raise PromptSetFormatError(
                f"{source}: sha256 mismatch (file says {expected}, prompts hash to {ps.sha256()})"
            )
        return ps

    def to_json(self, path: str | Path) -> None:
        """Write the set to ``path`` as JSON, atomically (see :meth:`to_dict`).

        Example:
            >>> import tempfile, pathlib
            >>> p = pathlib.Path(tempfile.mkdtemp()) / "ps.json"
            >>> ps = PromptSet(["a", "b"], name="x", label="harmful")
            >>> ps.to_json(p); PromptSet.from_json(p) == ps
            True
        """
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> PromptSet:
        """Read a set written by :meth:`to_json`.

        Raises:
            PromptFileNotFoundError: If ``path`` is not an existing file.
            PromptSetFormatError: If the file is not valid JSON or not a saved PromptSet.
        """
        p = Path(path)
        if not p.is_file():
            raise PromptFileNotFoundError(f"prompt set file not found: {str(p)!r}")
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PromptSetFormatError(f"{str(p)!r}: invalid JSON ({e})") from e
        return cls.from_dict(obj, source=repr(str(p)))
