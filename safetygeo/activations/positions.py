"""Token positions to read, as offsets from the end of a chat-formatted prompt.

With left padding every prompt ends at the last column of a batch, so an offset from the
end is the same column for every row: selecting positions is a single ``index_select``.

Names (see :mod:`safetygeo.models.chat`):

* ``"post_instruction"`` (aliases ``"post_inst"``, ``"eoi"``): ``range(-n_eoi, 0)``;
* ``"t_inst"``: ``-n_eoi - 1``, the last instruction token;
* ``"last"``: ``-1``;
* ``"t_inst+post_instruction"``: ``t_inst`` followed by the post-instruction positions;
* labels ``"eoi-k"`` (``-k``, the k-th post-instruction token from the end), as results
  report positions.

Integers are offsets from the end and must be negative (``-1`` = last token).

Example:
    >>> resolve_positions("post_instruction", n_eoi=3)
    PositionSelection(offsets=(-3, -2, -1), labels=('eoi-3', 'eoi-2', 'eoi-1'))
    >>> resolve_positions("t_inst", n_eoi=3).offsets
    (-4,)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from safetygeo.errors import PositionError

PositionSpec = str | int | Sequence[int | str]

_POST = ("post_instruction", "post_inst", "eoi", "post-instruction")


@dataclass(frozen=True)
class PositionSelection:
    """Resolved positions: ``offsets`` from the end (all negative) with readable labels."""

    offsets: tuple[int, ...]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.offsets)

    def index(self, label_or_offset: str | int) -> int:
        """Index of a position in this selection, by label or offset."""
        seq = self.labels if isinstance(label_or_offset, str) else self.offsets
        if label_or_offset not in seq:
            raise PositionError(f"position {label_or_offset!r} not in selection {self.labels}")
        return seq.index(label_or_offset)


def _one(spec: str | int, n_eoi: int) -> list[tuple[int, str]]:
    if isinstance(spec, bool):
        raise PositionError(f"invalid position {spec!r}")
    if isinstance(spec, int):
        if spec >= 0:
            raise PositionError(
                f"position {spec} must be a negative offset from the end of the prompt "
                "(-1 = last token)"
            )
        label = f"eoi{spec}" if -n_eoi <= spec else ("t_inst" if spec == -n_eoi - 1 else f"pos{spec}")
        return [(spec, label)]
    name = spec.strip().lower()
    if name in _POST:
        if n_eoi == 0:
            raise PositionError(
                "the chat template has no post-instruction tokens (n_eoi = 0); choose "
                "positions='t_inst' or 'last', or a template with a suffix"
            )
        return [(o, f"eoi{o}") for o in range(-n_eoi, 0)]
    if name == "t_inst":
        return [(-n_eoi - 1, "t_inst")]
    if name == "last":
        return [(-1, "last")]
    if name.startswith("eoi-") and name[4:].isdigit():  # a label, as results report them
        k = int(name[4:])
        if not 1 <= k <= n_eoi:
            raise PositionError(
                f"position {spec!r} does not exist: the template has {n_eoi} post-instruction "
                f"tokens (eoi-{n_eoi} .. eoi-1)"
            )
        return [(-k, f"eoi-{k}")]
    if "+" in name:
        return [p for part in name.split("+") for p in _one(part, n_eoi)]
    raise PositionError(
        f"unknown position {spec!r}; use 'post_instruction', 't_inst', 'last', a label such as "
        "'eoi-1', a combination joined by '+', or negative integer offsets"
    )


def resolve_positions(spec: PositionSpec, n_eoi: int) -> PositionSelection:
    """Resolve a position spec for a template with ``n_eoi`` post-instruction tokens.

    Raises:
        PositionError: unknown name, non-negative offset, duplicates, or empty selection.
    """
    import numbers

    if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        spec = int(spec)
    if isinstance(spec, (str, int)) and not isinstance(spec, bool):
        pairs = _one(spec, n_eoi)
    elif spec is None or isinstance(spec, (bool, float, bytes)) or not hasattr(spec, "__iter__"):
        raise PositionError(f"invalid positions {spec!r}: give a name like 'post_instruction', "
                            f"a negative int offset or a list of them")
    else:
        items = list(spec)
        bad = [s for s in items if isinstance(s, (bool, float)) or not isinstance(s, (str, int))]
        if bad:
            raise PositionError(f"invalid position {bad[0]!r}: positions are names or negative "
                                f"int offsets")
        pairs = [p for s in items for p in _one(s, n_eoi)]
    if not pairs:
        raise PositionError("empty position selection")
    offsets = tuple(o for o, _ in pairs)
    if len(set(offsets)) != len(offsets):
        raise PositionError(f"duplicate positions in {spec!r}")
    return PositionSelection(offsets, tuple(lbl for _, lbl in pairs))
