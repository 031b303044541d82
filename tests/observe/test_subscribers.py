"""The observers as subscribers, fed the event sequences the engine emits (events.py's order):
JSON log lines, Prometheus metrics (textfile, push-add, HTTP), the HTML run report."""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nudge_sync.engine.events import (
    Advanced,
    BatchWritten,
    Events,
    GateDecided,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from nudge_sync.observe.jsonlog import EventLog, JsonFormatter
from nudge_sync.observe.metrics import LAST_SUCCESS, RunMetrics
from nudge_sync.observe.report import RunReport
from tests._procs import free_port
from tests.observe._gateway import gateway

#: an attribute that would load something from outside the page (in-page "#id" links are fine)
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*(?!["']?(?:#|data:))""", re.I)
RUN = "20261207T030000Z-abc123"
REPORT = {
    "run_id": RUN, "status": "written", "store": "chroma+http://127.0.0.1:1?collection=docs", "collection": "docs",
    "method": "nudge-n", "started": 1_796_000_000.0, "finished": 1_796_000_004.0, "gamma": 0.25,
    "objective": "ndcg@10", "context_mode": "exact", "reason": "wrote 42 vectors (2 restores)",
    "counts": {"written": 42, "train_queries": 80, "val_queries": 20, "adopted_during_run": 1},
    "validation": {"before": {"ndcg@10": 0.5, "hit@1": 0.4}, "after": {"ndcg@10": 0.625, "hit@1": 0.45}},
    "curve": {"gamma": [0.0, 0.1, 0.25, 0.5, 1.0], "score": [0.5, 0.58, 0.625, 0.6, 0.52]},
    "timings": {"read_log": 0.5, "write": 1.5},
}


def run_events(*, fail: bool = False) -> list:
    events = [RunStarted(RUN, command="run", store=REPORT["store"], collection="docs",
                         options={"objective": "ndcg@10", "min_gain": 0.0}),
              StepStarted(RUN, step="read_inputs", total=100), Advanced(RUN, step="read_inputs", n=100),
              StepFinished(RUN, step="read_inputs", seconds=0.5, counts={"queries": 100}),
              GateDecided(RUN, gate="min_gain", passed=True, value=0.125, threshold=0.0),
              StepStarted(RUN, step="write", total=42), BatchWritten(RUN, phase="run", written=42, adopted=1),
              StepFinished(RUN, step="write", seconds=1.5, counts={"written": 42})]
    if fail:
        events.append(RunFailed(RUN, command="run", error="DatabaseError", message="database unreachable",
                                exit_code=6, seconds=2.5, report={**REPORT, "status": "undone"}))
    else:
        events.append(RunFinished(RUN, command="run", status="written", report=REPORT, seconds=4.0, exit_code=0))
    return events


def feed(subscriber, events) -> None:
    sink = Events([subscriber])
    for e in events:
        sink.emit(e)


def test_json_lines_carry_the_events_fields_and_one_summary():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(redact=lambda s: s.replace("s3cr3t\"x", "***")))
    logger = logging.getLogger("test.observe.jsonlog")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    feed(EventLog(logger), run_events())
    logger.info('token s3cr3t"x in a message')
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r.get("event") for r in lines[:-1]] == ["RunStarted", "StepStarted", "StepFinished", "GateDecided",
                                                    "StepStarted", "BatchWritten", "StepFinished",
                                                    "summary"]  # no Advanced
    for r in lines:
        assert {"time", "level", "logger", "message"} <= set(r)
    assert all(r["run_id"] == RUN for r in lines[:-1])
    summary = lines[-2]
    assert summary["status"] == "written" and summary["exit_code"] == 0 and summary["gamma"] == 0.25
    assert summary["validation_before"] == 0.5 and summary["validation_after"] == 0.625
    assert summary["counts"]["written"] == 42 and summary["seconds"] == 4.0
    assert lines[-1]["message"] == "token *** in a message"  # redacted before JSON escaping


