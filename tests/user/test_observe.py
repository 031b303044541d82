"""What an unattended run shows, as users meet it: ``run`` with ``--log-format json``,
``--metrics-file``, ``--pushgateway`` and ``--report`` as its own process on Milvus Lite; the
numbers are checked against the run's own report and the database's history; the pages of
``run``, ``eval`` and ``history`` are opened in headless Chromium; bad values of every new flag
are refused with exit code 2 and a message naming the flag."""

from __future__ import annotations

import json
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.observe._gateway import gateway
from tests.user._fakes import EchoGrpcServer, EchoHTTPServer
from tests.user._secrets import find_secret, planted
from tests.user.test_secrets import credential
from tests.user._data import BATCH_ARGS, make_collection
from tests.user._native import embedded_backend
from tests.user._runner import nudge, spawn
from tests.user._watching import Lines, console_errors, open_in_chromium

JSON_LOGS = {"NUDGE_SYNC_LOG_FORMAT": "json"}


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"{name}{labels} not in the metrics")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One real run on a Milvus Lite collection, with every output asked for."""
    tmp = tmp_path_factory.mktemp("observe")
    coll = make_collection(embedded_backend("milvus-lite", tmp / "db"), "obs", tmp)
    with gateway() as gw:
        proc = spawn("run", "--store", coll.uri, *BATCH_ARGS, "--metrics-file", tmp / "nudge.prom",
                     "--pushgateway", gw.url, "--report", tmp / "run.html", env=JSON_LOGS)
        lines = Lines(proc)
        assert lines.finish(timeout=300) == 0, "\n".join(lines.lines[-20:])
    return coll, tmp, lines, gw


def test_json_logs_parse_line_by_line_and_end_with_the_runs_summary(written):
    coll, tmp, lines, _ = written
    records = lines.records()
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    summary = [r for r in records if r.get("event") == "summary"]
    assert len(summary) == 1
    history = nudge("history", "--store", coll.uri).report
    run = history[-1]
    s = summary[0]
    assert (s["run_id"], s["status"], s["exit_code"]) == (run["run_id"], "written", 0)
    assert s["gamma"] == pytest.approx(run["gamma"]) and s["counts"]["written"] == run["written"] > 0
    objective = run["objective"]
    assert s["validation_after"] == pytest.approx(run["validation"]["after"][objective])
    assert s["validation_before"] == pytest.approx(run["validation"]["before"][objective])
    # the next night, with nothing new: exit 3 is success for a scheduler, so no record says error
    quiet = nudge("run", "--store", coll.uri, *BATCH_ARGS, env=JSON_LOGS, expect=3)
    quiet_records = [json.loads(line) for line in quiet.stderr.splitlines() if line.strip()]
    assert quiet_records and not [r for r in quiet_records if r["level"] in ("error", "critical")], quiet_records


def test_the_metrics_file_and_the_push_carry_the_runs_numbers(written):
    coll, tmp, _, gw = written
    run = nudge("history", "--store", coll.uri).report[-1]
    text = (tmp / "nudge.prom").read_text()
    c = {"collection": "obs"}
    assert metric(text, "nudge_sync_gamma", **c) == pytest.approx(run["gamma"])
    assert metric(text, "nudge_sync_records_total", outcome="written", **c) == run["written"]
    # every outcome has a sample, 0 when none happened (cold try: no "adopted" series at all)
    assert metric(text, "nudge_sync_records_total", outcome="adopted", **c) == 0
    assert metric(text, "nudge_sync_records_total", outcome="restored", **c) == 0
    assert metric(text, "nudge_sync_last_run_exit_code", **c) == 0
    assert metric(text, "nudge_sync_last_run_status", status="written", **c) == 1
    assert metric(text, "nudge_sync_last_success_timestamp_seconds", **c) >= run["started"]
    assert metric(text, "nudge_sync_validation_objective", when="after", **c) == pytest.approx(
        run["validation"]["after"][run["objective"]])
    assert [r[:2] for r in gw.requests] == [("POST", "/metrics/job/nudge-sync/collection/obs")]
    assert metric(gw.requests[0][2], "nudge_sync_gamma", **c) == pytest.approx(run["gamma"])


def test_a_failed_run_keeps_the_last_success_time_in_the_file(written):
    coll, tmp, _, _ = written
    path = tmp / "nudge.prom"
    before = metric(path.read_text(), "nudge_sync_last_success_timestamp_seconds", collection="obs")
    nudge("run", "--store", coll.uri, "--state", "no_such_state_here", "--min-val-queries", "100000",
          "--metrics-file", path, expect=3)  # held back by a gate: a success (exit 3) for alerting ...
    held = path.read_text()
    assert metric(held, "nudge_sync_last_run_exit_code", collection="obs") == 3
    bad = coll.uri.replace("collection=obs", "collection=gone")
    nudge("run", "--store", bad, "--metrics-file", path, expect=6)  # ... a missing collection is not
    text = path.read_text()
    assert metric(text, "nudge_sync_last_run_exit_code", collection="gone") == 6
    assert before <= metric(held, "nudge_sync_last_success_timestamp_seconds", collection="obs")


def test_the_run_page_renders_in_chromium_with_its_plot_and_chosen_point(written):
    coll, tmp, _, _ = written
    dom, log = open_in_chromium(tmp / "run.html", tmp)
    assert not console_errors(log), console_errors(log)
    assert 'id="objective-curve"' in dom and 'id="chosen-point"' in dom
    run = nudge("history", "--store", coll.uri).report[-1]
    assert run["run_id"] in dom and f"chosen γ = {run['gamma']:.4g}" in dom


def test_eval_and_history_pages_render_in_chromium(written):
    coll, tmp, _, _ = written
    nudge("eval", "--store", coll.uri, "--report", tmp / "eval.html")
    nudge("history", "--store", coll.uri, "--report", tmp / "history.html")
    dom, log = open_in_chromium(tmp / "eval.html", tmp)
    assert not console_errors(log) and 'id="eval-now-0"' in dom and 'id="before-after"' in dom
    dom, log = open_in_chromium(tmp / "history.html", tmp)
    assert not console_errors(log) and 'id="history-objective"' in dom and 'id="history-written-0"' in dom


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


BAD = [
    (("run", "--metrics-file", "/nonexistent-dir/x.prom"), "--metrics-file"),
    (("run", "--report", "/"), "--report"),
    # cold try: caught only when written at the end of the run (root may write anywhere os.access says)
    (("run", "--metrics-file", "/proc/nudge.prom"), "not writable"),  # a folder nothing can be created in
    (("rollback", "--metrics-file", "/sys/rollback.prom"), "not writable"),
    (("history", "--report", "/sys/history.html"), "not writable"),
    (("run", "--metrics-file", "/dev/null"), "not a regular file"),  # the rename would replace the device
    (("run", "--pushgateway", "ftp://example"), "--pushgateway"),
    (("run", "--pushgateway", "http://host:port"), "--pushgateway"),
    (("eval", "--report", "/etc/hostname/eval.html"), "--report"),  # its folder is a file
    (("history", "--report", "/nonexistent-dir/h.html"), "--report"),
    (("watch", "--cron", "61 3 * * *"), "--cron"),
    (("watch", "--cron", "every night"), "--cron"),
    (("watch", "--every", "6x"), "--every"),
    (("watch", "--every", "0s"), "--every"),
    (("watch", "--every", "1h", "--cron", "0 3 * * *"), "either --every or --cron"),
    (("watch",), "--every, --cron or --min-new-feedback"),
    (("watch", "--every", "1h", "--metrics-port", "70000"), "--metrics-port"),
    (("watch", "--every", "1h", "--metrics-port", "65000", "--metrics-addr", "999.1.1.1"), "--metrics-addr"),
    (("run", "--collection", ""), "--collection"),
]


@pytest.mark.parametrize("args,names", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_of_the_new_flags_are_usage_errors(tmp_path, args, names):
    store = f"milvus://{tmp_path}/untouched.db?collection=docs"
    result = nudge(*args, "--store", store, expect=2, as_json=False)
    assert names in result.stderr, result.describe()
    assert not (tmp_path / "untouched.db").exists()  # refused before anything was opened


def test_a_metrics_port_in_use_is_a_usage_error(tmp_path, busy_port):
    store = f"milvus://{tmp_path}/untouched.db?collection=docs"
    result = nudge("watch", "--store", store, "--every", "1h", "--metrics-port", busy_port, expect=2, as_json=False)
    assert "--metrics-port" in result.stderr and "in use" in result.stderr, result.describe()


@pytest.mark.parametrize("backend,given,shape", [("qdrant", "env:QDRANT_API_KEY", "{s}"),
                                                 ("milvus", "env:MILVUS_TOKEN", "planted:{s}"),
                                                 ("chroma", "env:CHROMA_AUTH_TOKEN", "{s}")])
def test_json_logs_keep_secrets_redacted(backend, given, shape, tmp_path):
    """Against a server echoing the credential back, with the client libraries' own log lines on
    (NUDGE_SYNC_DEBUG=1): every stderr line is JSON and none holds the secret in any form."""
    secret = planted()
    env, _ = credential(given, shape.format(s=secret), tmp_path)
    fake_cls = EchoGrpcServer if backend == "milvus" else EchoHTTPServer
    with fake_cls() as fake:
        uri = f"{backend}+http://127.0.0.1:{fake.port}?collection=docs&timeout=3&retry_budget=0"
        result = nudge("run", "--store", uri, *BATCH_ARGS, env={**env, **JSON_LOGS, "NUDGE_SYNC_DEBUG": "1"},
                       expect=6)
        assert fake.seen and find_secret(secret, fake.headers_seen()), "the secret was never sent: proves nothing"
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1]["level"] == "error" and lines[-1]["exit_code"] == 6
    ours = [r for r in lines if r["level"] == "error" and r["logger"].startswith("nudge_sync")]
    assert ours == [lines[-1]]  # the error once: the run's summary, or the closing record where no run started
    assert not find_secret(secret, result.stdout, result.stderr)
