"""Refusals that need only the collection's description (DESIGN.md section 3, step 2): what NUDGE
cannot serve is refused before anything is read, created or locked."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from connectors import CollectionInfo, RecordId

from .errors import RefusedInput
from .state import SyncState, pending_meta_bytes


def check_collection(info: CollectionInfo, method: str) -> None:
    """Refuse a method the collection's metric cannot serve."""
    if method == "nudge-m" and info.metric != "dot":
        raise RefusedInput(
            f"NUDGE-M writes vectors that are not unit-norm and only helps under dot-product search; "
            f"collection {info.collection!r} uses {info.metric} (it would re-normalise or mis-rank them). "
            "Use --method nudge-n, or a dot-product collection"
        )


def check_state_room(state: SyncState, info: CollectionInfo) -> None:
    """A pending write records its target in the state entry's meta: refuse a dimension whose
    targets the state collection cannot hold (Milvus keeps meta in a VARCHAR of 65,535 bytes)."""
    limit = state.max_meta_bytes
    need = pending_meta_bytes(info.dimension)
    if limit is not None and need > limit:
        largest = next(d for d in range(info.dimension, 0, -1) if pending_meta_bytes(d) <= limit)
        raise RefusedInput(
            f"collection {info.collection!r} has {info.dimension}-d vectors: a write in flight records its target "
            f"in the state collection, which would take up to {need:,} bytes of meta where {state.name!r} "
            f"holds {limit:,}; nudge-sync serves collections of up to {largest:,} dimensions on this backend")


def check_base_norms(info: CollectionInfo, ids: Sequence[RecordId], base: np.ndarray) -> None:
    """Under dot or l2 distance NUDGE needs unit-norm record vectors: refuse the first that is not."""
    if info.metric == "cosine":
        return  # the database compares directions only
    norms = np.linalg.norm(base.astype(np.float64), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > 1e-3)
    if bad.size:
        raise RefusedInput(
            f"collection {info.collection!r} uses {info.metric} distance, where NUDGE needs unit-norm record "
            f"vectors; record {ids[bad[0]]!r} has norm {norms[bad[0]]:.4f} ({bad.size} such records)"
        )
