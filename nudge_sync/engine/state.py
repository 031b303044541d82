"""The sync engine's state, kept in a companion collection of the same database.

Kinds of records in the companion collection (see ``connectors.StateCollection``):

``original``  one per record nudge-sync ever changed, keyed by the encoded record id. Its vector
              is the record's ORIGINAL vector (what it held before our first write, or what
              someone re-embedded it to since). ``meta``:
              ``{"id": <record id>, "fp": <fingerprint of the vector we last left in the database
              (null before our first write landed)>, "nudged": <bool: is that vector a nudged
              one>, "run": <run id of that write>}``, and while a write is in flight (pending)
              ``"target"`` (base64 of the little-endian float32 vector about to be written) and
              ``"target_run"`` (the run or rollback writing it).
``run``       one per run: the run report (JSON), keyed by run id (sortable by time).
``lock``      key ``"lock"``: who holds the collection (host, boot, pid, run), until when.
``marker``    key ``"nudge-sync"``: written when nudge-sync creates the collection (or first locks a
              state of an earlier version that passed the rule of ``state_open``): the collection,
              dimension and metric it serves. Checked on every open (``nudge_sync.engine.state_open``).

Every original carries ``"sum"``, a checksum of its record id and its vector's exact float32
bytes, and every pending target ``"target_sum"``: an entry edited by hand (or damaged) no longer
matches and is refused by ``verdicts.load_state`` (entries of earlier versions have none and are
trusted until rewritten).

Originals (with the target) are stored before the write they protect, and fingerprints only after
the write was read back, so a run or rollback killed at any point leaves enough to tell, for every
record, whether the database holds our last recorded vector, the original, the target of the
write in flight, or something someone else wrote (``nudge_sync.engine.classify``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from connectors import CollectionInfo, RecordId, StateCollection, StateRecord, redact_data

from .errors import LockHeld

ORIGINAL, RUN, LOCK, MARKER = "original", "run", "lock", "marker"
#: the marker record's key, and the layout version it declares
MARKER_KEY, STATE_FORMAT = "nudge-sync", 2


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


def checksum(record_id: RecordId, vector: np.ndarray) -> str:
    """What a state entry's vector must hash to: its record's key and exact little-endian float32
    bytes, so an edited vector, or one moved to another record, no longer matches."""
    data = encode_id(record_id).encode("utf-8") + b"\0" + np.ascontiguousarray(vector, dtype="<f4").tobytes()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


@dataclass
class Original:
    """A record's state entry (see the module docstring)."""

    record_id: RecordId
    vector: np.ndarray
    fp: str | None
    nudged: bool
    run: str | None
    #: the vector a run or rollback is about to write (None: no write in flight)
    target: np.ndarray | None = None
    target_run: str | None = None
    #: read from the state: what does not match its checksum ("original", "target"); [] = verified
    #: or written by an earlier version without checksums
    unverified: tuple[str, ...] = ()

    @property
    def pending(self) -> bool:
        """A write was in flight: the target is recorded (or, in state written before targets were
        recorded, the fingerprint is missing: settled entries always have one)."""
        return self.target is not None or self.fp is None

    def record(self) -> StateRecord:
        meta: dict[str, Any] = {"id": self.record_id, "fp": self.fp, "nudged": self.nudged, "run": self.run,
                                "sum": checksum(self.record_id, self.vector)}
        if self.target is not None:
            meta["target"] = encode_vector(self.target)
            meta["target_run"] = self.target_run
            meta["target_sum"] = checksum(self.record_id, self.target)
        return StateRecord(encode_id(self.record_id), self.vector, meta)

    @classmethod
    def from_record(cls, rec: StateRecord) -> Original:
        m = rec.meta
        rid = m.get("id", decode_id(rec.key))
        vector = np.asarray(rec.vector if rec.vector is not None else [], dtype=np.float32)
        bad = [] if _sum_ok(m, "sum", rid, vector) else ["original"]
        try:
            target = decode_vector(m["target"]) if m.get("target") else None
        except (TypeError, ValueError):  # not base64 of float32s: edited by hand
            target, bad = None, [*bad, "target"]
        if target is not None and not _sum_ok(m, "target_sum", rid, target):
            bad.append("target")
        return cls(rid, vector, m.get("fp"), bool(m.get("nudged")), m.get("run"), target, m.get("target_run"),
                   tuple(bad))

    def with_target(self, target: np.ndarray, run_id: str) -> Original:
        """This entry, with a write of ``target`` by ``run_id`` in flight."""
        return replace(self, target=np.asarray(target, dtype=np.float32), target_run=run_id)

    def settled(self, stored: np.ndarray, *, nudged: bool, run: str | None) -> Original:
        """This entry once the database was seen holding ``stored`` (ours), no write in flight."""
        return Original(self.record_id, self.vector, fingerprint(stored), nudged, run)


