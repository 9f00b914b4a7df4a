"""Left-padded batches with explicit ``position_ids``.

Rows are sorted by length (stable) so batches carry little padding; each batch keeps the
original prompt indices. ``position_ids`` count real tokens only (``cumsum(mask) - 1``), so
a padded row sees exactly the positions it would see unpadded (nnsight #672 is this bug).

Example:
    >>> b = next(iter_batches([[5, 6, 7], [8]], batch_size=2, pad_id=0))
    >>> b.input_ids.tolist(), b.position_ids.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[0, 1, 2], [0, 0, 0]])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from safetygeo.errors import SafetyGeoError


@dataclass(frozen=True)
class Batch:
    """One left-padded batch. ``indices`` are the rows' positions in the prompt list."""

    input_ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    position_ids: Int[Tensor, "batch seq"]
    indices: tuple[int, ...]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     self.position_ids.to(device), self.indices)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Left-pad token id lists; return ``(input_ids, attention_mask, position_ids)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s):] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def batch_indices(lengths: Sequence[int], batch_size: int, *, sort: bool = True
                  ) -> Iterator[list[int]]:
    """The prompt indices of each batch: longest first when ``sort`` (a stable sort, so
    equal lengths keep their order), ``batch_size`` at a time.

    Example:
        >>> list(batch_indices([1, 3, 2, 3], 2))
        [[1, 3], [2, 0]]
    """
    if batch_size < 1:
        raise SafetyGeoError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    order = list(range(len(lengths)))
    if sort:
        order.sort(key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def iter_batches(
    seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int, *, sort: bool = True
) -> Iterator[Batch]:
    """Yield left-padded batches of ``seqs`` (longest first when ``sort``)."""
    for idx in batch_indices([len(s) for s in seqs], batch_size, sort=sort):
        ids, mask, pos = left_pad([seqs[i] for i in idx], pad_id)
        yield Batch(ids, mask, pos, tuple(idx))


def iter_batches_lazy(
    lengths: Sequence[int], encode: Callable[[list[int]], Sequence[Sequence[int]]],
    batch_size: int, pad_id: int, *, sort: bool = True,
) -> Iterator[Batch]:
    """:func:`iter_batches` without holding every prompt's token ids: only their
    ``lengths``; ``encode(indices)`` tokenizes one batch's prompts when it is reached.
    The batches are those of ``iter_batches`` on the same token ids (same order, same
    padding), so memory stays flat in the number of prompts.

    Example:
        >>> seqs = [[5, 6, 7], [8], [9, 9]]
        >>> lazy = iter_batches_lazy([3, 1, 2], lambda idx: [seqs[i] for i in idx], 2, 0)
        >>> [b.input_ids.tolist() for b in lazy] == [
        ...     b.input_ids.tolist() for b in iter_batches(seqs, 2, 0)]
        True
    """
    for idx in batch_indices(lengths, batch_size, sort=sort):
        rows = encode(idx)
        got = [len(r) for r in rows]
        want = [lengths[i] for i in idx]
        if got != want:
            raise SafetyGeoError(f"re-tokenized prompts {idx} have lengths {got}, expected {want}")
        ids, mask, pos = left_pad(rows, pad_id)
        yield Batch(ids, mask, pos, tuple(idx))
