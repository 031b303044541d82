"""Cross-process sequences: every command its own ``nudge-sync`` process, after every other command,
on five of the six backends; results read back with the database's own client.

    feedback import -> plan -> run -> status -> eval -> run (writes 0) -> rollback -> history

``status`` after a rollback (nothing nudged, nothing pending, no lock) is test_sigkill.py's, after
every rollback chain on all six backends. ``milvus-lite-server`` is left out: it runs the engine
(Milvus Lite) and the connector code of ``milvus-lite`` and the ``milvus+http`` URI path of
``milvus-2.3.5``, and nothing here stops or restarts a server. On Milvus 2.3.5 every collection is
released before the rollback, as a restart does; Milvus Lite releases them all whenever its process
ends, so there every command starts on released collections (the connector loads a collection on
its first read of it, the same code for every command).

And ``demo --backend milvus`` followed by the read commands and a rollback in new processes (issue
#10, defect 1: Milvus Lite failed every command after a run; the demo's Milvus collection is the
only one whose layout differs from the suite's, primary key ``id``). The Qdrant and Chroma demos
are left out here: the commands after a run, in new processes on the same connectors, are the
sequence above, and the README's first command itself (the Qdrant demo) runs as a process in
tests/cli/test_cli.py::test_console_script_runs_the_demo.

Every step carries a planted secret in the backend's credential path (on Milvus 2.3.5, whose
authentication is on, the server's own root password, in the secret file its URI names); at the end stdout, stderr, the JSON reports, the
history and the state collection are scanned for it (defect 5; the echoing servers are in
test_secrets.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nudge_sync.synthetic import make_corpus
from tests.backends import fast_tmp_dir
from tests.conftest import selected_harnesses
from tests.user._data import BATCH_ARGS, Collection, differing, make_collection, max_abs_diff
from tests.user._native import MilvusLiteBackend, UserBackend, checksum, dump
from tests.user._runner import CliResult, nudge
from tests.user._tally import Tally
from tests.user._secrets import SECRET_ENV, find_secret, planted, planted_credentials

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


class Steps:
    """``nudge-sync`` processes with one environment, keeping every output for the secret scan."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.outputs: list[str] = []

    def __call__(self, *args: object, as_json: bool = True) -> Any:
        """The JSON report (``as_json``) or the human output of one successful command."""
        result: CliResult = nudge(*args, env=self.env, as_json=as_json)
        self.outputs += [result.stdout, result.stderr]
        return result.report if as_json else result.stdout

    def scan(self, secret: str, *more: str) -> None:
        leaked = find_secret(secret, *self.outputs, *more)
        assert not leaked, f"the planted secret was printed or stored as {leaked}"


#: milvus-lite-server: see the module docstring
SEQUENCE_BACKENDS = [n for n in selected_harnesses() if n not in ("milvus-lite-server", "memory")]


@pytest.mark.parametrize("user_backend", SEQUENCE_BACKENDS, indirect=True)
def test_every_command_in_its_own_process(user_backend, collection_name, tmp_path, tally):
    b = user_backend
    secret = planted()
    with tally.counting(b.name, "sequence"):
        coll = make_collection(b, collection_name, tmp_path)
        state = collection_name + "_nudge_state"
        with planted_credentials(b, coll.uri, secret, tmp_path) as (uri, env, secret):
            steps, state_text, names = sequence(b, coll, uri, Steps(env))
            with tally.counting(b.name, "secrets", fault="planted secret"):
                assert "rolled-back" in state_text, "the state collection holds no run history"
                steps.scan(secret, state_text)
        assert sorted(c for c in names if c.startswith(collection_name)) == sorted(
            [coll.name, collection_name + "_feedback", state]), "collections were created or removed"


