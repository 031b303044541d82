"""The run context: one typed object carrying what a command's steps need, instead of a tuple
passed by position from step to step."""

from __future__ import annotations

from dataclasses import dataclass

from connectors import CollectionInfo, VectorStore

from .emitter import Emitter
from .names import state_name_for
from .options import SyncOptions, SyncReport
from .state import SyncState


@dataclass
class Context:
    """What every command that reads the state or writes vectors works on."""

    store: VectorStore
    info: CollectionInfo
    state: SyncState
    emit: Emitter
    batch_size: int

    @property
    def run_id(self) -> str:
        return self.emit.run_id


@dataclass
class RunContext(Context):
    """One ``sync`` run: the context, its options and the report the steps fill."""

    opts: SyncOptions
    report: SyncReport


def open_state(store: VectorStore, collection: str, name: str | None) -> SyncState:
    """The state collection of ``collection`` (``name``, else the default name): every command
    opens it here."""
    return SyncState(store.state(state_name_for(collection, name)))
