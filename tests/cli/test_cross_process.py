"""``nudge-sync`` commands as users run them: each one its own process, after another process wrote.

Defect 1 of issue 10: after `demo --backend milvus`, every later command in a new process found the
state collection released and exited 6 with a pymilvus traceback on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

#: the console script of this environment, as users run it
NUDGE_SYNC = str(Path(sys.executable).with_name("nudge-sync"))


def nudge_sync(*args: str, expect: int = 0) -> dict:
    done = subprocess.run([NUDGE_SYNC, "--json", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ})
    assert done.returncode == expect, (args, done.returncode, done.stderr)
    # nothing but our own messages on stderr: no third-party log line, no traceback
    assert "Traceback" not in done.stderr and "[ERROR]" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_milvus_lite_commands_in_separate_processes(tmp_path):
    demo = nudge_sync("demo", "--backend", "milvus", "--dir", str(tmp_path / "d"), "--records", "300",
                      "--dim", "16", "--queries", "120")
    store = demo["store"]
    written = demo["run"]["counts"]["written"]
    assert written > 0
    status = nudge_sync("status", "--store", store)
    assert status["nudged"] == written and status["runs"] == 1 and status["lock"] is None
    assert [r["status"] for r in nudge_sync("history", "--store", store)] == ["written"]
    plan = nudge_sync("plan", "--store", store, "--max-changed-fraction", "1")
    assert plan["status"] == "dry-run" and plan["counts"]["to_write"] == 0  # the run converged
    assert nudge_sync("eval", "--store", store, "--split", "test")["queries"] == demo["eval"]["queries"]
    undone = nudge_sync("rollback", "--store", store)
    assert undone["restored"] == written and undone["skipped_reembedded"] == 0
    after = nudge_sync("status", "--store", store)
    assert after["nudged"] == 0 and after["runs"] == 2
    # and the vectors are the demo's originals again, read with the database's own client
    from pymilvus import MilvusClient

    from nudge_sync.synthetic import make_corpus

    corpus = make_corpus(n_records=300, dim=16, n_queries=120, seed=0, id_type="int")
    client = MilvusClient(str(tmp_path / "d" / "milvus.db"))
    try:
        client.load_collection("demo")
        rows = client.query("demo", filter="", output_fields=["id", "vector"], limit=1000)
    finally:
        client.close()
    stored = {r["id"]: np.asarray(r["vector"], np.float32) for r in rows}
    assert all(stored[i].tobytes() == v.tobytes() for i, v in zip(corpus.ids, corpus.vectors))


def test_a_reader_that_closes_the_pipe_early_leaves_the_exit_code_alone(tmp_path):
    """Cold try: `nudge-sync history | true` and a gated `run ... | true` said 'internal error
    (a bug)', exit 1. The unread output is dropped; the command's own exit code stands."""
    demo = nudge_sync("demo", "--dir", str(tmp_path / "d"), "--records", "300", "--dim", "16", "--queries", "120")

    def piped(*args: str) -> subprocess.CompletedProcess:
        # the reader is gone before nudge-sync writes: its stdout is a pipe with no reader
        read, write = os.pipe()
        os.close(read)
        try:
            return subprocess.run([NUDGE_SYNC, *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
        finally:
            os.close(write)

    for args, code in ((("history", "--store", demo["store"]), 0),
                       (("--json", "history", "--store", demo["store"]), 0),
                       (("run", "--store", demo["store"], "--dry-run", "--min-gain", "0.9"), 3)):
        done = piped(*args)
        assert done.returncode == code, (args, done.returncode, done.stderr)
        assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
