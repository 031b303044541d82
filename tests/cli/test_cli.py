"""The ``nudge-sync`` command line on a real embedded database: every command, its JSON report,
its human summary and its documented exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import connectors
from connectors import LabelledQuery
from nudge_sync import ExitCode
from nudge_sync.cli.app import cli
from nudge_sync.engine.state import SyncState
from tests._imports import hide_module
from tests.backends import random_vectors
from tests.engine.test_refusals import make_entries

N, DIM = 400, 16
EMBEDDED = "chroma_persistent"


@pytest.fixture
def h(request):
    return request.getfixturevalue(f"harness_{EMBEDDED}")


@pytest.fixture
def coll(h, collection_name, tmp_path):
    """A collection, its URI, and a JSONL feedback file with train/val queries."""
    ids = h.make_ids(N)
    vectors = random_vectors(N, DIM, seed=5, normalize=True)
    h.create(collection_name, ids, vectors, metric="cosine", rich=True)
    log_file = tmp_path / "feedback.jsonl"
    connectors.write_log_file(log_file, make_entries(ids, vectors))
    yield {"name": collection_name, "uri": h.uri(collection_name), "ids": ids, "log_file": log_file}
    for name in h.collections():
        if name.startswith(collection_name):
            h.drop(name)


def invoke(*args, expect=0, env=None):
    result = CliRunner().invoke(cli, ["-q", *map(str, args)], obj={}, env=env, catch_exceptions=False)
    assert result.exit_code == expect, (result.output, getattr(result, "stderr", ""))
    return result


def as_json(*args, expect=0, env=None):
    return json.loads(invoke("--json", *args, expect=expect, env=env).stdout)


def test_the_whole_cycle(h, coll):
    uri = coll["uri"]
    before = h.vectors(coll["name"])
    imported = as_json("feedback", "import", "--store", uri, coll["log_file"])
    assert imported["appended"] == 200 and imported["unknown_id_count"] == 0

    plan = as_json("plan", "--store", uri)
    assert plan["status"] == "dry-run" and plan["counts"]["to_write"] > 0
    assert h.vectors(coll["name"]) .keys() == before.keys()
    assert all(h.vectors(coll["name"])[i].tobytes() == before[i].tobytes() for i in before)

    run = as_json("run", "--store", uri)
    assert run["status"] == "written" and run["counts"]["written"] == plan["counts"]["to_write"]
    assert run["validation"]["after"]["ndcg@10"] > run["validation"]["before"]["ndcg@10"]

    human = invoke("run", "--store", uri, "--force").stdout  # nothing new: --force plans in full
    assert "unchanged" in human and "gamma" in human and "0 written" in human

    status = as_json("status", "--store", uri)
    assert status["nudged"] == run["counts"]["written"] and status["lock"] is None
    assert "nudged" in invoke("status", "--store", uri).stdout

    history = as_json("history", "--store", uri)
    assert [r["status"] for r in history] == ["written", "unchanged"]
    assert len(invoke("history", "--store", uri, "--limit", "1").stdout.strip().splitlines()) == 1

    ev = as_json("eval", "--store", uri, "--split", "val")
    assert ev["current"]["ndcg@10"] > ev["original"]["ndcg@10"]
    ev_file = as_json("eval", "--store", uri, "--log-file", coll["log_file"], "--split", "val", "--mode", "search")
    assert ev_file["current"]["ndcg@10"] == pytest.approx(ev["current"]["ndcg@10"], abs=1e-6)

    undone = as_json("rollback", "--store", uri)
    assert undone["restored"] == run["counts"]["written"]
    after = h.vectors(coll["name"])
    assert max(float(np.abs(after[i] - before[i]).max()) for i in before) <= 2.0**-23
    assert as_json("status", "--store", uri)["nudged"] == 0


def test_run_from_a_log_file_and_dry_run_flag(h, coll):
    out = as_json("run", "--store", coll["uri"], "--log-file", coll["log_file"], "--dry-run")
    assert out["status"] == "dry-run"
    assert coll["name"] + "_nudge_state" not in h.collections()


def test_an_empty_log_file_imports_nothing_and_says_so(h, coll, tmp_path):
    """Cold try: an empty file exited 0 with "appended 0 entries to None"."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    before = h.collections()
    result = invoke("feedback", "import", "--store", coll["uri"], empty, expect=ExitCode.NOTHING_TO_DO)
    assert "empty.jsonl' holds no labelled queries: nothing to import" in result.stderr
    assert h.collections() == before  # no log collection created