def test_failed_run_summary_is_an_error_record():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.observe.jsonlog.fail")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    feed(EventLog(logger), run_events(fail=True))
    last = json.loads(stream.getvalue().splitlines()[-1])
    assert last["level"] == "error" and last["exit_code"] == 6 and last["error"] == "DatabaseError"


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_metrics_carry_the_runs_numbers(tmp_path):
    m = RunMetrics("docs")
    feed(m, run_events())
    path = tmp_path / "nudge.prom"
    m.write_textfile(path)
    got = samples(path.read_text())
    c = (("collection", "docs"),)
    assert got[("nudge_sync_last_run_exit_code", c)] == 0
    assert got[(LAST_SUCCESS, c)] == pytest.approx(run_events()[-1].time)
    assert got[("nudge_sync_gamma", c)] == 0.25
    assert got[("nudge_sync_step_duration_seconds", c + (("step", "write"),))] == 1.5
    assert got[("nudge_sync_records_total", c + (("outcome", "written"),))] == 42
    assert got[("nudge_sync_records_total", c + (("outcome", "adopted"),))] == 1  # from BatchWritten, once
    assert got[("nudge_sync_validation_objective", c + (("objective", "ndcg@10"), ("when", "after")))] == 0.625
    assert got[("nudge_sync_last_run_status", c + (("status", "written"),))] == 1
    assert got[("nudge_sync_runs_total", c + (("status", "written"),))] == 1
    assert got[("nudge_sync_lock_held", c)] == 0
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_a_failed_run_keeps_the_last_success_of_the_textfile(tmp_path):
    path = tmp_path / "nudge.prom"
    ok = RunMetrics("docs")
    feed(ok, run_events())
    ok.write_textfile(path)
    success = samples(path.read_text())[(LAST_SUCCESS, (("collection", "docs"),))]
    failed = RunMetrics("docs")  # the next night's process
    feed(failed, run_events(fail=True))
    failed.write_textfile(path)
    got = samples(path.read_text())
    assert got[(LAST_SUCCESS, (("collection", "docs"),))] == success
    assert got[("nudge_sync_last_run_exit_code", (("collection", "docs"),))] == 6
    assert got[("nudge_sync_last_run_status", (("collection", "docs"), ("status", "undone")))] == 1


def test_push_add_keeps_the_last_success_after_a_failed_run():
    with gateway() as gw:
        ok = RunMetrics("docs")
        feed(ok, run_events())
        ok.push(gw.url)
        failed = RunMetrics("docs")
        feed(failed, run_events(fail=True))
        failed.push(gw.url)
    assert [r[0] for r in gw.requests] == ["POST", "POST"]  # push-add, never PUT
    path = gw.requests[0][1]
    assert path == "/metrics/job/nudge-sync/collection/docs"
    assert LAST_SUCCESS not in gw.requests[1][2]  # the failed run does not send it ...
    assert gw.value(path, LAST_SUCCESS) == pytest.approx(run_events()[-1].time)  # ... so it stays
    assert gw.value(path, "nudge_sync_last_run_exit_code") == 6


def test_metrics_are_served_over_http():
    m = RunMetrics("docs")
    feed(m, run_events())
    port = free_port()
    server, _thread = m.serve(port)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert samples(text)[("nudge_sync_gamma", (("collection", "docs"),))] == 0.25


def test_the_run_report_has_the_curve_and_its_chosen_point(tmp_path):
    path = tmp_path / "run.html"
    feed(RunReport(path), run_events())
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert 'id="chosen-point"' in page and 'id="objective-curve"' in page
    assert "chosen γ = 0.25" in page and "0.625" in page and "min_gain" in page
    assert not EXTERNAL.findall(page), "the page must need no network to open"


def test_a_failed_run_still_gets_its_page(tmp_path):
    path = tmp_path / "run.html"
    feed(RunReport(path), run_events(fail=True))
    page = path.read_text()
    assert "undone" in page and "database unreachable" in page and "exit code 6" in page


def test_a_rollback_counts_restored_records_once_and_is_not_a_refresh_success():
    m = RunMetrics("docs")
    report = {"run_id": "rb", "status": "rolled-back", "restored": 7, "adopted_during_rollback": 2}
    feed(m, [RunStarted("rb", command="rollback", store="s", collection="docs", options={}),
             BatchWritten("rb", phase="rollback", written=7, adopted=2),
             RunFinished("rb", command="rollback", status="rolled-back", report=report, seconds=1.0, exit_code=0)])
    got = samples(m.text())
    c = (("collection", "docs"),)
    assert got[("nudge_sync_records_total", c + (("outcome", "restored"),))] == 7
    assert got[("nudge_sync_records_total", c + (("outcome", "adopted"),))] == 2
    assert (LAST_SUCCESS, c) not in got and got[("nudge_sync_last_run_status", c + (("status", "rolled-back"),))] == 1
