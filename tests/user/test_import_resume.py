"""A killed ``feedback import`` leaves a resumable log (issue 18, finding 7).

Before, a killed import of 1,000,000 entries left 192,250 of them behind with nothing saying what
that state was. Now an import appends its file batch by batch, and every backend keeps one log
record per query id: an import SIGKILLed before its third batch (the ``feedback.append`` probe)
leaves exactly its first two batches, and the same import run again completes the log without
duplicating an entry (run a third time, it changes nothing). Counted with each database's own
client.
"""

from __future__ import annotations

import pytest

import connectors
from tests.backends import random_vectors
from tests.conftest import selected_harnesses
from tests.engine.test_refusals import make_entries
from tests.user._probes import kill_at
from tests.user._runner import nudge, spawn
from tests.user.conftest import backend_for

BACKENDS = [n for n in ("qdrant-local", "milvus-lite", "chroma-persistent", "chroma-http", "milvus-lite-server")
            if n in selected_harnesses()]
ENTRIES, BATCH, DIM = 50, 10, 8


@pytest.mark.parametrize("name", BACKENDS)
def test_a_killed_import_is_completed_by_running_it_again(name, request, collection_name, tmp_path, tally):
    backend = backend_for(name, request, tmp_path / "db")
    with backend.native() as h:
        ids = h.make_ids(60)  # make_entries answers with 60 popular records
    vectors = random_vectors(60, DIM, seed=2, normalize=True)
    backend.create(collection_name, ids, vectors, metric="cosine")
    path = tmp_path / "clicks.jsonl"
    connectors.write_log_file(path, make_entries(ids, vectors, n_queries=ENTRIES, dim=DIM))
    log = f"{collection_name}_log"
    args = ("feedback", "import", "--store", backend.uri(collection_name), "--log", log, "--batch-size", BATCH, "--stream", path)

    def count() -> int:
        with backend.native() as h:
            return h.count(log)

    with tally.counting(name, "sigkill-import", fault="feedback.append@3 kill"):
        killed = spawn(*args, env=kill_at("feedback.append", 3)).wait()
        assert killed.killed, f"the import was not killed at its third batch\n{killed.describe()}"
        assert count() == 2 * BATCH, "a killed import leaves exactly the batches it finished"
        again = nudge(*args)
        # the two batches the killed import finished are replaced (same query ids), the rest added
        done = (again.report["appended"], again.report["replaced"], again.report["batches"])
        assert done == (ENTRIES - 2 * BATCH, 2 * BATCH, ENTRIES // BATCH), again.describe()
        assert count() == ENTRIES, "re-importing the same file duplicated entries"
        third = nudge(*args).report
        assert (third["appended"], third["replaced"]) == (0, ENTRIES), third
        assert count() == ENTRIES
