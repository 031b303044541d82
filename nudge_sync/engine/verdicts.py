"""Every state entry classified against the vector the database holds now (``classify``): the
first read of a run, a rollback and ``status``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from connectors import CollectionInfo, RecordId, VectorStore

from .classify import Verdict, classify, tolerance_of
from .state import Original, SyncState
from .writer import fetch_vectors


def load_state(store: VectorStore, state: SyncState, info: CollectionInfo, current: dict[RecordId, np.ndarray],
               batch_size: int, on_read: Callable[[], None] | None = None) -> tuple[dict[RecordId, Original], dict[RecordId, Verdict]]:
    """Every state entry, classified against the vector stored now (``current`` is completed with
    the vectors it lacks): ``(entries as stored, verdicts)``. ``on_read`` is called after the state
    is read and after each batch of vectors (the caller's fault-injection probe)."""
    olds = state.all_originals() if state.exists() else {}
    if on_read is not None:
        on_read()
    more, _ = fetch_vectors(store, [i for i in olds if i not in current], batch_size, on_batch=on_read)
    current.update(more)
    tol = tolerance_of(info)
    return olds, {i: classify(o, current.get(i), tol) for i, o in olds.items()}
