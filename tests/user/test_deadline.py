"""A hung server cannot outlast the retry budget (issue 18, finding 5).

Before, a Chroma server stopped (SIGSTOP) for 75 s with ``retry_budget=8`` kept a run waiting the
whole 75 s, and with the server killed, ``retry_budget=60`` and ``timeout=20`` a run took 296 s to
exit 7: every call (the write, the put-back's reads, the run record, the lock release) had a budget
of its own, counted from the end of its first timed-out attempt. Now ``retry_budget`` is one pool
for the whole command, and a command that meets a hung server ends within ``retry_budget`` plus two
call timeouts (the last retried attempt and the put-back's one attempt; README: Safety, "The
deadline").

On the suite's own Chroma server and Milvus Lite server, a ``nudge-sync run`` (its own process) is
paused at a probe, the test stops the server by its PID (SIGSTOP) and lets the run go on; the run
must exit with its documented code within that bound (plus a margin for the process' own exit),
measured from the moment it was let go. This is a bound, not a speed target: the budget and timeout
are small so the test is quick. Both faults hit one collection in turn -- stopped before writing
(nothing written: exit 6), then stopped mid-write (exit 7), by a run that takes over whatever lock
the first one could not release -- and once the server is continued a rerun completes.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import selected_harnesses
from tests.user._data import BATCH_ARGS, make_collection
from tests.user._probes import Pause
from tests.user._runner import nudge, spawn
from tests.user._servers import OwnServer, own_server

pytestmark = pytest.mark.slow  # run first (tests/user/conftest.py)
SERVERS = [n for n in ("chroma-http", "milvus-lite-server") if n in selected_harnesses()]
BUDGET, TIMEOUT = 4, 2
#: what the process needs beyond the bound to notice a failed call and exit (interpreter shutdown
#: included); the old behaviour took 3x the bound or more
MARGIN = 5.0
BOUND = BUDGET + 2 * TIMEOUT + MARGIN


@pytest.fixture(scope="module", params=SERVERS)
def server(request, tmp_path_factory) -> OwnServer:
    s = own_server(request.param, tmp_path_factory.mktemp(f"deadline-{request.param}"))
    yield s
    s.close()


#: (probe point, its hit, the exit code): stopped before the first write, then between two batches
FAULTS = (("lock.acquired", 1, 6), ("run.write", 2, 7))


def test_a_stopped_server_cannot_outlast_the_budget(server, collection_name, tmp_path, tally):
    coll = make_collection(server, collection_name, tmp_path).with_options(retry_budget=BUDGET, timeout=TIMEOUT)
    for point, n, code in FAULTS:
        with tally.counting(server.name, "server-fault", fault=f"SIGSTOP at {point}, deadline"):
            pause = Pause.at(tmp_path, point, n)
            proc = spawn("run", "--store", coll.uri, *BATCH_ARGS, env=pause.env())
            pause.wait_reached(proc)
            server.stop()
            try:
                let_go = time.monotonic()
                pause.go()
                result = proc.wait(timeout=120)
                took = time.monotonic() - let_go
            finally:
                server.cont()
            assert result.code == code, f"expected exit {code}\n{result.describe()}"
            assert took <= BOUND, (f"the run took {took:.1f} s after the server stopped; the bound is retry_budget "
                                   f"{BUDGET} + 2 x timeout {TIMEOUT} + {MARGIN:g} s\n{result.describe()}")
    # the server is back: the next run completes what was left
    nudge("run", "--store", coll.uri, *BATCH_ARGS)
    status = nudge("status", "--store", coll.uri).report
    assert status["pending"] == 0 and status["nudged"] > 0, status
