"""The sync engine's state, kept in a companion collection of the same database.

Kinds of records in the companion collection (see ``connectors.StateCollection``):

``original``  one per record nudge-sync ever changed, keyed by the encoded record id. Its vector
              is the record's ORIGINAL vector (what it held before our first write, or what
              someone re-embedded it to since). ``meta``:
              ``{"id": <record id>, "fp": <fingerprint of the vector we left in the database, or
              null while a write is in flight>, "nudged": <bool: does the database hold a nudged
              vector>, "run": <run id of our last write>}``
``run``       one per run: the run report (JSON), keyed by run id (sortable by time).
``lock``      key ``"lock"``: who holds the collection, until when.

Because originals are stored before any write, and fingerprints only after the write was read
back, a run killed at any point leaves enough to converge: a pending entry (``fp`` null) is
treated as ours, and the next run recomputes the same target from the originals.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from connectors import RecordId, StateCollection, StateRecord

from ._errors import LockHeld

ORIGINAL, RUN, LOCK = "original", "run", "lock"


def encode_id(record_id: RecordId) -> str:
    """State key of a record id; keeps int and str ids apart ("i:7" vs "s:7")."""
    return f"i:{record_id}" if isinstance(record_id, int) else f"s:{record_id}"


def decode_id(key: str) -> RecordId:
    kind, _, raw = key.partition(":")
    return int(raw) if kind == "i" else raw


def fingerprint(vector: np.ndarray) -> str:
    """Identity of a stored vector: a hash of its exact float32 bytes."""
    data = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


@dataclass
class Original:
    record_id: RecordId
    vector: np.ndarray
    fp: str | None
    nudged: bool
    run: str | None

    def record(self) -> StateRecord:
        meta = {"id": self.record_id, "fp": self.fp, "nudged": self.nudged, "run": self.run}
        return StateRecord(encode_id(self.record_id), self.vector, meta)

    @classmethod
    def from_record(cls, rec: StateRecord) -> Original:
        m = rec.meta
        rid = m.get("id", decode_id(rec.key))
        return cls(rid, np.asarray(rec.vector, dtype=np.float32), m.get("fp"), bool(m.get("nudged")), m.get("run"))


class SyncState:
    """Typed access to the companion collection."""

    def __init__(self, collection: StateCollection):
        self.collection = collection

    # -- originals ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.collection.exists()

    def ensure(self, dimension: int) -> None:
        self.collection.create(dimension)

    def originals(self, batch_size: int = 1000) -> Iterator[Original]:
        if not self.collection.exists():
            return
        for batch in self.collection.scan(ORIGINAL, batch_size=batch_size):
            for rec in batch:
                yield Original.from_record(rec)

    def all_originals(self) -> dict[RecordId, Original]:
        return {o.record_id: o for o in self.originals()}

    def put_originals(self, originals: Iterable[Original], batch_size: int = 1000, *, vectors_stored: bool = False) -> None:
        """Save originals. ``vectors_stored``: each was saved before with this very vector and only
        its fingerprint / flags change, so backends that can write metadata alone need not resend it."""
        recs = [o.record() for o in originals]
        put = self.collection.put_meta if vectors_stored else self.collection.put
        for start in range(0, len(recs), batch_size):
            put(ORIGINAL, recs[start : start + batch_size])

    # -- runs -----------------------------------------------------------------------------------

    def put_run(self, run_id: str, report: dict[str, Any]) -> None:
        # a round trip through json makes sure the report is storable before we try
        self.collection.put(RUN, [StateRecord(run_id, None, json.loads(json.dumps(report)))])

    def runs(self) -> list[dict[str, Any]]:
        if not self.collection.exists():
            return []
        runs = [rec.meta for batch in self.collection.scan(RUN) for rec in batch]
        return sorted(runs, key=lambda r: (r.get("started") or 0.0, r.get("run_id", "")))

    # -- lock -----------------------------------------------------------------------------------

    def lock(self) -> dict[str, Any] | None:
        if not self.collection.exists():
            return None
        found = self.collection.get(LOCK, ["lock"])
        return found[0].meta if found else None

    def acquire(self, ttl: float, settle: float = 0.2) -> str:
        """Take the lock or raise LockHeld. Returns our token.

        None of the databases offers compare-and-set, so this is write-then-verify: two runs
        racing within ``settle`` seconds could both pass; schedulers (cron with flock, systemd
        timers, Kubernetes ``concurrencyPolicy: Forbid``) are the first line of defence.
        """
        now = time.time()
        held = self.lock()
        if held and held.get("expires", 0) > now:
            run = f" (run {held['run_id']})" if held.get("run_id") else ""
            raise LockHeld(
                f"collection is locked by {held.get('owner')}{run} until {_utc(held['expires'])}; "
                "wait for it, or pass --break-lock if that run is known to be dead"
            )
        token = uuid.uuid4().hex
        meta = {"token": token, "owner": f"{socket.gethostname()}:{os.getpid()}", "acquired": now, "expires": now + ttl}
        self.collection.put(LOCK, [StateRecord("lock", None, meta)])
        time.sleep(settle)
        held = self.lock()
        if not held or held.get("token") != token:
            raise LockHeld(f"another run took the lock at the same time ({held.get('owner') if held else 'unknown'})")
        return token

    def set_lock_run(self, token: str, run_id: str) -> None:
        held = self.lock()
        if held and held.get("token") == token:
            self.collection.put(LOCK, [StateRecord("lock", None, {**held, "run_id": run_id})])

    def release(self, token: str) -> None:
        held = self.lock()
        if held and held.get("token") == token:
            self.collection.delete(LOCK, ["lock"])

    def break_lock(self) -> dict[str, Any] | None:
        held = self.lock()
        if held:
            self.collection.delete(LOCK, ["lock"])
        return held


def _utc(seconds: Any) -> str:
    """A time for a message; a lock written by hand may hold anything."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(seconds)))
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(seconds)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