def test_feedback_add_from_arguments(h, coll):
    vec = ",".join(["0.25"] * DIM)
    rid = coll["ids"][3]
    out = as_json("feedback", "add", "--store", coll["uri"], "--query-id", "q-cli", "--vector", vec,
                  "--relevant", rid, "--relevant", coll["ids"][4], "--grade", "2", "--grade", "1", "--split", "val")
    assert out["appended"] == 1 and out["unknown_id_count"] == 0
    with connectors.open_store(coll["uri"]) as store:
        (entry,) = [e for e in store.read_log(coll["name"] + "_feedback")]
    assert entry.query_id == "q-cli" and entry.relevant_ids == [rid, coll["ids"][4]]
    assert entry.grades == [2.0, 1.0] and entry.split == "val"
    np.testing.assert_allclose(entry.vector, np.full(DIM, 0.25, np.float32))
    warned = invoke("feedback", "add", "--store", coll["uri"], "--query-id", "q2", "--vector", vec,
                    "--relevant", "no-such-record").stdout
    assert "1 relevant ids are not in the collection" in warned


@pytest.mark.parametrize("args, code, message", [
    (["--method", "nudge-m"], ExitCode.REFUSED_INPUT, "NUDGE-M"),
    (["--min-gain", "0.99"], ExitCode.NOTHING_TO_DO, "not above min_gain"),
    (["--min-val-queries", "500"], ExitCode.NOTHING_TO_DO, "need at least 500"),
    (["--max-changed-fraction", "0.001"], ExitCode.NOTHING_TO_DO, "max_changed_fraction"),
    (["--val-fraction", "2"], ExitCode.USAGE_ERROR, "--val-fraction"),
])
def test_run_refusals_have_their_exit_codes(h, coll, args, code, message):
    before = h.vectors(coll["name"])
    result = invoke("run", "--store", coll["uri"], "--log-file", coll["log_file"], *args, expect=code)
    assert message in result.stderr
    after = h.vectors(coll["name"])
    assert all(after[i].tobytes() == before[i].tobytes() for i in before)


def test_json_error_report(coll):
    out = as_json("run", "--store", coll["uri"], "--log-file", coll["log_file"], "--min-gain", "0.99",
                  expect=ExitCode.NOTHING_TO_DO)
    assert out["status"] == "gated" and out["exit_code"] == 3 and "min_gain" in out["error"]


def test_lock_held_exits_5_and_break_lock_clears_it(coll):
    with connectors.open_store(coll["uri"]) as store:
        state = SyncState(store.state(coll["name"] + "_nudge_state"))
        state.ensure(DIM)
        state.acquire(ttl=600)
    result = invoke("run", "--store", coll["uri"], "--log-file", coll["log_file"], expect=ExitCode.LOCK_HELD)
    assert "locked by" in result.stderr and "--break-lock" in result.stderr
    assert "(run None)" not in result.stderr  # a lock taken outside a run has no run id to show
    # another run holding the lock is normal operation (a watcher waits for it): a warning, said once
    records = [json.loads(line) for line in invoke("--log-format", "json", "run", "--store", coll["uri"], "--log-file",
                                                   coll["log_file"], expect=ExitCode.LOCK_HELD).stderr.splitlines()]
    assert [(r["level"], r["exit_code"]) for r in records if "exit_code" in r] == [("warning", 5)], records
    assert as_json("run", "--store", coll["uri"], "--log-file", coll["log_file"], "--break-lock")["status"] == "written"


