"""``rollback``: write back the original vector of every record whose stored vector nudge-sync wrote.

Every state entry is classified against the vector stored now (``nudge_sync.engine.classify``): records
holding our vector are restored, records already holding their original (a rollback killed before
it could record so) are only recorded, records someone else wrote are adopted and left alone. The
restores go batch by batch through the same protocol as a run's writes (``nudge_sync.engine.writer``):
re-read, mark the batch as being restored in the state (pending, target = the original), write,
read back, record -- so a rollback killed anywhere and run again finishes the job and counts right.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from connectors import CollectionInfo, ConnectorError, RecordId, VectorStore

from . import faults
from .classify import ADOPTED, NUDGED, RESTORED, VANISHED, same_vector
from .names import new_run_id
from .verdicts import load_state
from .errors import NothingToDo, NudgeSyncError, PartiallyWritten, RefusedInput
from .options import check_batch_size_option
from .progress import Progress
from .state import Original, SyncState, fingerprint
from .state_open import open_state
from .writer import BatchWriter, WriteItem, fetch_vectors

#: Extra write rounds a rollback may spend to land bit-exactly on a re-normalising database:
#: "shift" corrects by the observed error, a number scales the original by that many 2^-24 steps.
COMPENSATION: tuple[str | int, ...] = ("shift", "shift", 1, -1, 2, -2)


def rollback(
    store: VectorStore,
    *,
    run_id: str | None = None,
    state_name: str | None = None,
    dry_run: bool = False,
    batch_size: int = 1000,
    lock_ttl: float = 3600.0,
    break_lock: bool = False,
    progress: Progress | None = None,
    skip_unverified: bool = False,
) -> dict[str, Any]:
    """Write back the original vector of every record nudge-sync changed (or only those whose
    current vector was written by ``run_id``). Records re-embedded by someone else since our write
    are left alone (their new vector is theirs). ``break_lock`` first removes a lock left by a run
    that died (the usual reason to roll back). Returns a report dict; raises PartiallyWritten
    (exit 7) when it fails part-way (a rerun finishes it)."""
    progress = progress or Progress()
    check_batch_size_option(batch_size)
    info = store.describe()
    state = open_state(store, info, state_name, skip_unverified=skip_unverified)
    if not state.exists():
        raise NothingToDo(f"collection {info.collection!r} has no nudge-sync state: nothing to roll back")
    if run_id is not None and not _known_run(state, run_id):
        raise RefusedInput(f"run {run_id!r} is not in the history of {info.collection!r} (see `nudge-sync history`)")
    broken = state.break_lock() if break_lock and not dry_run else None
    token = None if dry_run else state.acquire(lock_ttl)
    if token is not None:
        faults.probe("lock.acquired")
    failed = False
    try:
        return _rollback(store, info, state, run_id, dry_run, batch_size, progress, broken)
    except BaseException:
        failed = True
        raise
    finally:
        if token is not None:
            state.release(token, quiet=failed)


def _known_run(state: SyncState, run_id: str) -> bool:
    """In the history, or named by a state entry: a run that lost its database before it could
    record itself left its pending writes under its id (its exit-7 message names it)."""
    if run_id in {r.get("run_id") for r in state.runs()}:
        return True
    return any(run_id in (o.run, o.target_run) for o in state.originals())


def _rollback(store: VectorStore, info: CollectionInfo, state: SyncState, run_id: str | None, dry_run: bool,
              batch_size: int, progress: Progress, broken: dict[str, Any] | None) -> dict[str, Any]:
    rid = new_run_id()
    current: dict[RecordId, np.ndarray] = {}
    entries, verdicts = load_state(store, state, info, current, batch_size, probe="rollback.read")
    ours = {i for i, v in verdicts.items() if v.entry is not None and (run_id is None or v.entry.run == run_id)}
    todo = [i for i, v in verdicts.items() if v.kind == NUDGED and i in ours]
    settled = [v.entry for i, v in verdicts.items() if v.kind == RESTORED and v.changed and v.entry]
    adopted = [v.entry for v in verdicts.values() if v.kind == ADOPTED and v.entry]
    vanished = [i for i, v in verdicts.items() if v.kind == VANISHED]
    report: dict[str, Any] = {
        "run_id": rid, "status": "dry-run" if dry_run else "rolled-back", "collection": info.collection,
        "of_run": run_id, "started": time.time(), "to_restore": len(todo),
        "already_restored": len(settled), "skipped_reembedded": len(adopted), "vanished": len(vanished),
    }
    if state.unverified:  # --skip-unverified: entries failing their checksums, left as they are
        report["skipped_unverified"] = state.unverified[:100]
    if broken:
        report["broke_lock_of"] = broken.get("run_id")
    if getattr(state, "took_over", None):
        report["took_over_lock_of"] = state.took_over.get("run_id") or state.took_over.get("owner")
    if dry_run:
        report.update(restored=0, bit_exact=0, finished=time.time())
        return report
    _settle(state, settled, adopted, vanished)
    if not todo:
        report.update(status="unchanged", restored=0, bit_exact=0, finished=time.time())
        return report
    writer = BatchWriter(store, state, info, rid, "rollback", batch_size)
    restored: dict[RecordId, np.ndarray] = {}
    try:
        with progress.phase("restoring", len(todo)) as p:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                restored.update(_restore_batch(writer, [verdicts[i].entry for i in batch], current, rid))
                p.advance(len(batch))
    except (NudgeSyncError, ConnectorError) as exc:
        if not writer.attempted:
            raise
        raise PartiallyWritten(
            f"partially rolled back: {len(restored)} of {len(todo)} records restored before the failure ({exc}); "
            "run `nudge-sync rollback` again to complete it (the state says which records are restored)") from None
    wanted = {i: entries[i].vector for i in restored}
    exact = sum(restored[i].tobytes() == np.asarray(wanted[i], np.float32).tobytes() for i in restored)
    worst = max((_max_abs(restored[i], wanted[i]) for i in restored), default=0.0)
    # A database that re-normalises what it stores (e.g. Qdrant cosine collections) can move the
    # last bit of a few components; the report says how many vectors came back bit-for-bit.
    report.update(restored=len(restored), bit_exact=int(exact), max_abs_diff=worst,
                  adopted_during_rollback=len(writer.adopted), vanished_during_rollback=len(set(writer.vanished)),
                  finished=time.time())
    if not restored:
        report["status"] = "unchanged"
    state.put_run(rid, report)
    faults.probe("rollback.record")
    return report


def _settle(state: SyncState, settled: list[Original], adopted: list[Original], vanished: list[RecordId]) -> None:
    """Record what the classification found: restores a killed rollback did not record, adoptions,
    records gone."""
    if settled:
        state.put_originals(settled, vectors_stored=True)
        faults.probe("rollback.record")
    if adopted:
        state.put_originals(adopted)
        faults.probe("rollback.record")
    if vanished:
        state.delete_originals(vanished)
        faults.probe("rollback.record")


def _restore_batch(writer: BatchWriter, entries: list[Original], current: dict[RecordId, np.ndarray],
                   rid: str) -> dict[RecordId, np.ndarray]:
    """One batch: re-read, mark as being restored, write the originals, read back (and correct the
    last bits on a re-normalising database), record. Returns {id: vector read back} of the restored."""
    items = [WriteItem(o.record_id, np.asarray(o.vector, np.float32), current[o.record_id], o, False) for o in entries]
    written = writer.write_batch(items)
    landed, not_landed = writer.read_back([it.record_id for it in written])
    if not_landed:
        landed.update(writer.write_again(not_landed))
    landed = _compensate(writer, landed)
    state = writer.state
    state.put_originals((Original(i, writer.attempted[i].target, fingerprint(v), False, rid) for i, v in landed.items()),
                        vectors_stored=True)
    fresh = [Original(i, v, fingerprint(v), False, None) for i, v in writer.adopted.items()
             if i in {it.record_id for it in items}]
    if fresh:
        state.put_originals(fresh)
    gone = [i for i in set(writer.vanished) if i in {it.record_id for it in items}]
    state.delete_originals(gone)
    faults.probe("rollback.record")
    return landed


def _compensate(writer: BatchWriter, back: dict[RecordId, np.ndarray]) -> dict[RecordId, np.ndarray]:
    """Where the database re-normalised a restored vector on write (Qdrant and Chroma cosine
    collections do, in float32) and moved the last bit of some component, try other pre-images of
    the original: ``sent + (original - stored)``, then the original scaled by a few ulps. Each
    round rewrites only the vectors still off and still ours (one someone else wrote meanwhile is
    adopted, never overwritten). Some stored vectors have no float32 pre-image under the database's
    normalisation; those end at the closest candidate (1 ulp)."""
    if not back or not writer.info.renormalises:
        return back  # the database stores what it is sent: what landed is the original
    want = {i: writer.attempted[i].target for i in back}
    sent = dict(want)
    best = {i: (_max_abs(back[i], want[i]), want[i]) for i in back}
    for attempt in COMPENSATION:
        off = [i for i in back if best[i][0] > 0 and i not in writer.adopted]
        if not off:
            break
        if attempt == "shift":
            sent = {i: (sent[i] + (want[i] - back[i])).astype(np.float32) for i in off}
        else:
            sent = {i: (want[i].astype(np.float64) * (1.0 + attempt * 2.0**-24)).astype(np.float32) for i in off}
        back.update(_rewrite(writer, {i: sent[i] for i in off}, back))
        for i in off:
            if i in back and _max_abs(back[i], want[i]) < best[i][0]:
                best[i] = (_max_abs(back[i], want[i]), sent[i])
    # leave each vector at the best candidate found (the last one written may be worse)
    worse = {i: best[i][1] for i in back if i not in writer.adopted and _max_abs(back[i], want[i]) > best[i][0]}
    if worse:
        back.update(_rewrite(writer, worse, back))
    return {i: v for i, v in back.items() if i not in writer.adopted}


def _rewrite(writer: BatchWriter, vectors: dict[RecordId, np.ndarray],
             back: dict[RecordId, np.ndarray]) -> dict[RecordId, np.ndarray]:
    """Write candidates over records that still hold what we last read back (ours), read them
    back; a record someone else wrote meanwhile is adopted instead."""
    store, tol = writer.store, writer.tolerance
    conditional = writer.info.conditional_writes
    if conditional:  # the same one-snapshot read and conditional write as every other write
        snap = store.get_versioned(list(vectors))
        now, versions = dict(zip(snap.ids, snap.vectors)), dict(zip(snap.ids, snap.versions))
    else:
        now, _ = fetch_vectors(store, list(vectors), writer.batch_size)
    mine = {}
    for i, v in vectors.items():
        if i in now and now[i].tobytes() == back[i].tobytes():
            mine[i] = v
        else:
            writer.adopted[i] = now[i] if i in now else back[i]
    for start in range(0, len(mine), writer.batch_size):
        chunk = list(mine)[start : start + writer.batch_size]
        candidates = np.stack([mine[i] for i in chunk])
        if conditional:
            store.update_vectors_if(chunk, candidates, [versions[i] for i in chunk])
        else:
            store.update_vectors(chunk, candidates, verify=False)  # read back just below
    got, _ = fetch_vectors(store, list(mine), writer.batch_size)
    out = {}
    for i in mine:
        want = writer.attempted[i].target
        if i in got and same_vector(got[i], want, max(tol, 1e-5)):
            out[i] = got[i]
        elif i in got:
            writer.adopted[i] = got[i]
    return out


def _max_abs(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)), initial=0.0))