def _sum_ok(meta: dict[str, Any], field: str, record_id: RecordId, vector: np.ndarray) -> bool:
    """The checksum ``meta[field]`` matches (True for an entry of an earlier version, which has none;
    False when the original's checksum is there but its target's is not, or the reverse)."""
    if field not in meta:
        return "sum" not in meta
    return meta[field] == checksum(record_id, vector)


def encode_vector(vector: np.ndarray) -> str:
    """A vector as text for a state record's meta: base64 of its little-endian float32 bytes."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


#: Statuses of a run record whose writes all reached the database: its log watermark counts, and
#: the nothing_new gate (``noop``) and ``apply`` (a plan already applied) read it as done.
SETTLED = ("written", "unchanged")


def last_watermark(runs: Iterable[dict[str, Any]]) -> float | None:
    """The log watermark of the latest run in ``runs`` (oldest first: run records or their
    ``history`` summaries) that reached the database."""
    for run in reversed(list(runs)):
        if run.get("status") in SETTLED and run.get("watermark") is not None:
            return float(run["watermark"])
    return None


#: Bytes of meta a pending entry needs besides its base64 target (id, fp, run ids, keys; generous).
PENDING_META_OVERHEAD = 1024


def pending_meta_bytes(dimension: int) -> int:
    """The size of a pending entry's meta, as JSON text, for ``dimension``-d vectors (an upper bound)."""
    return 4 * ((4 * dimension + 2) // 3) + PENDING_META_OVERHEAD


class SyncState:
    """Typed access to the companion collection."""

    def __init__(self, collection: StateCollection, serves: CollectionInfo | None = None):
        self.collection = collection
        #: the collection this state serves (``state_open`` sets it): what the marker records
        self.serves = serves
        #: the marker was found on open (or written since)
        self.marked = False
        #: entries failing their checksum are adopted and reported instead of refused (--skip-unverified)
        self.skip_unverified = False
        #: records whose entries failed their checksum and were skipped by the last ``load_state``
        self.unverified: list[RecordId] = []

    # -- originals ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.collection.exists()

    def ensure(self, dimension: int) -> None:
        self.collection.create(dimension)
        self.write_marker()

    # -- the marker -----------------------------------------------------------------------------

    def marker(self) -> dict[str, Any] | None:
        found = self.collection.get(MARKER, [MARKER_KEY])
        return found[0].meta if found else None

    def write_marker(self) -> None:
        """Make the collection recognisable as nudge-sync's state of ``serves`` (once)."""
        if self.serves is None or self.marked:
            return
        info = self.serves
        meta = {"format": STATE_FORMAT, "collection": info.collection, "backend": info.backend,
                "dimension": info.dimension, "metric": info.metric, "created": time.time()}
        self.collection.put(MARKER, [StateRecord(MARKER_KEY, None, meta)])
        self.marked = True

    @property
    def name(self) -> str:
        """The companion collection's name, as reports and messages show it."""
        return self.collection.name

    @property
    def max_meta_bytes(self) -> int | None:
        """The most bytes of meta one state record holds on this backend (None: no limit)."""
        return getattr(self.collection, "max_meta_bytes", None)

    def drop_if_only_lock(self) -> bool:
        """Drop the collection if it holds no original (only a lock): True if dropped.

        A run held back before writing drops the state it created, so it leaves nothing behind."""
        if next(self.originals(), None) is not None:
            return False
        self.collection.drop()
        return True

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

    def delete_originals(self, record_ids: Sequence[RecordId]) -> None:
        if record_ids:
            self.collection.delete(ORIGINAL, [encode_id(i) for i in record_ids])

    # -- runs -----------------------------------------------------------------------------------

    def put_run(self, run_id: str, report: dict[str, Any]) -> None:
        # a round trip through json makes sure the report is storable before we try; reports may
        # quote a database's answers: no configured secret is stored with them
        meta = json.loads(json.dumps(redact_data(report)))
        self.collection.put(RUN, [StateRecord(run_id, None, meta)])

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

        A lock whose holder was a process of this very host and boot that no longer exists (a run
        killed, or one that exited leaving it) is stale: it is taken over, and ``took_over`` says
        whose it was. Locks of other hosts are honoured until they expire (or --break-lock).

        None of the databases offers compare-and-set, so this is write-then-verify: two runs
        racing within ``settle`` seconds could both pass; schedulers (cron with flock, systemd
        timers, Kubernetes ``concurrencyPolicy: Forbid``) are the first line of defence.
        """
        now = time.time()
        held = self.lock()
        self.took_over: dict[str, Any] | None = None
        if held and held.get("expires", 0) > now:
            if not holder_is_gone(held):
                run = f" (run {held['run_id']})" if held.get("run_id") else ""
                raise LockHeld(
                    f"collection is locked by {held.get('owner')}{run} until {_utc(held['expires'])}; "
                    "wait for it, or pass --break-lock if that run is known to be dead"
                )
            self.took_over = held
        token = uuid.uuid4().hex
        meta = {"token": token, "owner": f"{socket.gethostname()}:{os.getpid()}", "acquired": now,
                "expires": now + ttl, **this_process()}
        self.collection.put(LOCK, [StateRecord("lock", None, meta)])
        time.sleep(settle)
        held = self.lock()
        if not held or held.get("token") != token:
            raise LockHeld(f"another run took the lock at the same time ({held.get('owner') if held else 'unknown'})")
        self.write_marker()  # a state of an earlier version, accepted on open, is marked by its first writer
        return token

    def set_lock_run(self, token: str, run_id: str) -> None:
        held = self.lock()
        if held and held.get("token") == token:
            self.collection.put(LOCK, [StateRecord("lock", None, {**held, "run_id": run_id})])

    def release(self, token: str, *, quiet: bool = False) -> None:
        """Drop our lock. ``quiet``: an error is already on its way out and says more than a failed
        release would (the database that failed the run often refuses this too); a lock left behind
        expires with its TTL, or is taken over once its holder is gone."""
        try:
            held = self.lock()
            if held and held.get("token") == token:
                self.collection.delete(LOCK, ["lock"])
        except Exception:
            if not quiet:
                raise

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


# -- who holds a lock ----------------------------------------------------------------------------


def this_process() -> dict[str, Any]:
    """What a lock records about its holder: host, boot, pid and the pid's start time."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": boot_id(), "pid": pid, "pid_start": _proc_stat(pid)[1]}


def boot_id() -> str | None:
    """This boot of this machine (Linux), so a pid is only compared with pids of the same boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str | None, str | None]:
    """(state letter, start time in clock ticks) of a process, from /proc; Nones when unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'
    return (fields[0], fields[19]) if len(fields) > 19 else (None, None)


def holder_is_gone(held: dict[str, Any]) -> bool:
    """The lock was taken by a process of this host and boot that no longer runs (its pid is free,
    a zombie, or now another process that started later)."""
    pid = held.get("pid")
    if held.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool):
        return False
    mine = boot_id()
    if mine is None or held.get("boot_id") != mine:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    state, started = _proc_stat(pid)
    if state == "Z":  # killed, not yet reaped by its parent
        return True
    return bool(held.get("pid_start")) and started is not None and started != held.get("pid_start")
