"""Writing vectors into a user collection without overwriting anyone else's write.

One protocol for a run's writes, a rollback's restores and the undo of a failed run. For each
batch:

1. re-read the batch's stored vectors (with their versions where the store has conditional
   writes); a record whose vector changed since the caller read it was written by someone else:
   it is skipped and adopted (its vector becomes its new original); a record that vanished is
   skipped (its state entry is dropped);
2. save the state entries of the rest as pending, with the target about to be written (the
   original vector is saved before the write that overwrites it; see ``nudge_sync.engine.classify``);
3. write (conditionally: only records whose version is still the one read in 1);
4. later (per batch, or once for everything): read back. Equal to the target: ours. Still what it
   held before our write: our write did not land (written once more, then WriteFailed). Anything
   else: someone wrote after us -- adopted, never overwritten.

The window in which a concurrent write can be lost is one batch, between its re-read and its
write; none where the store writes conditionally. Probes ``<phase>.before_write``,
``<phase>.save`` and ``<phase>.write`` mark the steps (``nudge_sync.engine.faults``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from connectors import CollectionInfo, RecordId, UnknownIds, VectorStore, WriteFailed

from .classify import adopted, same_vector, tolerance_of
from .emitter import Emitter
from .state import Original, SyncState


def fetch_vectors(store: VectorStore, ids: Sequence[RecordId], batch_size: int,
                  on_batch: Callable[[], None] | None = None) -> tuple[dict[RecordId, np.ndarray], list[RecordId]]:
    """Vectors by id in bounded batches: ({id: vector}, missing ids); ``on_batch`` after each."""
    found: dict[RecordId, np.ndarray] = {}
    missing: list[RecordId] = []
    for start in range(0, len(ids), batch_size):
        got, vecs, miss = store.get_vectors(ids[start : start + batch_size])
        found.update(zip(got, vecs))
        missing.extend(miss)
        if on_batch is not None:
            on_batch()
    return found, missing


@dataclass
class WriteItem:
    """One record to write."""

    record_id: RecordId
    target: np.ndarray  #: the vector to write
    expected: np.ndarray  #: what the caller saw stored when it planned the write
    entry: Original | None  #: the record's state entry now (None: nudge-sync never wrote it)
    nudged_after: bool  #: the target is a nudged vector (False: it restores the original)

    def pending(self, run_id: str) -> Original:
        base = self.entry or Original(self.record_id, self.expected, None, False, None)
        return base.with_target(self.target, run_id)


@dataclass
class BatchWriter:
    """The protocol of the module docstring for one run / rollback / undo (``phase`` names its
    probes and its BatchWritten events; an undo has no probes)."""

    store: VectorStore
    state: SyncState
    info: CollectionInfo
    emit: Emitter
    phase: str
    batch_size: int
    #: step 2; off for an undo: the failed run's pending entries already name both vectors a
    #: record may hold while the undo writes (the run's target, and what it held before)
    save_pending: bool = True
    #: id -> the item whose write was attempted (a failed write call may still have landed)
    attempted: dict[RecordId, WriteItem] = field(default_factory=dict)
    #: id -> what the record held right before our write
    before: dict[RecordId, np.ndarray] = field(default_factory=dict)
    #: id -> vector someone else wrote (seen before our write, or after it)
    adopted: dict[RecordId, np.ndarray] = field(default_factory=dict)
    vanished: list[RecordId] = field(default_factory=list)

    @property
    def tolerance(self) -> float:
        return tolerance_of(self.info)

    @property
    def run_id(self) -> str:
        return self.emit.run_id

    def _probe(self, step: str, ids: list[RecordId] | None = None) -> None:
        if self.phase != "undo":
            self.emit.probe(f"{self.phase}.{step}", ids)

    def write(self, items: Sequence[WriteItem], *, advance: bool = False) -> None:
        """Steps 1-3 for every batch of ``items``; ``advance``: one Advanced event per batch."""
        for start in range(0, len(items), self.batch_size):
            chunk = list(items[start : start + self.batch_size])
            self.write_batch(chunk)
            if advance:
                self.emit.advance(len(chunk))

    def write_batch(self, items: list[WriteItem]) -> list[WriteItem]:
        """Steps 1-3 for one batch; returns the items written."""
        began = time.perf_counter()
        adopted_before, vanished_before = len(self.adopted), len(self.vanished)
        conditional = self.info.conditional_writes
        ids = [it.record_id for it in items]
        snap = self.store.get_versioned(ids) if conditional else None
        if snap is not None:
            now, versions = dict(zip(snap.ids, snap.vectors)), dict(zip(snap.ids, snap.versions))
        else:
            now, _ = fetch_vectors(self.store, ids, len(ids) or 1)
            versions = {}
        go: list[WriteItem] = []
        newly_adopted: list[Original] = []
        for it in items:
            stored = now.get(it.record_id)
            if stored is None:
                self.vanished.append(it.record_id)
            elif stored.tobytes() != np.asarray(it.expected, dtype=np.float32).tobytes():
                self.adopted[it.record_id] = stored  # written by someone else since the plan read it
                newly_adopted.append(adopted(it.record_id, stored))
            else:
                go.append(it)
        go_ids = [it.record_id for it in go]
        self._probe("before_write", go_ids)
        self.state.put_originals(([it.pending(self.run_id) for it in go] if self.save_pending else []) + newly_adopted)
        self._probe("save", go_ids)
        for it in go:
            self.before[it.record_id] = now[it.record_id]
            self.attempted[it.record_id] = it
        self._send(go, versions)
        self.emit.batch(self.phase, len(go), len(self.adopted) - adopted_before, len(self.vanished) - vanished_before,
                        time.perf_counter() - began)
        self._probe("write", go_ids)
        return go

    def _send(self, items: list[WriteItem], versions: dict[RecordId, Any]) -> None:
        """One write call (conditional where the store has it); records deleted since the re-read
        are dropped and the rest written again."""
        while items:
            ids = [it.record_id for it in items]
            vectors = np.stack([it.target for it in items]).astype(np.float32)
            try:
                if self.info.conditional_writes:
                    self.store.update_vectors_if(ids, vectors, [versions.get(i) for i in ids])
                else:
                    # verify=False: read_back below reads every written vector anyway
                    self.store.update_vectors(ids, vectors, verify=False)
                return
            except UnknownIds as exc:  # deleted between the re-read and the write: nothing written
                gone = set(exc.ids)
                self.vanished.extend(i for i in ids if i in gone)
                items = [it for it in items if it.record_id not in gone]
                for i in gone:
                    self.attempted.pop(i, None)
                    self.before.pop(i, None)

    def read_back(self, ids: Iterable[RecordId]) -> tuple[dict[RecordId, np.ndarray], list[RecordId]]:
        """Step 4: ``({id: vector read back} of the writes that landed, ids whose write did not land)``;
        records someone else wrote after us are adopted, vanished ones noted."""
        ids = [i for i in ids if i in self.attempted]
        got, missing = fetch_vectors(self.store, ids, self.batch_size)
        self.vanished.extend(missing)
        landed: dict[RecordId, np.ndarray] = {}
        not_landed: list[RecordId] = []
        for i in ids:
            stored = got.get(i)
            if stored is None:
                continue
            if same_vector(stored, self.attempted[i].target, self.tolerance):
                landed[i] = stored
            elif stored.tobytes() == self.before[i].tobytes():
                not_landed.append(i)
            else:
                self.adopted[i] = stored
        return landed, not_landed

    def write_again(self, ids: list[RecordId]) -> dict[RecordId, np.ndarray]:
        """Writes that did not land get one more try (the whole protocol: someone may have written
        meanwhile); WriteFailed if they still do not land."""
        items = [replace(self.attempted[i], expected=self.before[i]) for i in ids]
        self.write(items)
        landed, still = self.read_back(ids)
        if still:
            raise WriteFailed(f"{len(still)} record(s) of {self.info.collection!r} still hold their previous vector "
                              f"after being written twice (the database acknowledged the writes), e.g. {still[:5]}")
        return landed

    def verify(self) -> dict[RecordId, np.ndarray]:
        """Step 4 for everything attempted: read back, write again what did not land. ``{id: the
        vector the database holds now}`` of the writes that landed."""
        landed, not_landed = self.read_back(self.written_ids())
        if not_landed:
            landed.update(self.write_again(not_landed))
        return landed

    def written_ids(self) -> list[RecordId]:
        return list(self.attempted)


def undo(writer: BatchWriter, previous: dict[RecordId, Original]) -> int:
    """Put back what a failed run's writes replaced, with the same protocol (a vector someone else
    wrote since is left alone and adopted). ``previous`` holds the state entries as they were
    before the run (records absent from it were first touched by the run: their entries are
    deleted again). Returns how many vectors were put back."""
    ids = writer.written_ids()
    got, _ = fetch_vectors(writer.store, ids, writer.batch_size)
    ours = [i for i in ids if i in got and same_vector(got[i], writer.attempted[i].target, writer.tolerance)]
    back = BatchWriter(writer.store, writer.state, writer.info, writer.emit, "undo", writer.batch_size,
                       save_pending=False)
    back.write([WriteItem(i, writer.before[i], got[i], previous.get(i), writer.attempted[i].nudged_after)
                for i in ours])
    landed, not_landed = back.read_back(ours)
    if not_landed:
        landed.update(back.write_again(not_landed))
    now, _ = fetch_vectors(writer.store, ids, writer.batch_size)
    keep: list[Original] = []
    drop: list[RecordId] = []
    for i in ids:
        stored = now.get(i)
        if stored is None:
            drop.append(i)
        elif stored.tobytes() == writer.before[i].tobytes():  # as before the run
            if i in previous:
                keep.append(previous[i])
            else:
                drop.append(i)
        else:
            keep.append(adopted(i, stored))
    writer.state.put_originals(keep)
    writer.state.delete_originals(drop)
    return len(landed)
