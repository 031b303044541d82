"""The database server killed, stopped (SIGSTOP) and restarted in the middle of a run's writes
(issue #10, defect 3), on the suite's own Chroma server, Milvus Lite server and Milvus 2.3.5.

Each fault lands at a deterministic point: the run pauses at a probe (``run.write@2``: two batches
written), the test acts on the server by its PID, then lets the run go on. With a small
``retry_budget`` and ``timeout`` in the URI:

* a server back within the budget (restarted, or continued after SIGSTOP) -> the run completes
  (exit 0) and converges to an uninterrupted run of the same data;
* a server that stays down -> the run exits 7 ("partially written") naming ``rollback --run ID``,
  the state accounts for exactly the records it changed, and once the server is back both
  ``rollback --run ID`` and a rerun complete it;
* never exit 6 with partial writes left behind.

Each scenario starts from the originals or from a converged run (a rollback's fault needs a run
to undo); they run in an order where most start from where the previous one ended, and the
collection is rolled back (or run) in between only where they do not.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import selected_harnesses
from tests.user._data import BATCH, BATCH_ARGS, Collection, Reference, differing, make_collection, max_abs_diff, reference
from tests.user._native import checksum
from tests.user._probes import Pause
from tests.user._runner import CliProcess, CliResult, nudge, spawn
from tests.user._servers import OwnServer, own_server
from tests.user._tally import Tally

pytestmark = pytest.mark.slow  # run first (tests/user/conftest.py)
SERVERS = [n for n in ("chroma-http", "milvus-lite-server", "milvus-2.3.5") if n in selected_harnesses()]
#: the client's per-call timeout and retry budget (seconds): generous when the server comes back,
#: small when it stays down so the run gives up quickly
BACK = {"timeout": 5, "retry_budget": 60}
DOWN = {"timeout": 2, "retry_budget": 4}
#: how long a stopped server stays stopped while the run waits on it: past one client timeout
STOPPED_FOR = BACK["timeout"] * 1.5
#: a run whose server stays down must give up well within this (its budget is DOWN's 4 s per call)
GIVES_UP_WITHIN = 120
#: Partial writes are restored to within this of the originals (cosine Chroma re-normalises).
ULP = 2.0**-23
#: where a scenario starts and what it leaves: every original back, or an uninterrupted run's result
ORIGINALS, CONVERGED = "originals", "converged"


@pytest.fixture(scope="module", params=SERVERS)
def server(request, tmp_path_factory) -> OwnServer:
    s = own_server(request.param, tmp_path_factory.mktemp(f"own-{request.param}"))
    yield s
    s.close()


class Faults:
    """Runs on one collection of an own server, paused at a probe while the server is hurt."""

    def __init__(self, server: OwnServer, coll: Collection, ref: Reference, directory: Path, tally: Tally):
        self.server, self.coll, self.ref, self.dir, self.tally = server, coll, ref, directory, tally

    def paused(self, command: str, options: dict, point: str, n: int = 2) -> tuple[CliProcess, Pause]:
        pause = Pause.at(self.dir, point, n)
        proc = spawn(command, "--store", self.coll.with_options(**options).uri, *BATCH_ARGS, env=pause.env())
        pause.wait_reached(proc)
        return proc, pause

    def vectors(self) -> dict:
        vectors, snap = self.server.read(self.coll.name)
        assert checksum(snap) == self.coll.payloads, "payloads / metadata / documents changed"
        return vectors

    def assert_converged(self) -> None:
        off = differing(self.vectors(), self.ref.final)
        assert not off, f"{len(off)} vectors differ from an uninterrupted run's, e.g. {off[:3]}"
        s = nudge("status", "--store", self.coll.uri).report
        assert (s["nudged"], s["pending"], s["lock"]) == (len(self.ref.written), 0, None), s

    def assert_originals(self, status: bool = True) -> None:
        now = self.vectors()
        worst = max(max_abs_diff(now[i], self.coll.originals[i]) for i in self.coll.ids)
        exact = self.server.rollback_is_bit_exact(self.coll.metric)
        assert worst == 0.0 if exact else worst <= ULP, f"originals not restored (max diff {worst:.3g})"
        if status:
            s = nudge("status", "--store", self.coll.uri).report
            assert (s["nudged"], s["pending"], s["lock"]) == (0, 0, None), s

    def reset(self) -> None:
        """Back to the originals between two scenarios (no fault: the vectors suffice, no status)."""
        nudge("rollback", "--store", self.coll.uri, *BATCH_ARGS)
        self.assert_originals(status=False)

    def assert_partial(self, result: CliResult, command: str) -> str:
        """Exit 7, never 6: what was written is accounted for and the message says how to finish."""
        assert result.code == 7, f"a {command} that lost its server mid-write must exit 7\n{result.describe()}"
        run_id = (result.report or {}).get("run_id")
        # a run names itself (`rollback --run ID` undoes exactly it); a rollback is simply run again
        hint = f"rollback --run {run_id}" if command == "run" else "nudge-sync rollback"
        assert (run_id or command == "rollback") and hint in result.stderr, \
            f"the message does not say `{hint}`\n{result.describe()}"
        return run_id

    def trial(self, name: str, scenario) -> None:
        with self.tally.counting(self.server.name, "server-fault", fault=name):
            scenario()


def scenarios(f: Faults) -> dict:
    server = f.server

    def killed_and_restarted() -> None:
        proc, pause = f.paused("run", BACK, "run.write")
        server.kill()
        server.restart()
        pause.go()
        proc.wait(expect=0)
        f.assert_converged()

    def stopped_and_continued() -> None:
        proc, pause = f.paused("run", BACK, "run.write")
        server.stop()
        pause.go()
        time.sleep(STOPPED_FOR)  # the run's next call must hit the hung server and time out
        server.cont()
        proc.wait(expect=0)
        f.assert_converged()

    def killed_and_down() -> None:
        proc, pause = f.paused("run", DOWN, "run.write")
        server.kill()
        pause.go()
        try:
            result = proc.wait(timeout=GIVES_UP_WITHIN)  # must give up, not hang on the dead server
        finally:
            server.restart()
        run_id = f.assert_partial(result, "run")
        now = f.vectors()
        changed = differing(now, f.coll.originals)
        assert changed and all(now[i].tobytes() == f.ref.final[i].tobytes() for i in changed), \
            "partial writes are not the run's own vectors"
        s = nudge("status", "--store", f.coll.uri).report
        # every changed record holds our vector and is pending (its batch was saved before it was
        # written; the batch saved when the server died may be pending too); the lock could not be
        # released on a dead server: it is stale (its holder is gone) and the next command takes it
        assert s["nudged"] == len(changed) <= s["pending"] <= len(changed) + BATCH, (s, len(changed))
        assert s["lock"] is None or s["lock_stale"], s
        nudge("rollback", "--store", f.coll.uri, "--run", run_id, *BATCH_ARGS)
        f.assert_originals()
        nudge("run", "--store", f.coll.uri, *BATCH_ARGS)
        f.assert_converged()

    def stopped_and_down() -> None:
        proc, pause = f.paused("run", DOWN, "run.write")
        server.stop()
        pause.go()
        try:
            result = proc.wait(timeout=GIVES_UP_WITHIN)  # must give up, not hang on the stopped server
        finally:
            server.cont()
        f.assert_partial(result, "run")
        nudge("run", "--store", f.coll.uri, *BATCH_ARGS)
        f.assert_converged()

    def rollback_killed_and_down() -> None:
        proc, pause = f.paused("rollback", DOWN, "rollback.write")
        server.kill()
        pause.go()
        try:
            result = proc.wait(timeout=GIVES_UP_WITHIN)
        finally:
            server.restart()
        f.assert_partial(result, "rollback")
        nudge("rollback", "--store", f.coll.uri, *BATCH_ARGS)  # run again, it completes
        f.assert_originals()

    # name -> (scenario, the state it starts from, the state it leaves), in the order they run:
    # each but the fourth and fifth starts where the one before ended
    return {"killed, stays down": (killed_and_down, ORIGINALS, CONVERGED),
            "rollback: killed, stays down": (rollback_killed_and_down, CONVERGED, ORIGINALS),
            "killed, restarted": (killed_and_restarted, ORIGINALS, CONVERGED),
            "stopped, continued": (stopped_and_continued, ORIGINALS, CONVERGED),
            "stopped, stays down": (stopped_and_down, ORIGINALS, CONVERGED)}


#: Milvus 2.3.5 (standalone: embedded etcd and rocksmq) SIGKILLed while a client is connected did
#: not answer within 5 minutes of a restart on these machines (its coordinators keep waiting on the
#: dead components' sessions: "session idle for long time", "unhealthy node exist, node up will be
#: delayed"), even with its session lease cut to 10 s and the restart delayed past it; killed with
#: no client connected it restarts in ~10 s. A server that does not come back says nothing about
#: nudge-sync, so Milvus 2.3.5 gets the SIGSTOP fault within the budget: hung and continued. Hung
#: past a run's budget, it answered "channel not subscribed" after SIGCONT (now retried), then in
#: 2 of 3 later trials refused every connection for the whole next minute, so that case is left out
#: too (the Chroma and Milvus Lite servers run it).
ONLY = {"milvus-2.3.5": ("stopped, continued",)}


def test_server_faults_mid_write(server, collection_name, tmp_path, tally):
    coll = make_collection(server, collection_name, tmp_path)
    f = Faults(server, coll, reference(coll, tmp_path), tmp_path, tally)
    state = ORIGINALS
    for name, (scenario, starts, ends) in scenarios(f).items():
        if name not in ONLY.get(server.name, (name,)):
            continue
        if starts != state:  # no fault here: bring the collection to where the scenario starts
            if starts == ORIGINALS:
                f.reset()
            else:
                nudge("run", "--store", coll.uri, *BATCH_ARGS)
                f.assert_converged()
        f.trial(name, scenario)
        state = ends
