"""The small collection and feedback log the user-level tests share, and their reference results.

Small on purpose (CI budget): a few hundred records of 16 dimensions, written in batches of 10 so
that every phase of a run (reads, original-saving, writes, recording) has many probe hits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import connectors
from nudge_sync.engine.names import default_log_name
from tests.backends import RecordId, random_vectors
from tests.engine.test_refusals import make_entries
from tests.user._native import UserBackend, checksum
from tests.user._probes import hits, read_trace
from tests.user._runner import nudge

import os

RECORDS, DIM, BATCH = 300, 16, 10
QUERIES = 200
#: what every user-level run and rollback passes (small batches: many probe hits per phase)
BATCH_ARGS = ("--batch-size", str(BATCH))
#: NUDGE_SYNC_SWEEP=long: more kill points, bigger collections (release checks; not in CI)
SWEEP = os.environ.get("NUDGE_SYNC_SWEEP", "ci").strip() or "ci"


@dataclass
class Collection:
    """A collection created with the native client, its feedback imported by ``nudge-sync``."""

    backend: UserBackend
    name: str
    ids: list[RecordId]
    metric: str
    originals: dict[RecordId, np.ndarray]
    payloads: str  # checksum of everything but the vectors
    uri_options: dict[str, Any] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return self.backend.uri(self.name, **self.uri_options)

    def with_options(self, **options: Any) -> Collection:
        return Collection(self.backend, self.name, self.ids, self.metric, self.originals, self.payloads,
                          {**self.uri_options, **options})


def feedback_file(directory: Path, ids: list[RecordId], vectors: np.ndarray, n_queries: int = QUERIES) -> Path:
    """A JSONL log: queries near one of 60 popular records (~60 moving records, ~20% validation)."""
    path = directory / "feedback.jsonl"
    if not path.exists():
        connectors.write_log_file(path, make_entries(ids, vectors, n_queries=n_queries, dim=vectors.shape[1]))
    return path


def make_collection(backend: UserBackend, name: str, directory: Path, *, records: int = RECORDS, dim: int = DIM,
                    metric: str = "cosine", rich: bool = True, import_log: bool = True) -> Collection:
    """Create ``name`` natively (rich payloads), import its feedback log with ``nudge-sync feedback
    import`` (its own process; with ``import_log=False`` the log stays in ``directory/feedback.jsonl``
    for ``--log-file``: one process less where the log's source is not the property), and read back
    what the database stored: the originals."""
    with backend.native() as h:
        ids = h.make_ids(records)
    vectors = random_vectors(records, dim, seed=5, normalize=True)
    backend.create(name, ids, vectors, metric=metric, rich=rich)
    log = feedback_file(directory, ids, vectors)
    if import_log:
        imported = nudge("feedback", "import", "--store", backend.uri(name), log)
        assert imported.report["appended"] == QUERIES and imported.report["unknown_id_count"] == 0, imported.describe()
    stored, snap = backend.read(name)
    assert sorted(stored, key=repr) == sorted(ids, key=repr)
    return Collection(backend, name, ids, metric, stored, checksum(snap))


@dataclass
class Reference:
    """An uninterrupted run and rollback on a twin collection of the same data: what every
    interrupted run must converge to, and how often each probe point was hit on the way (the
    traces size the kill schedules)."""

    final: dict[RecordId, np.ndarray]
    written: set[RecordId]
    report: dict[str, Any]
    run_hits: dict[str, int]
    rollback_hits: dict[str, int]
    #: the run's write batches in order (the ids of its ``run.before_write`` hits)
    batches: list[list[RecordId]]


#: references already computed in this process, by (backend, records, metric, URI options): the
#: result is a function of the data and the engine, and each costs two nudge-sync processes
_REFERENCES: dict[tuple[str, int, str, str], Reference] = {}


def reference(coll: Collection, directory: Path) -> Reference:
    """Run and roll back, uninterrupted and traced, on a twin of ``coll`` (same ids and vectors, in
    the same database, reading ``coll``'s own log), then drop the twin."""
    key = (coll.backend.name, len(coll.ids), coll.metric, repr(sorted(coll.uri_options.items())))
    if key not in _REFERENCES:
        _REFERENCES[key] = _reference(coll, directory)
    return _REFERENCES[key]


def _reference(coll: Collection, directory: Path) -> Reference:
    backend = coll.backend
    twin = _twin(coll)
    trace = directory / f"{twin.name}.trace"
    # the twin reads ``coll``'s log (--log): the same entries, without a second import process
    log = ("--log", default_log_name(coll.name))
    try:
        run = nudge("run", "--store", twin.uri, *log, *BATCH_ARGS, env={"NUDGE_SYNC_TRACE": str(trace)})
        assert run.report["status"] == "written", run.describe()
        final = backend.vectors(twin.name)
        undone = nudge("rollback", "--store", twin.uri, *BATCH_ARGS, env={"NUDGE_SYNC_TRACE": str(trace)})
        assert undone.report["restored"] == run.report["counts"]["written"], undone.describe()
    finally:
        backend.drop_all(twin.name)
    written = {i for i in final if final[i].tobytes() != twin.originals[i].tobytes()}
    assert len(written) == run.report["counts"]["written"], "the reference run wrote other records than it says"
    events = read_trace(trace)
    batches = [e["ids"] for e in events if e["pid"] == run.pid and e["point"] == "run.before_write"]
    return Reference(final, written, run.report, hits(events, run.pid), hits(events, undone.pid), batches)


def _twin(coll: Collection) -> Collection:
    """A collection of ``coll``'s ids and vectors (created as make_collection creates them: the same
    vectors sent, so the database stores the same bits), with no log of its own."""
    backend, name = coll.backend, coll.name + "r"
    dim = next(iter(coll.originals.values())).shape[0]
    backend.create(name, coll.ids, random_vectors(len(coll.ids), dim, seed=5, normalize=True), metric=coll.metric)
    stored, snap = backend.read(name)
    assert all(stored[i].tobytes() == coll.originals[i].tobytes() for i in coll.ids), "the twin stored other vectors"
    return Collection(backend, name, coll.ids, coll.metric, stored, checksum(snap), dict(coll.uri_options))


def differing(a: dict[RecordId, np.ndarray], b: dict[RecordId, np.ndarray]) -> list[RecordId]:
    """Ids whose vectors are not bit-for-bit equal (or present in only one of the two)."""
    keys = set(a) | set(b)
    return [i for i in keys if i not in a or i not in b or a[i].tobytes() != b[i].tobytes()]


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
