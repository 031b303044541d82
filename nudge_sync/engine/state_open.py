"""Opening the state collection, in one place for every command and every database: its name, the
collection's own marker, and the dimension and metric it serves.

A state collection is nudge-sync's when it holds the marker record (``state.MARKER``) written at
its creation and that marker names this collection, its dimension and its metric. A collection
without a marker is accepted only as a state of an earlier version (which wrote none), and only if
every record in it is a state record: its count equals the originals, runs and locks found in it,
each original of the collection's dimension. An empty collection without a marker is accepted only
under the default state name (a run killed between creating the collection and marking it). The
first command that locks such a state writes the marker. Anything else is refused (RefusedInput,
exit 4) before anything is created, locked or written: the user's collection, its log, or any
collection nudge-sync did not create.
"""

from __future__ import annotations

from connectors import CollectionInfo, ConnectionFailed, ConnectorError, VectorStore

from .errors import RefusedInput
from .names import default_state_name, state_name_for
from .state import LOCK, ORIGINAL, RUN, Original, SyncState


def open_state(store: VectorStore, info: CollectionInfo, given: str | None, log: str | None = None, *,
               skip_unverified: bool = False) -> SyncState:
    """The state collection of ``info``'s collection (``given``: --state; ``log``: --log), checked
    if it exists. ``skip_unverified``: entries failing their checksum are skipped and reported by
    ``verdicts.load_state`` instead of refused."""
    name = state_name_for(info.collection, given, log)
    state = SyncState(store.state(name), serves=info)
    state.skip_unverified = skip_unverified
    if state.exists():
        check_state(state, info, default=name == default_state_name(info.collection))
    return state


def check_state(state: SyncState, info: CollectionInfo, *, default: bool) -> None:
    """Refuse an existing collection that is not nudge-sync's state of ``info`` (module docstring)."""
    try:
        marker = state.marker()
        _check_dimension(state, info)
        if marker is None:
            _check_unmarked(state, info, default)
    except ConnectionFailed:
        raise
    except ConnectorError as exc:  # a collection of another layout (e.g. an int primary key in Milvus)
        raise _foreign(state, info, f"its records are not nudge-sync's: {exc}") from None
    if marker is not None:
        _check_marker(state, info, marker)
        state.marked = True


def _check_dimension(state: SyncState, info: CollectionInfo) -> None:
    have = state.collection.dimension()
    if have != info.dimension:
        raise RefusedInput(
            f"state collection {state.name!r} holds {have}-d vectors, but collection {info.collection!r} holds "
            f"{info.dimension}-d vectors: it is not the state of this collection (pass --state with another name)")


def _check_marker(state: SyncState, info: CollectionInfo, marker: dict) -> None:
    served = (marker.get("collection"), marker.get("dimension"), marker.get("metric"))
    if served != (info.collection, info.dimension, info.metric):
        raise RefusedInput(
            f"state collection {state.name!r} was made for collection {served[0]!r} ({served[1]}-d, {served[2]}); "
            f"collection {info.collection!r} is {info.dimension}-d, {info.metric}: it is not the state of this "
            "collection (pass --state with another name)")


def _check_unmarked(state: SyncState, info: CollectionInfo, default: bool) -> None:
    total = state.collection.count()
    if total == 0:
        if default:
            return  # created by a run killed before it could mark it: the next run marks it
        raise _foreign(state, info, "it is empty and has no nudge-sync marker")
    found = 0
    for kind in (ORIGINAL, RUN, LOCK):
        for batch in state.collection.scan(kind):
            for rec in batch:
                if kind == ORIGINAL:
                    o = Original.from_record(rec)
                    if o.vector.shape != (info.dimension,):
                        raise _foreign(state, info, f"its record {rec.key!r} is not a nudge-sync original")
                found += 1
    if found != total:
        raise _foreign(state, info, f"{total - found} of its {total} records are not nudge-sync state records")


def _foreign(state: SyncState, info: CollectionInfo, why: str) -> RefusedInput:
    return RefusedInput(
        f"collection {state.name!r} is not a nudge-sync state collection ({why}); nudge-sync never writes into a "
        f"collection it did not create. Pass --state with another name (the default for {info.collection!r} is "
        f"{default_state_name(info.collection)!r})")