def sequence(b: UserBackend, coll: Collection, uri: str, step: Steps) -> tuple[Steps, str, list[str]]:
    """plan, run, status, eval, run, rollback, history: each its own process. Returns the
    steps, the state collection's content and the collections at the end."""
    state = coll.name + "_nudge_state"
    plan = step("plan", "--store", uri, *BATCH_ARGS)
    assert plan["status"] == "dry-run" and plan["counts"]["to_write"] > 0, plan
    with b.native() as h:  # one open for both reads (an open of an embedded database costs more)
        assert not differing(h.vectors(coll.name), coll.originals), "plan wrote vectors"
        assert not [c for c in h.collections() if c.startswith(state)], "plan created the state collection"

    run = step("run", "--store", uri, *BATCH_ARGS)
    written = run["counts"]["written"]
    assert run["status"] == "written" and written == plan["counts"]["to_write"], run
    after_run, snap = b.read(coll.name)
    assert checksum(snap) == coll.payloads, "payloads / metadata / documents changed"
    assert len(differing(after_run, coll.originals)) == written

    status = step("status", "--store", uri)
    assert (status["nudged"], status["pending"], status["runs"], status["lock"]) == (written, 0, 1, None), status
    assert status["last_run"]["status"] == "written" and status["count"] == len(coll.ids)

    ev = step("eval", "--store", uri, "--split", "val")
    assert ev["nudged_records"] == written and ev["current"]["ndcg@10"] > ev["original"]["ndcg@10"], ev

    again = step("run", "--store", uri, *BATCH_ARGS, "--force")  # nothing new: --force plans in full
    assert again["status"] == "unchanged" and again["counts"]["written"] == 0, again
    assert not differing(b.vectors(coll.name), after_run), "a second run on the same data rewrote vectors"
    release_everything(b, coll.name)  # the rollback reads, writes and reads back released collections

    undone = step("rollback", "--store", uri, "--batch-size", "10")
    assert undone["status"] == "rolled-back" and undone["restored"] == written, undone
    assert undone["skipped_reembedded"] == 0, undone
    human = step("history", "--store", uri, as_json=False).splitlines()
    said = [(line.split()[1], *re.findall(r" (written|restored) (\d+)", line)[-1]) for line in human]
    assert said == [("written", "written", str(written)), ("unchanged", "written", "0"),
                    ("rolled-back", "restored", str(written))], human  # a rollback counts what it restored

    # one open at the end (history only reads): the vectors, the rest of every record,
    # the state's content and the collections
    with b.native() as h:
        restored, snap, dumped, names = h.vectors(coll.name), h.snapshot(coll.name), dump(h, state), h.collections()
    assert checksum(snap) == coll.payloads, "rollback changed payloads / metadata / documents"
    exact = len(coll.ids) - len(differing(restored, coll.originals))
    assert undone["bit_exact"] == exact - (len(coll.ids) - written), (undone, exact)
    if b.rollback_is_bit_exact(coll.metric):
        assert exact == len(coll.ids), f"{len(coll.ids) - exact} originals did not come back bit for bit"
    else:
        worst = max(max_abs_diff(restored[i], coll.originals[i]) for i in coll.ids)
        assert worst <= ULP, f"a restored vector is {worst:.3g} off its original"
    return step, dumped, names


def demo_vectors(native: UserBackend) -> dict[Any, Any]:
    """The demo collection's vectors, read with the database's own client (the demo's Milvus
    collection keys its rows by "id", not the harness' "pk")."""
    with native.native() as h:
        return {r["id"]: np.asarray(r["vector"], np.float32) for r in h.rows("demo", ["id", "vector"], pk="id")}


@pytest.mark.skipif("milvus-lite" not in selected_harnesses(), reason="milvus-lite is not selected")
def test_every_command_after_the_demo(tmp_path, tally):
    """``demo --backend milvus``, then status, eval and rollback in new processes on what it left
    (plan, history and status after a rollback are in the sequence above); the demo's vectors, read
    with the database's own client, are its corpus again after the rollback, bit for bit."""
    base = fast_tmp_dir("nudge-sync-demo-", tmp_path)  # on tmpfs, as the user_backend fixture has it
    try:
        every_command_after_the_demo(base / "demo", tally)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def every_command_after_the_demo(directory: Path, tally: Tally) -> None:
    secret = planted()
    step = Steps({SECRET_ENV["milvus"]: secret})
    with tally.counting("milvus-lite", "sequence"):
        demo = step("demo", "--backend", "milvus", "--dir", directory, "--records", "300", "--dim", "16",
                    "--queries", "100")
        uri = demo["store"]
        written = demo["run"]["counts"]["written"]
        assert written > 0, demo

        status = step("status", "--store", uri)
        assert (status["nudged"], status["pending"], status["runs"], status["lock"]) == (written, 0, 1, None), status
        ev = step("eval", "--store", uri)
        assert ev["current"]["ndcg@10"] == pytest.approx(demo["eval"]["current"]["ndcg@10"], abs=1e-6), ev
        undone = step("rollback", "--store", uri)
        assert undone["restored"] == written and undone["skipped_reembedded"] == 0, undone
        step.scan(secret)
        # where `nudge-sync demo --dir D` puts its Milvus Lite file (nudge_sync/cli/demo.py)
        stored = demo_vectors(MilvusLiteBackend(directory / "milvus.db"))
        corpus = make_corpus(n_records=300, dim=16, n_queries=100, seed=0, id_type="int")
        assert sorted(stored, key=repr) == sorted(corpus.ids, key=repr)
        worst = max(max_abs_diff(stored[i], v) for i, v in zip(corpus.ids, corpus.vectors))
        assert worst == 0.0, f"a restored vector is {worst:.3g} off the demo's corpus (Milvus stores what it is sent)"