def test_eval_uses_the_last_runs_split_and_pinned_test_queries(h, coll, tmp_path):
    from nudge_sync.engine.feedback import prepare_feedback

    unpinned = [LabelledQuery(e.query_id, e.vector, e.relevant_ids, timestamp=e.timestamp)
                for e in make_entries(coll["ids"], random_vectors(N, DIM, seed=5, normalize=True))]  # coll's vectors
    log_file = tmp_path / "unpinned.jsonl"
    connectors.write_log_file(log_file, unpinned)
    # a first run creates the state; a later run that reaches the database is recorded in the
    # history with its split (a gated run records nothing: issue 18), so no gate may hold it back
    as_json("run", "--store", coll["uri"], "--log-file", coll["log_file"])
    out = CliRunner().invoke(cli, ["-q", "--json", "run", "--store", coll["uri"], "--log-file", str(log_file),
                                   "--val-fraction", "0.3", "--split-salt", "s1", "--min-gain", "-1",
                                   "--max-changed-fraction", "1"], obj={})
    assert out.exit_code == ExitCode.OK, out.output
    assert json.loads(out.stdout)["split"] == {"val_fraction": 0.3, "salt": "s1"}
    expected_val = len(prepare_feedback(unpinned, DIM, val_fraction=0.3, salt="s1").rows("val"))
    ev = as_json("eval", "--store", coll["uri"], "--log-file", log_file)
    assert ev["split"] == "val" and ev["queries"] == expected_val
    assert ev["split_settings"] == {"val_fraction": 0.3, "salt": "s1", "from": "last run"}
    other = as_json("eval", "--store", coll["uri"], "--log-file", log_file, "--val-fraction", "0.5", "--split-salt", "")
    assert other["split_settings"]["from"] == "arguments"
    assert other["queries"] == len(prepare_feedback(unpinned, DIM, val_fraction=0.5).rows("val"))
    # a log that pins test queries is evaluated on them
    pinned = tmp_path / "pinned.jsonl"
    connectors.write_log_file(pinned, [LabelledQuery(e.query_id, e.vector, e.relevant_ids, timestamp=e.timestamp,
                                                     split="test" if j % 4 == 0 else None)
                                       for j, e in enumerate(unpinned)])
    on_test = as_json("eval", "--store", coll["uri"], "--log-file", pinned)
    assert on_test["split"] == "test" and on_test["queries"] == len(range(0, len(unpinned), 4))


def test_status_shows_a_watermark_no_calendar_holds(coll):
    """A state written before timestamps were checked may hold a nanosecond watermark (issue #11): status
    shows it as a number instead of crashing."""
    with connectors.open_store(coll["uri"]) as store:
        state = SyncState(store.state(coll["name"] + "_nudge_state"))
        state.ensure(DIM)
        state.put_run("20250101T000000Z-old", {"run_id": "20250101T000000Z-old", "status": "written",
                                                "started": 1.7e9, "watermark": 1.7e18})
    assert "watermark   1.7e+18 (not a time)" in invoke("status", "--store", coll["uri"]).stdout


def test_rollback_can_break_the_lock_of_a_run_that_died(h, coll):
    run = as_json("run", "--store", coll["uri"], "--log-file", coll["log_file"])
    with connectors.open_store(coll["uri"]) as store:
        SyncState(store.state(coll["name"] + "_nudge_state")).acquire(ttl=600)
    held = invoke("rollback", "--store", coll["uri"], expect=ExitCode.LOCK_HELD)
    assert "locked by" in held.stderr
    assert as_json("status", "--store", coll["uri"])["nudged"] == run["counts"]["written"]  # nothing restored
    undone = as_json("rollback", "--store", coll["uri"], "--break-lock")
    assert undone["restored"] == run["counts"]["written"] and "broke_lock_of" in undone
    assert as_json("status", "--store", coll["uri"])["lock"] is None


def test_errors_name_the_log_file_and_bad_batch_sizes_are_usage_errors(h, coll, tmp_path):
    wide = tmp_path / "wide.jsonl"
    connectors.write_log_file(wide, make_entries(coll["ids"], random_vectors(N, 2 * DIM, seed=5), dim=2 * DIM))
    for command in (["run"], ["eval"], ["feedback", "import", wide]):
        args = [*command, "--store", coll["uri"]] + (["--log-file", wide] if command[0] != "feedback" else [])
        result = invoke(*args, expect=ExitCode.REFUSED_INPUT)
        place = " line 1" if command[0] == "feedback" else ""  # an import names the line too
        assert f"log file {str(wide)!r}{place}: query 'q0' has a vector of shape ({2 * DIM},)" in result.stderr
    assert coll["name"] + "_nudge_state" not in h.collections()  # a refused run leaves no state behind
    for command in (["run", "--log-file", coll["log_file"]], ["rollback"], ["feedback", "import", coll["log_file"]]):
        for size in ("0", "-1"):
            result = invoke(*command, "--store", coll["uri"], "--batch-size", size, expect=ExitCode.USAGE_ERROR)
            assert "--batch-size" in result.output


