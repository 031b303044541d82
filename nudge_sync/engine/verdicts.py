"""Every state entry classified against the vector the database holds now (``classify``): the
first read of a run, a rollback and ``status``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from connectors import CollectionInfo, RecordId, VectorStore

from .classify import ADOPTED, Verdict, adopted, classify, tolerance_of
from .errors import RefusedInput
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
    verdicts = {i: classify(o, current.get(i), tol) for i, o in olds.items() if not o.unverified}
    state.unverified = [i for i, o in olds.items() if o.unverified]
    if state.unverified:
        if not state.skip_unverified:
            raise unverified_error(state, olds)
        for i in state.unverified:  # trusted no more: what the database holds now is the record's original
            stored = current.get(i)
            verdicts[i] = Verdict(ADOPTED, adopted(i, stored), True) if stored is not None else classify(olds[i], None, tol)
    return olds, verdicts


def reembedded(verdicts: dict[RecordId, Verdict], state: SyncState) -> list[RecordId]:
    """The records adopted because someone else wrote them, not those whose entries failed their
    checksums (``--skip-unverified`` adopts those too, but nobody re-embedded them: they are counted
    apart, as ``skipped_unverified`` / ``unverified``)."""
    skipped = set(state.unverified)
    return [i for i, v in verdicts.items() if v.kind == ADOPTED and i not in skipped]


def unverified_error(state: SyncState, olds: dict[RecordId, Original]) -> RefusedInput:
    """The refusal naming the entries whose vectors no longer match their checksums."""
    bad = state.unverified
    named = ", ".join(f"{i!r} ({'/'.join(olds[i].unverified)})" for i in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    return RefusedInput(
        f"state collection {state.name!r}: {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} no longer match "
        f"their checksums (edited or damaged), for record(s) {named}{more}; nothing was written. Pass "
        "--skip-unverified to leave those records as they are now (their stored vector becomes their original) "
        "and go on with the others")
