"""The command line's logic on the in-memory store (``memory://``), in this process: fast checks of
what each command reports and writes, and that a second run, a gate and a refusal write nothing.
The real backends keep the end-to-end, subprocess and user-level suites (no other process can
reach a ``memory://`` database)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import connectors
from nudge_sync import ExitCode
from nudge_sync.cli.app import cli
from tests.backends import random_vectors
from tests.engine.test_refusals import make_entries

N, DIM = 400, 16


@pytest.fixture
def mem(request, collection_name, tmp_path):
    """A cosine collection in the memory store, its URI, and a JSONL log file."""
    h = request.getfixturevalue("harness_memory")
    ids = h.make_ids(N)
    vectors = random_vectors(N, DIM, seed=5, normalize=True)
    h.create(collection_name, ids, vectors, metric="cosine", rich=True)
    log_file = tmp_path / "feedback.jsonl"
    connectors.write_log_file(log_file, make_entries(ids, vectors))
    yield h, {"name": collection_name, "uri": h.uri(collection_name), "log_file": log_file}
    for name in h.collections():
        if name.startswith(collection_name):
            h.drop(name)


def as_json(*args, expect=0):
    result = CliRunner().invoke(cli, ["-q", "--json", *map(str, args)], obj={}, catch_exceptions=False)
    assert result.exit_code == expect, (result.output, result.stderr)
    return json.loads(result.stdout)


def test_plan_run_rerun_status_history_rollback(mem):
    h, c = mem
    uri, name = c["uri"], c["name"]
    before, payloads = h.vectors(name), h.snapshot(name)
    assert as_json("feedback", "import", "--store", uri, c["log_file"])["appended"] == 200

    plan = as_json("plan", "--store", uri)
    assert plan["status"] == "dry-run" and plan["counts"]["to_write"] > 0
    assert all(h.vectors(name)[i].tobytes() == v.tobytes() for i, v in before.items())
    assert f"{name}_nudge_state" not in h.collections()  # a plan creates nothing

    run = as_json("run", "--store", uri)
    written = run["counts"]["written"]
    assert run["status"] == "written" and written == plan["counts"]["to_write"]
    assert run["validation"]["after"][run["objective"]] > run["validation"]["before"][run["objective"]]
    changed = {i for i, v in h.vectors(name).items() if v.tobytes() != before[i].tobytes()}
    assert len(changed) == written
    assert h.snapshot(name) == payloads  # payloads untouched

    idle = as_json("run", "--store", uri, expect=3)  # nothing new: answered before the collection is read
    assert idle["status"] == "gated" and "nothing new" in idle["reason"] and set(idle["timings"]) == {"read_inputs"}
    again = as_json("run", "--store", uri, "--force")  # --force plans in full
    assert again["status"] == "unchanged" and again["counts"]["written"] == 0

    status = as_json("status", "--store", uri)
    assert status["nudged"] == written and status["runs"] == 2 and not status["lock"]
    assert [r["run_id"] for r in as_json("history", "--store", uri)] == [run["run_id"], again["run_id"]]

    undone = as_json("rollback", "--store", uri)
    assert undone["restored"] == written and undone["bit_exact"] == written
    assert all(h.vectors(name)[i].tobytes() == v.tobytes() for i, v in before.items())
    assert h.snapshot(name) == payloads


def test_a_gated_run_exits_3_and_writes_nothing_not_even_history(mem):
    h, c = mem
    uri, name = c["uri"], c["name"]
    before = h.snapshot(name), h.vectors(name)
    first = as_json("run", "--store", uri, "--log-file", c["log_file"], "--min-gain", "1", expect=ExitCode.NOTHING_TO_DO)
    assert first["status"] == "gated" and "min_gain" in first["error"]
    ours = sorted(n for n in h.collections() if n.startswith(name))  # the memory store is per process
    assert ours == [name]  # a first run held back leaves no state behind

    as_json("run", "--store", uri, "--log-file", c["log_file"])
    after_run = h.vectors(name)
    state = [n for n in h.collections() if n.startswith(name) and n != name]
    assert len(state) == 1
    state_before = h.snapshot(state[0]), h.vectors(state[0])
    # --force: past the nothing_new gate, which would hold this run back first
    gated = as_json("run", "--store", uri, "--log-file", c["log_file"], "--min-new-feedback", "1", "--force",
                    expect=ExitCode.NOTHING_TO_DO)
    assert gated["status"] == "gated" and "min_new_feedback" in gated["reason"]
    assert all(h.vectors(name)[i].tobytes() == v.tobytes() for i, v in after_run.items())
    history = as_json("history", "--store", uri)
    assert [r["status"] for r in history] == ["written"]  # the gated run is in its report and events only
    state_after = h.snapshot(state[0]), h.vectors(state[0])
    assert state_after[0] == state_before[0]
    assert all(state_after[1][i].tobytes() == v.tobytes() for i, v in state_before[1].items())
    assert h.snapshot(name) == before[0]


@pytest.mark.parametrize("args, code, message", [
    (("--method", "nudge-m"), ExitCode.REFUSED_INPUT, "NUDGE-M"),
    (("--objective", "foo@10"), ExitCode.USAGE_ERROR, "foo@10"),
    (("--batch-size", "0"), ExitCode.USAGE_ERROR, "batch-size"),
])
def test_refusals_leave_the_store_as_it_was(mem, args, code, message):
    h, c = mem
    before = sorted(h.collections()), h.snapshot(c["name"]), h.vectors(c["name"])
    result = CliRunner().invoke(cli, ["-q", "run", "--store", c["uri"], "--log-file", str(c["log_file"]), *args],
                                obj={}, catch_exceptions=False)
    assert result.exit_code == code and message in result.stderr, result.stderr
    assert "Traceback" not in result.output + result.stderr
    after = sorted(h.collections()), h.snapshot(c["name"]), h.vectors(c["name"])
    assert after[:2] == before[:2]
    assert all(after[2][i].tobytes() == v.tobytes() for i, v in before[2].items())
    assert np.isfinite(np.stack(list(after[2].values()))).all()