def test_database_and_usage_errors(coll, tmp_path):
    missing = invoke("status", "--store", coll["uri"], "--collection", "no_such_collection",
                     expect=ExitCode.DATABASE_ERROR)
    assert "no_such_collection" in missing.stderr
    bad_uri = invoke("status", "--store", "postgres://x/y", expect=ExitCode.USAGE_ERROR)
    assert "postgres" in bad_uri.stderr
    invoke("run", expect=ExitCode.USAGE_ERROR)  # --store is required
    invoke("run", "--store", coll["uri"], "--context", "psychic", expect=ExitCode.USAGE_ERROR)


def test_config_file_and_environment(coll, tmp_path):
    config = tmp_path / "nudge-sync.toml"
    config.write_text(f'store = "{coll["uri"]}"\n\n[run]\nmin_gain = 0.99\n')
    result = invoke("--config", config, "run", "--log-file", coll["log_file"], expect=ExitCode.NOTHING_TO_DO)
    assert "min_gain=0.99" in result.stderr
    # `plan` previews that run: the [run] table and NUDGE_SYNC_RUN_* reach it (cold try: it said
    # "would write" where `run --dry-run` was held back)
    invoke("--config", config, "plan", "--log-file", coll["log_file"], expect=ExitCode.NOTHING_TO_DO)
    invoke("plan", "--store", coll["uri"], "--log-file", coll["log_file"], expect=ExitCode.NOTHING_TO_DO,
           env={"NUDGE_SYNC_RUN_MIN_GAIN": "0.99"})
    # a flag beats the config file
    assert as_json("--config", config, "run", "--log-file", coll["log_file"], "--min-gain", "0")["status"] == "written"
    # the store from the environment
    assert as_json("status", env={"NUDGE_SYNC_STORE": coll["uri"]})["nudged"] > 0
    secret = tmp_path / "secret.toml"
    secret.write_text('store = "qdrant::memory:"\napi_key = "hunter2"\n')
    refused = invoke("--config", secret, "status", expect=ExitCode.USAGE_ERROR)
    assert "api_key" in refused.output and "hunter2" not in refused.output


def test_help_lists_every_command_and_exit_codes():
    out = invoke("--help").stdout
    for command in ("run", "plan", "rollback", "status", "history", "feedback", "eval", "demo"):
        assert f"  {command}" in out
    assert "Exit codes" in out and "lock is held" in out and "8  (watch) stopped" in out


def test_demo(tmp_path):
    out = as_json("demo", "--dir", tmp_path / "demo", "--records", 3000, "--dim", 32, "--queries", 900)
    assert out["run"]["status"] == "written"
    assert out["eval"]["current"]["ndcg@10"] > out["eval"]["original"]["ndcg@10"] + 0.03
    # a second demo replaces its own database, but never another backend's demo beside it
    # (cold try: a Milvus demo deleted the Qdrant demo's directory, then failed on a missing extra)
    invoke("demo", "--dir", tmp_path / "demo", "--records", 500, "--dim", 8, "--queries", 200)
    invoke("demo", "--dir", tmp_path / "demo", "--backend", "chroma", "--records", 500, "--dim", 8,
           "--queries", 200)
    qdrant = as_json("status", "--store", out["store"])
    assert (qdrant["count"], qdrant["dimension"], qdrant["runs"]) == (500, 8, 1), qdrant
    # ... and someone else's directory never
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    result = invoke("demo", "--dir", tmp_path / "mine", expect=ExitCode.REFUSED_INPUT)
    assert "not created by `nudge-sync demo`" in result.stderr
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_demo_without_the_backends_client_says_so_before_anything_else(tmp_path, monkeypatch):
    """Cold try: `demo --backend milvus` without pymilvus generated the corpus, then failed."""
    hide_module(monkeypatch, "pymilvus", "milvus")
    result = invoke("demo", "--dir", tmp_path / "demo", "--backend", "milvus", expect=ExitCode.USAGE_ERROR)
    assert "pip install 'nudge-sync[milvus]'" in result.stderr and "generating" not in result.stderr, result.stderr
    assert not (tmp_path / "demo").exists()


