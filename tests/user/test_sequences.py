"""Cross-process sequences: every command its own ``nudge-sync`` process, after every other command,
on the six backends; results read back with the database's own client.

    feedback import -> plan -> run -> status -> eval -> history -> run (writes 0) -> rollback -> status

and, on the embedded engines, the README's first command (``demo``) followed by every read command
in new processes (issue #10, defect 1: Milvus Lite failed every command after a run).

Every step carries a planted secret in the backend's credential path (a user created for the test
on Milvus 2.3.5, whose authentication is on); at the end stdout, stderr, the JSON reports, the
history and the state collection are scanned for it (defect 5; the echoing servers are in
test_secrets.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nudge_sync.synthetic import make_corpus
from tests.backends import fast_tmp_dir
from tests.conftest import selected_harnesses
from tests.user._data import BATCH_ARGS, Collection, differing, make_collection, max_abs_diff
from tests.user._native import ChromaPersistentBackend, MilvusLiteBackend, QdrantLocalBackend, UserBackend, checksum
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


def test_every_command_in_its_own_process(user_backend, collection_name, tmp_path, tally):
    b = user_backend
    secret = planted()
    with tally.counting(b.name, "sequence"):
        coll = make_collection(b, collection_name, tmp_path)
        state = collection_name + "_nudge_state"
        with planted_credentials(b, coll.uri, secret, tmp_path) as (uri, env, secret):
            steps = sequence(b, coll, uri, Steps(env))
            with tally.counting(b.name, "secrets", fault="planted secret"):
                dump = b.dump(state)
                assert "rolled-back" in dump, "the state collection holds no run history"
                steps.scan(secret, dump)
        assert sorted(c for c in b.collections() if c.startswith(collection_name)) == sorted(
            [coll.name, collection_name + "_feedback", state]), "collections were created or removed"


def sequence(b: UserBackend, coll: Collection, uri: str, step: Steps) -> Steps:
    """plan, run, status, eval, history, run, rollback, status, history: each its own process."""
    state = coll.name + "_nudge_state"
    plan = step("plan", "--store", uri, *BATCH_ARGS)
    assert plan["status"] == "dry-run" and plan["counts"]["to_write"] > 0, plan
    assert not differing(b.vectors(coll.name), coll.originals), "plan wrote vectors"
    assert not [c for c in b.collections() if c.startswith(state)], "plan created the state collection"

    run = step("run", "--store", uri, *BATCH_ARGS)
    written = run["counts"]["written"]
    assert run["status"] == "written" and written == plan["counts"]["to_write"], run
    after_run, snap = b.read(coll.name)
    assert checksum(snap) == coll.payloads, "payloads / metadata / documents changed"
    assert len(differing(after_run, coll.originals)) == written
    release_everything(b, coll.name)

    status = step("status", "--store", uri)
    assert (status["nudged"], status["pending"], status["runs"], status["lock"]) == (written, 0, 1, None), status
    assert status["last_run"]["status"] == "written" and status["count"] == len(coll.ids)

    ev = step("eval", "--store", uri, "--split", "val")
    assert ev["nudged_records"] == written and ev["current"]["ndcg@10"] > ev["original"]["ndcg@10"], ev

    history = step("history", "--store", uri)
    assert [(r["status"], r.get("written")) for r in history] == [("written", written)], history

    again = step("run", "--store", uri, *BATCH_ARGS, "--force")  # nothing new: --force plans in full
    assert again["status"] == "unchanged" and again["counts"]["written"] == 0, again
    assert not differing(b.vectors(coll.name), after_run), "a second run on the same data rewrote vectors"
    release_everything(b, coll.name)

    undone = step("rollback", "--store", uri, "--batch-size", "10")
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

    final = step("status", "--store", uri)
    assert (final["nudged"], final["pending"], final["lock"]) == (0, 0, None), final
    human = step("history", "--store", uri, as_json=False).splitlines()
    assert [line.split()[1] for line in human] == ["written", "unchanged", "rolled-back"], human
    assert f"restored {written}" in human[-1], human  # a rollback's line counts what it restored
    return step


DEMO_BACKENDS = {"qdrant-local": "qdrant", "milvus-lite": "milvus", "chroma-persistent": "chroma"}
#: where `nudge-sync demo --dir D` puts each embedded database (nudge_sync/cli/demo.py), as the
#: user-level suite's native readers open them
DEMO_NATIVE = {"qdrant-local": lambda d: QdrantLocalBackend(d / "qdrant"),
               "milvus-lite": lambda d: MilvusLiteBackend(d / "milvus.db"),
               "chroma-persistent": lambda d: ChromaPersistentBackend(d / "chroma")}


def demo_vectors(native: UserBackend) -> dict[Any, Any]:
    """The demo collection's vectors, read with the database's own client."""
    if native.backend != "milvus":
        return native.vectors("demo")
    with native.native() as h:  # the demo's Milvus collection keys its rows by "id", not the harness' "pk"
        return {r["id"]: np.asarray(r["vector"], np.float32) for r in h.rows("demo", ["id", "vector"], pk="id")}


@pytest.mark.parametrize("harness_name", [n for n in DEMO_BACKENDS if n in selected_harnesses()])
def test_every_command_after_the_demo(harness_name, tmp_path, tally):
    """The README's first command, then status, eval, rollback and status in new processes on what
    it left (plan and history after a run are in the sequence above); the demo's vectors, read
    with the database's own client, are its corpus again after the rollback."""
    base = fast_tmp_dir("nudge-sync-demo-", tmp_path)  # on tmpfs, as the user_backend fixture has it
    try:
        every_command_after_the_demo(harness_name, base / "demo", tally)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def every_command_after_the_demo(harness_name: str, directory: Path, tally: Tally) -> None:
    backend, secret = DEMO_BACKENDS[harness_name], planted()
    step = Steps({SECRET_ENV[backend]: secret})
    with tally.counting(harness_name, "sequence"):
        demo = step("demo", "--backend", backend, "--dir", directory, "--records", "300", "--dim", "16",
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
        final = step("status", "--store", uri)
        assert (final["nudged"], final["pending"], final["lock"], final["runs"]) == (0, 0, None, 2), final
        step.scan(secret)
        native = DEMO_NATIVE[harness_name](directory)
        corpus = make_corpus(n_records=300, dim=16, n_queries=100, seed=0, id_type="str" if backend == "chroma" else "int")
        stored = demo_vectors(native)
        assert sorted(stored, key=repr) == sorted(corpus.ids, key=repr)
        worst = max(max_abs_diff(stored[i], v) for i, v in zip(corpus.ids, corpus.vectors))
        # the demo's collection is cosine: bit for bit where the database stores what it is sent
        assert worst == 0.0 if native.rollback_is_bit_exact("cosine") else worst <= ULP, worst
