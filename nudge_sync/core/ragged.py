"""Top-k inside the groups of a flat array (ragged rows), without a Python loop over groups.

The γ search keeps, per validation query, a variable number of candidate records in one flat
array (CSR: group ``g`` is ``[ptr[g], ptr[g+1])``). Ranking them one group at a time would be a
Python loop over queries; sorting the whole flat array is O(n log n) per call. Instead the groups
are laid out once in a few padded 2-d blocks, one per power-of-two width (padding at most doubles
the size), and each block is ranked with a row-wise partition: O(n) per call, plus a sort of k
entries per group.
"""

from __future__ import annotations

import numpy as np

from .metrics import _topk_rows

#: Narrowest padded width: tiny groups share one block instead of one block per size.
_MIN_WIDTH = 16


class RaggedGroups:
    """A fixed grouping of a flat array, laid out in padded blocks for row-wise ranking.

    ``blocks``: per width, (groups, pos): the groups laid out there and, per group row, the flat
    positions of its entries (in order), -1 for padding. ``where``: per flat position, its
    (block, row, column) in that layout.
    """

    __slots__ = ("n_groups", "blocks", "where")

    def __init__(self, ptr: np.ndarray):
        ptr = np.asarray(ptr, dtype=np.int64)
        self.n_groups = int(ptr.size - 1)
        sizes = np.diff(ptr)
        width = np.maximum(_MIN_WIDTH, 1 << np.ceil(np.log2(np.maximum(sizes, 1))).astype(np.int64))
        self.blocks: list[tuple[np.ndarray, np.ndarray]] = []
        n = int(ptr[-1]) if ptr.size else 0
        blk, row, col = (np.zeros(n, dtype=np.int64) for _ in range(3))
        for b, w in enumerate(np.unique(width[sizes > 0])):
            groups = np.flatnonzero((width == w) & (sizes > 0))
            cols = np.arange(int(w), dtype=np.int64)
            pos = ptr[groups, None] + cols[None, :]
            real = cols[None, :] < sizes[groups, None]
            pos[~real] = -1
            r, c = np.nonzero(real)
            p = pos[r, c]
            blk[p], row[p], col[p] = b, r, c
            self.blocks.append((groups, pos))
        self.where = (blk, row, col)

    def padded(self, values: np.ndarray) -> list[np.ndarray]:
        """``values`` laid out block by block, padding -inf."""
        return [np.where(pos >= 0, values[np.maximum(pos, 0)], -np.inf) for _, pos in self.blocks]

    def top_positions(self, values: np.ndarray, k: int) -> np.ndarray:
        """Per group, the positions (into the flat array) of its ``k`` best entries by (value
        desc, position asc), padded with -1: lay each group out in tie-break order (e.g. by record
        id) and the position is the tie-break."""
        out = np.full((self.n_groups, k), -1, dtype=np.int64)
        for (groups, pos), v in zip(self.blocks, self.padded(values)):
            top, _ = _topk_rows(v, pos, k)
            out[groups] = top
        return out

    def top_values(self, values: np.ndarray, k: int) -> np.ndarray:
        """Per group, its ``k`` largest values in decreasing order, padded with -inf."""
        out = np.full((self.n_groups, k), -np.inf)
        for (groups, _), top in zip(self.blocks, top_of_blocks(self.padded(values), k)):
            out[groups, : top.shape[1]] = top
        return out


def top_of_blocks(padded: list[np.ndarray], k: int) -> list[np.ndarray]:
    """Per padded block, each row's ``min(k, width)`` largest values in decreasing order."""
    out = []
    for v in padded:
        w = v.shape[1]
        top = v if w <= k else np.partition(v, w - k, axis=1)[:, w - k :]
        out.append(-np.sort(-top, axis=1))
    return out