def test_console_script_runs_the_demo(tmp_path):
    """The installed entry point, in a subprocess, exactly as the README's first command runs it."""
    exe = Path(sys.executable).with_name("nudge-sync")
    result = subprocess.run([str(exe), "demo", "--dir", str(tmp_path / "d"), "--records", "500", "--dim", "8",
                             "--queries", "200"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert "held-out test queries" in result.stdout and "ndcg@10" in result.stdout


def test_a_run_that_cannot_put_back_its_writes_exits_7(h, coll, monkeypatch):
    """Issue 10, defect 3: the database goes away mid-write and stays away."""
    from connectors._retry import RetryingStore

    real, calls = RetryingStore.update_vectors, []

    def update_vectors(self, ids, vectors, **kwargs):
        calls.append(1)
        if len(calls) >= 3:
            raise connectors.ConnectionFailed("lost the server")
        return real(self, ids, vectors, **kwargs)

    before = h.vectors(coll["name"])
    monkeypatch.setattr(RetryingStore, "update_vectors", update_vectors)
    out = as_json("run", "--store", coll["uri"], "--log-file", coll["log_file"], "--batch-size", "10",
                  expect=ExitCode.PARTIALLY_WRITTEN)
    monkeypatch.undo()
    assert out["status"] == "partial" and out["exit_code"] == 7 and out["error_type"] == "PartiallyWritten"
    assert f"`nudge-sync rollback --run {out['run_id']}`, completes it" in out["error"]
    status = invoke("status", "--store", coll["uri"]).stdout
    assert "20 records hold a nudged vector" in status and "30 writes pending" in status
    undone = as_json("rollback", "--store", coll["uri"], "--run", out["run_id"])
    assert undone["restored"] == 20 and undone["already_restored"] == 10
    after = h.vectors(coll["name"])  # a cosine collection: originals come back within one float32 ulp
    assert max(float(np.max(np.abs(after[i] - before[i]))) for i in before) <= 2.0**-23


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("args,env", [(["--log-format", "json", "run", "--bogus"], None),
                                      (["--log-format=json", "-c"], None),
                                      (["nope"], {"NUDGE_SYNC_LOG_FORMAT": "json"}),
                                      (["run"], {"NUDGE_SYNC_LOG_FORMAT": "json"})])
def test_usage_errors_are_one_json_record_under_json_logs(args, env):
    """Cold try: click's usage text came out as plain lines between the JSON ones."""
    result = invoke(*args, expect=ExitCode.USAGE_ERROR, env=env)
    [record] = json_lines(result.stderr)
    assert (record["level"], record["logger"], record["exit_code"]) == ("error", "nudge_sync.cli", 2)
    assert record["message"].startswith("error: ") and "--help" in record["message"]
    plain = invoke(*[a for a in " ".join(args).replace("--log-format json", "").split() if "json" not in a],
                   expect=ExitCode.USAGE_ERROR, env={"NUDGE_SYNC_LOG_FORMAT": "text"})
    assert "Error: " in plain.stderr and "{" not in plain.stderr


def test_a_failed_run_says_its_error_once(coll):
    """Cold try: the run's failure summary and the command's closing line both reached stderr."""
    args = ("run", "--store", coll["uri"], "--collection", "no_such_collection", "--log-file", coll["log_file"])
    text = invoke(*args, expect=ExitCode.DATABASE_ERROR)
    assert len(text.stderr.splitlines()) == 1 and text.stderr.startswith("error: "), text.stderr
    records = json_lines(invoke("--log-format", "json", *args, expect=ExitCode.DATABASE_ERROR).stderr)
    errors = [r for r in records if r["level"] == "error"]
    assert len(errors) == 1 and errors[0]["event"] == "summary" and errors[0]["exit_code"] == 6, records
    assert records[-1] is errors[0]


def test_importing_entries_the_log_holds_reports_them_as_replaced(coll):
    """Cold try: a second import of the same file said "appended N" though the log did not grow."""
    args = ("feedback", "import", "--store", coll["uri"], coll["log_file"])
    first = as_json(*args)
    n = first["appended"]
    assert n > 0 and first["replaced"] == 0
    again = as_json(*args, "--stream", "--batch-size", 7)  # streamed: counted batch by batch
    assert (again["appended"], again["replaced"]) == (0, n), again
    assert invoke(*args).stdout.strip() == (f"appended 0 entries to {coll['name']}_feedback and replaced {n} it "
                                            "held for the same query ids")
