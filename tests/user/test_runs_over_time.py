"""Runs over time, as users meet them: every step its own ``nudge-sync`` process, every result read
back with the database's own client, on the embedded engines (Qdrant local mode, Milvus Lite,
Chroma persistent; the Chroma and Milvus servers run the same connector code, and their own paths
are in test_concurrency.py, test_server_faults.py and test_sigkill.py).

* A record the application re-embedded between two runs is adopted as its new original: the next
  run nudges it from the new embedding, and a rollback gives back the new embedding, not the old.
* ``rollback --run ID`` undoes that run only: records only an earlier run wrote keep its vectors;
  a run id not in the history is refused (exit 4) and nothing is written.
* A rollback SIGKILLed where the database and the state disagree -- originals marked but the batch
  not written (``rollback.save``), a batch written but not recorded (``rollback.write``) -- and run
  again counts right: what the killed process restored is ``already_restored``, never "re-embedded
  by others", and the rest is ``restored``. (That ``status`` then says nothing nudged, nothing
  pending and no lock is test_sigkill.py's, after every rollback chain on all six backends.)
* A run after a rollback is real again with nothing new in its log (the state's latest record is
  no longer a run that reached the database: test_noop.py's gate lets it through).

The runs use a fixed gamma and no quality gate (the properties are about scope and state, not
about quality): with a fixed gamma a NUDGE-N record moves by its own training queries only, so a
second run with more feedback leaves the first run's records as they were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import connectors
from tests.backends import RecordId, random_vectors
from tests.backends.chroma import chroma_name
from tests.conftest import selected_harnesses
from tests.engine.test_refusals import make_entries
from tests.user._data import BATCH_ARGS, DIM, RECORDS, Collection, differing
from tests.user._native import EMBEDDED, UserBackend, checksum
from tests.user._probes import kill_at
from tests.user._runner import CliResult, nudge

#: what every run here passes: the scope of a run is the property, not its quality
FIXED = ("--gamma", "0.1", "--min-gain", "-1", "--max-changed-fraction", "1", *BATCH_ARGS)
#: the killed rollbacks' batches: small, so that a few dozen nudged records make several batches
KILL_BATCH = 5


def reembed(b: UserBackend, coll: Collection, record: RecordId, seed: int) -> np.ndarray:
    """The application re-embeds ``record`` with the database's own client (everything else of the
    record kept); returns the vector the database now holds."""
    vector = random_vectors(1, DIM, seed=seed, normalize=True)[0]
    with b.native() as h:
        if b.backend == "qdrant":
            from qdrant_client import models

            named = {"text": vector.tolist()} if "vector=text" in coll.uri else vector.tolist()
            h.client.update_vectors(coll.name, points=[models.PointVectors(id=record, vector=named)], wait=True)
        elif b.backend == "milvus":  # no vector-only update on every Milvus: the whole row, new vector
            (row,) = h.client.query(coll.name, ids=[record], output_fields=["*"], consistency_level="Strong")
            h.client.upsert(coll.name, [{**dict(row), "vector": vector.tolist()}])
        else:
            h.client.get_collection(chroma_name(coll.name), embedding_function=None).update(
                ids=[str(record)], embeddings=vector[None, :])
    stored = b.vectors(coll.name)[record]  # in an open of its own: what another process reads
    assert stored.tobytes() == vector.tobytes(), "the application's write did not land as written (dot metric)"
    return stored


def log_files(directory: Path, coll: Collection) -> tuple[Path, Path]:
    """The feedback of the first night (answers among the first 30 popular records) and of all nights."""
    vectors = random_vectors(len(coll.ids), DIM, seed=5, normalize=True)  # as native_collection wrote them
    entries = make_entries(coll.ids, vectors, n_queries=200, dim=DIM)
    first_rows = set(coll.ids[:30])
    first = [e for e in entries if e.relevant_ids[0] in first_rows]
    assert 0 < len(first) < len(entries)
    paths = directory / "first.jsonl", directory / "all.jsonl"
    connectors.write_log_file(paths[0], first)
    connectors.write_log_file(paths[1], entries)
    return paths


def killed_rollback_then_rollback(coll: Collection, nudged: int, point: str) -> CliResult:
    """A rollback SIGKILLed at the 2nd hit of ``point`` when ``nudged`` records hold a nudged vector,
    then one run to the end; returns the latter."""
    assert nudged > 2 * KILL_BATCH, f"{nudged} nudged records: too few batches to kill the second one"
    batches = ("--batch-size", str(KILL_BATCH))
    killed = nudge("rollback", "--store", coll.uri, *batches, env=kill_at(point, 2), expect=None)
    assert killed.killed, f"the rollback was not killed at {point}@2\n{killed.describe()}"
    return nudge("rollback", "--store", coll.uri, *batches)


def native_collection(b: UserBackend, name: str) -> Collection:
    """The suite's collection (as tests/user/_data.py makes it, dot metric), created with the native
    client; the feedback comes from log files here, so no `feedback import` process."""
    with b.native() as h:
        ids = h.make_ids(RECORDS)
        h.create(name, ids, random_vectors(RECORDS, DIM, seed=5, normalize=True), metric="dot", rich=True)
    stored, snap = b.read(name)  # in an open of its own: what another process reads
    return Collection(b, name, ids, "dot", stored, checksum(snap))


embedded = pytest.mark.parametrize("user_backend", [n for n in EMBEDDED if n in selected_harnesses()],
                                   indirect=True)
#: the one backend that also tries ``rollback --run`` with a run id not in the history
UNKNOWN_RUN_ON = next((n for n in ("chroma-persistent", *EMBEDDED) if n in selected_harnesses()), "")


@embedded
def test_adoption_rollback_scope_and_a_killed_rollback(user_backend, collection_name, tmp_path, tally):
    b = user_backend
    coll = native_collection(b, collection_name)
    first_log, all_log = log_files(tmp_path, coll)
    originals = dict(coll.originals)

    with tally.counting(b.name, "sequence", fault="re-embedded between two runs"):
        nudge("run", "--store", coll.uri, "--log-file", first_log, *FIXED)
        after1 = b.vectors(coll.name)
        written1 = set(differing(after1, originals))
        assert written1, "the first run wrote nothing"
        victim = sorted(written1, key=repr)[0]
        theirs = reembed(b, coll, victim, seed=99)
        originals[victim] = theirs  # the record's new original, as nudge-sync must adopt it
        before2 = {**after1, victim: theirs}
        second = nudge("run", "--store", coll.uri, "--log-file", all_log, *FIXED).report
        assert second["counts"]["adopted_reembedded"] == 1, second
        after2 = b.vectors(coll.name)
        assert after2[victim].tobytes() not in (theirs.tobytes(), after1[victim].tobytes()), \
            "the re-embedded record was not nudged again from its new embedding"
        written2 = set(differing(after2, before2)) | {victim}

    with tally.counting(b.name, "sequence", fault="rollback --run of the second run"):
        only_first = written1 - written2
        assert only_first and written2 - written1, (len(written1), len(written2))
        undone = nudge("rollback", "--store", coll.uri, "--run", second["run_id"], *BATCH_ARGS).report
        assert undone["restored"] == len(written2) and undone["skipped_reembedded"] == 0, undone
        now = b.vectors(coll.name)
        assert not differing({i: now[i] for i in written2}, {i: originals[i] for i in written2}), \
            "records the second run wrote did not get their originals back (the victim: its new embedding)"
        assert not differing({i: now[i] for i in only_first}, {i: after1[i] for i in only_first}), \
            "rolling back the second run changed records only the first run wrote"
        if b.name == UNKNOWN_RUN_ON:  # the history lookup is the engine's, the same on every backend
            refused = nudge("rollback", "--store", coll.uri, "--run", "no-such-run", expect=4)
            assert "not in the history" in refused.stderr, refused.describe()
            assert not differing(b.vectors(coll.name), now), "a refused rollback wrote"

    # a rollback records its restores once, after its last batch (the record step): a kill at batch 2
    # leaves every batch written before it unrecorded, and the rerun finds them already restored
    nudged = len(differing(now, originals))  # what rollback --run left nudged (read above)
    for point, written, recorded in (("rollback.save", 1, 0), ("rollback.write", 2, 0)):
        with tally.counting(b.name, "sequence", fault=f"{point}@2=kill, then rollback", phase=point[9:]):
            if point == "rollback.write":  # everything nudged again, from the originals (checked just above):
                # the log is the second run's, but a rollback was recorded since, so the run is real
                again = nudge("run", "--store", coll.uri, "--log-file", all_log, *FIXED).report
                assert again["status"] == "written", f"a run after a rollback did not run: {again}"
                nudged = again["counts"]["written"]
            final = killed_rollback_then_rollback(coll, nudged, point)
            r = final.report
            assert r["skipped_reembedded"] == 0, f"records the killed rollback restored counted as re-embedded: {r}"
            assert r["already_restored"] == KILL_BATCH * (written - recorded), r
            assert r["restored"] + r["already_restored"] == nudged - KILL_BATCH * recorded, (r, nudged)
            assert not differing(b.vectors(coll.name), originals), "originals not back after the rerun"
