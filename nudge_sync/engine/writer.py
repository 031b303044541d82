"""Writing vectors into a user collection without overwriting anyone else's write: the one write
protocol of a run's writes, a rollback's restores and the put-back after a failed run.

For each batch:

1. save the state entries of the batch as pending, with the target about to be written (the
   original vector is saved before the write that overwrites it; see ``nudge_sync.engine.classify``);
2. re-read the batch's stored vectors (with their versions where the store has conditional
   writes), right before the write: a record whose vector changed since the caller read it was
   written by someone else: it is skipped and adopted (its vector becomes its new original, its
   pending entry is replaced); a record that vanished is skipped (its entry is dropped on record);
3. write (conditionally: only records whose version is still the one read in 2);
4. later, for everything written: read back. Equal to the target: ours. Still what it held before
   our write: our write did not land (written once more, then WriteFailed). Anything else: someone
   wrote after us -- adopted, never overwritten. On a database that re-normalises what it stores,
   a restore is corrected until it lands bit for bit where a float32 pre-image exists (compensation);
5. record: fingerprints of what landed, adoptions, entries the caller's read settled, records gone.

The window in which a concurrent write can be lost is one batch, between its re-read (after the
state write) and its vector write; none where the store writes conditionally. Probes
``<phase>.save``, ``<phase>.before_write``, ``<phase>.write`` and ``<phase>.record`` mark the steps
(Probe events; an undo has none).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from connectors import CollectionInfo, RecordId, UnknownIds, VectorStore, WriteFailed

from .classify import ADOPTED, VANISHED, Verdict, adopted, same_vector, tolerance_of
from .emitter import Emitter
from .state import Original, SyncState, fingerprint

#: Extra write rounds a restore may spend to land bit-exactly on a re-normalising database:
#: "shift" corrects by the observed error, a number scales the original by that many 2^-24 steps.
COMPENSATION: tuple[str | int, ...] = ("shift", "shift", 1, -1, 2, -2)


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
        return self.base().with_target(self.target, run_id)

    def base(self) -> Original:
        return self.entry or Original(self.record_id, self.expected, None, False, None)


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
    #: step 1; off for an undo: the failed run's pending entries already name both vectors a
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

    # -- the write, verify and record steps of a run or a rollback (events around the protocol) ----

    def write_step(self, items: Sequence[WriteItem]) -> None:
        """Step ``write``: steps 1-3 of the protocol for every batch."""
        with self.emit.step("write", len(items)) as step:
            self.write(items, advance=True)
            step.update(attempted=len(self.attempted), adopted=len(self.adopted), vanished=len(set(self.vanished)))

    def verify_step(self, *, compensate: bool = False) -> dict[RecordId, np.ndarray]:
        """Step ``verify``: step 4; ``{id: what the database holds now}`` of the writes that landed."""
        with self.emit.step("verify") as step:  # one read of everything written: no units to count
            landed = self.verify(compensate=compensate)
            step.update(landed=len(landed), adopted=len(self.adopted))
        return landed

    def record_step(self, landed: dict[RecordId, np.ndarray], verdicts: dict[RecordId, Verdict],
                    run_record: Callable[[], dict[str, Any]]) -> None:
        """Step ``record``: step 5, then the run record ``run_record()`` builds, into the state."""
        with self.emit.step("record") as step:
            self.record(landed, verdicts)
            self.state.put_run(self.run_id, run_record())
            self._probe("record")
            step.update(recorded=len(landed))

    def summary(self, landed: dict[RecordId, np.ndarray]) -> dict[str, int]:
        """What a report says of the writes: restores among those that landed, adopted, vanished."""
        return {"restores": sum(not self.attempted[i].nudged_after for i in landed), "adopted": len(self.adopted),
                "vanished": len(set(self.vanished))}

    # -- steps 1-3 ------------------------------------------------------------------------------

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
        ids = [it.record_id for it in items]
        if self.save_pending:
            self.state.put_originals([it.pending(self.run_id) for it in items])
        self._probe("save", ids)
        by_id = {it.record_id: it for it in items}

        def attempting(go: list[RecordId], now: dict[RecordId, np.ndarray]) -> None:
            for i in go:  # before the call: a failed write call may still have landed
                self.attempted[i], self.before[i] = by_id[i], now[i]

        go = self._guarded_write({i: (it.target, it.expected) for i, it in by_id.items()}, probes=True,
                                 before_send=attempting)
        written = [by_id[i] for i in go]
        self.emit.batch(self.phase, len(written), len(self.adopted) - adopted_before,
                        len(self.vanished) - vanished_before, time.perf_counter() - began)
        self._probe("write", go)
        return written

    def _guarded_write(self, planned: dict[RecordId, tuple[np.ndarray, np.ndarray]], *, probes: bool,
                       before_send: Callable[[list[RecordId], dict[RecordId, np.ndarray]], None] | None = None,
                       ) -> list[RecordId]:
        """Steps 2 and 3 for ``{id: (vector to write, vector expected stored)}``: re-read, adopt
        what changed (its state entry replaced), skip what vanished, write the rest conditionally
        where the store can. Returns the ids written."""
        ids = list(planned)
        conditional = self.info.conditional_writes
        snap = self.store.get_versioned(ids) if conditional else None
        if snap is not None:
            now, versions = dict(zip(snap.ids, snap.vectors)), dict(zip(snap.ids, snap.versions))
        else:
            now, _ = fetch_vectors(self.store, ids, len(ids) or 1)
            versions = {}
        go: list[RecordId] = []
        newly_adopted: list[Original] = []
        for i, (_, expected) in planned.items():
            stored = now.get(i)
            if stored is None:
                self.vanished.append(i)
            elif stored.tobytes() != np.asarray(expected, dtype=np.float32).tobytes():
                self.adopted[i] = stored  # written by someone else since the caller read it
                newly_adopted.append(adopted(i, stored))
            else:
                go.append(i)
        if newly_adopted:
            self.state.put_originals(newly_adopted)  # replaces the pending entry saved in step 1
        if before_send is not None:
            before_send(go, now)
        if probes:
            self._probe("before_write", go)
        return self._send(go, {i: planned[i][0] for i in go}, versions)

    def _send(self, ids: list[RecordId], vectors: dict[RecordId, np.ndarray], versions: dict[RecordId, Any]) -> list[RecordId]:
        """One write call (conditional where the store has it); records deleted since the re-read
        are dropped and the rest written again. Returns the ids sent in the call that succeeded."""
        while ids:
            batch = np.stack([vectors[i] for i in ids]).astype(np.float32)
            try:
                if self.info.conditional_writes:
                    self.store.update_vectors_if(ids, batch, [versions.get(i) for i in ids])
                else:
                    # verify=False: read_back reads every written vector anyway
                    self.store.update_vectors(ids, batch, verify=False)
                return ids
            except UnknownIds as exc:  # deleted between the re-read and the write: nothing written
                gone = set(exc.ids)
                self.vanished.extend(i for i in ids if i in gone)
                ids = [i for i in ids if i not in gone]
                for i in gone:
                    self.attempted.pop(i, None)
                    self.before.pop(i, None)
        return ids

    # -- step 4 ---------------------------------------------------------------------------------

    def read_back(self, ids: Iterable[RecordId]) -> tuple[dict[RecordId, np.ndarray], list[RecordId]]:
        """``({id: vector read back} of the writes that landed, ids whose write did not land)``;
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

    def verify(self, *, compensate: bool = False) -> dict[RecordId, np.ndarray]:
        """Step 4 for everything attempted: read back, write again what did not land (and, with
        ``compensate``, correct restores a re-normalising database moved). ``{id: the vector the
        database holds now}`` of the writes that landed."""
        landed, not_landed = self.read_back(self.written_ids())
        if not_landed:
            landed.update(self.write_again(not_landed))
        return self._compensate(landed) if compensate else landed

    def written_ids(self) -> list[RecordId]:
        return list(self.attempted)

    def _compensate(self, back: dict[RecordId, np.ndarray]) -> dict[RecordId, np.ndarray]:
        """Where the database re-normalised a restored vector on write (Qdrant and Chroma cosine
        collections do, in float32) and moved the last bit of some component, try other pre-images
        of the original: ``sent + (original - stored)``, then the original scaled by a few ulps.
        Each round rewrites, through steps 2-3, only the vectors still off and still ours (one
        someone else wrote meanwhile is adopted, never overwritten). Some stored vectors have no
        float32 pre-image under the database's normalisation; those end at the closest candidate."""
        if not back or not self.info.renormalises:
            return back  # the database stores what it is sent: what landed is the original
        want = {i: self.attempted[i].target for i in back}
        sent = dict(want)
        best = {i: (max_abs(back[i], want[i]), want[i]) for i in back}
        for attempt in COMPENSATION:
            off = [i for i in back if best[i][0] > 0 and i not in self.adopted]
            if not off:
                break
            if attempt == "shift":
                sent = {i: (sent[i] + (want[i] - back[i])).astype(np.float32) for i in off}
            else:
                sent = {i: (want[i].astype(np.float64) * (1.0 + attempt * 2.0**-24)).astype(np.float32) for i in off}
            back.update(self._rewrite({i: sent[i] for i in off}, back))
            for i in off:
                if i in back and max_abs(back[i], want[i]) < best[i][0]:
                    best[i] = (max_abs(back[i], want[i]), sent[i])
        # leave each vector at the best candidate found (the last one written may be worse)
        worse = {i: best[i][1] for i in back if i not in self.adopted and max_abs(back[i], want[i]) > best[i][0]}
        if worse:
            back.update(self._rewrite(worse, back))
        gone = set(self.vanished)
        return {i: v for i, v in back.items() if i not in self.adopted and i not in gone}

    def _rewrite(self, vectors: dict[RecordId, np.ndarray], back: dict[RecordId, np.ndarray]) -> dict[RecordId, np.ndarray]:
        """Candidates written over records that still hold what we last read back (steps 2-3),
        then read back: ``{id: stored}`` of those within the compensation tolerance of the target."""
        ids = list(vectors)
        mine: list[RecordId] = []
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start : start + self.batch_size]
            mine.extend(self._guarded_write({i: (vectors[i], back[i]) for i in chunk}, probes=False))
        got, _ = fetch_vectors(self.store, mine, self.batch_size)
        out = {}
        for i in mine:
            if i in got and same_vector(got[i], self.attempted[i].target, max(self.tolerance, 1e-5)):
                out[i] = got[i]
            elif i in got:
                self.adopted[i] = got[i]
        return out

    # -- step 5 ---------------------------------------------------------------------------------

    def record(self, landed: dict[RecordId, np.ndarray], verdicts: dict[RecordId, Verdict]) -> None:
        """Fingerprints of what landed, adoptions (during the write, or found by the caller's read
        in ``verdicts``), entries that read settled, records gone. One probe after each state write."""
        touched = set(self.attempted) | set(self.adopted) | set(self.vanished)
        ours = [Original(i, self.attempted[i].base().vector, fingerprint(stored), self.attempted[i].nudged_after,
                         self.run_id) for i, stored in landed.items()]
        fresh = [adopted(i, v) for i, v in self.adopted.items()]
        fresh += [v.entry for i, v in verdicts.items() if v.kind == ADOPTED and i not in touched and v.entry]
        settled = [v.entry for i, v in verdicts.items()
                   if v.changed and v.kind not in (ADOPTED, VANISHED) and i not in touched and v.entry]
        # ours and settled were saved with these very vectors: only their meta changes
        for entries, vectors_stored in ((ours, True), (fresh, False), (settled, True)):
            if entries:
                self.state.put_originals(entries, vectors_stored=vectors_stored)
                self._probe("record")
        gone = set(self.vanished) | {i for i, v in verdicts.items() if v.kind == VANISHED}
        if gone:
            self.state.delete_originals(sorted(gone, key=str))
            self._probe("record")


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
    landed = back.verify()
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


def max_abs(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)), initial=0.0))
