"""Cross-process sequences: every command its own ``nudge-sync`` process, after every other command,
on the six backends; results read back with the database's own client.

    feedback import -> plan -> run -> status -> eval -> history -> run (writes 0) -> rollback -> status

and, on the embedded engines, the README's first command (``demo``) followed by every read command
in new processes (issue #10, defect 1: Milvus Lite failed every command after a run).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import selected_harnesses
from tests.user._data import RUN_ARGS, differing, make_collection, max_abs_diff
from tests.user._native import UserBackend, checksum
from tests.user._runner import nudge

#: a restored cosine vector on Qdrant/Chroma may sit one float32 ulp off its original (README, Safety)
ULP = 2.0**-23


def release_everything(backend: UserBackend, prefix: str) -> None:
    """What a Milvus server does on restart (and an operator may do any time): release the
    collections, state included. Every later command must cope."""
    if backend.backend != "milvus" or not backend.is_server:
        return
    with backend.native() as h:
        for name in h.collections():
            if name.startswith(prefix):
                h.client.release_collection(name)


def test_every_command_in_its_own_process(user_backend, collection_name, tmp_path, tally):
    b = user_backend
    with tally.counting(b.name, "sequence"):
        coll = make_collection(b, collection_name, tmp_path)
        uri, state = coll.uri, collection_name + "_nudge_state"

        plan = nudge("plan", "--store", uri, *RUN_ARGS).report
        assert plan["status"] == "dry-run" and plan["counts"]["to_write"] > 0, plan
        assert not differing(b.vectors(coll.name), coll.originals), "plan wrote vectors"
        assert not [c for c in b.collections() if c.startswith(state)], "plan created the state collection"

        run = nudge("run", "--store", uri, *RUN_ARGS).report
        written = run["counts"]["written"]
        assert run["status"] == "written" and written == plan["counts"]["to_write"], run
        after_run, snap = b.read(coll.name)
        assert checksum(snap) == coll.payloads, "payloads / metadata / documents changed"
        assert len(differing(after_run, coll.originals)) == written
        release_everything(b, collection_name)

        status = nudge("status", "--store", uri).report
        assert (status["nudged"], status["pending"], status["runs"], status["lock"]) == (written, 0, 1, None), status
        assert status["last_run"]["status"] == "written" and status["count"] == len(coll.ids)

        ev = nudge("eval", "--store", uri, "--split", "val").report
        assert ev["nudged_records"] == written and ev["current"]["ndcg@10"] > ev["original"]["ndcg@10"], ev

        history = nudge("history", "--store", uri).report
        assert [(r["status"], r.get("written")) for r in history] == [("written", written)], history

        again = nudge("run", "--store", uri, *RUN_ARGS).report
        assert again["status"] == "unchanged" and again["counts"]["written"] == 0, again
        assert not differing(b.vectors(coll.name), after_run), "a second run on the same data rewrote vectors"
        release_everything(b, collection_name)

        undone = nudge("rollback", "--store", uri, "--batch-size", "10").report
        assert undone["status"] == "rolled-back" and undone["restored"] == written, undone
        assert undone["skipped_reembedded"] == 0, undone
        restored, snap = b.read(coll.name)
        assert checksum(snap) == coll.payloads, "rollback changed payloads / metadata / documents"
        exact = len(coll.ids) - len(differing(restored, coll.originals))
        assert undone["bit_exact"] == exact - (len(coll.ids) - written), (undone, exact)
        if b.rollback_is_bit_exact(coll.metric):
            assert exact == len(coll.ids), f"{len(coll.ids) - exact} originals did not come back bit for bit"
        else:
            worst = max(max_abs_diff(restored[i], coll.originals[i]) for i in coll.ids)
            assert worst <= ULP, f"a restored vector is {worst:.3g} off its original"

        final = nudge("status", "--store", uri).report
        assert (final["nudged"], final["pending"], final["lock"]) == (0, 0, None), final
        runs = nudge("history", "--store", uri).report
        assert [r["status"] for r in runs] == ["written", "unchanged", "rolled-back"], runs
        assert sorted(c for c in b.collections() if c.startswith(collection_name)) == sorted(
            [coll.name, collection_name + "_feedback", state]), "collections were created or removed"


DEMO_BACKENDS = {"qdrant-local": "qdrant", "milvus-lite": "milvus", "chroma-persistent": "chroma"}


@pytest.mark.parametrize("harness_name", [n for n in DEMO_BACKENDS if n in selected_harnesses()])
def test_every_command_after_the_demo(harness_name, tmp_path, tally):
    """The README's first command, then every other command in new processes on what it left."""
    with tally.counting(harness_name, "sequence"):
        demo = nudge("demo", "--backend", DEMO_BACKENDS[harness_name], "--dir", tmp_path / "demo",
                     "--records", "300", "--dim", "16", "--queries", "100").report
        uri = demo["store"]
        written = demo["run"]["counts"]["written"]
        assert written > 0, demo

        status = nudge("status", "--store", uri).report
        assert (status["nudged"], status["pending"], status["runs"], status["lock"]) == (written, 0, 1, None), status
        assert [r["status"] for r in nudge("history", "--store", uri).report] == ["written"]
        ev = nudge("eval", "--store", uri).report
        assert ev["current"]["ndcg@10"] == pytest.approx(demo["eval"]["current"]["ndcg@10"], abs=1e-6), ev
        plan = nudge("plan", "--store", uri, "--max-changed-fraction", "1").report
        assert plan["status"] == "dry-run" and plan["counts"]["to_write"] == 0, plan
        undone = nudge("rollback", "--store", uri).report
        assert undone["restored"] == written and undone["skipped_reembedded"] == 0, undone
        final = nudge("status", "--store", uri).report
        assert (final["nudged"], final["pending"], final["lock"]) == (0, 0, None), final
        ev = nudge("eval", "--store", uri).report
        assert all(abs(d) < 1e-6 for d in ev["delta"].values()), ev
        assert np.isfinite(ev["current"]["ndcg@10"])
