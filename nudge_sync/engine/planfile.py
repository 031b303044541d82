"""The plan file of ``plan --out`` / ``apply``: what a run would write, saved for review.

One JSON object (format ``nudge-sync-plan``, :data:`PLAN_VERSION`), written atomically::

    {"format": "nudge-sync-plan", "version": 1, "plan_id": ..., "created": <epoch s>,
     "store": <URI without secrets>, "backend", "collection", "dimension", "metric",
     "state": <state collection>, "state_last_run": <the state's last run id, or null>,
     "options": {...SyncOptions...}, "report": {...the plan's SyncReport: γ, validation, counts,
     watermark, split...}, "count": <records to write>,
     "records": [{"id": <record id>, "fp": <fingerprint of the vector stored when planned>,
                  "target": <base64 of the little-endian float32 target>, "target_sum": <checksum
                  of id + target>, "restore": <the target is the record's original>}, ...],
     "digest": <blake2b of everything above, as canonical JSON>}

The file carries no secret: the store is its redacted URI (``StoreConfig.redacted``: a secret
never sits in a URI, only the name of its variable or file), and the options and report are the
ones a run stores in its state, which are redacted too. A file that is not JSON, is truncated, was
edited (the digest) or holds a damaged target (its checksum) is refused (RefusedInput, exit 4)
before anything is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from connectors import RecordId, read_bounded, redact_data

from .context import RunContext
from .errors import RefusedInput
from .options import SyncOptions
from .state import checksum, decode_vector, encode_vector, fingerprint

PLAN_FORMAT, PLAN_VERSION = "nudge-sync-plan", 1
#: the largest plan file ``apply`` reads (1 GiB: about 480,000 records at 384-d; a plan is read whole)
PLAN_FILE_LIMIT = 1 << 30
#: what the report of a plan file keeps (the ids written and the timings belong to the run)
_REPORT_DROPPED = ("written_ids", "timings", "took_over_lock")


@dataclass
class PlannedRecord:
    record_id: RecordId
    fp: str  #: fingerprint of the vector stored when the plan was made
    target: np.ndarray
    restore: bool  #: the target is the record's original (not a nudged vector)


@dataclass
class PlanFile:
    """A plan file read back and verified."""

    plan_id: str
    created: float
    store: str
    backend: str
    collection: str
    dimension: int
    metric: str
    state: str
    state_last_run: str | None
    options: SyncOptions
    report: dict[str, Any]
    records: list[PlannedRecord]


def save_plan(path: Path, ctx: RunContext, write_ids: list[RecordId], targets: np.ndarray,
              current: dict[RecordId, np.ndarray], nudged_after: set[RecordId]) -> str:
    """Write the plan of the run ``ctx`` planned (``write_ids`` / ``targets``, planned against the
    stored vectors ``current``) to ``path`` atomically; returns its plan id."""
    runs = ctx.state.runs() if ctx.state.exists() else []
    report = {k: v for k, v in ctx.report.to_dict().items() if k not in _REPORT_DROPPED}
    body: dict[str, Any] = {
        "format": PLAN_FORMAT, "version": PLAN_VERSION, "plan_id": f"plan-{uuid.uuid4().hex[:16]}",
        "created": time.time(), "store": ctx.report.store, "backend": ctx.info.backend,
        "collection": ctx.info.collection, "dimension": ctx.info.dimension, "metric": ctx.info.metric,
        "state": ctx.state.name, "state_last_run": runs[-1].get("run_id") if runs else None,
        "options": {**asdict(ctx.opts), "dry_run": False}, "report": redact_data(report), "count": len(write_ids),
        "records": [{"id": _plain(i), "fp": fingerprint(current[i]), "target": encode_vector(t),
                     "target_sum": checksum(i, t), "restore": i not in nudged_after}
                    for i, t in zip(write_ids, targets)],
    }
    body["digest"] = _digest(body)
    _write_atomically(path, json.dumps(body, indent=1) + "\n")
    return body["plan_id"]


def load_plan(path: Path) -> PlanFile:
    """The plan file at ``path``, checked: RefusedInput saying what is wrong with it otherwise."""
    where = f"plan file {str(path)!r}"
    try:  # bounded: /dev/zero, a FIFO nobody writes or a huge file is refused, not read into memory
        text = read_bounded(path, PLAN_FILE_LIMIT, where, RefusedInput).decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedInput(f"{where} cannot be read: not UTF-8 text; nothing was written") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise RefusedInput(f"{where} is not JSON (truncated or not a plan file?): {exc}; nothing was written") from None
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT:
        raise RefusedInput(f"{where} is not a nudge-sync plan (made by `nudge-sync plan --out`); nothing was written")
    if doc.get("version") != PLAN_VERSION:
        raise RefusedInput(f"{where} has plan version {doc.get('version')!r}; this nudge-sync reads version "
                           f"{PLAN_VERSION}: make the plan again; nothing was written")
    if doc.get("digest") != _digest({k: v for k, v in doc.items() if k != "digest"}):
        raise RefusedInput(f"{where} does not match its digest: it was edited or damaged after "
                           "`nudge-sync plan --out` wrote it; make the plan again; nothing was written")
    try:
        return _parse(doc)
    except (KeyError, TypeError, ValueError) as exc:  # a digest-valid file from a buggy writer
        raise RefusedInput(f"{where} is malformed ({type(exc).__name__}: {exc}); nothing was written") from None


def _parse(doc: dict[str, Any]) -> PlanFile:
    dimension = int(doc["dimension"])
    records = []
    for r in doc["records"]:
        target = decode_vector(r["target"])
        if target.shape != (dimension,) or checksum(r["id"], target) != r["target_sum"]:
            raise ValueError(f"the target of record {r['id']!r} does not match its checksum")
        records.append(PlannedRecord(r["id"], str(r["fp"]), target, bool(r["restore"])))
    if len(records) != doc["count"]:
        raise ValueError(f"{len(records)} records, {doc['count']} announced")
    known = {f.name for f in fields(SyncOptions)}
    options = SyncOptions(**{k: v for k, v in doc["options"].items() if k in known}).validate()
    return PlanFile(str(doc["plan_id"]), float(doc["created"]), str(doc["store"]), str(doc["backend"]),
                    str(doc["collection"]), dimension, str(doc["metric"]), str(doc["state"]),
                    doc["state_last_run"], options, dict(doc["report"]), records)


def _plain(record_id: RecordId) -> RecordId:
    """A record id as JSON keeps it (a numpy integer from a client becomes an int)."""
    return int(record_id) if isinstance(record_id, np.integer) else record_id


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.blake2b(canonical.encode("ascii"), digest_size=16).hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    """A reader (or a later `apply`) never sees half a plan: a temporary file renamed over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
